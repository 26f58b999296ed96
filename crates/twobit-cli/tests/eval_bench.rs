//! `twobit eval` and `twobit bench` end to end on a tiny model and a tiny IDX dataset.
use std::path::Path;
use std::process::Command;
use twobit_format::Model;

mod common;
use common::{band_model, dataset};

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
    // The runtime may fuse the flatten into the linear layer: at least the linear is timed.
    let layers = v["layers"].as_array().unwrap();
    assert!(
        layers
            .iter()
            .any(|l| l["layer"].as_str().unwrap().contains("fc.weight")),
        "{v}"
    );
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

#[test]
fn int8_activations_in_eval_and_bench() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("band.twobit");
    band_model(&model);
    dataset(dir.path(), 50);
    let (m, d) = (model.to_str().unwrap(), dir.path().to_str().unwrap());
    let eval = [
        "eval",
        m,
        "--dataset",
        "mnist",
        "--data-dir",
        d,
        "--act",
        "int8",
    ];
    let (ok, out, err) = twobit(&[&eval[..], &["--json"]].concat());
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["activations"], "int8", "{v}");
    assert!(v["path"].as_str().unwrap().contains("int8"), "{v}");
    assert!(v["accuracy"].as_f64().unwrap() >= 0.7, "{v}");
    let (ok, _, err) = twobit(&[&eval[..], &["--fp32"]].concat());
    assert!(
        !ok && err.starts_with("error: ")
            && err.contains("--fp32")
            && err.trim().lines().count() == 1,
        "{err}"
    );

    // bench: the int8 path per layer and in total, against fp32 and the fp32-activation path.
    let bench = ["bench", m, "--batch", "9", "--iters", "1", "--act", "int8"];
    let (ok, out, err) = twobit(&[&bench[..], &["--json"]].concat());
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["activations"], "int8", "{v}");
    assert!(v["int8_ms"].as_f64().unwrap() > 0.0, "{v}");
    for key in ["int8_speedup", "int8_vs_packed", "int8_argmax_agreement"] {
        assert!(v[key].as_f64().unwrap() > 0.0, "{key}: {v}");
    }
    for layer in v["layers"].as_array().unwrap() {
        assert!(layer["int8_ms"].as_f64().unwrap() >= 0.0, "{layer}");
    }
    let (ok, out, err) = twobit(&bench);
    assert!(ok, "{err}");
    assert!(
        out.contains("int8 ms") && out.contains("int8 activations"),
        "{out}"
    );
    // A network with a 2-bit convolution: its row names the path it measured.
    let conv = dir.path().join("conv.twobit");
    common::conv_model(&conv);
    let c = conv.to_str().unwrap();
    let (ok, out, err) = twobit(&[
        "bench", c, "--batch", "4", "--iters", "1", "--act", "int8", "--json",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let layers = v["layers"].as_array().unwrap();
    let row = layers
        .iter()
        .find(|l| l["layer"].as_str().unwrap().contains("conv.weight"))
        .unwrap();
    assert!(
        ["tile", "gemm", "f32"].contains(&row["int8_path"].as_str().unwrap()),
        "{row}"
    );
    let fc = layers
        .iter()
        .find(|l| l["layer"].as_str().unwrap().contains("fc.weight"))
        .unwrap();
    assert!(fc["int8_path"].is_null(), "{fc}");
}
