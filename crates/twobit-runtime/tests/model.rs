//! Whole-network tests: file round trip, packed vs dequantized fp32, an independent naive
//! forward pass, and clear errors for bad files and inputs.
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
mod common;
use common::{bn, float, packed};
use twobit_format::graph::INPUT;
use twobit_format::{Arch, Builder, Model, Node, Normalize, Op, Tensor};
use twobit_runtime::{Kernel, Runtime, RuntimeError};

/// A small ResNet-like network: conv-bn-relu, an identity residual block, a block with
/// an option-A shortcut (subsample + zero channels), max pool, global pool, linear.
fn resnet_like(seed: u64) -> Model {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut t = BTreeMap::new();
    let mut b = Builder::default();
    let mut conv =
        |t: &mut BTreeMap<String, Tensor>, name: &str, shape: [usize; 4], quat, stride| {
            t.insert(
                format!("{name}.weight"),
                packed(&mut rng, shape.to_vec(), quat, quat),
            );
            Op::conv(format!("{name}.weight"), None, stride, shape[2] / 2)
        };
    let c1 = conv(&mut t, "c1", [8, 3, 3, 3], true, 1);
    let r1a = conv(&mut t, "r1a", [8, 8, 3, 3], false, 1);
    let r1b = conv(&mut t, "r1b", [8, 8, 3, 3], true, 1);
    let r2a = conv(&mut t, "r2a", [16, 8, 3, 3], false, 2);
    let mut rng = StdRng::seed_from_u64(seed + 100);
    let x = b.then(c1, INPUT.to_string());
    let x = b.then(bn(&mut rng, &mut t, "bn1", 8), x);
    let x = b.then(Op::Relu, x);
    let r = b.then(r1a, x.clone());
    let r = b.then(bn(&mut rng, &mut t, "r1bn", 8), r);
    let r = b.then(Op::Relu, r);
    let r = b.then(r1b, r);
    let x = b.push(Op::Add { constant: None }, vec![r, x]);
    let x = b.then(Op::Relu, x);
    let r = b.then(r2a, x.clone());
    let r = b.then(bn(&mut rng, &mut t, "r2bn", 16), r);
    let s = b.pad_subsample(x, 2, 8, 16);
    let x = b.push(Op::Add { constant: None }, vec![r, s]);
    let x = b.then(Op::max_pool(2, 2), x);
    let x = b.then(Op::GlobalAvgPool, x);
    let x = b.then(Op::Flatten, x);
    t.insert(
        "fc.weight".into(),
        packed(&mut rng, vec![10, 16], false, true),
    );
    t.insert("fc.bias".into(), float(&mut rng, vec![10], -0.1, 0.1));
    let x = b.then(
        Op::Linear {
            weight: "fc.weight".into(),
            bias: Some("fc.bias".into()),
        },
        x,
    );
    Model {
        tensors: t,
        arch: Some(Arch {
            name: "test-resnet".into(),
            input: [3, 11, 9],
            classes: 10,
            normalize: Normalize {
                mean: vec![0.5, 0.4, 0.3],
                std: vec![0.25, 0.2, 0.3],
            },
            nodes: b.nodes,
            output: x,
            input_ranges: Default::default(),
        }),
        provenance: BTreeMap::new(),
    }
}

fn input(rng: &mut StdRng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(0.0..1.0)).collect()
}

