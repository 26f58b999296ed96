//! The built-in networks as graphs: their initial weights are the seeded PyTorch defaults
//! drawn in construction order (checked against [`Init`], an independent implementation of
//! the draws), their graphs are what their version-1 layer lists convert to, and
//! checkpoints written before they became graphs are refused with a clear reason.
mod common;

use burn::nn::BatchNorm;
use twobit_data::DatasetKind;
use twobit_format::{Arch, Layer, Normalize};
use twobit_train::layers::{tensor_values, Init};
use twobit_train::models::QatModel;
use twobit_train::{
    GraphNet, ModelKind, NoProgress, RunOptions, TrainConfig, TrainError, WeightScheme,
};

/// Named parameter values, in order.
type Params = Vec<(String, Vec<f32>)>;

fn bn_params(out: &mut Params, name: &str, bn: &BatchNorm) {
    assert_eq!(bn.epsilon, 1e-5, "{name}: eps");
    assert_eq!(bn.momentum, 0.1, "{name}: momentum");
    for (t, v) in [
        ("weight", tensor_values(bn.gamma.val())),
        ("bias", tensor_values(bn.beta.val())),
        ("running_mean", tensor_values(bn.running_mean.value())),
        ("running_var", tensor_values(bn.running_var.value())),
    ] {
        out.push((format!("{name}.{t}"), v));
    }
}

/// The network's parameters: each weight layer's weight and bias, then the batch norms.
fn params<M: QatModel>(m: &M) -> Params {
    let mut out = Vec::new();
    for (name, layer) in m.weight_layers() {
        out.push((format!("{name}.weight"), layer.weight_values()));
        if let Some(b) = layer.bias() {
            out.push((format!("{name}.bias"), tensor_values(b.val())));
        }
    }
    for (name, bn) in m.batch_norms() {
        bn_params(&mut out, &name, bn);
    }
    out
}

/// The same parameters built layer by layer with [`Init`] in the built-ins' construction
/// order (weight layers first, batch norms after, as [`params`] lists them).
fn reference(kind: ModelKind, input: [usize; 3], classes: usize, seed: u64) -> Params {
    let dev = twobit_train::default_device();
    let mut init = Init::new(seed, &dev);
    let (mut w, mut bns) = (Vec::new(), Vec::new());
    type Spec = [usize; 3];
    let conv = |init: &mut Init, w: &mut Params, name: &str, [ci, co, k]: Spec, s, p, bias| {
        let c = init.conv(ci, co, k, s, p, bias);
        w.push((format!("{name}.weight"), tensor_values(c.weight.val())));
        if let Some(b) = c.bias {
            w.push((format!("{name}.bias"), tensor_values(b.val())));
        }
    };
    let linear = |init: &mut Init, w: &mut Params, name: &str, i, o, bias: bool| {
        let l = init.linear(i, o);
        w.push((format!("{name}.weight"), tensor_values(l.weight.val())));
        // VGG-7's fc1 is built with a bias that is then dropped.
        if bias {
            let b = l.bias.expect("bias");
            w.push((format!("{name}.bias"), tensor_values(b.val())));
        }
    };
    match kind {
        ModelKind::Mlp => {
            linear(&mut init, &mut w, "fc1", input.iter().product(), 300, true);
            linear(&mut init, &mut w, "fc2", 300, 100, true);
            linear(&mut init, &mut w, "fc3", 100, classes, true);
        }
        ModelKind::Lenet5 => {
            conv(&mut init, &mut w, "conv1", [input[0], 20, 5], 1, 0, true);
            conv(&mut init, &mut w, "conv2", [20, 50, 5], 1, 0, true);
            linear(&mut init, &mut w, "fc1", 50 * 4 * 4, 500, true);
            linear(&mut init, &mut w, "fc2", 500, classes, true);
        }
        ModelKind::Vgg7 => {
            let mut c_in = input[0];
            for (i, c) in [128, 128, 256, 256, 512, 512].into_iter().enumerate() {
                let name = format!("conv{}", i + 1);
                conv(&mut init, &mut w, &name, [c_in, c, 3], 1, 1, false);
                bns.push((format!("bn{}", i + 1), init.batch_norm(c)));
                c_in = c;
            }
            let side = (input[1] / 8) * (input[2] / 8);
            linear(&mut init, &mut w, "fc1", 512 * side, 1024, false);
            bns.push(("bn_fc".into(), init.batch_norm(1024)));
            linear(&mut init, &mut w, "fc2", 1024, classes, true);
        }
        ModelKind::Resnet20 => {
            conv(&mut init, &mut w, "conv1", [input[0], 16, 3], 1, 1, false);
            bns.push(("bn1".into(), init.batch_norm(16)));
            let mut c_in = 16;
            for (stage, c) in [16, 32, 64].into_iter().enumerate() {
                for b in 0..3 {
                    let s = if stage > 0 && b == 0 { 2 } else { 1 };
                    let p = format!("layer{}.{b}", stage + 1);
                    let name = format!("{p}.conv1");
                    conv(&mut init, &mut w, &name, [c_in, c, 3], s, 1, false);
                    bns.push((format!("{p}.bn1"), init.batch_norm(c)));
                    let name = format!("{p}.conv2");
                    conv(&mut init, &mut w, &name, [c, c, 3], 1, 1, false);
                    bns.push((format!("{p}.bn2"), init.batch_norm(c)));
                    c_in = c;
                }
            }
            linear(&mut init, &mut w, "fc", 64, classes, true);
        }
        ModelKind::Graph => unreachable!(),
    }
    for (name, bn) in &bns {
        bn_params(&mut w, name, bn);
    }
    w
}

