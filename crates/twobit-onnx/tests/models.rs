//! Every good test model imports, validates, has onnxruntime's output shape, and runs in
//! the twobit runtime to onnxruntime's stored output (within `common::TOL`).
mod common;
use common::*;
use twobit_format::graph::Op;
use twobit_format::Tensor;

#[test]
fn good_models_import_with_onnx_output_shapes() {
    for name in GOOD {
        let m = import_good(name);
        m.validate().unwrap();
        let arch = m.arch.as_ref().unwrap();
        let (input, output) = shapes(name);
        assert_eq!(arch.input.to_vec(), input[1..], "{name}");
        assert_eq!(
            arch.classes,
            output[1..].iter().product::<usize>(),
            "{name}"
        );
        let s = arch
            .shapes(|t| m.tensors.get(t).map(Tensor::shape))
            .unwrap();
        assert_eq!(s[&arch.output], output[1..], "{name}");
        assert_eq!(m.provenance["source"], "onnx");
        // The imported model is a valid .twobit file.
        let back = twobit_format::Model::from_bytes(&m.to_bytes().unwrap()).unwrap();
        assert_eq!(back.arch, m.arch, "{name}");
        assert!(m.tensors.values().all(|t| matches!(t, Tensor::Float(_))));
        // Every stored tensor is used by some node.
        for t in m.tensors.keys() {
            assert!(
                arch.nodes
                    .iter()
                    .any(|n| n.op.tensors().contains(&t.as_str())),
                "{name}: {t}"
            );
        }
    }
}

#[test]
fn patterns_become_the_expected_ops() {
    let names = |name: &str| -> Vec<&'static str> {
        import_good(name)
            .arch
            .unwrap()
            .nodes
            .iter()
            .map(|n| n.op.name())
            .collect()
    };
    // Reshape -> flatten, Gemm x2 and MatMul+Add -> 3 linears, Constant folded.
    assert_eq!(
        names("lenet"),
        [
            "conv", "relu", "max_pool", "conv", "relu", "max_pool", "flatten", "linear", "relu",
            "linear", "relu", "linear"
        ]
    );
    // Identity and Dropout removed.
    assert_eq!(
        names("conv_bn"),
        [
            "conv",
            "relu",
            "conv",
            "batch_norm",
            "relu",
            "global_avg_pool",
            "flatten",
            "linear",
            "softmax"
        ]
    );
    assert!(names("option_a").contains(&"pad_channels"));
    assert_eq!(
        names("densenet").iter().filter(|n| **n == "concat").count(),
        2
    );
    let m = import_good("lenet");
    let Op::Linear { bias, .. } = &m.arch.as_ref().unwrap().nodes[11].op else {
        panic!()
    };
    assert!(bias.is_some(), "MatMul + Add folds into one biased linear");
    let m = import_good("mobilenet_block");
    let clips = m
        .arch
        .unwrap()
        .nodes
        .iter()
        .filter(|n| {
            n.op == Op::Clip {
                min: Some(0.0),
                max: Some(6.0),
            }
        })
        .count();
    assert_eq!(clips, 3, "ReLU6 with Constant bounds");
}

#[test]
fn good_models_match_onnxruntime_in_the_twobit_runtime() {
    let mut failures = Vec::new();
    for name in GOOD {
        let m = import_good(name);
        let (input, _) = shapes(name);
        let x = f32s(&format!("{name}.input.f32"));
        let want = f32s(&format!("{name}.output.f32"));
        let got = std::panic::catch_unwind(|| run_runtime(&m, &x, input[0]));
        match got {
            Ok(got) => {
                if let Err(e) = std::panic::catch_unwind(|| check_close(name, &got, &want)) {
                    failures.push(format!("{name}: {:?}", e.downcast_ref::<String>()));
                }
            }
            Err(e) => failures.push(format!("{name}: {:?}", e.downcast_ref::<String>())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