#[test]
fn file_round_trip_packed_matches_dequantized_fp32() {
    let model = resnet_like(1);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.twobit");
    model.save(&path).unwrap();
    let mut rt = Runtime::load(&path).unwrap();
    let fp = rt.dequantized();
    let mut rng = StdRng::seed_from_u64(9);
    for batch in [1, 3, 40] {
        let x = input(&mut rng, batch * 3 * 11 * 9);
        let want = fp.forward_raw(&x, batch);
        assert_eq!(want.len(), batch * 10);
        for k in Kernel::all_available() {
            rt.set_kernel(k);
            let got = rt.forward_raw(&x, batch);
            let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (g - w).abs() <= 1e-4 * (1.0 + scale),
                    "{k:?} batch {batch}: {g} vs {w}"
                );
            }
            for (a, b) in got.chunks(10).zip(want.chunks(10)) {
                let am = |r: &[f32]| (0..10).max_by(|&i, &j| r[i].total_cmp(&r[j])).unwrap();
                assert_eq!(am(a), am(b));
            }
        }
    }
    assert!(rt.weight_bytes() < rt.fp32_weight_bytes() / 4);
}

/// conv(packed, bias) -> batch norm -> relu -> flatten -> linear(float), computed naively.
#[test]
fn matches_naive_forward() {
    let mut rng = StdRng::seed_from_u64(2);
    let mut t = BTreeMap::new();
    let (cin, o, h, w) = (2, 3, 5, 4);
    t.insert(
        "c.weight".into(),
        packed(&mut rng, vec![o, cin, 3, 3], true, true),
    );
    t.insert("c.bias".into(), float(&mut rng, vec![o], -0.3, 0.3));
    let bnl = bn(&mut rng, &mut t, "bn", o);
    // stride 2, padding 1: output 3x2.
    let (oh, ow) = (3, 2);
    t.insert(
        "fc.weight".into(),
        float(&mut rng, vec![4, o * oh * ow], -0.5, 0.5),
    );
    let mut b = Builder::default();
    let x = b.then(
        Op::conv("c.weight".into(), Some("c.bias".into()), 2, 1),
        INPUT.to_string(),
    );
    let x = b.then(bnl, x);
    let x = b.then(Op::Relu, x);
    let x = b.then(Op::Flatten, x);
    let output = b.then(
        Op::Linear {
            weight: "fc.weight".into(),
            bias: None,
        },
        x,
    );
    let model = Model {
        tensors: t.clone(),
        arch: Some(Arch {
            name: "tiny".into(),
            input: [cin, h, w],
            classes: 4,
            normalize: Normalize {
                mean: vec![0.0; cin],
                std: vec![1.0; cin],
            },
            nodes: b.nodes,
            output,
            input_ranges: Default::default(),
        }),
        provenance: BTreeMap::new(),
    };
    let rt = Runtime::from_model(&model).unwrap();
    let x = input(&mut rng, cin * h * w);
    let got = rt.forward(&x, 1);

    let f = |n: &str| t[n].to_f32();
    let (cw, cb, fw) = (f("c.weight"), f("c.bias"), f("fc.weight"));
    let (g, b, m, v) = (
        f("bn.weight"),
        f("bn.bias"),
        f("bn.running_mean"),
        f("bn.running_var"),
    );
    let mut act = vec![0f32; o * oh * ow];
    for oc in 0..o {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut s = cb[oc];
                for ci in 0..cin {
                    for ky in 0..3 {
                        for kx in 0..3 {
                            let (iy, ix) = ((oy * 2 + ky) as isize - 1, (ox * 2 + kx) as isize - 1);
                            if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                s += cw[((oc * cin + ci) * 3 + ky) * 3 + kx]
                                    * x[(ci * h + iy as usize) * w + ix as usize];
                            }
                        }
                    }
                }
                let y = g[oc] * (s - m[oc]) / (v[oc] + 1e-5).sqrt() + b[oc];
                act[(oc * oh + oy) * ow + ox] = y.max(0.0);
            }
        }
    }
    for (j, gj) in got.iter().enumerate() {
        let want: f32 = (0..act.len()).map(|i| fw[j * act.len() + i] * act[i]).sum();
        assert!((gj - want).abs() < 1e-4, "logit {j}: {gj} vs {want}");
    }
}

