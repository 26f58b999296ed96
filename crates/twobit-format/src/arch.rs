//! The network architecture stored in a trained file, so the runtime can rebuild the model
//! from the file alone. Serialised as JSON in the file's metadata.
//!
//! Tensor layouts follow PyTorch/burn: linear weight `[out, in]`, conv weight
//! `[out, in, kh, kw]`, activations NCHW.
use serde::{Deserialize, Serialize};

/// A feed-forward network: input shape, normalisation, and a layer sequence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Arch {
    /// Model name (`mlp`, `lenet5`, `vgg7`, `resnet20`).
    pub name: String,
    /// Input shape (channels, height, width).
    pub input: [usize; 3],
    /// Number of output classes.
    pub classes: usize,
    /// Per-channel normalisation applied to inputs scaled to [0, 1].
    pub normalize: Normalize,
    /// The layers, applied in order.
    pub layers: Vec<Layer>,
}

/// `x' = (x - mean[c]) / std[c]` per input channel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Normalize {
    /// Per-channel mean.
    pub mean: Vec<f32>,
    /// Per-channel standard deviation.
    pub std: Vec<f32>,
}

/// One layer. Parameters are referenced by tensor name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Layer {
    /// 2-D convolution, weight `[out, in, kh, kw]`, square stride and zero padding.
    Conv2d {
        /// Weight tensor name.
        weight: String,
        /// Bias tensor name, if any.
        bias: Option<String>,
        /// Stride (both axes).
        stride: usize,
        /// Zero padding (both axes).
        padding: usize,
    },
    /// Fully connected, weight `[out, in]`.
    Linear {
        /// Weight tensor name.
        weight: String,
        /// Bias tensor name, if any.
        bias: Option<String>,
    },
    /// Batch norm (inference form) over axis 1 (channels of NCHW, or features of NC).
    BatchNorm {
        /// Scale (gamma).
        weight: String,
        /// Shift (beta).
        bias: String,
        /// Running mean.
        running_mean: String,
        /// Running variance.
        running_var: String,
        /// Epsilon.
        eps: f32,
    },
    /// max(x, 0).
    Relu,
    /// Max pooling, square window, no padding.
    MaxPool2d {
        /// Window size.
        kernel: usize,
        /// Stride.
        stride: usize,
    },
    /// Mean over H and W: NCHW -> NC.
    GlobalAvgPool,
    /// NCHW -> N(CHW), row-major.
    Flatten,
    /// `body(x) + shortcut(x)`; an empty shortcut is the identity.
    Residual {
        /// Main branch.
        body: Vec<Layer>,
        /// Shortcut branch.
        shortcut: Vec<Layer>,
    },
    /// ResNet option-A shortcut: spatial subsampling `x[:, :, ::stride, ::stride]`, then zero
    /// channels appended equally before and after to reach `out_channels`.
    PadSubsample {
        /// Spatial stride.
        stride: usize,
        /// Output channel count.
        out_channels: usize,
    },
}
