//! Every operator against a naive reference written here from the ONNX spec (direct loops),
//! on random inputs with ragged shapes, through every available packed kernel and the fp32
//! path. Tolerance: `|got - want| <= 1e-4·(1 + |want|)`.
mod common;
use common::{batched, bn, check_model, float, model, node, out_len, packed, ref_bn};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::BTreeMap;
use twobit_format::graph::INPUT;
use twobit_format::{Op, Tensor};
use twobit_runtime::{Runtime, RuntimeError};

/// Naive max/avg pooling of one sample `[c, h, w]`.
#[allow(clippy::too_many_arguments)]
fn ref_pool(
    x: &[f32],
    [c, h, w]: [usize; 3],
    k: [usize; 2],
    s: [usize; 2],
    pads: [usize; 4],
    d: [usize; 2],
    ceil: bool,
    avg: Option<bool>,
) -> Vec<f32> {
    let [pt, pl, pb, pr] = pads;
    let oh = out_len(h, k[0], s[0], (pt, pb), d[0], ceil);
    let ow = out_len(w, k[1], s[1], (pl, pr), d[1], ceil);
    let mut y = Vec::new();
    for ci in 0..c {
        for oy in 0..oh {
            for ox in 0..ow {
                let (mut m, mut sum, mut valid, mut padded) = (f32::NEG_INFINITY, 0f32, 0, 0);
                for ky in 0..k[0] {
                    for kx in 0..k[1] {
                        let iy = (oy * s[0] + ky * d[0]) as isize - pt as isize;
                        let ix = (ox * s[1] + kx * d[1]) as isize - pl as isize;
                        if iy < (h + pb) as isize && ix < (w + pr) as isize {
                            padded += 1;
                        }
                        if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                            continue;
                        }
                        let v = x[(ci * h + iy as usize) * w + ix as usize];
                        m = m.max(v);
                        sum += v;
                        valid += 1;
                    }
                }
                y.push(match avg {
                    None => m,
                    Some(true) => sum / padded as f32,
                    Some(false) => sum / valid as f32,
                });
            }
        }
    }
    y
}

fn pool_case(seed: u64, chw: [usize; 3], op: Op) {
    let mut rng = StdRng::seed_from_u64(seed);
    let m = model(
        BTreeMap::new(),
        chw,
        vec![node(op.clone(), &[INPUT], "y")],
        "y".into(),
    );
    let batch = 2;
    check_model(&m, batch, &mut rng, |x| {
        batched(x, batch, |s| match &op {
            Op::MaxPool {
                kernel,
                strides,
                pads,
                dilations,
                ceil_mode,
            } => ref_pool(
                s, chw, *kernel, *strides, *pads, *dilations, *ceil_mode, None,
            ),
            Op::AvgPool {
                kernel,
                strides,
                pads,
                ceil_mode,
                count_include_pad,
            } => ref_pool(
                s,
                chw,
                *kernel,
                *strides,
                *pads,
                [1, 1],
                *ceil_mode,
                Some(*count_include_pad),
            ),
            _ => unreachable!(),
        })
    });
}

#[test]
fn max_pools() {
    pool_case(20, [3, 8, 8], Op::max_pool(2, 2));
    // The 2x2/2 fast path on odd planes (the last row and column dropped).
    pool_case(27, [2, 7, 9], Op::max_pool(2, 2));
    for (i, ceil) in [false, true].into_iter().enumerate() {
        let op = |kernel, strides, pads, dilations| Op::MaxPool {
            kernel,
            strides,
            pads,
            dilations,
            ceil_mode: ceil,
        };
        pool_case(
            21 + i as u64,
            [4, 9, 11],
            op([3, 3], [2, 2], [1, 1, 1, 1], [1, 1]),
        );
        pool_case(
            23 + i as u64,
            [2, 10, 7],
            op([3, 2], [2, 1], [1, 0, 2, 1], [2, 1]),
        );
        pool_case(
            25 + i as u64,
            [3, 7, 9],
            op([2, 3], [3, 2], [0, 2, 1, 0], [1, 2]),
        );
    }
}

#[test]
fn avg_pools() {
    for (i, (ceil, cip)) in [(false, false), (false, true), (true, false), (true, true)]
        .into_iter()
        .enumerate()
    {
        let op = |kernel, strides, pads| Op::AvgPool {
            kernel,
            strides,
            pads,
            ceil_mode: ceil,
            count_include_pad: cip,
        };
        pool_case(30 + i as u64, [3, 9, 10], op([3, 3], [2, 2], [1, 1, 1, 1]));
        pool_case(40 + i as u64, [2, 7, 8], op([2, 3], [2, 3], [1, 0, 0, 2]));
        pool_case(50 + i as u64, [2, 5, 5], op([2, 2], [2, 2], [0; 4]));
    }
}

