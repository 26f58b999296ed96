//! ONNX -> twobit graph. [`import`] decodes the protobuf, folds constants, converts each
//! node with the module of its operator family, and validates the result.
mod activation;
mod conv;
pub(crate) mod ctx;
mod elementwise;
mod fold;
mod gemm;
mod norm;
mod pool;
mod shape;
pub(crate) mod tensor;
#[cfg(test)]
pub(crate) mod testutil;

use crate::proto::{DimValue, ModelProto};
use crate::OnnxError;
use ctx::{Ctx, N};
use prost::Message;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use twobit_format::graph::INPUT;
use twobit_format::{Arch, Model, Normalize, Tensor};

/// How to import.
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// The per-sample input shape `[C, H, W]`, for models whose input has symbolic (or
    /// unknown) dimensions besides the batch; fixed dimensions must agree with it.
    pub input_shape: Option<[usize; 3]>,
    /// The normalisation the network expects on inputs scaled to [0, 1] (default: identity,
    /// i.e. the imported network is fed already-normalised input, like the ONNX model).
    pub normalize: Option<Normalize>,
    /// The model name (default: the ONNX graph's name, else `onnx`).
    pub name: Option<String>,
}

/// Reads and imports an `.onnx` file (see [`import`]).
pub fn load(path: &Path, opts: &ImportOptions) -> Result<Model, OnnxError> {
    let bytes = std::fs::read(path).map_err(|source| OnnxError::Io {
        path: path.display().to_string(),
        source,
    })?;
    import(&bytes, opts)
}

/// Imports an ONNX model into a twobit [`Model`]: the graph as its `arch`, the weights as
/// f32 tensors named after the ONNX initializers, the source in `provenance`. The result
/// has passed [`Model::validate`]; any unsupported feature is an error (nothing is
/// half-imported).
pub fn import(bytes: &[u8], opts: &ImportOptions) -> Result<Model, OnnxError> {
    let m = ModelProto::decode(bytes).map_err(|e| OnnxError::NotProtobuf(e.to_string()))?;
    let g = m
        .graph
        .as_ref()
        .ok_or_else(|| OnnxError::UnsupportedModel("the model has no graph".into()))?;
    if !g.sparse_initializer.is_empty() {
        return Err(OnnxError::UnsupportedModel("sparse initializers".into()));
    }
    let opset = m
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .ok_or_else(|| OnnxError::UnsupportedModel("no opset for the default domain".into()))?;

    let mut consts = std::collections::HashMap::new();
    for t in &g.initializer {
        consts.insert(t.name.clone(), tensor::decode(t)?);
    }
    let inputs: Vec<_> = g
        .input
        .iter()
        .filter(|i| !consts.contains_key(&i.name))
        .collect();
    if inputs.len() != 1 {
        return Err(OnnxError::InputCount(inputs.len()));
    }
    if g.output.len() != 1 {
        return Err(OnnxError::OutputCount(g.output.len()));
    }
    let input = input_shape(inputs[0], opts.input_shape)?;

    let mut cx = Ctx::new(opset, input);
    cx.consts = consts;
    cx.values.insert(inputs[0].name.clone(), INPUT.to_string());
    for n in &g.node {
        for i in n.input.iter().filter(|i| !i.is_empty()) {
            *cx.uses.entry(i.clone()).or_default() += 1;
        }
    }
    *cx.uses.entry(g.output[0].name.clone()).or_default() += 1;

    let mut node_names = HashSet::new();
    for (k, p) in g.node.iter().enumerate() {
        let mut name = if p.name.is_empty() {
            format!("{}_{k}", p.op_type)
        } else {
            p.name.clone()
        };
        while !node_names.insert(name.clone()) {
            name = format!("{name}_{k}");
        }
        convert(&mut cx, &N { p, name })?;
    }

    let out = &g.output[0].name;
    let output = match cx.values.get(out) {
        Some(v) if v != INPUT => v.clone(),
        _ => {
            return Err(OnnxError::GraphInvalid(format!(
                "the output '{out}' is not computed from the input by any node"
            )))
        }
    };
    let shapes = twobit_format::graph::infer_shapes(&input, &cx.nodes, |t| {
        cx.tensors.get(t).map(Tensor::shape)
    })
    .map_err(OnnxError::GraphInvalid)?;
    let classes = shapes.get(&output).map_or(0, |s| s.iter().product());
    let normalize = match &opts.normalize {
        Some(n) => n.clone(),
        None => recorded_normalize(&m, input[0]).unwrap_or_else(|| Normalize::identity(input[0])),
    };
    let name = opts.name.clone().unwrap_or_else(|| {
        if g.name.is_empty() {
            "onnx".to_string()
        } else {
            g.name.clone()
        }
    });
    let mut provenance = BTreeMap::new();
    provenance.insert("source".to_string(), "onnx".to_string());
    let producer = format!("{} {}", m.producer_name, m.producer_version);
    provenance.insert("onnx.producer".to_string(), producer.trim().to_string());
    provenance.insert("onnx.opset".to_string(), opset.to_string());
    provenance.insert("onnx.ir_version".to_string(), m.ir_version.to_string());
    let model = Model {
        tensors: std::mem::take(&mut cx.tensors),
        arch: Some(Arch {
            name,
            input,
            classes,
            normalize,
            nodes: std::mem::take(&mut cx.nodes),
            output,
            input_ranges: Default::default(),
        }),
        provenance,
    };
    model
        .validate()
        .map_err(|e| OnnxError::GraphInvalid(e.to_string()))?;
    Ok(model)
}

