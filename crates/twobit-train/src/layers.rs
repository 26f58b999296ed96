//! Quantizable layers. Their forward takes the forward weights prepared by [`crate::qat`]
//! (quantized with the straight-through trick) and falls back to the float weight for layers
//! kept in float.
use crate::qat::ForwardWeights;
use burn::module::{Module, Param, RunningState};
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::tensor::module::linear;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Deterministic parameter initialisation (PyTorch's defaults) from a seeded RNG, so a run is
/// repeatable independently of burn's global random state. The built-in networks' graphs
/// ([`crate::models::builtin`]) draw their initial weights the same way, layer by layer.
pub struct Init {
    rng: StdRng,
    device: Device,
    next_slot: usize,
}

impl Init {
    /// A seeded initialiser creating tensors on `device`.
    pub fn new(seed: u64, device: &Device) -> Self {
        Init {
            rng: StdRng::seed_from_u64(seed),
            device: device.clone(),
            next_slot: 0,
        }
    }

    /// The device parameters are created on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    pub(crate) fn uniform<const D: usize>(&mut self, shape: [usize; D], bound: f32) -> Tensor<D> {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|_| self.rng.random_range(-bound..bound))
            .collect();
        Tensor::from_data(TensorData::new(v, shape), &self.device)
    }

    pub(crate) fn slot(&mut self) -> usize {
        self.next_slot += 1;
        self.next_slot - 1
    }

    /// A linear layer `[out, in]` with `U(-1/sqrt(in), 1/sqrt(in))` weights and bias.
    pub fn linear(&mut self, d_in: usize, d_out: usize) -> QLinear {
        let bound = 1.0 / (d_in as f32).sqrt();
        QLinear {
            weight: Param::from_tensor(self.uniform([d_out, d_in], bound)),
            bias: Some(Param::from_tensor(self.uniform([d_out], bound))),
            ttq: None,
            slot: self.slot(),
        }
    }

    /// A square convolution `[out, in, k, k]`, PyTorch default init; bias optional (convs
    /// followed by batch norm have none).
    pub fn conv(
        &mut self,
        c_in: usize,
        c_out: usize,
        k: usize,
        stride: usize,
        padding: usize,
        bias: bool,
    ) -> QConv2d {
        let bound = 1.0 / ((c_in * k * k) as f32).sqrt();
        QConv2d {
            weight: Param::from_tensor(self.uniform([c_out, c_in, k, k], bound)),
            bias: bias.then(|| Param::from_tensor(self.uniform([c_out], bound))),
            ttq: None,
            stride: [stride; 2],
            pads: [padding; 4],
            dilation: [1, 1],
            groups: 1,
            slot: self.slot(),
        }
    }

    /// Batch norm over `n` features (gamma 1, beta 0, eps 1e-5, momentum 0.1).
    pub fn batch_norm(&self, n: usize) -> BatchNorm {
        BatchNormConfig::new(n).init(&self.device)
    }
}

/// TTQ's learned scales of one layer: positive `W_p` and negative `W_n` magnitudes, one entry
/// per quantization group.
#[derive(Module, Debug)]
pub struct TtqScales {
    /// `W_p` per group.
    pub pos: Param<Tensor<1>>,
    /// `W_n` per group (the negative level is `-W_n`).
    pub neg: Param<Tensor<1>>,
}

/// A fully connected layer whose weight may be quantized.
#[derive(Module, Debug)]
pub struct QLinear {
    /// Weight `[out, in]`. This is PyTorch's (and the file's) layout, not burn's `[in, out]`:
    /// axis 0 is then the output channel that per-channel quantization groups by, and export
    /// needs no transpose. The forward multiplies by its transposed view.
    pub weight: Param<Tensor<2>>,
    /// Bias `[out]`.
    pub bias: Option<Param<Tensor<1>>>,
    /// TTQ scales, when training with `ttq` and this layer is quantized.
    pub ttq: Option<TtqScales>,
    /// Index of this layer among the model's weight layers.
    #[module(skip)]
    pub slot: usize,
}

impl QLinear {
    /// `x @ W^T + b` with the prepared forward weight.
    pub fn forward(&self, x: Tensor<2>, fw: &ForwardWeights) -> Tensor<2> {
        let w = fw.rank2(self.slot).unwrap_or_else(|| self.weight.val());
        linear(x, w.transpose(), self.bias.as_ref().map(|b| b.val()))
    }
}

