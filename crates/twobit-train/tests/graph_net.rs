//! Training a network graph: a trained LeNet-5's file reloaded as a graph, every operator against
//! the 2-bit runtime, QAT and export of a graph, and its quantization plan.
mod common;

use burn::tensor::{Device, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use twobit_data::{Dataset, DatasetKind, Splits};
use twobit_format::graph::INPUT;
use twobit_format::{Arch, Builder, FloatTensor, Model, Normalize, Op, Tensor as FileTensor};
use twobit_quant::{Granularity, Scheme};
use twobit_train::layers::tensor_values;
use twobit_train::models::QatModel;
use twobit_train::qat::{ForwardWeights, QatPlan};
use twobit_train::{
    GraphInit, GraphNet, ModelKind, NoProgress, RunOptions, TrainConfig, TrainData, Trainer,
    WeightScheme,
};

fn inner() -> Device {
    twobit_train::default_device()
}

fn random(n: usize, rng: &mut StdRng, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-scale..scale)).collect()
}

fn close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol * (1.0 + y.abs()),
            "{what}[{i}]: {x} vs {y}"
        );
    }
}

#[test]
#[cfg_attr(debug_assertions, ignore = "trains a network: run with --release")]
fn trained_lenet5_file_reloads_with_its_logits() {
    let data = common::synthetic(DatasetKind::FashionMnist, 256, 64, 3);
    let mut cfg = TrainConfig::new(ModelKind::Lenet5, WeightScheme::Quant(Scheme::Quat));
    cfg.epochs = 1;
    cfg.batch_size = 64;
    let t = Trainer::new(&cfg, &data).unwrap();
    let m = GraphNet::builtin(ModelKind::Lenet5, [1, 28, 28], 10, 1, &t.device).unwrap();
    let trained = t.run(m, &RunOptions::default(), &mut NoProgress).unwrap();
    let file = &trained.outcome.file;
    assert!(file
        .tensors
        .values()
        .any(|t| matches!(t, FileTensor::Packed(_))));
    let net = GraphNet::from_model(file, &inner()).unwrap();
    let mut rng = StdRng::seed_from_u64(5);
    let xs = random(4 * 784, &mut rng, 2.0);
    let x = Tensor::<4>::from_data(TensorData::new(xs, [4, 1, 28, 28]), &inner());
    let want = tensor_values(trained.model.forward(x.clone(), &trained.eval.forward));
    let got = tensor_values(net.forward(x, &ForwardWeights::float()));
    close(&got, &want, 1e-5, "logits");
}

