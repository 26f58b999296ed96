//! End-to-end tests of `twobit compress / decompress / inspect` on generated models.
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;
use twobit_quant::{Granularity, Scheme};

mod common;
use common::{s, twobit};

/// Deterministic pseudo-random weights.
fn values(seed: u64, n: usize) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            let u = (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 24) as f32;
            (u - 0.45) * 0.2
        })
        .collect()
}

fn encode(dtype: Dtype, v: &[f32]) -> Vec<u8> {
    match dtype {
        Dtype::F16 => v
            .iter()
            .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
            .collect(),
        Dtype::BF16 => v
            .iter()
            .flat_map(|&x| half::bf16::from_f32(x).to_le_bytes())
            .collect(),
        Dtype::F32 => v.iter().flat_map(|&x| x.to_le_bytes()).collect(),
        Dtype::F64 => v.iter().flat_map(|&x| f64::from(x).to_le_bytes()).collect(),
        Dtype::I64 => v.iter().flat_map(|&x| (x as i64).to_le_bytes()).collect(),
        _ => unreachable!(),
    }
}

fn decode(dtype: Dtype, b: &[u8]) -> Vec<f32> {
    match dtype {
        Dtype::F16 => b
            .chunks(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::BF16 => b
            .chunks(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::F32 => b
            .chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect(),
        Dtype::F64 => b
            .chunks(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32)
            .collect(),
        _ => unreachable!(),
    }
}

/// The test model: (name, dtype, shape).
const SPEC: &[(&str, Dtype, &[usize])] = &[
    ("conv1.weight", Dtype::F32, &[6, 1, 5, 5]),
    ("conv1.bias", Dtype::F32, &[6]),
    ("conv2.weight", Dtype::F16, &[8, 6, 3, 3]),
    ("conv2.bias", Dtype::F16, &[8]),
    ("fc.weight", Dtype::BF16, &[10, 33]),
    ("fc.bias", Dtype::BF16, &[10]),
    ("head.weight", Dtype::F64, &[3, 10]),
    ("emb.weight", Dtype::F32, &[7, 4]),
    ("scale", Dtype::F32, &[5]),
];

fn write_model(dir: &Path, nan: bool) -> PathBuf {
    let data: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = SPEC
        .iter()
        .enumerate()
        .map(|(i, (n, d, shape))| {
            let mut v = values(i as u64 + 1, shape.iter().product());
            if nan && *n == "fc.weight" {
                v[3] = f32::NAN;
            }
            (n.to_string(), *d, shape.to_vec(), encode(*d, &v))
        })
        .collect();
    let mut views: Vec<(String, TensorView)> = data
        .iter()
        .map(|(n, d, sh, b)| (n.clone(), TensorView::new(*d, sh.clone(), b).unwrap()))
        .collect();
    let steps = encode(Dtype::I64, &[3.0]);
    views.push((
        "bn.num_batches_tracked".into(),
        TensorView::new(Dtype::I64, vec![], &steps).unwrap(),
    ));
    let path = dir.join(if nan {
        "nan.safetensors"
    } else {
        "model.safetensors"
    });
    std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
    path
}

/// A failing command: non-zero exit, one `error:` line, no panic, no output file.
fn assert_clean_failure(out: &Output, output_file: Option<&Path>, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{what}: succeeded");
    assert!(!stderr.contains("panicked"), "{what}: panicked: {stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("warning:"))
        .collect();
    assert_eq!(lines.len(), 1, "{what}: stderr not one line: {stderr}");
    assert!(lines[0].starts_with("error: "), "{what}: {stderr}");
    if let Some(f) = output_file {
        assert!(!f.exists(), "{what}: left {} behind", f.display());
        let dir = f.parent().unwrap();
        let stray: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
            .collect();
        assert!(stray.is_empty(), "{what}: temporary files left");
    }
}

#[test]
fn compress_decompress_gives_exactly_the_quantized_values() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_model(dir.path(), false);
    let src_bytes = std::fs::read(&input).unwrap();
    let src = SafeTensors::deserialize(&src_bytes).unwrap();
    for scheme in Scheme::ALL {
        for gran in [Granularity::Tensor, Granularity::Channel] {
            let packed = dir.path().join(format!("{scheme}-{gran}.twobit"));
            let back = dir.path().join(format!("{scheme}-{gran}.safetensors"));
            let out = twobit(&[
                "compress",
                s(&input),
                s(&packed),
                scheme.name(),
                "--granularity",
                gran.name(),
                "--keep",
                "^emb\\.",
            ]);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let out = twobit(&["decompress", s(&packed), s(&back)]);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let back_bytes = std::fs::read(&back).unwrap();
            let dec = SafeTensors::deserialize(&back_bytes).unwrap();
            let mut names = dec.names();
            names.sort();
            let mut want: Vec<&str> = SPEC.iter().map(|t| t.0).collect();
            want.push("bn.num_batches_tracked");
            want.sort();
            assert_eq!(names, want, "every tensor of the input comes back");
            // the integer tensor is carried through byte for byte, as an integer
            let (orig, got) = (
                src.tensor("bn.num_batches_tracked").unwrap(),
                dec.tensor("bn.num_batches_tracked").unwrap(),
            );
            assert_eq!(got.dtype(), Dtype::I64);
            assert_eq!(got.shape(), orig.shape());
            assert_eq!(got.data(), orig.data());
            for (name, dtype, shape) in SPEC {
                let orig = src.tensor(name).unwrap();
                let got = dec.tensor(name).unwrap();
                assert_eq!(got.shape(), *shape);
                let quantized = shape.len() >= 2 && !name.starts_with("emb.");
                if quantized {
                    assert_eq!(got.dtype(), Dtype::F32);
                    let w = decode(*dtype, orig.data());
                    // per channel only where the tables pay for themselves
                    let rule = twobit_format::channel_rule(
                        shape,
                        scheme.num_codes(),
                        twobit_format::TableDtype::F32,
                    );
                    let g = if gran == Granularity::Channel && !rule.keep_channel {
                        Granularity::Tensor
                    } else {
                        gran
                    };
                    let q = twobit_quant::quantize(&w, shape, scheme, g).unwrap();
                    let expect: Vec<u32> = twobit_quant::dequantize(&q)
                        .iter()
                        .map(|v| v.to_bits())
                        .collect();
                    let got: Vec<u32> = decode(Dtype::F32, got.data())
                        .iter()
                        .map(|v| v.to_bits())
                        .collect();
                    assert_eq!(got, expect, "{scheme} {gran} {name}");
                } else {
                    // kept tensors come back byte for byte in their own dtype
                    assert_eq!(got.dtype(), *dtype, "{name}");
                    assert_eq!(got.data(), orig.data(), "{name}");
                }
            }
        }
    }
}

#[test]
fn json_reports_and_inspect() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_model(dir.path(), false);
    let packed = dir.path().join("m.twobit");
    let out = twobit(&[
        "compress",
        s(&input),
        s(&packed),
        "quat",
        "--granularity",
        "channel",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON object on stdout");
    let tensors = v["tensors"].as_array().unwrap();
    assert_eq!(
        tensors.len(),
        SPEC.len() + 1,
        "the I64 tensor is listed too"
    );
    let steps = tensors
        .iter()
        .find(|t| t["name"] == "bn.num_batches_tracked")
        .unwrap();
    assert_eq!(steps["kind"], "int");
    assert_eq!(steps["dtype"], "I64");
    assert_eq!(v["total"]["int_tensors"], 1);
    assert_eq!(v["skipped"].as_array().map(Vec::len), Some(0));
    let conv = tensors
        .iter()
        .find(|t| t["name"] == "conv1.weight")
        .unwrap();
    assert_eq!(conv["kind"], "packed");
    let e = conv["rel_error"].as_f64().unwrap();
    assert!(e > 0.0 && e < 1.0, "rel error {e}");
    assert_eq!(
        v["total"]["output_bytes"].as_u64().unwrap(),
        std::fs::metadata(&packed).unwrap().len()
    );

    let out = twobit(&["inspect", s(&packed), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let i: Value = serde_json::from_slice(&out.stdout).unwrap();
    // `tensors` is a list of named entries, as in compress's JSON.
    let named = |n: &str| {
        i["tensors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == n)
            .unwrap()
            .clone()
    };
    let t = &named("conv2.weight");
    assert_eq!(t["scheme"], "quat");
    // 54-weight channels: 8 tables of 28 bytes would cost 4.1 bits/weight, more than the
    // 2-bit codes, so the tensor falls back to one table, and compress says so
    assert_eq!(t["granularity"], "tensor");
    assert_eq!(t["groups"], 1);
    assert_eq!(t["origin_dtype"], "F16");
    assert_eq!(t["packing"], "base2");
    assert!(t["code_entropy"].as_f64().unwrap() > 0.0);
    let c2 = tensors
        .iter()
        .find(|t| t["name"] == "conv2.weight")
        .unwrap();
    assert!(
        c2["note"].as_str().unwrap().starts_with("per tensor"),
        "{c2}"
    );
    assert_eq!(c2["bits_per_weight"], t["bits_per_weight"]);
    // the sparsity reported from the file equals the one compress measured
    let c = tensors
        .iter()
        .find(|t| t["name"] == "conv2.weight")
        .unwrap();
    assert_eq!(t["sparsity"], c["sparsity"]);
    assert_eq!(named("emb.weight")["kind"], "packed");
    assert_eq!(named("scale")["kind"], "float");
    assert_eq!(named("bn.num_batches_tracked")["kind"], "int");
    assert_eq!(named("bn.num_batches_tracked")["bytes"], 8);
    assert_eq!(i["total"]["int_bytes"], 8);
    assert_eq!(i["provenance"]["scheme"], "quat");
    assert_eq!(i["provenance"]["source"], "model.safetensors");

    let out = twobit(&["inspect", s(&packed)]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("conv1.weight")
            && text.contains("total:")
            && text.contains("provenance: granularity = channel")
    );
}

#[test]
fn entropy_coding_is_smaller_and_exact() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_model(dir.path(), false);
    for scheme in ["tern", "quat"] {
        let (plain, coded) = (
            dir.path().join(format!("{scheme}.twobit")),
            dir.path().join(format!("{scheme}-e.twobit")),
        );
        for (out, extra) in [(&plain, None), (&coded, Some("--entropy"))] {
            let mut a = vec!["compress", s(&input), s(out), scheme];
            a.extend(extra);
            let r = twobit(&a);
            assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        }
        let i: Value =
            serde_json::from_slice(&twobit(&["inspect", s(&coded), "--json"]).stdout).unwrap();
        let p: Value =
            serde_json::from_slice(&twobit(&["inspect", s(&plain), "--json"]).stdout).unwrap();
        let packed = |v: &Value| -> Vec<Value> {
            v["tensors"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|t| t["kind"] == "packed")
                .cloned()
                .collect()
        };
        let (ti, tp) = (packed(&i), packed(&p));
        assert!(!ti.is_empty());
        for (a, b) in ti.iter().zip(&tp) {
            // never larger than the fixed packing; an entropy code where it is smaller
            assert!(
                a["code_bytes"].as_u64() <= b["code_bytes"].as_u64(),
                "{a} {b}"
            );
            if a["code_bytes"].as_u64() < b["code_bytes"].as_u64() {
                assert!(
                    matches!(a["packing"].as_str(), Some("rans" | "enum")),
                    "{a}"
                );
            }
        }
        // small layers take the enumerative code
        assert!(ti.iter().any(|t| t["packing"] == "enum"), "{ti:?}");
        // the decoded values are the same bit for bit
        let (da, db) = (
            dir.path().join(format!("{scheme}.safetensors")),
            dir.path().join(format!("{scheme}-e.safetensors")),
        );
        assert!(twobit(&["decompress", s(&plain), s(&da)]).status.success());
        assert!(twobit(&["decompress", s(&coded), s(&db)]).status.success());
        let (x, y) = (std::fs::read(&da).unwrap(), std::fs::read(&db).unwrap());
        let (x, y) = (
            SafeTensors::deserialize(&x).unwrap(),
            SafeTensors::deserialize(&y).unwrap(),
        );
        for (name, t) in x.tensors() {
            assert_eq!(t.data(), y.tensor(&name).unwrap().data(), "{scheme} {name}");
        }
    }
}

#[test]
fn dry_run_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_model(dir.path(), false);
    let packed = dir.path().join("m.twobit");
    let out = twobit(&["compress", s(&input), s(&packed), "tern", "--dry-run"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!packed.exists());
    assert!(String::from_utf8_lossy(&out.stdout).contains("would write"));
}

#[test]
fn bad_input_fails_cleanly_without_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_model(dir.path(), false);
    let nan = write_model(dir.path(), true);
    let out_file = dir.path().join("out.twobit");
    let o = s(&out_file);

    let garbage = dir.path().join("garbage.safetensors");
    std::fs::write(&garbage, b"this is not a safetensors file at all").unwrap();
    let bytes = std::fs::read(&input).unwrap();
    let truncated = dir.path().join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() - 7]).unwrap();

    // offsets whose sum overflows usize: the safetensors parser alone would panic
    let big = (1u64 << 61) - 1;
    let entries: Vec<String> = (0..8u64)
        .map(|k| {
            format!(
                "\"t{k}\":{{\"dtype\":\"U8\",\"shape\":[{big}],\"data_offsets\":[{},{}]}}",
                k * big,
                (k + 1) * big
            )
        })
        .collect();
    let header = format!("{{{}}}", entries.join(","));
    let mut hostile_bytes = (header.len() as u64).to_le_bytes().to_vec();
    hostile_bytes.extend(header.as_bytes());
    hostile_bytes.extend([0u8; 16]);
    let hostile = dir.path().join("hostile.safetensors");
    std::fs::write(&hostile, &hostile_bytes).unwrap();

    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("hostile offsets", vec!["compress", s(&hostile), o, "tern"]),
        ("not safetensors", vec!["compress", s(&garbage), o, "tern"]),
        ("truncated", vec!["compress", s(&truncated), o, "tern"]),
        (
            "missing input",
            vec!["compress", "/nonexistent/x.safetensors", o, "tern"],
        ),
        ("NaN weights", vec!["compress", s(&nan), o, "tern"]),
        ("unknown scheme", vec!["compress", s(&input), o, "int3"]),
        (
            "unknown granularity",
            vec!["compress", s(&input), o, "tern", "--granularity", "row"],
        ),
        (
            "bad regex",
            vec!["compress", s(&input), o, "tern", "--keep", "(unclosed"],
        ),
    ];
    for (what, args) in cases {
        assert_clean_failure(&twobit(&args), Some(&out_file), what);
    }
    let unwritable = dir.path().join("no/such/dir/out.twobit");
    assert_clean_failure(
        &twobit(&["compress", s(&input), s(&unwritable), "tern"]),
        None,
        "unwritable output",
    );
    assert!(!unwritable.exists());

    // corrupt .twobit files for decompress and inspect
    let good = dir.path().join("good.twobit");
    assert!(twobit(&["compress", s(&input), s(&good), "quat"])
        .status
        .success());
    let gb = std::fs::read(&good).unwrap();
    let cut = dir.path().join("cut.twobit");
    std::fs::write(&cut, &gb[..gb.len() / 2]).unwrap();
    let back = dir.path().join("back.safetensors");
    for bad in [&cut, &garbage, &input, &hostile] {
        assert_clean_failure(
            &twobit(&["decompress", s(bad), s(&back)]),
            Some(&back),
            "decompress bad",
        );
        assert_clean_failure(&twobit(&["inspect", s(bad)]), None, "inspect bad");
    }
}

fn is_png(p: &Path) -> bool {
    std::fs::read(p).is_ok_and(|b| b.starts_with(b"\x89PNG\r\n\x1a\n"))
}

#[test]
fn inspect_plot_draws_histograms_with_the_stored_levels() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_model(dir.path(), false);
    let packed = dir.path().join("m.twobit");
    let out = twobit(&["compress", s(&input), s(&packed), "tern", "--keep", "head"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Packed codes alone cannot give a histogram of the float weights: a clear error.
    let plots = dir.path().join("plots");
    let out = twobit(&["inspect", s(&packed), "--plot", s(&plots)]);
    assert_clean_failure(&out, None, "inspect --plot without float weights");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--latent"));

    // The float model that was compressed has the same tensor names: it serves as --latent.
    // --scheme also marks the kept float layer (head) with that scheme's levels.
    let out = twobit(&[
        "inspect",
        s(&packed),
        "--plot",
        s(&plots),
        "--latent",
        s(&input),
        "--scheme",
        "quat",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for layer in ["conv1", "conv2", "fc", "emb", "head"] {
        let png = plots.join(format!("m-{layer}.png"));
        assert!(is_png(&png), "{} missing or not a PNG", png.display());
        let svg = std::fs::read_to_string(plots.join(format!("m-{layer}.svg"))).unwrap();
        assert!(
            svg.contains("levels") && svg.contains("thresholds"),
            "{layer}: marks missing"
        );
        let scheme = if layer == "head" {
            "quat levels"
        } else {
            "tern per tensor"
        };
        assert!(svg.contains(scheme), "{layer}: title lacks '{scheme}'");
    }
    // Biases and 1-D tensors are not weight layers.
    assert!(!plots.join("m-conv1.bias.png").exists() && !plots.join("m-scale.png").exists());

    // A latent file whose shapes do not match is refused.
    let other = dir.path().join("other.safetensors");
    let v = values(9, 6);
    let b = encode(Dtype::F32, &v);
    let views = vec![(
        "conv1.weight",
        TensorView::new(Dtype::F32, vec![2, 3], &b).unwrap(),
    )];
    std::fs::write(&other, safetensors::serialize(views, None).unwrap()).unwrap();
    let out = twobit(&[
        "inspect",
        s(&packed),
        "--plot",
        s(&plots),
        "--latent",
        s(&other),
    ]);
    assert_clean_failure(&out, None, "inspect --plot with mismatched float weights");
    assert!(String::from_utf8_lossy(&out.stderr).contains("shape"));
}