/// A 2-D convolution (ONNX semantics) whose weight may be quantized.
#[derive(Module, Debug)]
pub struct QConv2d {
    /// Weight `[out, in/groups, kh, kw]`.
    pub weight: Param<Tensor<4>>,
    /// Bias `[out]`.
    pub bias: Option<Param<Tensor<1>>>,
    /// TTQ scales, when training with `ttq` and this layer is quantized.
    pub ttq: Option<TtqScales>,
    /// Strides (h, w).
    #[module(skip)]
    pub stride: [usize; 2],
    /// Zero padding (top, left, bottom, right), ONNX order.
    #[module(skip)]
    pub pads: [usize; 4],
    /// Dilations (h, w).
    #[module(skip)]
    pub dilation: [usize; 2],
    /// Groups (1: dense; input channels: depthwise).
    #[module(skip)]
    pub groups: usize,
    /// Index of this layer among the model's weight layers.
    #[module(skip)]
    pub slot: usize,
}

impl QConv2d {
    /// Whether the fast path applies: square kernel, one stride and one padding for both
    /// axes, no dilation, no groups (the built-in networks' convolutions).
    pub fn is_plain(&self) -> bool {
        let d = self.weight.val().dims();
        d[2] == d[3]
            && self.stride[0] == self.stride[1]
            && self.pads.iter().all(|&p| p == self.pads[0])
            && self.dilation == [1, 1]
            && self.groups == 1
    }

    /// The convolution with the prepared forward weight.
    pub fn forward(&self, x: Tensor<4>, fw: &ForwardWeights) -> Tensor<4> {
        let w = fw.rank4(self.slot).unwrap_or_else(|| self.weight.val());
        let bias = self.bias.as_ref().map(|b| b.val());
        if self.is_plain() {
            return crate::fast::conv2d(x, w, bias, self.stride[0], self.pads[0]);
        }
        let [t, l, b, r] = self.pads;
        let options = ConvOptions::new_with_padding(
            self.stride,
            [(t, b), (l, r)],
            self.dilation,
            self.groups,
        );
        burn::tensor::module::conv2d(x, w, bias, options)
    }
}

/// A weight layer seen generically (for quantization, export and architecture checks).
pub enum WeightLayer<'a> {
    /// A fully connected layer.
    Linear(&'a QLinear),
    /// A convolution.
    Conv(&'a QConv2d),
}

impl WeightLayer<'_> {
    /// The slot index.
    pub fn slot(&self) -> usize {
        match self {
            WeightLayer::Linear(l) => l.slot,
            WeightLayer::Conv(c) => c.slot,
        }
    }
    /// The weight's shape.
    pub fn shape(&self) -> Vec<usize> {
        match self {
            WeightLayer::Linear(l) => l.weight.val().dims().to_vec(),
            WeightLayer::Conv(c) => c.weight.val().dims().to_vec(),
        }
    }
    /// The bias parameter.
    pub fn bias(&self) -> Option<&Param<Tensor<1>>> {
        match self {
            WeightLayer::Linear(l) => l.bias.as_ref(),
            WeightLayer::Conv(c) => c.bias.as_ref(),
        }
    }
    /// The TTQ scales.
    pub fn ttq(&self) -> Option<&TtqScales> {
        match self {
            WeightLayer::Linear(l) => l.ttq.as_ref(),
            WeightLayer::Conv(c) => c.ttq.as_ref(),
        }
    }
    /// The float weights, row-major.
    pub fn weight_values(&self) -> Vec<f32> {
        match self {
            WeightLayer::Linear(l) => tensor_values(l.weight.val()),
            WeightLayer::Conv(c) => tensor_values(c.weight.val()),
        }
    }
}

/// A mutable weight layer (to attach TTQ scales).
pub enum WeightLayerMut<'a> {
    /// A fully connected layer.
    Linear(&'a mut QLinear),
    /// A convolution.
    Conv(&'a mut QConv2d),
}

/// A tensor's values as f32, row-major.
pub fn tensor_values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .try_into_vec::<f32>()
        .expect("float tensors hold f32 on this backend")
}

/// The running statistics of a batch norm layer, as plain vectors (mean, var).
pub fn bn_running(bn: &BatchNorm) -> (Vec<f32>, Vec<f32>) {
    (
        tensor_values(bn.running_mean.value()),
        tensor_values(bn.running_var.value()),
    )
}

/// Replaces a running-state tensor (used by tests that load exported weights).
pub fn running(t: Tensor<1>) -> RunningState<Tensor<1>> {
    RunningState::new(t)
}
