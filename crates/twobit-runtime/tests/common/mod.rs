//! Helpers shared by the whole-network tests: random tensors, graph models, and running a
//! model through every kernel and the fp32 path against a reference.
#![allow(dead_code)]
use rand::rngs::StdRng;
use rand::Rng;
use std::collections::BTreeMap;
use twobit_format::{
    Arch, FloatDtype, FloatTensor, Model, Node, Normalize, Op, PackedTensor, Tensor,
};
use twobit_quant::{Granularity, Levels, Scheme};
use twobit_runtime::{Kernel, Runtime};

/// Random 2-bit weights: quaternary (4 levels) or ternary, per-channel or per-tensor levels.
pub fn packed(rng: &mut StdRng, shape: Vec<usize>, quat: bool, per_channel: bool) -> Tensor {
    let n: usize = shape.iter().product();
    let mut codes = vec![0u8; n.div_ceil(4)];
    for i in 0..n {
        let c: u8 = rng.random_range(0..if quat { 4 } else { 3 });
        codes[i / 4] |= c << (2 * (i % 4));
    }
    let groups = if per_channel { shape[0] } else { 1 };
    let levels = (0..groups)
        .map(|_| {
            let (a, b) = (
                rng.random_range(0.05..0.5f32),
                rng.random_range(0.05..0.5f32),
            );
            if quat {
                Levels {
                    values: [-a - b, -a * 0.3, b, a + b],
                    thresholds: [-0.6, -0.1, 0.4],
                }
            } else {
                Levels {
                    values: [-a, 0.0, b, b],
                    thresholds: [-0.5, 0.5, f32::INFINITY],
                }
            }
        })
        .collect();
    Tensor::Packed(PackedTensor {
        scheme: if quat { Scheme::QuatFree } else { Scheme::Tern },
        granularity: if per_channel {
            Granularity::Channel
        } else {
            Granularity::Tensor
        },
        shape,
        codes,
        levels,
        origin_dtype: FloatDtype::F32,
    })
}

/// Uniform random float tensor.
pub fn float(rng: &mut StdRng, shape: Vec<usize>, lo: f32, hi: f32) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(lo..hi)).collect();
    Tensor::Float(FloatTensor::from_f32(shape, &v))
}

/// Batch-norm tensors `{name}.weight` etc. for `c` channels, and the op.
pub fn bn(rng: &mut StdRng, t: &mut BTreeMap<String, Tensor>, name: &str, c: usize) -> Op {
    t.insert(format!("{name}.weight"), float(rng, vec![c], 0.5, 1.5));
    t.insert(format!("{name}.bias"), float(rng, vec![c], -0.2, 0.2));
    t.insert(
        format!("{name}.running_mean"),
        float(rng, vec![c], -0.2, 0.2),
    );
    t.insert(format!("{name}.running_var"), float(rng, vec![c], 0.5, 2.0));
    Op::BatchNorm {
        weight: format!("{name}.weight"),
        bias: format!("{name}.bias"),
        running_mean: format!("{name}.running_mean"),
        running_var: format!("{name}.running_var"),
        eps: 1e-5,
    }
}

/// A model of `nodes` over an input of shape `input`, identity normalisation; `classes` is
/// the output value's size.
pub fn model(
    tensors: BTreeMap<String, Tensor>,
    input: [usize; 3],
    nodes: Vec<Node>,
    output: String,
) -> Model {
    let mut arch = Arch {
        name: "test".into(),
        input,
        classes: 0,
        normalize: Normalize::identity(input[0]),
        nodes,
        output,
        input_ranges: Default::default(),
    };
    let shapes = arch
        .shapes(|n| tensors.get(n).map(Tensor::shape))
        .expect("test graph is valid");
    arch.classes = shapes[&arch.output].iter().product();
    Model {
        tensors,
        arch: Some(arch),
        provenance: BTreeMap::new(),
    }
}

/// `|got - want| <= tol·(1 + |want|)` elementwise.
pub fn close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what}: element {i}: got {g}, want {w}"
        );
    }
}

/// Runs `model` on random input in [-1, 1] through every available packed kernel and the
/// dequantized fp32 path, comparing each with `reference(x)` (relative tolerance 1e-4).
pub fn check_model(
    model: &Model,
    batch: usize,
    rng: &mut StdRng,
    reference: impl Fn(&[f32]) -> Vec<f32>,
) {
    let mut rt = Runtime::from_model(model).expect("model compiles");
    let x: Vec<f32> = (0..batch * rt.input_len())
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let want = reference(&x);
    for k in Kernel::all_available() {
        rt.set_kernel(k);
        close(
            &rt.forward(&x, batch),
            &want,
            1e-4,
            &format!("{k:?} batch {batch}"),
        );
    }
    let fp = rt.dequantized();
    close(
        &fp.forward(&x, batch),
        &want,
        1e-4,
        &format!("fp32 batch {batch}"),
    );
}