#[test]
fn bad_models_and_inputs_are_clear_errors() {
    let good = resnet_like(3);
    let mut m = good.clone();
    m.arch = None;
    assert!(matches!(
        Runtime::from_model(&m),
        Err(RuntimeError::MissingArch)
    ));

    let mut m = good.clone();
    m.tensors.remove("fc.bias");
    let e = Runtime::from_model(&m).err().unwrap();
    assert!(matches!(e, RuntimeError::MissingTensor { .. }), "{e}");
    assert!(e.to_string().contains("fc.bias"));

    let mut m = good.clone();
    m.arch.as_mut().unwrap().input = [4, 11, 9];
    assert!(matches!(
        Runtime::from_model(&m),
        Err(RuntimeError::Shape(_))
    ));

    let mut m = good.clone();
    m.arch.as_mut().unwrap().classes = 7;
    assert!(matches!(
        Runtime::from_model(&m),
        Err(RuntimeError::Shape(_))
    ));

    let mut m = good.clone();
    m.arch.as_mut().unwrap().input = [3, 1 << 20, 1 << 20];
    assert!(
        matches!(Runtime::from_model(&m), Err(RuntimeError::Shape(_))),
        "huge input must not allocate"
    );

    // A padding whose zero-padded copy (what the 2-bit kernels read) would be huge.
    let mut m = good.clone();
    if let Op::Conv { pads, .. } = &mut m.arch.as_mut().unwrap().nodes[0].op {
        *pads = [1 << 14; 4];
    }
    let e = Runtime::from_model(&m).err().unwrap();
    assert!(e.to_string().contains("padded input"), "{e}");

    let mut m = good.clone();
    m.arch.as_mut().unwrap().nodes.insert(
        0,
        Node {
            name: "bad".into(),
            op: Op::Linear {
                weight: "fc.weight".into(),
                bias: None,
            },
            inputs: vec![INPUT.into()],
            output: "bad".into(),
        },
    );
    assert!(Runtime::from_model(&m).is_err());

    let mut m = good.clone();
    if let Some(Tensor::Packed(p)) = m.tensors.get_mut("c1.weight") {
        p.codes.pop();
    }
    assert!(matches!(
        Runtime::from_model(&m),
        Err(RuntimeError::Shape(_))
    ));

    let rt = Runtime::from_model(&good).unwrap();
    let e = rt.try_forward(&[0.0; 10], 1).err().unwrap();
    assert!(matches!(e, RuntimeError::Input { got: 10, .. }), "{e}");
    assert!(rt.try_forward(&[], 0).is_err());

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.twobit");
    std::fs::write(&path, b"not a model").unwrap();
    assert!(matches!(Runtime::load(&path), Err(RuntimeError::Format(_))));
    assert!(Runtime::load(&dir.path().join("missing.twobit")).is_err());
}

/// Batch norm and ReLU fold into the step before when it is their value's only consumer:
/// no standalone batch norm or ReLU is left in the ResNet-like graph, and the add of each
/// residual block takes the ReLU after it.
#[test]
fn fusions_leave_no_standalone_batch_norm_or_relu() {
    let rt = Runtime::from_model(&resnet_like(4)).unwrap();
    let (_, times) = rt.forward_profiled(&[0.5; 2 * 3 * 11 * 9], 2).unwrap();
    let labels: Vec<&str> = times.iter().map(|t| t.label.as_str()).collect();
    assert_eq!(
        labels[0], "conv c1.weight + batch_norm + relu",
        "{labels:?}"
    );
    assert!(
        labels.contains(&"conv r1a.weight + batch_norm + relu"),
        "{labels:?}"
    );
    assert!(
        labels
            .iter()
            .any(|l| l.starts_with("add ") && l.ends_with(" + relu")),
        "{labels:?}"
    );
    assert!(
        !labels.iter().any(|l| l.starts_with("batch_norm")
            || l.starts_with("relu")
            || l.starts_with("flatten")),
        "{labels:?}"
    );
}
