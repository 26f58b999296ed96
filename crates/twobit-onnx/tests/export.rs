//! Export: `import(export(m))` is the same graph with the same tensor values and the same
//! runtime outputs; exported models run in onnxruntime to the original's outputs.
mod common;
use common::*;
use std::collections::HashMap;
use std::process::Command;
use twobit_format::graph::INPUT;
use twobit_format::{Model, PackedTensor, Tensor};
use twobit_onnx::{export, import, ExportOptions, ImportOptions};

fn round_trip(m: &Model) -> Model {
    let b = export(m, &ExportOptions::default()).unwrap();
    import(&b, &ImportOptions::default()).unwrap()
}

/// The op as JSON with its tensor names replaced by their positions.
fn op_json(m: &Model, n: &twobit_format::Node) -> serde_json::Value {
    let names: Vec<&str> = n.op.tensors();
    let mut v = serde_json::to_value(&n.op).unwrap();
    if let Some(o) = v.as_object_mut() {
        for field in o.values_mut() {
            if let Some(s) = field.as_str() {
                if let Some(i) = names.iter().position(|t| *t == s) {
                    *field = serde_json::json!(format!("tensor{i}"));
                }
            }
        }
    }
    let _ = m;
    v
}

/// Same nodes modulo names, same tensor values.
fn assert_same_graph(what: &str, a: &Model, b: &Model) {
    let (x, y) = (a.arch.as_ref().unwrap(), b.arch.as_ref().unwrap());
    assert_eq!((x.input, x.classes), (y.input, y.classes), "{what}");
    assert_eq!(
        x.normalize, y.normalize,
        "{what}: normalize via metadata_props"
    );
    assert_eq!(x.nodes.len(), y.nodes.len(), "{what}: node count");
    let mut values: HashMap<&str, &str> = HashMap::from([(INPUT, INPUT)]);
    for (p, q) in x.nodes.iter().zip(&y.nodes) {
        assert_eq!(op_json(a, p), op_json(b, q), "{what}: node {}", p.name);
        let ins: Vec<&str> = p.inputs.iter().map(|i| values[i.as_str()]).collect();
        assert_eq!(
            ins,
            q.inputs.iter().map(String::as_str).collect::<Vec<_>>(),
            "{what}: {}",
            p.name
        );
        for (s, t) in p.op.tensors().iter().zip(q.op.tensors()) {
            assert_eq!(a.tensors[*s].shape(), b.tensors[t].shape(), "{what}: {s}");
            assert_eq!(a.tensors[*s].to_f32(), b.tensors[t].to_f32(), "{what}: {s}");
        }
        values.insert(&p.output, &q.output);
    }
    assert_eq!(values[x.output.as_str()], y.output, "{what}: output");
}

#[test]
fn export_then_import_gives_the_same_graph_and_outputs() {
    for name in GOOD {
        let mut m = import_good(name);
        let c = m.arch.as_ref().unwrap().input[0];
        m.arch.as_mut().unwrap().normalize = twobit_format::Normalize {
            mean: (0..c).map(|i| 0.1 * i as f32).collect(),
            std: vec![0.5; c],
        };
        let back = round_trip(&m);
        assert_same_graph(name, &m, &back);
        let (input, _) = shapes(name);
        let x = f32s(&format!("{name}.input.f32"));
        assert_eq!(
            run_runtime(&m, &x, input[0]),
            run_runtime(&back, &x, input[0]),
            "{name}"
        );
    }
}

#[test]
fn packed_weights_are_exported_dequantized() {
    let mut m = import_good("lenet");
    for n in &m.arch.as_ref().unwrap().nodes.clone() {
        if let Some(w) = n.op.weight() {
            let t = &m.tensors[w];
            let q = twobit_quant::quantize(
                &t.to_f32(),
                t.shape(),
                twobit_quant::Scheme::Tern,
                twobit_quant::Granularity::Channel,
            )
            .unwrap();
            m.tensors.insert(
                w.to_string(),
                Tensor::Packed(PackedTensor::from_quantized(&q)),
            );
        }
    }
    m.validate().unwrap();
    let back = round_trip(&m);
    assert_same_graph("lenet (2-bit)", &m, &back);
    let x = f32s("lenet.input.f32");
    let (got, want) = (run_runtime(&back, &x, 3), run_runtime(&m, &x, 3));
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-3 * w.abs().max(1.0), "{g} vs {w}");
    }
}

#[test]
fn export_needs_an_architecture() {
    let e = export(&Model::default(), &ExportOptions::default()).unwrap_err();
    assert!(matches!(e, twobit_onnx::OnnxError::Export(_)), "{e}");
}

fn python_with_onnxruntime() -> bool {
    Command::new("python3")
        .args(["-c", "import onnxruntime, numpy"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn exported_models_run_in_onnxruntime() {
    if !python_with_onnxruntime() {
        let msg = "python3 with onnxruntime and numpy is not available (pip install onnx onnxruntime numpy)";
        if std::env::var_os("CI").is_some() {
            panic!("{msg}; required when CI is set");
        }
        // Straight to the process's stderr: the test harness captures `eprintln!`.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: exported_models_run_in_onnxruntime: {msg}"
        );
        return;
    }
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/onnx/run_ort.py");
    let dir = std::env::temp_dir().join(format!("twobit-onnx-export-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for name in GOOD {
        let m = import_good(name);
        let onnx = dir.join(format!("{name}.onnx"));
        let out = dir.join(format!("{name}.out.f32"));
        std::fs::write(&onnx, export(&m, &ExportOptions::default()).unwrap()).unwrap();
        let (input, _) = shapes(name);
        let status = Command::new("python3")
            .arg(&script)
            .arg(&onnx)
            .arg(data(&format!("{name}.input.f32")))
            .arg(&out)
            .args(input.iter().map(|d| d.to_string()))
            .status()
            .unwrap();
        assert!(status.success(), "{name}: run_ort.py failed");
        let got: Vec<f32> = std::fs::read(&out)
            .unwrap()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        check_close(name, &got, &f32s(&format!("{name}.output.f32")));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