const BUILTINS: [(ModelKind, [usize; 3]); 4] = [
    (ModelKind::Mlp, [1, 28, 28]),
    (ModelKind::Lenet5, [1, 28, 28]),
    (ModelKind::Vgg7, [3, 32, 32]),
    (ModelKind::Resnet20, [3, 32, 32]),
];

#[test]
fn initial_weights_are_the_seeded_init_bit_for_bit() {
    let dev = twobit_train::default_device();
    for (kind, input) in BUILTINS {
        for seed in [1, 7] {
            let net = GraphNet::builtin(kind, input, 10, seed, &dev).unwrap();
            let (got, want) = (params(&net), reference(kind, input, 10, seed));
            let names = |p: &Params| p.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
            assert_eq!(names(&got), names(&want), "{kind}: tensor names");
            for ((name, a), (_, b)) in got.iter().zip(&want) {
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert!(bits(a) == bits(b), "{kind} seed {seed}: {name} differs");
            }
        }
    }
}

fn conv(name: &str, bias: bool, stride: usize, padding: usize) -> Layer {
    Layer::Conv2d {
        weight: format!("{name}.weight"),
        bias: bias.then(|| format!("{name}.bias")),
        stride,
        padding,
    }
}

fn linear(name: &str, bias: bool) -> Layer {
    Layer::Linear {
        weight: format!("{name}.weight"),
        bias: bias.then(|| format!("{name}.bias")),
    }
}

fn bn(name: &str) -> Layer {
    Layer::BatchNorm {
        weight: format!("{name}.weight"),
        bias: format!("{name}.bias"),
        running_mean: format!("{name}.running_mean"),
        running_var: format!("{name}.running_var"),
        eps: 1e-5,
    }
}

/// The version-1 layer list each built-in wrote into its files.
fn layers(kind: ModelKind) -> Vec<Layer> {
    let pool = || Layer::MaxPool2d {
        kernel: 2,
        stride: 2,
    };
    match kind {
        ModelKind::Mlp => vec![
            Layer::Flatten,
            linear("fc1", true),
            Layer::Relu,
            linear("fc2", true),
            Layer::Relu,
            linear("fc3", true),
        ],
        ModelKind::Lenet5 => vec![
            conv("conv1", true, 1, 0),
            Layer::Relu,
            pool(),
            conv("conv2", true, 1, 0),
            Layer::Relu,
            pool(),
            Layer::Flatten,
            linear("fc1", true),
            Layer::Relu,
            linear("fc2", true),
        ],
        ModelKind::Vgg7 => {
            let mut v = Vec::new();
            for i in 1..=6 {
                v.extend([
                    conv(&format!("conv{i}"), false, 1, 1),
                    bn(&format!("bn{i}")),
                ]);
                v.push(Layer::Relu);
                if i % 2 == 0 {
                    v.push(pool());
                }
            }
            v.extend([Layer::Flatten, linear("fc1", false), bn("bn_fc")]);
            v.extend([Layer::Relu, linear("fc2", true)]);
            v
        }
        ModelKind::Resnet20 => {
            let mut v = vec![conv("conv1", false, 1, 1), bn("bn1"), Layer::Relu];
            for (stage, c) in [16, 32, 64].into_iter().enumerate() {
                for b in 0..3 {
                    let s = if stage > 0 && b == 0 { 2 } else { 1 };
                    let p = format!("layer{}.{b}", stage + 1);
                    let body = vec![
                        conv(&format!("{p}.conv1"), false, s, 1),
                        bn(&format!("{p}.bn1")),
                        Layer::Relu,
                        conv(&format!("{p}.conv2"), false, 1, 1),
                        bn(&format!("{p}.bn2")),
                    ];
                    let shortcut = if s == 2 {
                        vec![Layer::PadSubsample {
                            stride: 2,
                            out_channels: c,
                        }]
                    } else {
                        Vec::new()
                    };
                    v.push(Layer::Residual { body, shortcut });
                    v.push(Layer::Relu);
                }
            }
            v.extend([Layer::GlobalAvgPool, linear("fc", true)]);
            v
        }
        ModelKind::Graph => unreachable!(),
    }
}