/// A graph using every operator, input [1, 12, 12], 10 classes; tensors random, batch-norm
/// statistics non-trivial.
fn every_op_model(seed: u64) -> Model {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut tensors = BTreeMap::new();
    let mut add = |name: &str, shape: Vec<usize>, v: Vec<f32>| {
        tensors.insert(
            name.to_string(),
            FileTensor::Float(FloatTensor::from_f32(shape, &v)),
        );
        name.to_string()
    };
    let mut t = |name: &str, shape: &[usize], scale: f32| {
        let n = shape.iter().product();
        let v = random(n, &mut rng, scale);
        add(name, shape.to_vec(), v)
    };
    let conv =
        |w: String, b: Option<String>, s: [usize; 2], p: [usize; 4], d: [usize; 2], g| Op::Conv {
            weight: w,
            bias: b,
            strides: s,
            pads: p,
            dilations: d,
            group: g,
        };
    let mut b = Builder::default();
    let c1 = conv(
        t("c1.weight", &[8, 1, 3, 3], 0.5),
        Some(t("c1.bias", &[8], 0.1)),
        [1, 1],
        [0, 1, 2, 1],
        [1, 1],
        1,
    );
    let x = b.then(c1, INPUT.to_string());
    let bn = |b: &mut Builder,
              x: String,
              name: &str,
              c: usize,
              t: &mut dyn FnMut(&str, &[usize], f32) -> String| {
        let op = Op::BatchNorm {
            weight: t(&format!("{name}.weight"), &[c], 1.0),
            bias: t(&format!("{name}.bias"), &[c], 0.5),
            running_mean: t(&format!("{name}.running_mean"), &[c], 0.3),
            running_var: t(&format!("{name}.running_var"), &[c], 0.2),
            eps: 1e-5,
        };
        b.then(op, x)
    };
    let x = bn(&mut b, x, "bn1", 8, &mut t);
    let x = b.then(Op::Relu, x);
    let dw = conv(
        t("dw.weight", &[8, 1, 3, 3], 0.5),
        None,
        [2, 1],
        [1; 4],
        [1, 1],
        8,
    );
    let x = b.then(dw, x);
    let x = b.then(Op::LeakyRelu { alpha: 0.1 }, x);
    let g = conv(
        t("g.weight", &[8, 4, 3, 3], 0.3),
        Some(t("g.bias", &[8], 0.1)),
        [1, 1],
        [2; 4],
        [2, 2],
        2,
    );
    let x = b.then(g, x);
    let x = b.then(Op::HardSwish, x);
    let mp = Op::MaxPool {
        kernel: [3, 3],
        strides: [2, 2],
        pads: [1; 4],
        dilations: [1, 1],
        ceil_mode: true,
    };
    let x = b.then(mp, x); // [8, 4, 7]
    let x = b.then(
        Op::Clip {
            min: Some(0.0),
            max: Some(6.0),
        },
        x,
    );
    let ap = Op::AvgPool {
        kernel: [2, 2],
        strides: [1, 1],
        pads: [1, 0, 1, 0],
        ceil_mode: false,
        count_include_pad: false,
    };
    let a = b.then(ap, x); // [8, 5, 6]
    let c4 = conv(
        t("c4.weight", &[8, 8, 1, 1], 0.4),
        None,
        [1, 1],
        [0; 4],
        [1, 1],
        1,
    );
    let r = b.then(c4, a.clone());
    let a = b.push(Op::Add { constant: None }, vec![a, r.clone()]);
    // Squeeze-and-excitation: global pool, 1x1 conv, hard sigmoid, broadcast product.
    let s = b.then(Op::GlobalAvgPool, a.clone());
    let c5 = conv(
        t("c5.weight", &[8, 8, 1, 1], 0.4),
        Some(t("c5.bias", &[8], 0.1)),
        [1, 1],
        [0; 4],
        [1, 1],
        1,
    );
    let s = b.then(c5, s);
    let s = b.then(
        Op::HardSigmoid {
            alpha: 0.2,
            beta: 0.5,
        },
        s,
    );
    let a = b.push(Op::Mul { constant: None }, vec![a, s]);
    let a = b.then(
        Op::Mul {
            constant: Some(t("scale", &[8, 1, 1], 1.0)),
        },
        a,
    );
    let a = b.then(
        Op::Add {
            constant: Some(t("shift", &[1, 8, 1, 1], 0.5)),
        },
        a,
    );
    let r = b.then(Op::Sigmoid, r);
    let x = b.push(Op::Concat, vec![a, r]); // [16, 5, 6]
    let ap2 = Op::AvgPool {
        kernel: [3, 3],
        strides: [2, 2],
        pads: [1; 4],
        ceil_mode: true,
        count_include_pad: true,
    };
    let x = b.then(ap2, x); // [16, 3, 4]
    let x = b.then(
        Op::PadChannels {
            before: 2,
            after: 3,
        },
        x,
    ); // [21, 3, 4]
    let x = bn(&mut b, x, "bn2", 21, &mut t);
    let x = b.then(Op::Flatten, x);
    let l1 = Op::Linear {
        weight: t("fc1.weight", &[16, 252], 0.1),
        bias: Some(t("fc1.bias", &[16], 0.1)),
    };
    let x = b.then(l1, x);
    let x = b.then(Op::Relu, x);
    let l2 = Op::Linear {
        weight: t("fc2.weight", &[10, 16], 0.3),
        bias: Some(t("fc2.bias", &[10], 0.1)),
    };
    let x = b.then(l2, x);
    let output = b.then(Op::Softmax, x);
    // Variances must be positive.
    for name in ["bn1.running_var", "bn2.running_var"] {
        if let Some(FileTensor::Float(f)) = tensors.get_mut(name) {
            let v: Vec<f32> = f.to_f32().iter().map(|v| v.abs() + 0.5).collect();
            *f = FloatTensor::from_f32(f.shape.clone(), &v);
        }
    }
    let arch = Arch {
        name: "every-op".into(),
        input: [1, 12, 12],
        classes: 10,
        normalize: Normalize::identity(1),
        nodes: b.nodes,
        output,
        input_ranges: Default::default(),
    };
    Model {
        tensors,
        arch: Some(arch),
        provenance: BTreeMap::new(),
    }
}

