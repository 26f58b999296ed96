//! Every bad test file gives its own error variant and a one-line message naming the node
//! or operator.
mod common;
use common::*;
use twobit_onnx::{import, ImportOptions, OnnxError};

fn err(file: &str) -> OnnxError {
    let e = import(&bytes(file), &ImportOptions::default()).expect_err(file);
    let msg = e.to_string();
    assert!(!msg.contains('\n'), "{file}: multi-line message {msg:?}");
    eprintln!("{file}: {msg}");
    e
}

#[test]
fn truncated() {
    assert!(matches!(
        err("bad_truncated.onnx"),
        OnnxError::NotProtobuf(_)
    ));
}

#[test]
fn unsupported_operator() {
    let e = err("bad_unsupported_op.onnx");
    assert!(matches!(&e, OnnxError::UnsupportedOperator { op, .. } if op == "Tanh"));
    assert!(
        e.to_string()
            .starts_with("unsupported ONNX operator 'Tanh' (node 'Tanh_n"),
        "{e}"
    );
}

#[test]
fn missing_initializer() {
    let e = err("bad_missing_initializer.onnx");
    assert!(
        matches!(&e, OnnxError::MissingInitializer { name, node, .. } if name == "w_missing" && node == "conv_missing")
    );
}

#[test]
fn dynamic_shape() {
    let e = err("bad_dynamic_shape.onnx");
    assert!(
        matches!(&e, OnnxError::DynamicShape { axis: 2, dim, .. } if dim == "H"),
        "{e}"
    );
    assert!(e.to_string().contains("dynamic shape"));
    // The override resolves it.
    let opts = ImportOptions {
        input_shape: Some([1, 5, 4]),
        ..Default::default()
    };
    let m = import(&bytes("bad_dynamic_shape.onnx"), &opts).unwrap();
    assert_eq!(m.arch.unwrap().input, [1, 5, 4]);
    // ...but must agree with the fixed dimensions.
    let opts = ImportOptions {
        input_shape: Some([2, 5, 4]),
        ..Default::default()
    };
    assert!(matches!(
        import(&bytes("bad_dynamic_shape.onnx"), &opts),
        Err(OnnxError::BadInput { .. })
    ));
}

#[test]
fn non_finite_weight() {
    assert!(matches!(err("bad_nan_weight.onnx"), OnnxError::NonFinite(n) if n == "w_nan"));
}

#[test]
fn external_data() {
    assert!(matches!(
        err("bad_external_data.onnx"),
        OnnxError::ExternalData(_)
    ));
}

#[test]
fn several_outputs() {
    assert!(matches!(
        err("bad_two_outputs.onnx"),
        OnnxError::OutputCount(2)
    ));
}

#[test]
fn empty_and_garbage_bytes() {
    // An empty buffer decodes as an empty ModelProto: no graph.
    assert!(matches!(
        import(&[], &ImportOptions::default()),
        Err(OnnxError::UnsupportedModel(_))
    ));
    assert!(matches!(
        import(b"\xff\xff\xff\xff", &ImportOptions::default()),
        Err(OnnxError::NotProtobuf(_))
    ));
    assert!(matches!(
        twobit_onnx::load(&data("does_not_exist.onnx"), &ImportOptions::default()),
        Err(OnnxError::Io { .. })
    ));
}
