//! Small ONNX graphs built in code for the operator modules' unit tests.
use crate::proto::*;
use crate::{import, ImportOptions, OnnxError};
use prost::Message;
use twobit_format::graph::Op;
use twobit_format::Model;

/// A node.
pub fn node(op: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        name: format!("{op}_node"),
        op_type: op.to_string(),
        attribute: attrs,
        ..Default::default()
    }
}

/// An integer attribute.
pub fn ai(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attr_type::INT,
        i,
        ..Default::default()
    }
}

/// A float attribute.
pub fn af(name: &str, f: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attr_type::FLOAT,
        f,
        ..Default::default()
    }
}

/// An integer-list attribute.
pub fn ais(name: &str, ints: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attr_type::INTS,
        ints: ints.to_vec(),
        ..Default::default()
    }
}

/// A string attribute.
pub fn as_(name: &str, s: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attr_type::STRING,
        s: s.as_bytes().to_vec(),
        ..Default::default()
    }
}

/// A float tensor with values `0.01 * (i % 7) - 0.03`.
pub fn tf(name: &str, dims: &[i64]) -> TensorProto {
    let n: i64 = dims.iter().product();
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: dtype::FLOAT,
        float_data: (0..n).map(|i| 0.01 * (i % 7) as f32 - 0.03).collect(),
        ..Default::default()
    }
}

/// A float tensor with the given values.
pub fn tv(name: &str, dims: &[i64], vals: &[f32]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: dtype::FLOAT,
        float_data: vals.to_vec(),
        ..Default::default()
    }
}

/// An int64 tensor.
pub fn ti(name: &str, dims: &[i64], vals: &[i64]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: dtype::INT64,
        int64_data: vals.to_vec(),
        ..Default::default()
    }
}

/// A value info of float type with the given dims (`-1`: symbolic).
pub fn vi(name: &str, dims: &[i64]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|&d| Dimension {
            value: Some(if d < 0 {
                DimValue::DimParam("N".into())
            } else {
                DimValue::DimValue(d)
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type: dtype::FLOAT,
                shape: Some(TensorShapeProto { dim }),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Model bytes: input `x` `[N, c, h, w]`, output `y`, opset 13.
pub fn model(chw: [i64; 3], nodes: Vec<NodeProto>, inits: Vec<TensorProto>) -> Vec<u8> {
    model_opset(chw, nodes, inits, 13)
}

/// Model bytes with a given opset.
pub fn model_opset(
    chw: [i64; 3],
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    opset: i64,
) -> Vec<u8> {
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: opset,
        }],
        producer_name: "test".into(),
        graph: Some(GraphProto {
            node: nodes,
            name: "g".into(),
            initializer: inits,
            input: vec![vi("x", &[-1, chw[0], chw[1], chw[2]])],
            output: vec![vi("y", &[])],
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

/// Imports with default options.
pub fn imp(bytes: &[u8]) -> Result<Model, OnnxError> {
    import(bytes, &ImportOptions::default())
}

/// The ops of an imported model's nodes.
pub fn ops(m: &Model) -> Vec<Op> {
    m.arch
        .as_ref()
        .unwrap()
        .nodes
        .iter()
        .map(|n| n.op.clone())
        .collect()
}

/// The f32 values of a tensor.
pub fn vals(m: &Model, name: &str) -> Vec<f32> {
    m.tensors[name].to_f32()
}
