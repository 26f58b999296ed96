//! Quantization-aware training (QAT) of 2-bit networks on burn.
//!
//! Before every forward pass each quantized layer's float ("shadow") weights are quantized by
//! [`twobit_quant`] — the same code `twobit compress` uses — and the forward uses
//! `wq + (w - w.detach())`: numerically exactly `wq`, with the identity as gradient w.r.t. `w`
//! (straight-through estimator). The optimizer updates the float weights. TTQ learns its two
//! scales per layer (see `docs/ttq.md`). The trained network is exported as a `.twobit` file
//! holding exactly the codes and levels the last evaluation used.
#![deny(missing_docs)]

pub mod checkpoint;
pub mod config;
pub mod data;
pub mod device;
mod error;
pub mod export;
pub mod fast;
pub mod graph_net;
pub mod layers;
pub mod models;
pub mod qat;
pub mod schedule;
pub mod trainer;

pub use config::{ModelKind, OptimizerKind, ScheduleKind, TrainConfig, WeightScheme};
pub use device::{DeviceError, DeviceKind};
pub use error::TrainError;
pub use graph_net::{train_graph, GraphInit, GraphNet};
pub use trainer::{
    train, EpochLog, NoProgress, Progress, RunOptions, TrainData, TrainOutcome, Trained, Trainer,
};

use burn::tensor::Device;

/// The device training runs on: the one chosen by [`device::select`] (`twobit train
/// --device`), else the build's default ([`DeviceKind::default_for_build`]: CUDA with feature
/// `cuda`, wgpu with feature `wgpu`, otherwise the pure-Rust flex CPU backend), unchecked.
/// Autodiff is added by the trainer.
pub fn default_device() -> Device {
    match device::selected() {
        Some((_, device)) => device,
        None => DeviceKind::default_for_build().unchecked(),
    }
}