#[test]
fn graphs_are_the_version_1_layer_lists_converted() {
    for (kind, input) in BUILTINS {
        let model = twobit_train::models::builtin(kind, input, 10, 1).unwrap();
        let arch = model.arch.as_ref().unwrap();
        let norm = Normalize::identity(input[0]);
        let shape = |t: &str| Some(model.tensors.get(t)?.shape().to_vec());
        let want = Arch::from_layers(kind.name().into(), input, 10, norm, &layers(kind), &shape);
        assert_eq!(arch, &want, "{kind}");
        // Every tensor the graph references is in the model, and only those.
        let mut used: Vec<&str> = arch.nodes.iter().flat_map(|n| n.op.tensors()).collect();
        used.sort();
        let have: Vec<&str> = model.tensors.keys().map(String::as_str).collect();
        assert_eq!(used, have, "{kind}: tensors");
        arch.shapes(|t| Some(model.tensors.get(t)?.shape()))
            .unwrap();
    }
}

#[test]
fn too_small_inputs_and_graph_are_refused() {
    for (kind, input) in [
        (ModelKind::Lenet5, [1, 15, 28]),
        (ModelKind::Vgg7, [3, 7, 32]),
        (ModelKind::Resnet20, [3, 32, 3]),
    ] {
        let err = twobit_train::models::builtin(kind, input, 10, 1).unwrap_err();
        assert!(
            matches!(err, TrainError::InputShape { .. }),
            "{kind}: {err}"
        );
    }
    assert!(twobit_train::models::builtin(ModelKind::Graph, [1, 8, 8], 10, 1).is_err());
}

/// Rewrites a checkpoint's metadata section with `edit` (the layout: magic, then three
/// length-prefixed sections, metadata first).
fn edit_meta(path: &std::path::Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let bytes = std::fs::read(path).unwrap();
    let len = u64::from_le_bytes(bytes[8..16].try_into().unwrap()) as usize;
    let mut meta: serde_json::Value = serde_json::from_slice(&bytes[16..16 + len]).unwrap();
    edit(&mut meta);
    let meta = serde_json::to_vec(&meta).unwrap();
    let mut out = bytes[..8].to_vec();
    out.extend_from_slice(&(meta.len() as u64).to_le_bytes());
    out.extend_from_slice(&meta);
    out.extend_from_slice(&bytes[16 + len..]);
    std::fs::write(path, out).unwrap();
}

#[test]
#[cfg_attr(debug_assertions, ignore = "trains a network: run with --release")]
fn checkpoints_from_before_the_graphs_are_refused() {
    let data = common::synthetic(DatasetKind::FashionMnist, 32, 16, 4);
    let mut cfg = TrainConfig::new(ModelKind::Lenet5, WeightScheme::Fp);
    cfg.epochs = 2;
    cfg.batch_size = 16;
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("run.ckpt");
    let first = RunOptions {
        checkpoint: Some(ck.clone()),
        stop_after: Some(1),
        ..Default::default()
    };
    twobit_train::train(&cfg, &data, &first, &mut NoProgress).unwrap();
    let resume = RunOptions {
        checkpoint: Some(ck.clone()),
        resume: true,
        ..Default::default()
    };
    // This version's checkpoint resumes...
    let out = twobit_train::train(&cfg, &data, &resume, &mut NoProgress).unwrap();
    assert_eq!(out.epochs, 2);
    // ...one written by the built-in modules (no graph fingerprint; their record names the
    // fields conv1, fc1, ... instead of the graph's layer lists) is refused, saying why.
    twobit_train::train(&cfg, &data, &first, &mut NoProgress).unwrap();
    edit_meta(&ck, |m| {
        let s = m["settings"].as_array_mut().unwrap();
        s.retain(|v| !v.as_str().unwrap().starts_with("arch="));
    });
    let err = twobit_train::train(&cfg, &data, &resume, &mut NoProgress).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("built-in") && msg.contains("start the run again"),
        "{msg}"
    );
}