/// Converts one node with the module of its operator family.
fn convert(cx: &mut Ctx, n: &N) -> Result<(), OnnxError> {
    let p = n.p;
    if !(p.domain.is_empty() || p.domain == "ai.onnx") {
        return Err(OnnxError::UnsupportedOperator {
            op: format!("{}.{}", p.domain, p.op_type),
            node: n.name.clone(),
        });
    }
    match p.op_type.as_str() {
        "Conv" => conv::conv(cx, n),
        "Gemm" => gemm::gemm(cx, n),
        "MatMul" => gemm::matmul(cx, n),
        "BatchNormalization" => norm::batch_norm(cx, n),
        "Relu" | "LeakyRelu" | "Clip" | "Sigmoid" | "HardSigmoid" | "HardSwish" => {
            activation::activation(cx, n)
        }
        "MaxPool" | "AveragePool" | "GlobalAveragePool" => pool::pool(cx, n),
        "Add" | "Mul" | "Sub" | "Div" => elementwise::binary(cx, n),
        "Constant" => elementwise::constant(cx, n),
        "Shape" | "Gather" | "Unsqueeze" | "Squeeze" | "Cast" => fold::fold_op(cx, n),
        "Concat" if (0..p.input.len()).all(|i| cx.is_const(n, i)) && !p.input.is_empty() => {
            fold::concat_consts(cx, n)
        }
        "Flatten" | "Reshape" | "Concat" | "Dropout" | "Identity" | "Softmax" | "Pad" => {
            shape::shape_op(cx, n)
        }
        _ => Err(OnnxError::UnsupportedOperator {
            op: p.op_type.clone(),
            node: n.name.clone(),
        }),
    }
}

/// The per-sample `[C, H, W]` of the graph input `[N, C, H, W]`.
fn input_shape(
    v: &crate::proto::ValueInfoProto,
    given: Option<[usize; 3]>,
) -> Result<[usize; 3], OnnxError> {
    let bad = |detail: &str| OnnxError::BadInput {
        input: v.name.clone(),
        detail: detail.to_string(),
    };
    let t = v.r#type.as_ref().and_then(|t| t.tensor_type.as_ref());
    let t = t.ok_or_else(|| bad("not a tensor"))?;
    if t.elem_type != crate::proto::dtype::FLOAT {
        return Err(bad(&format!("element type {} is not float", t.elem_type)));
    }
    let dims = match &t.shape {
        Some(s) => &s.dim,
        None if given.is_some() => return given.ok_or_else(|| bad("no shape")),
        None => return Err(bad("no shape (give ImportOptions::input_shape)")),
    };
    let show = |d: &crate::proto::Dimension| match &d.value {
        Some(DimValue::DimValue(v)) => v.to_string(),
        Some(DimValue::DimParam(p)) => p.clone(),
        None => "?".to_string(),
    };
    let shape = format!("[{}]", dims.iter().map(show).collect::<Vec<_>>().join(", "));
    if dims.len() != 4 {
        return Err(bad(&format!(
            "shape {shape} has rank {}, expected 4",
            dims.len()
        )));
    }
    let mut out = [0usize; 3];
    for axis in 1..4 {
        let fixed = match &dims[axis].value {
            Some(DimValue::DimValue(v)) => Some(
                usize::try_from(*v)
                    .ok()
                    .filter(|&v| v > 0)
                    .ok_or_else(|| bad(&format!("shape {shape} has a non-positive dimension")))?,
            ),
            _ => None,
        };
        out[axis - 1] = match (fixed, given) {
            (Some(f), Some(g)) if f != g[axis - 1] => {
                return Err(bad(&format!(
                    "shape {shape} disagrees with the given {g:?}"
                )))
            }
            (Some(f), _) => f,
            (None, Some(g)) => g[axis - 1],
            (None, None) => {
                return Err(OnnxError::DynamicShape {
                    input: v.name.clone(),
                    shape,
                    axis,
                    dim: show(&dims[axis]),
                })
            }
        };
    }
    if out.contains(&0) {
        return Err(bad("zero-sized input"));
    }
    Ok(out)
}

/// The normalisation [`crate::export`] records in `metadata_props`, when present and
/// well formed (one finite mean and non-zero std per channel).
fn recorded_normalize(m: &ModelProto, channels: usize) -> Option<Normalize> {
    let get = |key: &str| -> Option<Vec<f32>> {
        let p = m.metadata_props.iter().find(|p| p.key == key)?;
        let v: Vec<f32> = p
            .value
            .split(',')
            .map(|s| s.trim().parse().ok())
            .collect::<Option<_>>()?;
        (v.len() == channels && v.iter().all(|x| x.is_finite())).then_some(v)
    };
    let (mean, std) = (get(crate::META_MEAN)?, get(crate::META_STD)?);
    (!std.contains(&0.0)).then_some(Normalize { mean, std })
}
