//! Helpers shared by the CLI's integration tests.
#![allow(dead_code)] // each test binary uses a subset

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use twobit_format::graph::INPUT;
use twobit_format::{
    Arch, FloatDtype, FloatTensor, Model, Node, Normalize, Op, PackedTensor, Tensor,
};
use twobit_quant::{Granularity, Levels, Scheme};

/// Runs the built `twobit` with `args`, under RUST_BACKTRACE=1 as on the project's machines.
pub fn twobit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_twobit"))
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("run twobit")
}

/// The JSON object a successful `--json` command printed (its last `{` line).
pub fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", stderr(out));
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().rev().find(|l| l.starts_with('{')).unwrap();
    serde_json::from_str(line).unwrap()
}

/// A path as `&str` (test paths are UTF-8).
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Flatten -> 2-bit linear [10, 784] whose row `c` has +1 weights on pixels `c*78..c*78+78`
/// (others code 1 = level 0), so an image lit only in that band is classified `c`.
pub fn band_model(path: &Path) {
    let (rows, cols): (usize, usize) = (10, 784);
    let mut codes = vec![0u8; (rows * cols).div_ceil(4)];
    for r in 0..rows {
        for k in 0..cols {
            let c = if k / 78 == r { 2 } else { 1 };
            let i = r * cols + k;
            codes[i / 4] |= c << (2 * (i % 4));
        }
    }
    let mut tensors = BTreeMap::new();
    tensors.insert(
        "fc.weight".to_string(),
        Tensor::Packed(PackedTensor {
            scheme: Scheme::Tern,
            granularity: Granularity::Tensor,
            shape: vec![rows, cols],
            codes,
            levels: vec![Levels {
                values: [-1.0, 0.0, 1.0, 1.0],
                thresholds: [-0.5, 0.5, f32::INFINITY],
            }],
            origin_dtype: FloatDtype::F32,
        }),
    );
    tensors.insert(
        "fc.bias".to_string(),
        Tensor::Float(FloatTensor::from_f32(vec![10], &[0.0; 10])),
    );
    let model = Model {
        tensors,
        arch: Some(Arch {
            name: "band".into(),
            input: [1, 28, 28],
            classes: 10,
            normalize: Normalize {
                mean: vec![0.0],
                std: vec![1.0],
            },
            nodes: vec![
                Node {
                    name: "flatten".into(),
                    op: Op::Flatten,
                    inputs: vec![INPUT.into()],
                    output: "x".into(),
                },
                Node {
                    name: "fc".into(),
                    op: Op::Linear {
                        weight: "fc.weight".into(),
                        bias: Some("fc.bias".into()),
                    },
                    inputs: vec!["x".into()],
                    output: "logits".into(),
                },
            ],
            output: "logits".into(),
            input_ranges: Default::default(),
        }),
        provenance: BTreeMap::new(),
    };
    model.save(path).unwrap();
}

/// A 2-bit 3x3 convolution (8 channels, padding 1) -> flatten -> 2-bit linear network for
/// 1x28x28 images, with arbitrary but fixed codes: something for the convolution kernels to
/// run (accuracy means nothing).
pub fn conv_model(path: &Path) {
    let packed = |shape: Vec<usize>| {
        let n: usize = shape.iter().product();
        let codes: Vec<u8> = (0..n).map(|i| (i * 7 % 11 % 3) as u8).collect();
        Tensor::Packed(PackedTensor {
            scheme: Scheme::Tern,
            granularity: Granularity::Tensor,
            shape,
            codes: twobit_format::pack::pack(&codes),
            levels: vec![Levels {
                values: [-0.5, 0.0, 0.7, 0.7],
                thresholds: [-0.25, 0.35, f32::INFINITY],
            }],
            origin_dtype: FloatDtype::F32,
        })
    };
    let mut tensors = BTreeMap::new();
    tensors.insert("conv.weight".to_string(), packed(vec![8, 1, 3, 3]));
    tensors.insert("fc.weight".to_string(), packed(vec![10, 8 * 28 * 28]));
    let node = |name: &str, op: Op, input: &str| Node {
        name: name.into(),
        op,
        inputs: vec![input.into()],
        output: name.into(),
    };
    let fc = Op::Linear {
        weight: "fc.weight".into(),
        bias: None,
    };
    let model = Model {
        tensors,
        arch: Some(Arch {
            name: "conv".into(),
            input: [1, 28, 28],
            classes: 10,
            normalize: Normalize::identity(1),
            nodes: vec![
                node("conv", Op::conv("conv.weight".into(), None, 1, 1), INPUT),
                node("relu", Op::Relu, "conv"),
                node("flat", Op::Flatten, "relu"),
                node("fc", fc, "flat"),
            ],
            output: "fc".into(),
            input_ranges: Default::default(),
        }),
        provenance: BTreeMap::new(),
    };
    model.save(path).unwrap();
}

