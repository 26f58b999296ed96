//! Training runs on small synthetic data: one step of every model, file round trip with
//! identical logits, and resume equivalence.
mod common;

use twobit_data::DatasetKind;
use twobit_format::Tensor as FileTensor;
use twobit_quant::{Granularity, Scheme};
use twobit_train::export::load_file_weights;
use twobit_train::models::QatModel;
use twobit_train::qat::ForwardWeights;
use twobit_train::{
    GraphNet, ModelKind, NoProgress, RunOptions, TrainConfig, TrainData, Trained, Trainer,
    WeightScheme,
};

/// Trains `cfg.model` (built in) from the initial weights of `seed`.
fn build(cfg: &TrainConfig, data: &TrainData, opts: &RunOptions, seed: u64) -> Trained<GraphNet> {
    let t = Trainer::new(cfg, data).unwrap();
    let input = data.splits.train.shape;
    let net = GraphNet::builtin(cfg.model, input, data.classes, seed, &t.device).unwrap();
    t.run(net, opts, &mut NoProgress).unwrap()
}

/// A freshly initialised built-in network on the inference device.
fn fresh(kind: ModelKind, input: [usize; 3], seed: u64) -> GraphNet {
    GraphNet::builtin(kind, input, 10, seed, &twobit_train::default_device()).unwrap()
}

fn run_kind(cfg: &TrainConfig, data: &TrainData) -> twobit_train::TrainOutcome {
    twobit_train::train(cfg, data, &RunOptions::default(), &mut NoProgress).unwrap()
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "slow in debug: run with cargo test --release"
)]
fn every_model_trains_one_step_on_synthetic_data() {
    let cases = [
        (ModelKind::Mlp, DatasetKind::FashionMnist, "quat"),
        (ModelKind::Lenet5, DatasetKind::FashionMnist, "ttq"),
        (ModelKind::Vgg7, DatasetKind::Cifar10, "tern"),
        (ModelKind::Resnet20, DatasetKind::Cifar10, "quat-free"),
    ];
    for (model, kind, scheme) in cases {
        let data = common::synthetic(kind, 8, 4, 5);
        let mut cfg = TrainConfig::new(model, scheme.parse().unwrap());
        cfg.epochs = 1;
        cfg.batch_size = 8;
        cfg.granularity = Granularity::Channel;
        let out = run_kind(&cfg, &data);
        assert_eq!(out.logs.len(), 1);
        assert!(out.logs[0].train_loss.is_finite(), "{model}: loss");
        let packed = out
            .file
            .tensors
            .values()
            .filter(|t| matches!(t, FileTensor::Packed(_)))
            .count();
        assert!(packed >= 1, "{model}: no packed tensor");
        // The file encodes and decodes.
        let bytes = out.file.to_bytes().unwrap();
        assert_eq!(twobit_format::Model::from_bytes(&bytes).unwrap(), out.file);
    }
}

