//! Shared helpers: the test data directory, stored inputs/outputs, comparisons.
#![allow(dead_code)]
use std::path::PathBuf;
use twobit_format::Model;
use twobit_onnx::{import, ImportOptions};

/// The good test models (see `scripts/onnx/make_test_models.py`).
pub const GOOD: &[&str] = &[
    "lenet",
    "conv_bn",
    "mobilenet_block",
    "densenet",
    "resnet_blocks",
    "option_a",
    "conv_variants",
    "activations",
    "se_block",
    "pools",
    "avgpool_ceil",
    "opset10",
    "pytorch_view",
    "squeeze_head",
    "in_graph_normalize",
];

/// Tolerance on logits: `|a - b| <= TOL * max(1, |b|)`.
pub const TOL: f32 = 1e-4;

pub fn data(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(file)
}

pub fn bytes(file: &str) -> Vec<u8> {
    std::fs::read(data(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

pub fn f32s(file: &str) -> Vec<f32> {
    bytes(file)
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// `(input shape, output shape)` of a good model, batch first.
pub fn shapes(name: &str) -> (Vec<usize>, Vec<usize>) {
    let j: serde_json::Value = serde_json::from_slice(&bytes("models.json")).unwrap();
    let get = |k: &str| -> Vec<usize> {
        j[name][k]
            .as_array()
            .unwrap_or_else(|| panic!("{name} not in models.json"))
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect()
    };
    (get("input"), get("output"))
}

pub fn import_good(name: &str) -> Model {
    import(&bytes(&format!("{name}.onnx")), &ImportOptions::default())
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Asserts every value is within [`TOL`] of onnxruntime's; prints the largest error.
pub fn check_close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: output length");
    let worst = got
        .iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs() / w.abs().max(1.0))
        .fold(0.0f32, f32::max);
    eprintln!("{what}: {} values, largest error {worst:.2e}", got.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= TOL * w.abs().max(1.0),
            "{what}: value {i}: got {g}, onnxruntime gave {w}"
        );
    }
}

/// Runs a model in the twobit runtime on normalised input.
pub fn run_runtime(m: &Model, input: &[f32], batch: usize) -> Vec<f32> {
    let rt = twobit_runtime::Runtime::from_model(m).unwrap_or_else(|e| panic!("runtime: {e}"));
    rt.try_forward(input, batch)
        .unwrap_or_else(|e| panic!("runtime: {e}"))
}
