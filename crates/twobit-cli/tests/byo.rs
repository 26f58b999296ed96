//! Bring your own network and data, end to end through the binary: an ONNX model (generated
//! by scripts/onnx/make_test_models.py) and an ImageFolder directory of PNGs go through
//! eval, post-training compress, QAT fine-tuning, eval of the trained file, export back to
//! ONNX, and onnxruntime (an independent runtime) on the exported model.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn twobit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_twobit"))
        .args(args)
        .output()
        .expect("the twobit binary runs")
}

fn ok(args: &[&str]) -> String {
    let out = twobit(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "twobit {args:?} failed: {err}");
    String::from_utf8(out.stdout).unwrap()
}

fn json(args: &[&str]) -> serde_json::Value {
    let out = ok(args);
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn onnx_data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../twobit-onnx/tests/data")
        .join(name)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A learnable `classes`-class problem of `c x side x side` images: class `k` is a bright
/// horizontal band at rows `k*side/classes..`, plus noise. Written as an ImageFolder
/// (PNG) and, for onnxruntime's script, as MNIST-style IDX test files (same pixels).
fn make_data(root: &Path, classes: usize, c: usize, side: usize, per_class: [usize; 2]) {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 56) as u8
    };
    let mut idx_images = Vec::new();
    let mut idx_labels = Vec::new();
    for (split, n) in ["train", "test"].into_iter().zip(per_class) {
        for k in 0..classes {
            let dir = root.join("folder").join(split).join(format!("class{k:02}"));
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..n {
                let band = k * side / classes;
                let px: Vec<u8> = (0..side * side * c)
                    .map(|j| {
                        let y = (j / c) / side;
                        let v = if y >= band && y < band + side / classes {
                            200
                        } else {
                            20
                        };
                        v / 2 + rnd() / 4
                    })
                    .collect();
                let path = dir.join(format!("{i}.png"));
                if c == 1 {
                    image::GrayImage::from_raw(side as u32, side as u32, px.clone())
                        .unwrap()
                        .save(&path)
                        .unwrap();
                } else {
                    image::RgbImage::from_raw(side as u32, side as u32, px.clone())
                        .unwrap()
                        .save(&path)
                        .unwrap();
                }
                if split == "test" && c == 1 {
                    idx_images.extend(px);
                    idx_labels.push(k as u8);
                }
            }
        }
    }
    if c == 1 {
        let idx = root.join("idx");
        std::fs::create_dir_all(&idx).unwrap();
        let n = idx_labels.len() as u32;
        for prefix in ["train", "t10k"] {
            let mut img = vec![0, 0, 8, 3];
            for d in [n, side as u32, side as u32] {
                img.extend(d.to_be_bytes());
            }
            img.extend(&idx_images);
            std::fs::write(idx.join(format!("{prefix}-images-idx3-ubyte")), img).unwrap();
            let mut lbl = vec![0, 0, 8, 1];
            lbl.extend(n.to_be_bytes());
            lbl.extend(&idx_labels);
            std::fs::write(idx.join(format!("{prefix}-labels-idx1-ubyte")), lbl).unwrap();
        }
    }
}

