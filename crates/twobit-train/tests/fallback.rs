//! The device-neutral path: with twobit's own operations switched off
//! (`twobit_train::fast::set_enabled(false)`: burn's convolution, batch norm, ReLU and max
//! pool, what every GPU device runs), training on flex gives the CPU path's results.
//! ResNet-20 covers convolutions, batch norm (+ReLU), the residual add, the option-A
//! shortcut, global average pooling and the linear layer; VGG-7 the fused ReLU + 2x2 max pool
//! and linear layers with batch norm; each in `fp` and `tern`.
//!
//! `fp` is compared tightly: after one step (three data sets) every parameter and running
//! statistic within 2e-5 of the tensor's largest value (measured: at most 7e-6), and the mean
//! loss over three steps within 1e-5 (measured: 3e-7). The two paths round differently (other
//! summation orders; batch statistics in f64 against f32), and where a max pool has a near
//! tie, a ReLU input sits at 0 or a weight at a `tern` threshold, a rounding difference becomes
//! another gradient route or code; so weights drift apart over steps (1e-2 after three) while
//! the losses stay together. `tern` meets such points in the first step: a channel whose
//! ternary weights make its batch-norm input degenerate puts the fused ReLU on its kink, each
//! path takes its own subgradient there, and the difference spreads to the layers below
//! (measured after one step: the loss equal to 2e-7, weights within 4e-2 of their scale,
//! the mean loss over three steps within 2 %). So `tern` checks the first forward tightly and
//! the rest loosely: a wrong operation would be off by far more. No augmentation: random crop's
//! zero borders make constant regions, exact ties in the max pool.
//!
//! The quantizer's round trip between device tensors and `&[f32]` is tested in `tests/qat.rs`
//! (`ste_forward_equals_fake_quantize_bit_for_bit...`), on whatever device the build trains on.
mod common;

use std::collections::BTreeMap;
use std::sync::Mutex;
use twobit_data::DatasetKind;
use twobit_format::Tensor as FileTensor;
use twobit_train::{
    fast, ModelKind, NoProgress, RunOptions, TrainConfig, TrainData, TrainOutcome, WeightScheme,
};

/// The switch is process-wide: one run at a time flips it.
static SWITCH: Mutex<()> = Mutex::new(());

fn run(cfg: &TrainConfig, data: &TrainData, fast_ops: bool) -> TrainOutcome {
    let _guard = SWITCH.lock().unwrap_or_else(|e| e.into_inner());
    fast::set_enabled(fast_ops);
    let out = twobit_train::train(cfg, data, &RunOptions::default(), &mut NoProgress);
    fast::set_enabled(true);
    out.unwrap()
}

/// Every float tensor of the file and, with `latent`, the float shadow weights of the
/// quantized layers, by name (packed codes are left out: a weight at a threshold flips).
fn tensors(out: &TrainOutcome, latent: bool) -> BTreeMap<String, Vec<f32>> {
    let mut m = BTreeMap::new();
    for (model, tag) in [(&out.file, "file"), (&out.latent, "latent")] {
        if tag == "latent" && !latent {
            continue;
        }
        for (name, t) in &model.tensors {
            if let FileTensor::Float(f) = t {
                m.insert(format!("{tag}:{name}"), f.to_f32());
            }
        }
    }
    m
}

/// `got` within `rel` of `want`, relative to the tensor's largest magnitude.
fn close(name: &str, got: &[f32], want: &[f32], rel: f32) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    let scale = want.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    let worst = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        worst <= rel * scale,
        "{name}: max difference {worst} (scale {scale})"
    );
}

fn config(model: ModelKind, scheme: &str) -> TrainConfig {
    let mut cfg = TrainConfig::new(model, scheme.parse::<WeightScheme>().unwrap());
    cfg.epochs = 1;
    cfg.batch_size = 8;
    // No crop: its zero borders give constant regions, exact ties in the max pool.
    cfg.augment = Some(twobit_data::Augment::NONE);
    cfg
}

/// One training step (8 images) with and without the fast operations, for three data sets:
/// the loss (the forward on the initial weights) to 1e-6, every tensor to `rel` of its scale.
fn one_step(model: ModelKind, scheme: &str, rel: f32) {
    let cfg = config(model, scheme);
    for seed in 1..=3 {
        let data = common::synthetic(DatasetKind::Cifar10, 8, 8, seed);
        let (f, b) = (run(&cfg, &data, true), run(&cfg, &data, false));
        let what = format!("{model} {scheme} data {seed}");
        let (lf, lb) = (f.logs[0].train_loss, b.logs[0].train_loss);
        assert!(
            (lf - lb).abs() <= 1e-6 * lb.abs(),
            "{what}: loss {lf} (fast) against {lb} (burn)"
        );
        let (tf, tb) = (tensors(&f, scheme != "fp"), tensors(&b, scheme != "fp"));
        assert_eq!(
            tf.keys().collect::<Vec<_>>(),
            tb.keys().collect::<Vec<_>>(),
            "{what}: tensor names"
        );
        assert!(!tb.is_empty(), "{what}: no tensors");
        for (name, want) in &tb {
            close(&format!("{what} {name}"), &tf[name], want, rel);
        }
    }
}

/// Three steps (24 images): the mean training loss within `rel`.
fn three_steps(model: ModelKind, scheme: &str, rel: f64) {
    let cfg = config(model, scheme);
    let data = common::synthetic(DatasetKind::Cifar10, 24, 16, 7);
    let (f, b) = (run(&cfg, &data, true), run(&cfg, &data, false));
    let (lf, lb) = (f.logs[0].train_loss, b.logs[0].train_loss);
    assert!(
        (lf - lb).abs() <= rel * lb.abs(),
        "{model} {scheme}: loss {lf} (fast) against {lb} (burn)"
    );
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "slow in debug: run with cargo test --release"
)]
fn resnet20_trains_the_same_on_burns_operations() {
    one_step(ModelKind::Resnet20, "fp", 2e-5);
    three_steps(ModelKind::Resnet20, "fp", 1e-5);
    one_step(ModelKind::Resnet20, "tern", 1e-1);
    three_steps(ModelKind::Resnet20, "tern", 5e-2);
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "slow in debug: run with cargo test --release"
)]
fn vgg7_trains_the_same_on_burns_operations() {
    one_step(ModelKind::Vgg7, "fp", 2e-5);
    three_steps(ModelKind::Vgg7, "fp", 1e-5);
    one_step(ModelKind::Vgg7, "tern", 1e-1);
    three_steps(ModelKind::Vgg7, "tern", 5e-2);
}

#[test]
fn the_switch_reads_back() {
    let _guard = SWITCH.lock().unwrap_or_else(|e| e.into_inner());
    fast::set_enabled(false);
    assert!(!fast::enabled());
    fast::set_enabled(true);
    assert!(fast::enabled());
}