/// Numpy broadcasting of `a` (shape `sa`) and `b` (shape `sb`) to `so`, per sample.
fn ref_broadcast(
    a: &[f32],
    sa: &[usize],
    b: &[f32],
    sb: &[usize],
    so: &[usize],
    f: impl Fn(f32, f32) -> f32,
) -> Vec<f32> {
    let idx = |s: &[usize], o: &[usize]| -> usize {
        // Right-aligned; axes of size 1 read index 0.
        let off = o.len() - s.len();
        s.iter().enumerate().fold(0, |acc, (i, &d)| {
            acc * d + if d == 1 { 0 } else { o[off + i] }
        })
    };
    let n: usize = so.iter().product();
    (0..n)
        .map(|mut flat| {
            let mut o = vec![0; so.len()];
            for i in (0..so.len()).rev() {
                o[i] = flat % so[i];
                flat /= so[i];
            }
            f(a[idx(sa, &o)], b[idx(sb, &o)])
        })
        .collect()
}

#[test]
fn broadcasting_add_and_mul() {
    let mut rng = StdRng::seed_from_u64(60);
    let (c, h, w) = (4, 5, 6);
    let mut t = BTreeMap::new();
    t.insert("k1".into(), float(&mut rng, vec![1, c, 1, w], -2.0, 2.0));
    t.insert("k2".into(), float(&mut rng, vec![w], -1.0, 1.0));
    t.insert("k3".into(), float(&mut rng, vec![c, h, w], -1.0, 1.0));
    let add = |constant: Option<&str>| Op::Add {
        constant: constant.map(String::from),
    };
    let mul = |constant: Option<&str>| Op::Mul {
        constant: constant.map(String::from),
    };
    let nodes = vec![
        node(Op::GlobalAvgPool, &[INPUT], "g"), // [c,1,1]
        node(add(None), &[INPUT, "g"], "a"),    // [c,h,w] + [c,1,1]
        node(mul(None), &["g", "a"], "b"),      // [c,1,1] * [c,h,w]
        node(mul(Some("k1")), &["b"], "c"),     // * [1,c,1,w]
        node(add(Some("k2")), &["c"], "d"),     // + [w]
        node(add(Some("k3")), &["g"], "e"),     // [c,1,1] + [c,h,w]
        node(add(None), &["d", "e"], "f"),
        node(Op::Flatten, &["f"], "fl"),
        node(Op::Sigmoid, &["fl"], "s"),
        node(mul(None), &["fl", "s"], "y"), // [F] * [F]
    ];
    let m = model(t.clone(), [c, h, w], nodes, "y".into());
    let (k1, k2, k3) = (t["k1"].to_f32(), t["k2"].to_f32(), t["k3"].to_f32());
    let chw = [c, h, w];
    for batch in [1, 4] {
        check_model(&m, batch, &mut rng, |x| {
            batched(x, batch, |s| {
                let g: Vec<f32> = s
                    .chunks(h * w)
                    .map(|p| p.iter().sum::<f32>() / (h * w) as f32)
                    .collect();
                let a = ref_broadcast(s, &chw, &g, &[c, 1, 1], &chw, |p, q| p + q);
                let b = ref_broadcast(&g, &[c, 1, 1], &a, &chw, &chw, |p, q| p * q);
                let cc = ref_broadcast(&b, &chw, &k1, &[c, 1, w], &chw, |p, q| p * q);
                let d = ref_broadcast(&cc, &chw, &k2, &[w], &chw, |p, q| p + q);
                let e = ref_broadcast(&g, &[c, 1, 1], &k3, &chw, &chw, |p, q| p + q);
                let f: Vec<f32> = d.iter().zip(&e).map(|(p, q)| p + q).collect();
                f.iter().map(|v| v * (1.0 / (1.0 + (-v).exp()))).collect()
            })
        });
    }
}

