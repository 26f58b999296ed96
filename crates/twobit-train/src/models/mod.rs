//! The networks, as burn modules that can describe themselves as a [`twobit_format::Arch`].
mod lenet;
mod mlp;
mod resnet;
mod vgg;

pub use lenet::Lenet5;
pub use mlp::Mlp;
pub use resnet::{BasicBlock, Resnet20};
pub use vgg::Vgg7;

use crate::config::ModelKind;
use crate::layers::{QConv2d, QLinear, WeightLayer, WeightLayerMut};
use crate::qat::ForwardWeights;
use burn::module::Module;
use burn::nn::BatchNorm;
use burn::tensor::Tensor;
use twobit_format::{Arch, Layer, Normalize};

/// A network trainable with QAT.
pub trait QatModel: Module {
    /// Which architecture this is.
    fn kind(&self) -> ModelKind;
    /// Input shape (channels, height, width) the model was built for.
    fn input(&self) -> [usize; 3];
    /// Logits `[N, classes]` for images `[N, C, H, W]`.
    fn forward(&self, x: Tensor<4>, fw: &ForwardWeights) -> Tensor<2>;
    /// The weight layers in slot order (forward order), with their tensor-name prefixes.
    fn weight_layers(&self) -> Vec<(String, WeightLayer<'_>)>;
    /// The weight layers in slot order, mutably.
    fn weight_layers_mut(&mut self) -> Vec<WeightLayerMut<'_>>;
    /// Batch-norm layers with their tensor-name prefixes.
    fn batch_norms(&self) -> Vec<(String, &BatchNorm)>;
    /// Batch-norm layers, mutably, in the order of [`QatModel::batch_norms`].
    fn batch_norms_mut(&mut self) -> Vec<&mut BatchNorm>;
    /// The layer sequence for the file's architecture.
    fn arch_layers(&self) -> Vec<Layer>;

    /// The full architecture description.
    fn arch(&self, classes: usize, normalize: Normalize) -> Arch {
        Arch {
            name: self.kind().name().to_string(),
            input: self.input(),
            classes,
            normalize,
            layers: self.arch_layers(),
        }
    }
}

/// `Conv2d` entry of the architecture.
pub(crate) fn conv_arch(name: &str, c: &QConv2d) -> Layer {
    Layer::Conv2d {
        weight: format!("{name}.weight"),
        bias: c.bias.as_ref().map(|_| format!("{name}.bias")),
        stride: c.stride,
        padding: c.padding,
    }
}

/// `Linear` entry of the architecture.
pub(crate) fn linear_arch(name: &str, l: &QLinear) -> Layer {
    Layer::Linear {
        weight: format!("{name}.weight"),
        bias: l.bias.as_ref().map(|_| format!("{name}.bias")),
    }
}

/// `BatchNorm` entry of the architecture.
pub(crate) fn bn_arch(name: &str, bn: &BatchNorm) -> Layer {
    Layer::BatchNorm {
        weight: format!("{name}.weight"),
        bias: format!("{name}.bias"),
        running_mean: format!("{name}.running_mean"),
        running_var: format!("{name}.running_var"),
        eps: bn.epsilon as f32,
    }
}

/// Output side of a `k`x`k` valid convolution followed by a 2x2 max pool.
pub(crate) fn conv_pool(side: usize, k: usize) -> usize {
    (side + 1).saturating_sub(k) / 2
}
