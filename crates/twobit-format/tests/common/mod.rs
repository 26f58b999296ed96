//! Test helpers: deterministic weights, a stand-in quantizer, a multi-tensor model, and
//! header surgery for building broken files.
#![allow(dead_code)]

use serde_json::Value;
use std::collections::BTreeMap;
use twobit_format::graph::INPUT;
use twobit_format::{
    Arch, Builder, FloatDtype, FloatTensor, Model, Normalize, Op, PackedTensor, Tensor,
};
use twobit_quant::{Granularity, Levels, Quantized, Scheme};

/// xorshift64*: deterministic, no dependency.
pub struct Rng(pub u64);
impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

pub fn weights(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.uniform() * 0.3).collect()
}

/// Levels from group statistics (not any real scheme: the format does not care how levels
/// were fitted, only that they are ordered). Ternary schemes leave code 3 unused.
pub fn fit(scheme: Scheme, w: &[f32]) -> Levels {
    let m = w.iter().map(|v| v.abs()).sum::<f32>() / w.len().max(1) as f32;
    if scheme.num_codes() == 3 {
        Levels {
            values: [-1.1 * m, 0.0, 0.9 * m, 0.9 * m],
            thresholds: [-0.6 * m, 0.5 * m, f32::INFINITY],
        }
    } else {
        Levels {
            values: [-1.2 * m, 0.0, 0.7 * m, 1.5 * m],
            thresholds: [-0.6 * m, 0.35 * m, 1.1 * m],
        }
    }
}

/// A stand-in for `twobit_quant::quantize` built only on `Levels::code`.
pub fn quantize(w: &[f32], shape: &[usize], scheme: Scheme, gran: Granularity) -> Quantized {
    let groups = gran.groups(shape);
    let per = w.len() / groups.max(1);
    let mut levels = Vec::new();
    let mut codes = Vec::new();
    for g in 0..groups {
        let chunk = &w[g * per..(g + 1) * per];
        let l = fit(scheme, chunk);
        codes.extend(chunk.iter().map(|&x| l.code(x)));
        levels.push(l);
    }
    Quantized {
        scheme,
        granularity: gran,
        shape: shape.to_vec(),
        codes,
        levels,
    }
}

pub fn packed(rng: &mut Rng, shape: &[usize], scheme: Scheme, gran: Granularity) -> PackedTensor {
    let n = shape.iter().product();
    let w = weights(rng, n);
    PackedTensor::from_quantized(&quantize(&w, shape, scheme, gran))
}

/// A LeNet-like model: packed conv/linear weights of the given scheme, float biases of every
/// dtype, and an arch that references them.
pub fn model(scheme: Scheme, gran: Granularity) -> Model {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut tensors = BTreeMap::new();
    let mut conv = packed(&mut rng, &[6, 1, 5, 5], scheme, gran);
    conv.origin_dtype = FloatDtype::F16;
    tensors.insert("conv1.weight".to_string(), Tensor::Packed(conv));
    tensors.insert(
        "fc1.weight".to_string(),
        Tensor::Packed(packed(&mut rng, &[7, 54], scheme, gran)),
    );
    let b1 = weights(&mut rng, 6);
    tensors.insert(
        "conv1.bias".into(),
        Tensor::Float(FloatTensor::from_f32_as(FloatDtype::BF16, vec![6], &b1)),
    );
    let b2 = weights(&mut rng, 7);
    tensors.insert(
        "fc1.bias".into(),
        Tensor::Float(FloatTensor::from_f32_as(FloatDtype::F64, vec![7], &b2)),
    );
    let e = weights(&mut rng, 12);
    tensors.insert(
        "extra.f16".into(),
        Tensor::Float(FloatTensor::from_f32_as(FloatDtype::F16, vec![3, 4], &e)),
    );
    tensors.insert(
        "extra.f32".into(),
        Tensor::Float(FloatTensor::from_f32(vec![5], &weights(&mut rng, 5))),
    );
    let mut b = Builder::default();
    let x = b.then(
        Op::conv("conv1.weight".into(), Some("conv1.bias".into()), 1, 0),
        INPUT.into(),
    );
    let x = b.then(Op::Relu, x);
    let x = b.then(Op::Flatten, x);
    let output = b.then(
        Op::Linear {
            weight: "fc1.weight".into(),
            bias: Some("fc1.bias".into()),
        },
        x,
    );
    let arch = Arch {
        name: "lenet-mini".into(),
        input: [1, 7, 7],
        classes: 7,
        normalize: Normalize {
            mean: vec![0.5],
            std: vec![0.25],
        },
        nodes: b.nodes,
        output,
        input_ranges: Default::default(),
    };
    let mut provenance = BTreeMap::new();
    provenance.insert("source".into(), "unit test".into());
    Model {
        tensors,
        arch: Some(arch),
        provenance,
    }
}

/// Splits a file into (header JSON, data section).
pub fn split(bytes: &[u8]) -> (Value, Vec<u8>) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    (header, bytes[8 + n..].to_vec())
}

/// Joins a header and a data section into a file.
pub fn join(header: &Value, data: &[u8]) -> Vec<u8> {
    let mut h = serde_json::to_vec(header).unwrap();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out.extend(data);
    out
}

/// Edits the header of a valid file.
pub fn edit_header(bytes: &[u8], f: impl FnOnce(&mut Value)) -> Vec<u8> {
    let (mut h, data) = split(bytes);
    f(&mut h);
    join(&h, &data)
}

/// Edits the manifest JSON inside the header.
pub fn edit_manifest(bytes: &[u8], f: impl FnOnce(&mut Value)) -> Vec<u8> {
    edit_header(bytes, |h| {
        let s = h["__metadata__"]["twobit.manifest"].as_str().unwrap();
        let mut m: Value = serde_json::from_str(s).unwrap();
        f(&mut m);
        h["__metadata__"]["twobit.manifest"] = Value::String(m.to_string());
    })
}

/// Byte range of a stored tensor within the whole file.
pub fn tensor_range(bytes: &[u8], name: &str) -> std::ops::Range<usize> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let (h, _) = split(bytes);
    let o = &h[name]["data_offsets"];
    let s = o[0].as_u64().unwrap() as usize;
    let e = o[1].as_u64().unwrap() as usize;
    8 + n + s..8 + n + e
}
