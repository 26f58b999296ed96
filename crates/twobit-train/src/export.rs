//! The trained network as a `.twobit` model, and back into a float burn model.
use crate::layers::{tensor_values, WeightLayer, WeightLayerMut};
use crate::models::QatModel;
use crate::qat::EvalWeights;
use burn::module::{Param, RunningState};
use burn::tensor::{Device, Tensor, TensorData};
use std::collections::BTreeMap;
use twobit_format::{FloatTensor, Model, Normalize, PackedTensor, Tensor as FileTensor};

fn float<const D: usize>(t: Tensor<D>) -> FileTensor {
    let shape = t.dims().to_vec();
    FileTensor::Float(FloatTensor::from_f32(shape, &tensor_values(t)))
}

/// Builds the file model from the evaluation model and the weights its last evaluation used:
/// quantized layers as packed codes + levels (exactly `eval.quantized`), everything else
/// (kept layers, biases, batch norm incl. running statistics) as f32.
pub fn to_file_model<M: QatModel>(
    model: &M,
    eval: &EvalWeights,
    classes: usize,
    normalize: Normalize,
    provenance: BTreeMap<String, String>,
) -> Model {
    let mut tensors = BTreeMap::new();
    // The names come from the model, so the file's tensors are exactly those its
    // architecture references (a graph's names are whatever the imported file used).
    let names = model.weight_tensor_names();
    for ((_, layer), (wname, bname)) in model.weight_layers().into_iter().zip(names) {
        let weight = match eval.quantized.get(layer.slot()).and_then(Option::as_ref) {
            Some(q) => FileTensor::Packed(PackedTensor::from_quantized(q)),
            None => match &layer {
                // Linear weights are stored [out, in] already (see `QLinear`): no transpose.
                WeightLayer::Linear(l) => float(l.weight.val()),
                WeightLayer::Conv(c) => float(c.weight.val()),
            },
        };
        tensors.insert(wname, weight);
        if let (Some(b), Some(bname)) = (layer.bias(), bname) {
            tensors.insert(bname, float(b.val()));
        }
    }
    let bn_names = model.batch_norm_tensor_names();
    for ((_, bn), [g, b, m, v]) in model.batch_norms().into_iter().zip(bn_names) {
        tensors.insert(g, float(bn.gamma.val()));
        tensors.insert(b, float(bn.beta.val()));
        tensors.insert(m, float(bn.running_mean.value()));
        tensors.insert(v, float(bn.running_var.value()));
    }
    tensors.extend(model.constant_tensors());
    Model {
        tensors,
        arch: Some(model.arch(classes, normalize)),
        provenance,
    }
}

/// The float ("shadow") weights of the quantized layers as f32 tensors named `{layer}.weight`:
/// what the optimizer updates and the quantizer reads. Saved next to a trained file they let
/// `twobit inspect --plot` draw each layer's weight histogram under its levels and thresholds.
pub fn latent_weights<M: QatModel>(model: &M, eval: &EvalWeights) -> Model {
    let mut tensors = BTreeMap::new();
    let names = model.weight_tensor_names();
    for ((_, layer), (wname, _)) in model.weight_layers().into_iter().zip(names) {
        if matches!(eval.quantized.get(layer.slot()), Some(Some(_))) {
            tensors.insert(
                wname,
                FileTensor::Float(FloatTensor::from_f32(layer.shape(), &layer.weight_values())),
            );
        }
    }
    Model {
        tensors,
        arch: None,
        provenance: BTreeMap::new(),
    }
}

/// Number of bytes the model's tensors take in f32 (integer tensors as they are stored).
pub fn fp32_bytes(file: &Model) -> u64 {
    file.tensors
        .values()
        .map(|t| match t {
            FileTensor::Packed(p) => p.numel() as u64 * 4,
            FileTensor::Float(f) => f.shape.iter().product::<usize>() as u64 * 4,
            FileTensor::Int(t) => t.data.len() as u64,
        })
        .sum()
}

/// Why a file's tensors do not fit a model.
#[derive(Debug, thiserror::Error)]
#[error("tensor {name}: {reason}")]
pub struct LoadError {
    /// The tensor name.
    pub name: String,
    /// What is wrong.
    pub reason: String,
}

pub(crate) fn values(file: &Model, name: &str, shape: &[usize]) -> Result<Vec<f32>, LoadError> {
    let err = |reason: String| LoadError {
        name: name.to_string(),
        reason,
    };
    let (s, v) = match file.tensors.get(name) {
        Some(FileTensor::Packed(p)) => (p.shape.clone(), p.dequantize()),
        Some(FileTensor::Float(f)) => (f.shape.clone(), f.to_f32()),
        Some(FileTensor::Int(t)) => return Err(err(format!("{} is not a float tensor", t.dtype))),
        None => return Err(err("missing".into())),
    };
    if s != shape {
        return Err(err(format!("shape {s:?}, model expects {shape:?}")));
    }
    Ok(v)
}

fn tensor<const D: usize>(
    file: &Model,
    name: &str,
    like: Tensor<D>,
    device: &Device,
) -> Result<Tensor<D>, LoadError> {
    let shape = like.dims();
    let v = values(file, name, &shape)?;
    Ok(Tensor::from_data(TensorData::new(v, shape), device))
}

/// Loads a file's (dequantized) weights into a float model of the same architecture: with
/// [`crate::qat::ForwardWeights::float`] its forward reproduces the file's network.
pub fn load_file_weights<M: QatModel>(
    mut model: M,
    file: &Model,
    device: &Device,
) -> Result<M, LoadError> {
    let names = model.weight_tensor_names();
    for ((wname, bname), layer) in names.iter().zip(model.weight_layers_mut()) {
        let bname = bname.as_deref().unwrap_or_default();
        match layer {
            WeightLayerMut::Linear(l) => {
                let w = tensor(file, wname, l.weight.val(), device)?;
                l.weight = Param::from_tensor(w);
                if let Some(b) = &l.bias {
                    let b = tensor(file, bname, b.val(), device)?;
                    l.bias = Some(Param::from_tensor(b));
                }
            }
            WeightLayerMut::Conv(c) => {
                let w = tensor(file, wname, c.weight.val(), device)?;
                c.weight = Param::from_tensor(w);
                if let Some(b) = &c.bias {
                    let b = tensor(file, bname, b.val(), device)?;
                    c.bias = Some(Param::from_tensor(b));
                }
            }
        }
    }
    let bn_names = model.batch_norm_tensor_names();
    for ([gn, bn_, mn, vn], bn) in bn_names.iter().zip(model.batch_norms_mut()) {
        let g = tensor(file, gn, bn.gamma.val(), device)?;
        let b = tensor(file, bn_, bn.beta.val(), device)?;
        let m = tensor(file, mn, bn.running_mean.value(), device)?;
        let v = tensor(file, vn, bn.running_var.value(), device)?;
        bn.gamma = Param::from_tensor(g);
        bn.beta = Param::from_tensor(b);
        bn.running_mean = RunningState::new(m);
        bn.running_var = RunningState::new(v);
    }
    Ok(model)
}