/// Loads the file's dequantized weights into a float model and compares its logits with the
/// trained model's evaluation logits.
fn assert_file_reproduces_logits<M: QatModel>(trained: &Trained<M>, fresh: M, data: &TrainData) {
    let bytes = trained.outcome.file.to_bytes().unwrap();
    let file = twobit_format::Model::from_bytes(&bytes).unwrap();
    let dev = twobit_train::default_device();
    let loaded = load_file_weights(fresh.valid(), &file, &dev).unwrap();
    let test = &data.splits.test;
    let n = test.len().min(16);
    let idx: Vec<usize> = (0..n).collect();
    let mut batcher = twobit_train::data::Batcher::new(data.kind.normalize());
    let (x, _, _) = batcher.batch(test, &idx, None, &dev);
    let a = trained.model.forward(x.clone(), &trained.eval.forward);
    let b = loaded.forward(x, &ForwardWeights::float());
    let diff: f32 = (a - b).abs().max().into_scalar();
    assert!(diff <= 1e-5, "file logits differ by {diff}");
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "slow in debug: run with cargo test --release"
)]
fn decompressed_file_gives_the_trained_logits() {
    // LeNet-5 quat per tensor; VGG-7 (batch norm) tern per channel, all layers quantized;
    // ResNet-20 TTQ.
    let fm = common::synthetic(DatasetKind::FashionMnist, 16, 16, 2);
    let mut cfg = TrainConfig::new(ModelKind::Lenet5, WeightScheme::Quant(Scheme::Quat));
    cfg.epochs = 1;
    cfg.batch_size = 8;
    let input = fm.splits.train.shape;
    let t = build(&cfg, &fm, &RunOptions::default(), cfg.seed);
    assert_file_reproduces_logits(&t, fresh(cfg.model, input, 9), &fm);

    let cf = common::synthetic(DatasetKind::Cifar10, 16, 16, 3);
    let input = cf.splits.train.shape;
    let mut cfg = TrainConfig::new(ModelKind::Vgg7, WeightScheme::Quant(Scheme::Tern));
    cfg.epochs = 1;
    cfg.batch_size = 8;
    cfg.granularity = Granularity::Channel;
    cfg.quantize_all = true;
    let t = build(&cfg, &cf, &RunOptions::default(), cfg.seed);
    assert_file_reproduces_logits(&t, fresh(cfg.model, input, 9), &cf);

    let mut cfg = TrainConfig::new(ModelKind::Resnet20, WeightScheme::Quant(Scheme::Ttq));
    cfg.epochs = 1;
    cfg.batch_size = 8;
    cfg.optimizer = twobit_train::OptimizerKind::Adam;
    let t = build(&cfg, &cf, &RunOptions::default(), cfg.seed);
    assert_file_reproduces_logits(&t, fresh(cfg.model, input, 9), &cf);
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "slow in debug: run with cargo test --release"
)]
fn resumed_run_matches_uninterrupted_run() {
    let data = common::synthetic(DatasetKind::FashionMnist, 64, 32, 4);
    let mut cfg = TrainConfig::new(ModelKind::Mlp, WeightScheme::Quant(Scheme::Quat));
    cfg.epochs = 3;
    cfg.batch_size = 16;
    let dir = tempfile::tempdir().unwrap();

    let full = build(&cfg, &data, &RunOptions::default(), cfg.seed);
    // Training itself is deterministic (same seed, same result).
    let again = build(&cfg, &data, &RunOptions::default(), cfg.seed);
    for (a, b) in full.outcome.logs.iter().zip(&again.outcome.logs) {
        assert_eq!(a.train_loss, b.train_loss, "rerun, epoch {}", a.epoch);
    }

    let ck = dir.path().join("run.ckpt");
    let first = RunOptions {
        checkpoint: Some(ck.clone()),
        stop_after: Some(1),
        ..Default::default()
    };
    let part = build(&cfg, &data, &first, cfg.seed);
    assert_eq!(part.outcome.logs.len(), 1);
    // The checkpoint carries quat's side per quantized layer (the middle one of three).
    let meta = twobit_train::checkpoint::read(&ck).unwrap().meta;
    let state = twobit_train::qat::QatState::from_bits(&meta.qat_state);
    assert!(state.prev(0).is_none() && state.prev(2).is_none());
    let rows = state.prev(1).expect("fc2's levels are checkpointed");
    assert_eq!(rows.len(), 1);
    assert!(twobit_quant::quat::Side::of(&rows[0]).is_some(), "{rows:?}");
    let second = RunOptions {
        checkpoint: Some(ck.clone()),
        resume: true,
        ..Default::default()
    };
    // The resumed process starts from a differently initialised model (another seed): the
    // checkpoint must overwrite everything.
    let resumed = build(&cfg, &data, &second, 777);
    assert_eq!(resumed.outcome.logs.len(), 3);
    // Epoch 1 comes from the checkpoint; the epochs after it continue bit for bit.
    assert_eq!(full.outcome.logs[0], {
        let mut l = resumed.outcome.logs[0].clone();
        l.images_per_second = full.outcome.logs[0].images_per_second;
        l.seconds = full.outcome.logs[0].seconds;
        l.quantize_seconds = full.outcome.logs[0].quantize_seconds;
        l
    });
    for (a, b) in full.outcome.logs.iter().zip(&resumed.outcome.logs).skip(1) {
        assert_eq!(a.train_loss, b.train_loss, "epoch {}", a.epoch);
        assert_eq!(a.test_accuracy, b.test_accuracy, "epoch {}", a.epoch);
    }
    assert_eq!(full.outcome.file.tensors, resumed.outcome.file.tensors);

    // A checkpoint from another configuration is refused.
    let mut wrong = cfg.clone();
    wrong.seed = 99;
    let err = twobit_train::train(&wrong, &data, &second, &mut NoProgress)
        .expect_err("mismatched checkpoint accepted");
    assert!(err.to_string().contains("seed"), "{err}");
}

/// A checkpoint that cannot be written (here a directory stands at its path) fails the run
/// with a clear error and leaves no temporary file (it used to leave `run.ckpt.tmp`).
#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "slow in debug: run with cargo test --release"
)]
fn failed_checkpoint_write_leaves_no_temporary_file() {
    let data = common::synthetic(DatasetKind::FashionMnist, 32, 16, 4);
    let mut cfg = TrainConfig::new(ModelKind::Mlp, WeightScheme::Quant(Scheme::Tern));
    cfg.epochs = 1;
    cfg.batch_size = 16;
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("run.ckpt");
    std::fs::create_dir(&ck).unwrap();
    let opts = RunOptions {
        checkpoint: Some(ck),
        ..Default::default()
    };
    let Err(e) = twobit_train::train(&cfg, &data, &opts, &mut NoProgress) else {
        panic!("a directory cannot be replaced by a checkpoint");
    };
    assert!(e.to_string().contains("not a regular file"), "{e}");
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["run.ckpt"]);
}