fn runtime_output(file: &Model, x: &[f32], batch: usize) -> Vec<f32> {
    let rt = twobit_runtime::Runtime::from_model(file).expect("the runtime loads the graph");
    rt.forward(x, batch)
}

#[test]
fn every_op_graph_matches_the_runtime() {
    let model = every_op_model(11);
    let net = GraphNet::from_model(&model, &inner()).unwrap();
    let mut rng = StdRng::seed_from_u64(2);
    let xs = random(3 * 144, &mut rng, 1.0);
    let x = Tensor::<4>::from_data(TensorData::new(xs.clone(), [3, 1, 12, 12]), &inner());
    let got = tensor_values(net.forward_full(x.clone(), &ForwardWeights::float()));
    let want = runtime_output(&model, &xs, 3);
    close(&got, &want, 1e-4, "softmax output");
    // The training forward leaves the final softmax out: its softmax is the output.
    let logits = net.forward(x, &ForwardWeights::float());
    let soft = tensor_values(burn::tensor::activation::softmax(logits, 1));
    close(&soft, &want, 1e-4, "softmax of logits");
}

/// Tiny dataset of [1, 12, 12] images whose label is their brightness.
fn tiny_data(n: usize, seed: u64) -> TrainData {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut make = |n: usize| {
        let (mut images, mut labels) = (Vec::new(), Vec::new());
        for _ in 0..n {
            let l: u8 = rng.random_range(0..10);
            for _ in 0..144 {
                images.push((l as u32 * 20 + rng.random_range(0..60u32)).min(255) as u8);
            }
            labels.push(l);
        }
        Dataset {
            shape: [1, 12, 12],
            images,
            labels,
        }
    };
    let (train, test) = (make(n), make(n / 2));
    TrainData::new(DatasetKind::Mnist, Splits { train, test })
}

#[test]
#[cfg_attr(debug_assertions, ignore = "trains a network: run with --release")]
fn every_op_graph_trains_with_tern_and_exports_its_last_evaluation() {
    let model = every_op_model(12);
    let data = tiny_data(128, 4);
    let mut cfg = TrainConfig::new(ModelKind::Graph, WeightScheme::Quant(Scheme::Tern));
    cfg.epochs = 4;
    cfg.batch_size = 16;
    cfg.optimizer = twobit_train::OptimizerKind::Adam;
    cfg.normalize = Some(Normalize::identity(1));
    let t = Trainer::new(&cfg, &data).unwrap();
    let net = GraphNet::from_model(&model, &t.device).unwrap();
    let trained = t.run(net, &RunOptions::default(), &mut NoProgress).unwrap();
    let logs = &trained.outcome.logs;
    assert!(
        logs.last().unwrap().train_loss < logs[0].train_loss,
        "loss did not decrease: {logs:?}"
    );
    let file = &trained.outcome.file;
    // The file references exactly its tensors, constants included.
    let arch = file.arch.as_ref().unwrap();
    let mut used: Vec<&str> = arch.nodes.iter().flat_map(|n| n.op.tensors()).collect();
    used.sort();
    used.dedup();
    assert_eq!(
        used,
        file.tensors.keys().map(String::as_str).collect::<Vec<_>>()
    );
    // Quantized tensors decode to exactly the last evaluation's forward weights.
    let names = trained.model.weight_tensor_names();
    let mut packed = 0;
    for (slot, (w, _)) in names.iter().enumerate() {
        match (&trained.eval.quantized[slot], file.tensors.get(w)) {
            (Some(q), Some(FileTensor::Packed(p))) => {
                packed += 1;
                let fw = trained
                    .eval
                    .forward
                    .rank4(slot)
                    .map(tensor_values)
                    .or_else(|| trained.eval.forward.rank2(slot).map(tensor_values));
                assert_eq!(p.dequantize(), twobit_quant::dequantize(q), "{w}");
                assert_eq!(Some(p.dequantize()), fw, "{w}");
            }
            (None, Some(FileTensor::Float(_))) => {}
            other => panic!("{w}: {other:?}"),
        }
    }
    assert_eq!(packed, 4, "g, c4, c5, fc1 are quantized");
    // The file runs in the runtime as the module ran it.
    let mut rng = StdRng::seed_from_u64(3);
    let xs = random(2 * 144, &mut rng, 1.0);
    let x = Tensor::<4>::from_data(TensorData::new(xs.clone(), [2, 1, 12, 12]), &inner());
    let got = tensor_values(trained.model.forward_full(x, &trained.eval.forward));
    close(&got, &runtime_output(file, &xs, 2), 1e-4, "trained output");
}