/// Plain IDX files: `n` images, image `i` lit in band `i % 10`, labelled `i % 10` except
/// every fifth, which is labelled wrong (so accuracy is exactly 0.8).
pub fn dataset(dir: &Path, n: usize) {
    for prefix in ["train", "t10k"] {
        let mut img = vec![0, 0, 8, 3];
        for d in [n as u32, 28, 28] {
            img.extend(d.to_be_bytes());
        }
        let mut lbl = vec![0, 0, 8, 1];
        lbl.extend((n as u32).to_be_bytes());
        for i in 0..n {
            let c = i % 10;
            img.extend((0..784).map(|k| if k / 78 == c { 200u8 } else { 0 }));
            lbl.push(if i % 5 == 4 {
                ((c + 1) % 10) as u8
            } else {
                c as u8
            });
        }
        std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte")), img).unwrap();
        std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), lbl).unwrap();
    }
}

/// A small float safetensors model (two weight matrices, a bias) plus one integer tensor
/// (`bn.num_batches_tracked`, as PyTorch writes it).
pub fn float_model(path: &Path) {
    use safetensors::{tensor::TensorView, Dtype};
    let w1: Vec<u8> = (0..64 * 32)
        .flat_map(|i| (((i * 37 % 101) as f32 - 50.0) / 100.0).to_le_bytes())
        .collect();
    let w2: Vec<u8> = (0..10 * 64)
        .flat_map(|i| (((i * 53 % 97) as f32 - 48.0) / 90.0).to_le_bytes())
        .collect();
    let b: Vec<u8> = (0..64)
        .flat_map(|i| (i as f32 / 64.0).to_le_bytes())
        .collect();
    let steps: Vec<u8> = 7i64.to_le_bytes().to_vec();
    let views = vec![
        (
            "fc1.weight",
            TensorView::new(Dtype::F32, vec![64, 32], &w1).unwrap(),
        ),
        (
            "fc1.bias",
            TensorView::new(Dtype::F32, vec![64], &b).unwrap(),
        ),
        (
            "fc2.weight",
            TensorView::new(Dtype::F32, vec![10, 64], &w2).unwrap(),
        ),
        (
            "bn.num_batches_tracked",
            TensorView::new(Dtype::I64, vec![], &steps).unwrap(),
        ),
    ];
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

/// stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A refused command: non-zero exit, no panic, exactly one `error:` line (warnings aside);
/// returns that line.
pub fn one_error(out: &Output, what: &str) -> String {
    let err = stderr(out);
    assert!(!out.status.success(), "{what}: succeeded\n{err}");
    assert!(!err.contains("panicked"), "{what}: panicked: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.starts_with("warning:")).collect();
    assert_eq!(lines.len(), 1, "{what}: stderr is not one line: {err}");
    assert!(lines[0].starts_with("error: "), "{what}: {err}");
    lines[0].to_string()
}

/// The names in `dir`, sorted.
pub fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Makes a FIFO at `path` (no `/dev` involved).
pub fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
}