/// A node (name and output derived from `out`).
pub fn node(op: Op, inputs: &[&str], out: &str) -> Node {
    Node {
        name: format!("n_{out}"),
        op,
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
        output: out.into(),
    }
}

/// Applies `f` to each sample of a batch and concatenates the results.
pub fn batched(x: &[f32], batch: usize, f: impl Fn(&[f32]) -> Vec<f32>) -> Vec<f32> {
    x.chunks(x.len() / batch).flat_map(f).collect()
}

/// ONNX output length: floor (or ceil, dropping a window that starts in the end padding).
pub fn out_len(len: usize, k: usize, s: usize, p: (usize, usize), d: usize, ceil: bool) -> usize {
    let room = len + p.0 + p.1 - (d * (k - 1) + 1);
    let mut o = if ceil {
        room.div_ceil(s) + 1
    } else {
        room / s + 1
    };
    if ceil && (o - 1) * s >= len + p.0 {
        o -= 1;
    }
    o
}

#[derive(Clone, Copy)]
pub struct ConvP {
    pub o: usize,
    pub k: [usize; 2],
    pub strides: [usize; 2],
    pub pads: [usize; 4],
    pub dil: [usize; 2],
    pub group: usize,
}

/// Naive grouped convolution of one sample `[c, h, w]` (weight `[o, c/group, kh, kw]`).
pub fn ref_conv(x: &[f32], [c, h, w]: [usize; 3], wt: &[f32], bias: &[f32], p: ConvP) -> Vec<f32> {
    let ([kh, kw], [sh, sw], [dh, dw]) = (p.k, p.strides, p.dil);
    let [pt, pl, pb, pr] = p.pads;
    let oh = out_len(h, kh, sh, (pt, pb), dh, false);
    let ow = out_len(w, kw, sw, (pl, pr), dw, false);
    let (cg, og) = (c / p.group, p.o / p.group);
    let mut y = vec![0f32; p.o * oh * ow];
    for oc in 0..p.o {
        let gi = oc / og;
        for oy in 0..oh {
            for ox in 0..ow {
                let mut s = bias[oc];
                for ci in 0..cg {
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let iy = (oy * sh + ky * dh) as isize - pt as isize;
                            let ix = (ox * sw + kx * dw) as isize - pl as isize;
                            if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                continue;
                            }
                            let xv = x[((gi * cg + ci) * h + iy as usize) * w + ix as usize];
                            s += wt[((oc * cg + ci) * kh + ky) * kw + kx] * xv;
                        }
                    }
                }
                y[(oc * oh + oy) * ow + ox] = s;
            }
        }
    }
    y
}

/// Inference batch norm over `c` channels of `inner` values each.
pub fn ref_bn(x: &[f32], c: usize, t: &BTreeMap<String, Tensor>, name: &str) -> Vec<f32> {
    let f = |s: &str| t[&format!("{name}.{s}")].to_f32();
    let (g, b, m, v) = (f("weight"), f("bias"), f("running_mean"), f("running_var"));
    let inner = x.len() / c;
    (0..x.len())
        .map(|i| {
            let ch = i / inner;
            g[ch] * (x[i] - m[ch]) / (v[ch] + 1e-5).sqrt() + b[ch]
        })
        .collect()
}

/// Convolution attributes.
pub fn cp(
    o: usize,
    k: [usize; 2],
    strides: [usize; 2],
    pads: [usize; 4],
    dil: [usize; 2],
    group: usize,
) -> ConvP {
    ConvP {
        o,
        k,
        strides,
        pads,
        dil,
        group,
    }
}

/// A conv -> bn -> relu -> conv -> relu -> flatten -> linear network, and its first layer
/// alone.
pub fn conv_net(rng: &mut StdRng) -> (Model, Model) {
    let mut t = BTreeMap::new();
    t.insert(
        "c.weight".into(),
        packed(rng, vec![12, 3, 3, 3], false, true),
    );
    t.insert(
        "d.weight".into(),
        packed(rng, vec![16, 12, 3, 3], true, true),
    );
    t.insert(
        "fc.weight".into(),
        packed(rng, vec![10, 16 * 5 * 5], false, false),
    );
    let bn_op = bn(rng, &mut t, "bn", 12);
    let nodes = vec![
        node(
            Op::conv("c.weight".into(), None, 1, 1),
            &[twobit_format::graph::INPUT],
            "a",
        ),
        node(bn_op, &["a"], "b"),
        node(Op::Relu, &["b"], "c"),
    ];
    let first = model(t.clone(), [3, 10, 10], nodes.clone(), "c".into());
    let mut more = nodes;
    more.push(node(Op::conv("d.weight".into(), None, 2, 1), &["c"], "d"));
    more.push(node(Op::Relu, &["d"], "e"));
    more.push(node(Op::Flatten, &["e"], "f"));
    let fc = Op::Linear {
        weight: "fc.weight".into(),
        bias: None,
    };
    more.push(node(fc, &["f"], "y"));
    (first, model(t, [3, 10, 10], more, "y".into()))
}