#[test]
fn activations_and_data_movement() {
    let mut rng = StdRng::seed_from_u64(70);
    let (c, h, w) = (3, 4, 5);
    let mut t = BTreeMap::new();
    let bn_op = bn(&mut rng, &mut t, "bn", c);
    let nodes = vec![
        node(Op::LeakyRelu { alpha: 0.1 }, &[INPUT], "a"),
        node(Op::HardSwish, &["a"], "b"),
        node(
            Op::HardSigmoid {
                alpha: 0.3,
                beta: 0.4,
            },
            &[INPUT],
            "c",
        ),
        node(Op::Concat, &["b", "c", INPUT], "d"), // 9 channels
        node(
            Op::PadChannels {
                before: 1,
                after: 2,
            },
            &["d"],
            "e",
        ), // 12 channels
        node(
            Op::Clip {
                min: None,
                max: Some(0.5),
            },
            &["e"],
            "f",
        ),
        node(Op::max_pool(1, 1), &[INPUT], "p"), // not fusable into BN
        node(bn_op, &["p"], "q"),                // standalone BN
        node(Op::Relu, &["q"], "r"),
        node(Op::Concat, &["f", "r"], "s"), // 15 channels
        node(Op::GlobalAvgPool, &["s"], "g"),
        node(Op::Flatten, &["g"], "fl"),
        node(Op::Softmax, &["fl"], "y"),
    ];
    let m = model(t.clone(), [c, h, w], nodes, "y".into());
    let hw = h * w;
    let hs = |v: f32| v * ((v / 6.0 + 0.5).clamp(0.0, 1.0));
    for batch in [1, 5] {
        check_model(&m, batch, &mut rng, |x| {
            batched(x, batch, |s| {
                let b: Vec<f32> = s
                    .iter()
                    .map(|&v| hs(if v >= 0.0 { v } else { 0.1 * v }))
                    .collect();
                let cc: Vec<f32> = s.iter().map(|&v| (0.3 * v + 0.4).clamp(0.0, 1.0)).collect();
                let mut e = vec![0f32; hw];
                e.extend(&b);
                e.extend(&cc);
                e.extend(s);
                e.extend(vec![0f32; 2 * hw]);
                let f = e.iter().map(|v| v.min(0.5));
                let r = ref_bn(s, c, &t, "bn").into_iter().map(|v| v.max(0.0));
                let all: Vec<f32> = f.chain(r).collect();
                let g: Vec<f32> = all
                    .chunks(hw)
                    .map(|p| p.iter().sum::<f32>() / hw as f32)
                    .collect();
                let mx = g.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                let z: f32 = g.iter().map(|v| (v - mx).exp()).sum();
                g.iter().map(|v| (v - mx).exp() / z).collect()
            })
        });
    }
}

#[test]
fn bad_constants_and_graphs_are_errors() {
    let mut rng = StdRng::seed_from_u64(90);
    let mut t = BTreeMap::new();
    t.insert("k".into(), float(&mut rng, vec![3, 1, 1], -1.0, 1.0));
    let nodes = vec![node(
        Op::Add {
            constant: Some("k".into()),
        },
        &[INPUT],
        "y",
    )];
    let good = model(t, [3, 4, 4], nodes, "y".into());
    assert!(Runtime::from_model(&good).is_ok());

    let mut m = good.clone();
    m.tensors.insert(
        "k".into(),
        Tensor::Float(twobit_format::FloatTensor::from_f32(
            vec![3, 1, 1],
            &[0.0, f32::NAN, 1.0],
        )),
    );
    assert!(matches!(
        Runtime::from_model(&m),
        Err(RuntimeError::NonFinite(_))
    ));

    let mut m = good.clone();
    m.tensors
        .insert("k".into(), float(&mut rng, vec![2, 1, 1], -1.0, 1.0));
    assert!(matches!(
        Runtime::from_model(&m),
        Err(RuntimeError::Shape(_))
    ));

    // A grouped conv whose groups do not divide the channels.
    let mut m = good.clone();
    m.tensors
        .insert("w".into(), packed(&mut rng, vec![4, 1, 3, 3], true, true));
    let arch = m.arch.as_mut().unwrap();
    arch.nodes = vec![node(
        Op::Conv {
            weight: "w".into(),
            bias: None,
            strides: [1, 1],
            pads: [0; 4],
            dilations: [1, 1],
            group: 2,
        },
        &[INPUT],
        "y",
    )];
    assert!(matches!(
        Runtime::from_model(&m),
        Err(RuntimeError::Shape(_))
    ));

    // The output value is not computed.
    let mut m = good.clone();
    m.arch.as_mut().unwrap().output = "nope".into();
    assert!(matches!(
        Runtime::from_model(&m),
        Err(RuntimeError::Shape(_))
    ));
}
