//! `twobit calibrate`: each layer's input range measured on training images, stored in the
//! file, shown by `inspect`, used by `--act int8-calibrated`, and dropped when the weights
//! change.
mod common;
use common::{band_model, dataset, json, one_error, s, stderr, twobit};

#[test]
fn calibrate_stores_each_layers_input_range() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    dataset(d, 100);
    let band = d.join("band.twobit");
    band_model(&band);
    let out = d.join("cal.twobit");
    let v = json(&twobit(&[
        "calibrate",
        s(&band),
        s(&out),
        "--dataset",
        "mnist",
        "--data-dir",
        s(d),
        "--calib-images",
        "30",
        "--json",
    ]));
    // The band images' brightest pixel is 200, normalised with mean 0 and std 1.
    let r = v["input_ranges"]["fc"].as_f64().unwrap();
    assert!((r - 200.0 / 255.0).abs() < 1e-6, "{r}");
    assert_eq!(v["images"], 30);
    let m = twobit_format::Model::load(&out).unwrap();
    let a = m.arch.as_ref().unwrap();
    assert_eq!(a.input_ranges.len(), 1);
    assert_eq!(
        m.provenance.get("calibration.images").map(String::as_str),
        Some("30")
    );
    let text = String::from_utf8_lossy(&twobit(&["inspect", s(&out)]).stdout).into_owned();
    assert!(text.contains("calibrated input ranges"), "{text}");

    // eval and bench with the calibrated scales: the band images all reach the range, so
    // the accuracy is per-image int8's (exactly 0.8 on this data).
    for act in ["int8", "int8-calibrated"] {
        let e = json(&twobit(&[
            "eval",
            s(&out),
            "--dataset",
            "mnist",
            "--data-dir",
            s(d),
            "--act",
            act,
            "--json",
        ]));
        assert_eq!(e["activations"], act);
        assert_eq!(e["test_accuracy"], 0.8);
    }
    let b = twobit(&[
        "bench",
        s(&out),
        "--iters",
        "1",
        "--batch-size",
        "2",
        "--act",
        "int8-calibrated",
    ]);
    assert!(b.status.success(), "{}", stderr(&b));
    // Without ranges: one line saying how to get them.
    let e = one_error(
        &twobit(&[
            "eval",
            s(&band),
            "--dataset",
            "mnist",
            "--data-dir",
            s(d),
            "--act",
            "int8-calibrated",
        ]),
        "uncalibrated file",
    );
    assert!(e.contains("twobit calibrate"), "{e}");

    // In place: the input is replaced atomically.
    let r = twobit(&[
        "calibrate",
        s(&band),
        s(&band),
        "--dataset",
        "mnist",
        "--data-dir",
        s(d),
    ]);
    assert!(r.status.success(), "{}", stderr(&r));
    assert_eq!(
        twobit_format::Model::load(&band)
            .unwrap()
            .arch
            .unwrap()
            .input_ranges
            .len(),
        1
    );
}

#[test]
fn calibrate_refuses_bad_requests_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    dataset(d, 20);
    let band = d.join("band.twobit");
    band_model(&band);
    let out = d.join("cal.twobit");
    // the file does not say what it was trained on
    let e = one_error(&twobit(&["calibrate", s(&band), s(&out)]), "no dataset");
    assert!(e.contains("--dataset"), "{e}");
    let e = one_error(
        &twobit(&[
            "calibrate",
            s(&band),
            s(&out),
            "--dataset",
            "mnist",
            "--calib-images",
            "0",
        ]),
        "zero images",
    );
    assert!(e.contains("--calib-images"), "{e}");
    // missing data directory: one line naming it, nothing written
    let e = one_error(
        &twobit(&[
            "calibrate",
            s(&band),
            s(&out),
            "--dataset",
            "mnist",
            "--data-dir",
            s(&d.join("nope")),
        ]),
        "missing data",
    );
    assert!(e.contains("nope"), "{e}");
    assert!(!out.exists());
}
