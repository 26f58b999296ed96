//! The networks: the [`QatModel`] interface the trainer drives (implemented by
//! [`crate::GraphNet`], which trains any network graph), and the built-in networks as
//! graph builders ([`builtin`]).
mod builtin;

pub use builtin::builtin;

use crate::config::ModelKind;
use crate::layers::{WeightLayer, WeightLayerMut};
use crate::qat::ForwardWeights;
use burn::module::Module;
use burn::nn::BatchNorm;
use burn::tensor::Tensor;
use twobit_format::{Arch, Normalize, Tensor as FileTensor};

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
    /// The network's architecture as the file stores it, with the input normalisation
    /// `normalize` and `classes` outputs.
    fn arch(&self, classes: usize, normalize: Normalize) -> Arch;

    /// The file tensor names (weight, bias) of each weight layer, in slot order.
    fn weight_tensor_names(&self) -> Vec<(String, Option<String>)> {
        self.weight_layers()
            .into_iter()
            .map(|(n, l)| (format!("{n}.weight"), l.bias().map(|_| format!("{n}.bias"))))
            .collect()
    }

    /// The file tensor names (gamma, beta, running mean, running variance) of each batch
    /// norm, in the order of [`QatModel::batch_norms`].
    fn batch_norm_tensor_names(&self) -> Vec<[String; 4]> {
        self.batch_norms()
            .into_iter()
            .map(|(n, _)| {
                ["weight", "bias", "running_mean", "running_var"].map(|t| format!("{n}.{t}"))
            })
            .collect()
    }

    /// Constant (not trained) tensors the file also holds, e.g. a graph's `Add`/`Mul`
    /// operands.
    fn constant_tensors(&self) -> Vec<(String, FileTensor)> {
        Vec::new()
    }

    /// Per slot, whether the layer stays float unless `quantize_all`: the first and the last.
    fn float_by_default(&self) -> Vec<bool> {
        let n = self.weight_layers().len();
        (0..n).map(|i| i == 0 || i + 1 == n).collect()
    }

    /// Identifies the network's structure beyond [`QatModel::kind`] (a graph's hash), so a
    /// checkpoint only resumes into the same network.
    fn fingerprint(&self) -> Option<String> {
        None
    }
}
