//! twobit graph -> ONNX (IR version 8, opset 13; 14 with HardSwish), weights dequantized to f32.
use crate::proto::*;
use crate::OnnxError;
use prost::Message;
use std::collections::{HashMap, HashSet};
use twobit_format::graph::{Op, INPUT};
use twobit_format::{Model, Tensor};

/// `metadata_props` key of the input normalisation's per-channel mean (comma-separated).
pub const META_MEAN: &str = "twobit.normalize.mean";
/// `metadata_props` key of the input normalisation's per-channel std (comma-separated).
pub const META_STD: &str = "twobit.normalize.std";

/// How to export.
#[derive(Clone, Debug, Default)]
pub struct ExportOptions {
    /// The ONNX graph name (default: the architecture's name).
    pub graph_name: Option<String>,
    /// A doc string for the model.
    pub doc_string: Option<String>,
}

struct Out {
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    used: HashSet<String>,
    tensor_names: HashMap<String, String>,
}

impl Out {
    fn fresh(&mut self, hint: &str) -> String {
        let mut name = hint.to_string();
        let mut i = 1;
        while !self.used.insert(name.clone()) {
            name = format!("{hint}_{i}");
            i += 1;
        }
        name
    }

    /// The initializer holding model tensor `t` (written once).
    fn tensor(&mut self, m: &Model, t: &str) -> Result<String, OnnxError> {
        if let Some(n) = self.tensor_names.get(t) {
            return Ok(n.clone());
        }
        let tensor = m
            .tensors
            .get(t)
            .ok_or_else(|| OnnxError::Export(format!("tensor '{t}' is missing")))?;
        let name = self.fresh(t);
        self.inits
            .push(float_tensor(&name, tensor.shape(), &tensor.to_f32()));
        self.tensor_names.insert(t.to_string(), name.clone());
        Ok(name)
    }

    fn init(&mut self, hint: &str, t: TensorProto) -> String {
        let name = self.fresh(hint);
        self.inits.push(TensorProto {
            name: name.clone(),
            ..t
        });
        name
    }
}

fn float_tensor(name: &str, shape: &[usize], vals: &[f32]) -> TensorProto {
    TensorProto {
        name: name.to_string(),
        dims: shape.iter().map(|&d| d as i64).collect(),
        data_type: dtype::FLOAT,
        raw_data: vals.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

fn ints(name: &str, v: &[usize]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attr_type::INTS,
        ints: v.iter().map(|&x| x as i64).collect(),
        ..Default::default()
    }
}

fn int(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attr_type::INT,
        i,
        ..Default::default()
    }
}

fn float(name: &str, f: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attr_type::FLOAT,
        f,
        ..Default::default()
    }
}

