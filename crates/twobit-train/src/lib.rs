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
pub use error::TrainError;
pub use graph_net::{train_graph, GraphInit, GraphNet};
pub use trainer::{
    train, EpochLog, NoProgress, Progress, RunOptions, TrainData, TrainOutcome, Trained, Trainer,
};

use burn::tensor::Device;

/// The device training runs on, chosen at compile time: CUDA with feature `cuda`, wgpu with
/// feature `wgpu`, otherwise the pure-Rust flex CPU backend. Autodiff is added by the trainer.
pub fn default_device() -> Device {
    #[cfg(feature = "cuda")]
    {
        Device::cuda(0)
    }
    #[cfg(all(feature = "wgpu", not(feature = "cuda")))]
    {
        Device::wgpu(Default::default())
    }
    #[cfg(not(any(feature = "cuda", feature = "wgpu")))]
    {
        Device::flex()
    }
}
