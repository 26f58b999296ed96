//! Convolutions against a naive reference written from the ONNX spec: dense, grouped (2
//! and 4 groups), depthwise, dilated, strided (2x1) and asymmetrically padded, with bias,
//! batch norm and clip fused, through every available packed kernel and the fp32 path; and
//! residual graphs. Tolerance: `|got - want| <= 1e-4·(1 + |want|)`.
mod common;
use common::{batched, bn, check_model, cp, float, model, node, packed, ref_bn, ref_conv, ConvP};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::BTreeMap;
use twobit_format::graph::INPUT;
use twobit_format::Op;
use twobit_runtime::Runtime;

/// conv (2-bit weights, bias) -> batch norm -> clip(-0.3, 1.5), against the naive forms.
fn conv_case(seed: u64, [c, h, w]: [usize; 3], p: ConvP, quat: bool, per_channel: bool) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut t = BTreeMap::new();
    let ws = vec![p.o, c / p.group, p.k[0], p.k[1]];
    t.insert("c.weight".into(), packed(&mut rng, ws, quat, per_channel));
    t.insert("c.bias".into(), float(&mut rng, vec![p.o], -0.3, 0.3));
    let bn_op = bn(&mut rng, &mut t, "bn", p.o);
    let conv = Op::Conv {
        weight: "c.weight".into(),
        bias: Some("c.bias".into()),
        strides: p.strides,
        pads: p.pads,
        dilations: p.dil,
        group: p.group,
    };
    let clip = Op::Clip {
        min: Some(-0.3),
        max: Some(1.5),
    };
    let nodes = vec![
        node(conv, &[INPUT], "a"),
        node(bn_op, &["a"], "b"),
        node(clip, &["b"], "y"),
    ];
    let m = model(t.clone(), [c, h, w], nodes, "y".into());
    let (wt, bias) = (t["c.weight"].to_f32(), t["c.bias"].to_f32());
    for batch in [1, 3] {
        check_model(&m, batch, &mut rng, |x| {
            batched(x, batch, |s| {
                let y = ref_conv(s, [c, h, w], &wt, &bias, p);
                ref_bn(&y, p.o, &t, "bn")
                    .into_iter()
                    .map(|v| v.clamp(-0.3, 1.5))
                    .collect()
            })
        });
    }
}

#[test]
fn dense_conv_symmetric_and_1x1() {
    conv_case(
        1,
        [3, 11, 9],
        cp(8, [3, 3], [1, 1], [1; 4], [1, 1], 1),
        true,
        true,
    );
    // 37 input channels: a ragged column count; 13x11 positions: several tiles.
    conv_case(
        2,
        [37, 13, 11],
        cp(5, [1, 1], [1, 1], [0; 4], [1, 1], 1),
        false,
        false,
    );
}

#[test]
fn grouped_convs() {
    conv_case(
        3,
        [6, 9, 10],
        cp(4, [3, 2], [2, 1], [1, 0, 2, 1], [1, 1], 2),
        true,
        true,
    );
    conv_case(
        4,
        [8, 12, 7],
        cp(12, [3, 3], [1, 2], [0, 1, 1, 0], [2, 1], 4),
        false,
        true,
    );
    // 4 groups of 20 channels: 180 columns per group (several plane blocks).
    conv_case(
        5,
        [80, 6, 7],
        cp(8, [3, 3], [1, 1], [1; 4], [1, 1], 4),
        true,
        false,
    );
}

#[test]
fn depthwise_convs() {
    conv_case(
        6,
        [5, 10, 9],
        cp(10, [3, 3], [2, 2], [1; 4], [1, 2], 5),
        true,
        true,
    );
    conv_case(
        7,
        [7, 8, 8],
        cp(7, [3, 3], [1, 1], [1; 4], [1, 1], 7),
        false,
        false,
    );
}

