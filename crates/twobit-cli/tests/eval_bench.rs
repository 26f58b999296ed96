//! `twobit eval` and `twobit bench` end to end on a tiny model and a tiny IDX dataset.
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use twobit_format::{Arch, FloatDtype, FloatTensor, Layer, Model, Normalize, PackedTensor, Tensor};
use twobit_quant::{Granularity, Levels, Scheme};

/// Flatten -> 2-bit linear [10, 784] whose row `c` has +1 weights on pixels `c*78..c*78+78`
/// (others code 1 = level 0), so an image lit only in that band is classified `c`.
fn band_model(path: &Path) {
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
            layers: vec![
                Layer::Flatten,
                Layer::Linear {
                    weight: "fc.weight".into(),
                    bias: Some("fc.bias".into()),
                },
            ],
        }),
        provenance: BTreeMap::new(),
    };
    model.save(path).unwrap();
}

/// Plain IDX files: `n` images, image `i` lit in band `i % 10`, labelled `i % 10` except
/// every fifth, which is labelled wrong (so accuracy is exactly 0.8).
fn dataset(dir: &Path, n: usize) {
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

fn twobit(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_twobit"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn eval_reports_accuracy_from_the_file_alone() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("band.twobit");
    band_model(&model);
    dataset(dir.path(), 50);
    let (m, d) = (model.to_str().unwrap(), dir.path().to_str().unwrap());
    let (ok, out, err) = twobit(&[
        "eval",
        m,
        "--dataset",
        "mnist",
        "--data-dir",
        d,
        "--batch",
        "7",
        "--json",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["images"], 50);
    assert!((v["accuracy"].as_f64().unwrap() - 0.8).abs() < 1e-9, "{v}");
    assert!(v["images_per_second"].as_f64().unwrap() > 0.0);

    let (ok, _, err) = twobit(&["eval", m, "--dataset", "cifar10", "--data-dir", d]);
    assert!(
        !ok && err.starts_with("error: ") && err.trim().lines().count() == 1,
        "{err}"
    );
    let (ok, _, err) = twobit(&["eval", "/nonexistent.twobit", "--dataset", "mnist"]);
    assert!(!ok && err.contains("nonexistent.twobit"), "{err}");
}

#[test]
fn bench_compares_packed_and_fp32() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("band.twobit");
    band_model(&model);
    let (ok, out, err) = twobit(&[
        "bench",
        model.to_str().unwrap(),
        "--batch",
        "3",
        "--iters",
        "2",
        "--json",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["layers"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(v["argmax_agreement"], 1.0);
    assert!(v["max_abs_logit_diff"].as_f64().unwrap() < 1e-4);
    let (packed, fp32) = (
        v["weight_bytes_packed"].as_u64().unwrap(),
        v["weight_bytes_fp32"].as_u64().unwrap(),
    );
    assert_eq!(fp32, 784 * 10 * 4);
    assert!(packed * 10 < fp32, "{packed} vs {fp32}");

    // Every kernel gives the fp32 predictions; an unknown one is a one-line error.
    let m = model.to_str().unwrap();
    for k in ["portable", "avx2", "avx512"] {
        let (ok, out, err) = twobit(&[
            "bench", m, "--batch", "9", "--iters", "1", "--kernel", k, "--json",
        ]);
        if !ok {
            // Only a CPU without that instruction set may refuse it.
            assert!(err.contains("this CPU cannot run"), "{k}: {err}");
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["argmax_agreement"], 1.0, "{k}: {v}");
        assert!(
            v["kernel"].as_str().unwrap().starts_with(&k[..4]),
            "{k}: {v}"
        );
    }
    let (ok, _, err) = twobit(&["bench", m, "--kernel", "neon"]);
    assert!(
        !ok && err.starts_with("error: unknown kernel 'neon'") && err.trim().lines().count() == 1,
        "{err}"
    );
}

/// The tensors of a .twobit file (name -> bytes), without the metadata.
fn tensor_bytes(path: &Path) -> Vec<(String, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut v: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(n, t)| (n, t.data().to_vec()))
        .collect();
    v.sort();
    v
}

#[test]
fn train_in_two_invocations_equals_one_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    dataset(dir.path(), 200);
    let (full, part) = (
        dir.path().join("full.twobit"),
        dir.path().join("part.twobit"),
    );
    let args = |out: &Path| {
        let mut a: Vec<String> = "train --model mlp --dataset fashion-mnist --scheme quat --epochs 3 --batch-size 32 --json --data-dir"
            .split(' ')
            .map(String::from)
            .collect();
        a.extend([d.to_string(), "--out".into(), out.to_str().unwrap().into()]);
        a
    };
    let run = |extra: &[&str], out: &Path| {
        let mut a = args(out);
        a.extend(extra.iter().map(|s| s.to_string()));
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let (ok, out, err) = twobit(&a);
        assert!(ok, "{err}");
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        v["epochs"].as_u64().unwrap()
    };
    assert_eq!(run(&[], &full), 3);
    assert_eq!(run(&["--stop-after", "1"], &part), 1);
    assert_eq!(run(&["--resume"], &part), 3);
    let (a, b) = (tensor_bytes(&full), tensor_bytes(&part));
    assert!(a.len() >= 6, "{} tensors", a.len());
    assert!(
        a == b,
        "the resumed run's file differs from the uninterrupted run's"
    );
}

#[test]
fn decompress_then_compress_keeps_the_network_runnable() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    dataset(dir.path(), 50);
    let model = dir.path().join("band.twobit");
    band_model(&model);
    let (flt, again) = (
        dir.path().join("band.safetensors"),
        dir.path().join("again.twobit"),
    );
    let p = |x: &Path| x.to_str().unwrap().to_string();
    let (ok, _, err) = twobit(&["decompress", &p(&model), &p(&flt)]);
    assert!(ok, "{err}");
    let (ok, _, err) = twobit(&["compress", &p(&flt), &p(&again), "twn"]);
    assert!(ok, "{err}");
    let m = Model::load(&again).unwrap();
    assert_eq!(m.arch.as_ref().map(|a| a.name.as_str()), Some("band"));
    // TWN of the band weights {0, 1} keeps the band: the same 80 % as the original.
    let (ok, out, err) = twobit(&[
        "eval",
        &p(&again),
        "--dataset",
        "mnist",
        "--data-dir",
        d,
        "--json",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["accuracy"], 0.8, "{v}");
    assert!(v["path"].as_str().unwrap().starts_with("2-bit"), "{v}");
}