/// Whether python3 with onnxruntime is available; under CI its absence fails the test.
fn onnxruntime_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import onnxruntime, numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        let msg = "python3 with onnxruntime and numpy is not available (pip install onnx onnxruntime numpy)";
        assert!(std::env::var_os("CI").is_none(), "{msg}");
        eprintln!("SKIPPED: the onnxruntime comparison: {msg}");
    }
    ok
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "trains a network: run with cargo test --release"
)]
fn onnx_and_image_folder_through_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_data(d, 10, 1, 28, [30, 4]);
    let folder = d.join("folder");
    let model = onnx_data("lenet.onnx");
    let norm = ["--mean", "0.5", "--std", "0.25"];

    // The float ONNX model runs on the 2-bit runtime (no weights quantized).
    let v = json(
        &[
            &[
                "eval",
                s(&model),
                "--dataset",
                "folder",
                "--data-dir",
                s(&folder),
                "--json",
            ][..],
            &norm[..],
        ]
        .concat(),
    );
    assert_eq!(v["images"], 40);
    assert_eq!(v["path"], "fp32 (float file)");

    // Post-training quantization straight from ONNX: the graph and normalisation go into
    // the file; first and last layers stay float by default.
    let ptq = d.join("ptq.twobit");
    let v = json(
        &[
            &["compress", s(&model), s(&ptq), "tern", "--json"][..],
            &norm[..],
        ]
        .concat(),
    );
    // lenet.onnx: conv w1 (first), conv w9, Gemms fc21 and fc27, MatMul mm33 (last).
    let kind = |name: &str| {
        let t = v["tensors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name);
        t.map(|t| t["kind"].as_str().unwrap().to_string())
    };
    for (name, want) in [
        ("w1", "float"),
        ("w9", "packed"),
        ("fc21", "packed"),
        ("fc27", "packed"),
        ("mm33", "float"),
    ] {
        assert_eq!(kind(name).as_deref(), Some(want), "{name}: {v}");
    }
    let inspect = ok(&["inspect", s(&ptq), "--json"]);
    let inspect: serde_json::Value = serde_json::from_str(inspect.trim()).unwrap();
    assert_eq!(
        inspect["arch"]["input"],
        serde_json::json!([1, 28, 28]),
        "{inspect}"
    );
    let v = json(&[
        "eval",
        s(&ptq),
        "--dataset",
        "folder",
        "--data-dir",
        s(&folder),
        "--json",
    ]);
    assert!(v["path"].as_str().unwrap().starts_with("2-bit"), "{v}");

    // QAT fine-tuning from the ONNX model's weights on the folder, then eval of the file
    // gives the training's own test accuracy.
    let ft = d.join("ft.twobit");
    let v = json(
        &[
            &[
                "train",
                "--model",
                s(&model),
                "--dataset",
                "folder",
                "--data-dir",
                s(&folder),
                "--scheme",
                "tern",
                "--epochs",
                "8",
                "--batch-size",
                "16",
                "--lr",
                "0.02",
                "--out",
                s(&ft),
                "--json",
            ][..],
            &norm[..],
        ]
        .concat(),
    );
    let trained = v["test_accuracy"].as_f64().unwrap();
    assert!(trained > 0.5, "a 10-band problem should be learnt: {v}");
    let e = json(&[
        "eval",
        s(&ft),
        "--dataset",
        "folder",
        "--data-dir",
        s(&folder),
        "--json",
    ]);
    assert_eq!(e["accuracy"].as_f64().unwrap(), trained, "{e}");

    // Export to ONNX; re-import runs with identical predictions.
    let exported = d.join("ft.onnx");
    ok(&["export", s(&ft), s(&exported)]);
    let idx = d.join("idx");
    let preds = |m: &Path, out: &Path| {
        ok(&[
            "eval",
            s(m),
            "--dataset",
            "mnist",
            "--data-dir",
            s(&idx),
            "--predictions",
            s(out),
        ]);
        std::fs::read_to_string(out).unwrap()
    };
    let p_file = preds(&ft, &d.join("p1.txt"));
    let p_onnx = preds(&exported, &d.join("p2.txt"));
    assert_eq!(p_file.lines().count(), 40);
    assert_eq!(p_file, p_onnx);

    // onnxruntime agrees prediction by prediction (its script exits 1 on any difference).
    if onnxruntime_available() {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/onnx/ort_eval.py");
        let out = Command::new("python3")
            .args([s(&script), s(&exported), "--data-dir", s(&idx)])
            .args(["--compare", s(&d.join("p1.txt")), "--json"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["disagreements"], 0, "{v}");
        assert_eq!(v["compared"], 40);
    }

    // The same graph from scratch (`--init random`) trains too.
    let scratch = d.join("scratch.twobit");
    json(
        &[
            &[
                "train",
                "--model",
                s(&model),
                "--init",
                "random",
                "--dataset",
                "folder",
                "--data-dir",
                s(&folder),
                "--scheme",
                "fp",
                "--epochs",
                "1",
                "--out",
                s(&scratch),
                "--json",
            ][..],
            &norm[..],
        ]
        .concat(),
    );
}

/// An RGB model with batch norm (conv_bn.onnx, 3x12x12, 5 classes) fine-tunes on an RGB
/// folder resized from 16x16, with augmentation.
#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "trains a network: run with cargo test --release"
)]
fn rgb_folder_with_batch_norm_and_augmentation() {
    let dir = tempfile::tempdir().unwrap();
    make_data(dir.path(), 5, 3, 16, [8, 2]);
    let folder = dir.path().join("folder");
    let out = dir.path().join("rgb.twobit");
    let model = onnx_data("conv_bn.onnx");
    let v = json(&[
        "train",
        "--model",
        s(&model),
        "--dataset",
        "folder",
        "--data-dir",
        s(&folder),
        "--scheme",
        "quat",
        "--quantize-all",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--augment",
        "crop,flip",
        "--out",
        s(&out),
        "--json",
    ]);
    let e = json(&[
        "eval",
        s(&out),
        "--dataset",
        "folder",
        "--data-dir",
        s(&folder),
        "--json",
    ]);
    assert_eq!(e["accuracy"], v["test_accuracy"], "{e} {v}");
    assert_eq!(e["images"], 10);
}