#[test]
fn dilated_strided_asymmetric_convs() {
    conv_case(
        8,
        [3, 14, 15],
        cp(7, [3, 3], [1, 1], [2, 3, 2, 3], [2, 3], 1),
        true,
        true,
    );
    conv_case(
        9,
        [4, 11, 10],
        cp(9, [2, 3], [2, 1], [0, 2, 1, 0], [1, 1], 1),
        false,
        true,
    );
    conv_case(
        10,
        [16, 9, 9],
        cp(33, [3, 3], [2, 1], [1, 0, 0, 1], [1, 2], 1),
        true,
        false,
    );
}

/// A residual block whose input has two consumers, and a conv whose output feeds both a
/// batch norm and an add (so the batch norm must not be folded into the conv).
#[test]
fn residual_and_unfusable_batch_norm() {
    let mut rng = StdRng::seed_from_u64(80);
    let (c, h, w) = (4, 7, 6);
    let mut t = BTreeMap::new();
    t.insert(
        "c1.weight".into(),
        packed(&mut rng, vec![c, c, 3, 3], true, true),
    );
    t.insert(
        "c2.weight".into(),
        packed(&mut rng, vec![c, c, 3, 3], false, true),
    );
    t.insert(
        "c3.weight".into(),
        packed(&mut rng, vec![c, c, 1, 1], true, false),
    );
    let bn2 = bn(&mut rng, &mut t, "bn2", c);
    let bn3 = bn(&mut rng, &mut t, "bn3", c);
    let conv = |n: &str, p| Op::conv(format!("{n}.weight"), None, 1, p);
    let nodes = vec![
        node(conv("c1", 1), &[INPUT], "a"),
        node(Op::Relu, &["a"], "v"), // v: two consumers
        node(conv("c2", 1), &["v"], "b"),
        node(bn2, &["b"], "bb"),
        node(Op::Add { constant: None }, &["bb", "v"], "s"),
        node(Op::Relu, &["s"], "r"),
        node(conv("c3", 0), &["r"], "u"), // u: consumed by bn3 and the add
        node(bn3, &["u"], "ub"),
        node(Op::Add { constant: None }, &["ub", "u"], "y"),
    ];
    let m = model(t.clone(), [c, h, w], nodes, "y".into());
    let f = |n: &str| t[n].to_f32();
    let (w1, w2, w3) = (f("c1.weight"), f("c2.weight"), f("c3.weight"));
    let zero = vec![0f32; c];
    let p3 = cp(c, [3, 3], [1, 1], [1; 4], [1, 1], 1);
    let p1 = cp(c, [1, 1], [1, 1], [0; 4], [1, 1], 1);
    for batch in [1, 3] {
        check_model(&m, batch, &mut rng, |x| {
            batched(x, batch, |s| {
                let v: Vec<f32> = ref_conv(s, [c, h, w], &w1, &zero, p3)
                    .iter()
                    .map(|v| v.max(0.0))
                    .collect();
                let bb = ref_bn(&ref_conv(&v, [c, h, w], &w2, &zero, p3), c, &t, "bn2");
                let r: Vec<f32> = bb.iter().zip(&v).map(|(p, q)| (p + q).max(0.0)).collect();
                let u = ref_conv(&r, [c, h, w], &w3, &zero, p1);
                ref_bn(&u, c, &t, "bn3")
                    .iter()
                    .zip(&u)
                    .map(|(p, q)| p + q)
                    .collect()
            })
        });
    }
    // The conv whose output also feeds the add keeps its batch norm separate.
    let rt = Runtime::from_model(&m).unwrap();
    let (_, times) = rt.forward_profiled(&vec![0.1; c * h * w], 1).unwrap();
    let labels: Vec<&str> = times.iter().map(|t| t.label.as_str()).collect();
    assert!(labels.contains(&"conv c3.weight"), "{labels:?}");
    assert!(labels.contains(&"batch_norm n_ub"), "{labels:?}");
    assert!(
        labels.contains(&"conv c2.weight + batch_norm"),
        "{labels:?}"
    );
    assert!(labels.contains(&"conv c1.weight + relu"), "{labels:?}");
}