fn value_info(name: &str, dims: &[Option<usize>]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Some(v) => DimValue::DimValue(*v as i64),
                None => DimValue::DimParam("N".into()),
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

/// Exports a model with an architecture as a standard ONNX model (IR 8, opset 13, or 14
/// when the graph has a HardSwish, which opset 13 lacks). The
/// ONNX model expects normalised input; see the crate docs for the conventions.
pub fn export(model: &Model, opts: &ExportOptions) -> Result<Vec<u8>, OnnxError> {
    let arch = model
        .arch
        .as_ref()
        .ok_or_else(|| OnnxError::Export("the model has no architecture".into()))?;
    let shapes = arch
        .shapes(|t| model.tensors.get(t).map(Tensor::shape))
        .map_err(OnnxError::Export)?;
    let mut o = Out {
        nodes: Vec::new(),
        inits: Vec::new(),
        used: HashSet::new(),
        tensor_names: HashMap::new(),
    };
    o.used.insert(INPUT.to_string());
    for n in &arch.nodes {
        o.used.insert(n.output.clone());
    }
    for n in &arch.nodes {
        let mut inputs = n.inputs.clone();
        let mut attrs = Vec::new();
        let ty = match &n.op {
            Op::Conv {
                weight,
                bias,
                strides,
                pads,
                dilations,
                group,
            } => {
                let w = model.tensors.get(weight).map(|t| t.shape().to_vec());
                let w =
                    w.ok_or_else(|| OnnxError::Export(format!("tensor '{weight}' is missing")))?;
                inputs.push(o.tensor(model, weight)?);
                if let Some(b) = bias {
                    inputs.push(o.tensor(model, b)?);
                }
                attrs.push(ints("kernel_shape", &w[2..]));
                attrs.push(ints("strides", strides));
                attrs.push(ints("pads", pads));
                attrs.push(ints("dilations", dilations));
                attrs.push(int("group", *group as i64));
                "Conv"
            }
            Op::Linear { weight, bias } => {
                inputs.push(o.tensor(model, weight)?);
                if let Some(b) = bias {
                    inputs.push(o.tensor(model, b)?);
                }
                attrs.push(int("transB", 1));
                "Gemm"
            }
            Op::BatchNorm {
                weight,
                bias,
                running_mean,
                running_var,
                eps,
            } => {
                for t in [weight, bias, running_mean, running_var] {
                    inputs.push(o.tensor(model, t)?);
                }
                attrs.push(float("epsilon", *eps));
                "BatchNormalization"
            }
            Op::Relu => "Relu",
            Op::Sigmoid => "Sigmoid",
            Op::HardSwish => "HardSwish",
            Op::LeakyRelu { alpha } => {
                attrs.push(float("alpha", *alpha));
                "LeakyRelu"
            }
            Op::HardSigmoid { alpha, beta } => {
                attrs.push(float("alpha", *alpha));
                attrs.push(float("beta", *beta));
                "HardSigmoid"
            }
            Op::Clip { min, max } => {
                for (b, suffix) in [(min, "min"), (max, "max")] {
                    inputs.push(match b {
                        Some(v) => {
                            let t = float_tensor("", &[], &[*v]);
                            o.init(&format!("{}_{suffix}", n.name), t)
                        }
                        None => String::new(),
                    });
                }
                while inputs.last().is_some_and(String::is_empty) {
                    inputs.pop();
                }
                "Clip"
            }
            Op::MaxPool {
                kernel,
                strides,
                pads,
                dilations,
                ceil_mode,
            } => {
                attrs.push(ints("kernel_shape", kernel));
                attrs.push(ints("strides", strides));
                attrs.push(ints("pads", pads));
                attrs.push(ints("dilations", dilations));
                attrs.push(int("ceil_mode", i64::from(*ceil_mode)));
                "MaxPool"
            }
            Op::AvgPool {
                kernel,
                strides,
                pads,
                ceil_mode,
                count_include_pad,
            } => {
                attrs.push(ints("kernel_shape", kernel));
                attrs.push(ints("strides", strides));
                attrs.push(ints("pads", pads));
                attrs.push(int("ceil_mode", i64::from(*ceil_mode)));
                attrs.push(int("count_include_pad", i64::from(*count_include_pad)));
                "AveragePool"
            }
            Op::GlobalAvgPool => "GlobalAveragePool",
            Op::Add { constant } | Op::Mul { constant } => {
                if let Some(c) = constant {
                    inputs.push(o.tensor(model, c)?);
                }
                if matches!(n.op, Op::Add { .. }) {
                    "Add"
                } else {
                    "Mul"
                }
            }
            Op::Concat => {
                attrs.push(int("axis", 1));
                "Concat"
            }
            Op::Flatten => {
                attrs.push(int("axis", 1));
                "Flatten"
            }
            Op::PadChannels { before, after } => {
                let pads = TensorProto {
                    dims: vec![8],
                    data_type: dtype::INT64,
                    int64_data: vec![0, *before as i64, 0, 0, 0, *after as i64, 0, 0],
                    ..Default::default()
                };
                inputs.push(o.init(&format!("{}_pads", n.name), pads));
                "Pad"
            }
            Op::Softmax => {
                attrs.push(int("axis", -1));
                "Softmax"
            }
        };
        o.nodes.push(NodeProto {
            input: inputs,
            output: vec![n.output.clone()],
            name: n.name.clone(),
            op_type: ty.to_string(),
            attribute: attrs,
            ..Default::default()
        });
    }
    let mut output = arch.output.clone();
    if shapes.get(&output).map_or(0, Vec::len) != 1 {
        let flat = o.fresh(&format!("{output}_flat"));
        let name = o.fresh("output_flatten");
        o.nodes.push(NodeProto {
            input: vec![output],
            output: vec![flat.clone()],
            name,
            op_type: "Flatten".into(),
            attribute: vec![int("axis", 1)],
            ..Default::default()
        });
        output = flat;
    }
    let [c, h, w] = arch.input;
    let join = |v: &[f32]| {
        v.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let meta = |key: &str, value: String| StringStringEntryProto {
        key: key.into(),
        value,
    };
    let m = ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            // HardSwish exists from opset 14 on; everything else is written in opset 13 form.
            version: if arch.nodes.iter().any(|n| n.op == Op::HardSwish) {
                14
            } else {
                13
            },
        }],
        producer_name: "twobit".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: opts.doc_string.clone().unwrap_or_default(),
        graph: Some(GraphProto {
            node: o.nodes,
            name: opts.graph_name.clone().unwrap_or_else(|| arch.name.clone()),
            initializer: o.inits,
            input: vec![value_info(INPUT, &[None, Some(c), Some(h), Some(w)])],
            output: vec![value_info(&output, &[None, Some(arch.classes)])],
            ..Default::default()
        }),
        metadata_props: vec![
            meta(META_MEAN, join(&arch.normalize.mean)),
            meta(META_STD, join(&arch.normalize.std)),
        ],
        ..Default::default()
    };
    Ok(m.encode_to_vec())
}