/// Bad networks and data: one clear line each, a non-zero exit, nothing written.
#[test]
fn bad_networks_and_data_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_data(d, 10, 1, 28, [2, 1]);
    let folder = d.join("folder");
    let cases: [(&str, &str); 4] = [
        (
            "bad_unsupported_op.onnx",
            "unsupported ONNX operator 'Tanh'",
        ),
        ("bad_truncated.onnx", "onnx"),
        ("bad_missing_initializer.onnx", "initializer"),
        ("bad_dynamic_shape.onnx", "dynamic"),
    ];
    for (file, want) in cases {
        let m = onnx_data(file);
        let out_file = d.join("out.twobit");
        for args in [
            vec![
                "eval",
                s(&m),
                "--dataset",
                "folder",
                "--data-dir",
                s(&folder),
            ],
            vec!["compress", s(&m), s(&out_file), "tern"],
            vec![
                "train",
                "--model",
                s(&m),
                "--dataset",
                "folder",
                "--data-dir",
                s(&folder),
                "--scheme",
                "tern",
                "--out",
                s(&out_file),
            ],
        ] {
            let out = twobit(&args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{args:?}");
            assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
            assert!(
                err.starts_with("error: ") && err.to_lowercase().contains(&want.to_lowercase()),
                "{args:?}: {err}"
            );
            assert!(!out_file.exists(), "{args:?} wrote a file");
        }
    }
    // A folder whose images do not decode names the file.
    std::fs::write(folder.join("test/class03/broken.png"), b"not a png").unwrap();
    let out = twobit(&[
        "eval",
        s(&onnx_data("lenet.onnx")),
        "--dataset",
        "folder",
        "--data-dir",
        s(&folder),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("broken.png"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // Wrong normalisation length.
    let out = twobit(&[
        "eval",
        s(&onnx_data("lenet.onnx")),
        "--dataset",
        "folder",
        "--data-dir",
        s(&folder),
        "--mean",
        "0.1,0.2",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--mean"), "{err}");
}

/// MNIST-format IDX files of `n` random 28x28 images in `dir` (train and test alike).
fn random_idx(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let mut x = 12345u32;
    let mut rnd = move || {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        (x >> 16) as u8
    };
    for prefix in ["train", "t10k"] {
        let mut img = vec![0, 0, 8, 3];
        for d in [n as u32, 28, 28] {
            img.extend(d.to_be_bytes());
        }
        img.extend((0..n * 784).map(|_| rnd()));
        std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte")), img).unwrap();
        let mut lbl = vec![0, 0, 8, 1];
        lbl.extend((n as u32).to_be_bytes());
        lbl.extend((0..n).map(|i| (i % 10) as u8));
        std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), lbl).unwrap();
    }
}

/// CIFAR-10 binary files of `n` random records each.
fn random_cifar(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let mut x = 777u32;
    let mut rnd = move || {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        (x >> 16) as u8
    };
    let names = (1..=5)
        .map(|i| format!("data_batch_{i}.bin"))
        .chain(["test_batch.bin".to_string()]);
    for name in names {
        let mut b = Vec::new();
        for i in 0..n {
            b.push((i % 10) as u8);
            b.extend((0..3072).map(|_| rnd()));
        }
        std::fs::write(dir.join(name), b).unwrap();
    }
}

/// Each built-in network, trained a little, exported to ONNX and imported again runs with
/// identical logits: bit for bit against the file with its 2-bit tensors decoded to f32
/// (the same weights and graph through the same runtime path), and within rounding against
/// the 2-bit kernels.
#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "trains networks: run with cargo test --release"
)]
fn built_in_networks_round_trip_through_onnx() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    random_idx(&d.join("idx"), 32);
    random_cifar(&d.join("cifar"), 16);
    for (model, dataset, data, scheme) in [
        ("mlp", "fashion-mnist", "idx", "quat"),
        ("lenet5", "fashion-mnist", "idx", "tern"),
        ("vgg7", "cifar10", "cifar", "tern"),
        ("resnet20", "cifar10", "cifar", "quat-free"),
    ] {
        let file = d.join(format!("{model}.twobit"));
        let onnx = d.join(format!("{model}.onnx"));
        ok(&[
            "train",
            "--model",
            model,
            "--dataset",
            dataset,
            "--data-dir",
            s(&d.join(data)),
            "--scheme",
            scheme,
            "--epochs",
            "1",
            "--batch-size",
            "16",
            "--quantize-all",
            "--out",
            s(&file),
        ]);
        ok(&["export", s(&file), s(&onnx)]);
        let packed = twobit_runtime::Runtime::load(&file).unwrap();
        let imported = twobit_onnx::load(&onnx, &Default::default()).unwrap();
        let reimported = twobit_runtime::Runtime::from_model(&imported).unwrap();
        let arch = imported.arch.as_ref().unwrap();
        assert_eq!(arch.normalize, packed.arch().normalize, "{model}");
        assert_eq!(arch.nodes.len(), packed.arch().nodes.len(), "{model}");
        let n = 3;
        let x: Vec<f32> = (0..n * packed.input_len())
            .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let mut decoded = twobit_format::Model::load(&file).unwrap();
        for t in decoded.tensors.values_mut() {
            if let twobit_format::Tensor::Packed(p) = t {
                *t = twobit_format::Tensor::Float(twobit_format::FloatTensor::from_f32(
                    p.shape.clone(),
                    &p.dequantize(),
                ));
            }
        }
        let want = twobit_runtime::Runtime::from_model(&decoded)
            .unwrap()
            .try_forward(&x, n)
            .unwrap();
        let got = reimported.try_forward(&x, n).unwrap();
        assert_eq!(
            got, want,
            "{model}: re-imported logits differ from the dequantized file"
        );
        let fast = packed.try_forward(&x, n).unwrap();
        for (a, b) in fast.iter().zip(&got) {
            assert!(
                (a - b).abs() <= 1e-3 * (1.0 + b.abs()),
                "{model}: {a} vs {b}"
            );
        }
    }
}
