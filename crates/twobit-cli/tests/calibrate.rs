//! `compress --calibrate` end to end on the reference CNN (reference/onnx/cnn.onnx, trained
//! on Fashion-MNIST): the calibrated file lowers every layer's output error, evaluates from
//! the file alone, and beats the uncalibrated file. Skipped (with a note) when the model or
//! the dataset is not installed.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn twobit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_twobit"))
        .args(args)
        .output()
        .expect("the twobit binary runs")
}

fn json(args: &[&str]) -> serde_json::Value {
    let out = twobit(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "twobit {args:?} failed: {err}");
    let s = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("{e}: {s}"))
}

fn cnn() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../reference/onnx/cnn.onnx");
    let data = twobit_data::DatasetKind::FashionMnist.load(None).is_ok();
    if !(p.exists() && data) {
        eprintln!("skipped: needs reference/onnx/cnn.onnx and Fashion-MNIST");
        return None;
    }
    Some(p)
}

fn accuracy(file: &Path) -> f64 {
    let v = json(&[
        "eval",
        file.to_str().unwrap(),
        "--dataset",
        "fashion-mnist",
        "--test-limit",
        "2000",
        "--json",
    ]);
    v["accuracy"]
        .as_f64()
        .unwrap_or_else(|| panic!("no accuracy in {v}"))
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "release only (calibration is slow in debug)"
)]
fn calibrated_tern_beats_plain() {
    let Some(model) = cnn() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (plain, cal, ind) = (
        dir.path().join("plain.twobit"),
        dir.path().join("cal.twobit"),
        dir.path().join("ind.twobit"),
    );
    let m = model.to_str().unwrap();
    let norm = ["--mean", "0.2860", "--std", "0.3530", "--json"];
    let base = ["compress", m, "", "tern", "--granularity", "tensor"];
    let run = |out: &Path, extra: &[&str]| {
        let mut a: Vec<&str> = base.to_vec();
        a[2] = out.to_str().unwrap();
        a.extend(norm);
        a.extend(extra);
        json(&a)
    };
    run(&plain, &[]);
    let v = run(
        &cal,
        &["--calibrate", "fashion-mnist", "--calib-images", "256"],
    );
    let tensors = v["tensors"].as_array().unwrap();
    let packed: Vec<_> = tensors.iter().filter(|t| t["kind"] == "packed").collect();
    assert!(!packed.is_empty());
    for t in packed {
        let (b, a) = (
            t["output_error_before"].as_f64().unwrap(),
            t["output_error_after"].as_f64().unwrap(),
        );
        assert!(a < b, "{t}");
    }
    run(
        &ind,
        &[
            "--calibrate",
            "fashion-mnist",
            "--calib-images",
            "256",
            "--independent",
        ],
    );
    let (p, c, i) = (accuracy(&plain), accuracy(&cal), accuracy(&ind));
    eprintln!("tern per tensor: plain {p}, calibrated {c}, independent {i}");
    assert!(
        c > p + 0.01 && i > p + 0.01,
        "plain {p}, calibrated {c}, independent {i}"
    );
}

#[test]
fn calibrate_flag_errors() {
    let Some(model) = cnn() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.twobit");
    let (m, o) = (model.to_str().unwrap(), out.to_str().unwrap());
    for (extra, what) in [
        (vec!["--calibrate", "nope"], "unknown dataset"),
        (
            vec!["--calibrate", "fashion-mnist", "--calib-images", "0"],
            "--calib-images",
        ),
        (vec!["--calibrate", "cifar10"], "expects"),
    ] {
        let mut a = vec!["compress", m, o, "tern"];
        a.extend(&extra);
        let r = twobit(&a);
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(!r.status.success(), "{extra:?} succeeded");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(what), "{extra:?}: {err}");
        assert!(!out.exists());
    }
}