#[test]
fn graph_plan_keeps_depthwise_first_last_and_keep_matches_float() {
    let model = every_op_model(13);
    let net = GraphNet::from_model(&model, &inner()).unwrap();
    let names: Vec<String> = net
        .weight_tensor_names()
        .into_iter()
        .map(|(w, _)| w)
        .collect();
    assert_eq!(
        names,
        [
            "c1.weight",
            "dw.weight",
            "g.weight",
            "c4.weight",
            "c5.weight",
            "fc1.weight",
            "fc2.weight"
        ]
    );
    let tern = WeightScheme::Quant(Scheme::Tern);
    let plan = QatPlan::for_model(tern, Granularity::Tensor, false, &[], &net);
    assert_eq!(
        plan.quantized,
        [false, false, true, true, true, true, false]
    );
    let keep = [regex::Regex::new("^c[45]\\.").unwrap()];
    let plan = QatPlan::for_model(tern, Granularity::Tensor, false, &keep, &net);
    assert_eq!(
        plan.quantized,
        [false, false, true, false, false, true, false]
    );
    let plan = QatPlan::for_model(tern, Granularity::Tensor, true, &keep, &net);
    assert_eq!(plan.quantized, [true, true, true, false, false, true, true]);
    let plan = QatPlan::for_model(WeightScheme::Fp, Granularity::Tensor, true, &[], &net);
    assert!(plan.quantized.iter().all(|q| !q));
}

#[test]
#[cfg_attr(debug_assertions, ignore = "trains a network: run with --release")]
fn train_graph_resumes_bit_exactly_only_into_the_same_graph() {
    let mut start = every_op_model(14);
    let norm = Normalize {
        mean: vec![0.5],
        std: vec![0.25],
    };
    start.arch.as_mut().unwrap().normalize = norm.clone();
    let data = tiny_data(64, 5);
    let mut cfg = TrainConfig::new(ModelKind::Graph, WeightScheme::Quant(Scheme::Quat));
    cfg.epochs = 2;
    cfg.batch_size = 16;
    cfg.lr = Some(0.01);
    let run = |opts: &RunOptions, start: &Model, init| {
        twobit_train::train_graph(&cfg, &data, start, init, opts, &mut NoProgress)
    };
    let whole = run(&RunOptions::default(), &start, GraphInit::Pretrained).unwrap();
    // The file's own normalisation is used and written.
    assert_eq!(whole.file.arch.as_ref().unwrap().normalize, norm);
    let dir = tempfile::tempdir().unwrap();
    let mut opts = RunOptions {
        checkpoint: Some(dir.path().join("ck")),
        stop_after: Some(1),
        ..Default::default()
    };
    run(&opts, &start, GraphInit::Pretrained).unwrap();
    // Another graph (one attribute differs) refuses the checkpoint.
    let mut other = start.clone();
    for n in &mut other.arch.as_mut().unwrap().nodes {
        if let Op::LeakyRelu { alpha } = &mut n.op {
            *alpha = 0.2;
        }
    }
    opts.resume = true;
    opts.stop_after = None;
    let e = run(&opts, &other, GraphInit::Pretrained).unwrap_err();
    assert!(e.to_string().contains("arch="), "{e}");
    // The same graph resumes (from any starting weights) to the uninterrupted result.
    let resumed = run(&opts, &start, GraphInit::Random).unwrap();
    assert_eq!(resumed.file.tensors, whole.file.tensors);
    assert_eq!(resumed.test_accuracy, whole.test_accuracy);
}
