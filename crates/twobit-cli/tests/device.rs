//! `twobit train --device`: a backend the build lacks, or an unknown name, is one error line
//! and a non-zero exit before any data is read, with nothing written; `--device cpu` trains
//! and records the device in the file's provenance and the `--json` summary.
use std::path::Path;

mod common;
use common::{dataset, listing, one_error, s, twobit};

/// `twobit train` of the MLP on the tiny dataset in `data`, writing `out`, with `extra`.
fn train(data: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut a = vec![
        "train",
        "--model",
        "mlp",
        "--dataset",
        "mnist",
        "--scheme",
        "tern",
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--data-dir",
        s(data),
        "--out",
        s(out),
    ];
    a.extend(extra);
    twobit(&a)
}

#[test]
fn a_backend_not_built_in_is_one_line_before_the_data_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = d.join("m.twobit");
    // No dataset at all: the device is refused before the data would be found missing.
    let missing = d.join("no-data");
    for name in ["cuda", "wgpu"] {
        if (name == "cuda" && cfg!(feature = "cuda")) || (name == "wgpu" && cfg!(feature = "wgpu"))
        {
            continue;
        }
        let e = one_error(&train(&missing, &out, &["--device", name]), name);
        assert!(
            e.contains(&format!("--device {name}"))
                && e.contains(&format!("without the {name} backend"))
                && e.contains(&format!("--features {name}")),
            "{e}"
        );
        assert!(listing(d).is_empty(), "{name}: wrote {:?}", listing(d));
    }
    let e = one_error(&train(&missing, &out, &["--device", "gpu"]), "gpu");
    assert!(
        e.contains("--device gpu") && e.contains("expected cpu, cuda or wgpu"),
        "{e}"
    );
    assert!(listing(d).is_empty());
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "slow in debug: run with cargo test --release"
)]
fn device_cpu_trains_and_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    dataset(d, 64);
    let out = d.join("m.twobit");
    let run = train(d, &out, &["--device", "cpu", "--json"]);
    assert!(run.status.success(), "{}", common::stderr(&run));
    let text = String::from_utf8_lossy(&run.stdout);
    let line = text.lines().rev().find(|l| l.starts_with('{')).unwrap();
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["device"], "cpu");
    let file = twobit_format::Model::load(&out).unwrap();
    assert_eq!(
        file.provenance.get("device").map(String::as_str),
        Some("cpu")
    );
}

/// A wgpu build asked for an adapter that is not there (wgpu finds at most a software one
/// here): one line naming the backend's reason, exit 1, nothing written. Runs only in a
/// `--features wgpu` build (checked by hand on the 2-core machine, whose only adapter is
/// llvmpipe).
#[cfg(feature = "wgpu")]
#[test]
fn a_wgpu_device_that_is_not_there_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = d.join("m.twobit");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_twobit"))
        .args([
            "train",
            "--model",
            "mlp",
            "--dataset",
            "mnist",
            "--scheme",
            "tern",
        ])
        .args(["--data-dir", s(&d.join("no-data")), "--out", s(&out)])
        .args(["--device", "wgpu"])
        .env("CUBECL_WGPU_DEFAULT_DEVICE", "DiscreteGpu(9)")
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let e = one_error(&run, "wgpu without the adapter");
    assert!(e.contains("--device wgpu: no usable wgpu device: "), "{e}");
    assert!(listing(d).is_empty());
}
