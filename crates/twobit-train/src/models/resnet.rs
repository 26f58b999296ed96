use super::{bn_arch, conv_arch, linear_arch, QatModel};
use crate::config::ModelKind;
use crate::layers::{Init, QConv2d, QLinear, WeightLayer, WeightLayerMut};
use crate::qat::ForwardWeights;
use crate::TrainError;
use burn::module::Module;
use burn::nn::BatchNorm;
use burn::tensor::activation::relu;
use burn::tensor::module::max_pool2d;
use burn::tensor::ops::MaxPoolOptions;
use burn::tensor::Tensor;
use twobit_format::Layer;

/// A basic residual block: conv-bn-relu-conv-bn, plus the option-A shortcut, then ReLU.
#[derive(Module, Debug)]
pub struct BasicBlock {
    conv1: QConv2d,
    bn1: BatchNorm,
    conv2: QConv2d,
    bn2: BatchNorm,
    /// Shortcut stride and output channels when it is not the identity.
    #[module(skip)]
    shortcut: Option<(usize, usize)>,
    /// Input channels.
    #[module(skip)]
    c_in: usize,
}

impl BasicBlock {
    fn new(init: &mut Init, c_in: usize, c_out: usize, stride: usize) -> Self {
        BasicBlock {
            conv1: init.conv(c_in, c_out, 3, stride, 1, false),
            bn1: init.batch_norm(c_out),
            conv2: init.conv(c_out, c_out, 3, 1, 1, false),
            bn2: init.batch_norm(c_out),
            shortcut: (stride != 1 || c_in != c_out).then_some((stride, c_out)),
            c_in,
        }
    }

    fn forward(&self, x: Tensor<4>, fw: &ForwardWeights) -> Tensor<4> {
        let y = relu(self.bn1.forward(self.conv1.forward(x.clone(), fw)));
        let y = self.bn2.forward(self.conv2.forward(y, fw));
        let s = match self.shortcut {
            None => x,
            Some((stride, c_out)) => pad_subsample(x, stride, self.c_in, c_out),
        };
        relu(y + s)
    }
}

/// Option-A shortcut: `x[:, :, ::stride, ::stride]` (a 1x1 max pool with that stride), then
/// zero channels, half before and half after.
fn pad_subsample(x: Tensor<4>, stride: usize, c_in: usize, c_out: usize) -> Tensor<4> {
    let x = if stride > 1 {
        max_pool2d(x, MaxPoolOptions::new([1, 1]).with_stride([stride, stride]))
    } else {
        x
    };
    let extra = c_out.saturating_sub(c_in);
    if extra == 0 {
        return x;
    }
    let [n, _, h, w] = x.dims();
    let before = extra / 2;
    let after = extra - before;
    let device = x.device();
    let mut parts = Vec::new();
    if before > 0 {
        parts.push(Tensor::zeros([n, before, h, w], &device));
    }
    parts.push(x);
    if after > 0 {
        parts.push(Tensor::zeros([n, after, h, w], &device));
    }
    Tensor::cat(parts, 1)
}

/// He et al.'s CIFAR ResNet-20: conv 16, 3 stages x 3 basic blocks (16/32/64 channels),
/// option-A shortcuts, global average pool, fc 10.
#[derive(Module, Debug)]
pub struct Resnet20 {
    conv1: QConv2d,
    bn1: BatchNorm,
    blocks: Vec<BasicBlock>,
    fc: QLinear,
    #[module(skip)]
    input: [usize; 3],
}

impl Resnet20 {
    /// A freshly initialised network; the input must be at least 4x4.
    pub fn new(init: &mut Init, input: [usize; 3], classes: usize) -> Result<Self, TrainError> {
        if input[1] < 4 || input[2] < 4 {
            return Err(TrainError::InputShape {
                model: "resnet20".into(),
                input,
            });
        }
        let conv1 = init.conv(input[0], 16, 3, 1, 1, false);
        let bn1 = init.batch_norm(16);
        let mut blocks = Vec::new();
        let mut c_in = 16;
        for (stage, c) in [16usize, 32, 64].into_iter().enumerate() {
            for b in 0..3 {
                let stride = if stage > 0 && b == 0 { 2 } else { 1 };
                blocks.push(BasicBlock::new(init, c_in, c, stride));
                c_in = c;
            }
        }
        Ok(Resnet20 {
            conv1,
            bn1,
            blocks,
            fc: init.linear(64, classes),
            input,
        })
    }

    fn block_name(i: usize) -> String {
        format!("layer{}.{}", i / 3 + 1, i % 3)
    }
}

impl QatModel for Resnet20 {
    fn kind(&self) -> ModelKind {
        ModelKind::Resnet20
    }
    fn input(&self) -> [usize; 3] {
        self.input
    }
    fn forward(&self, x: Tensor<4>, fw: &ForwardWeights) -> Tensor<2> {
        let mut x = relu(self.bn1.forward(self.conv1.forward(x, fw)));
        for b in &self.blocks {
            x = b.forward(x, fw);
        }
        let x: Tensor<2> = x.mean_dim(3).mean_dim(2).flatten(1, 3);
        self.fc.forward(x, fw)
    }
    fn weight_layers(&self) -> Vec<(String, WeightLayer<'_>)> {
        let mut v = vec![("conv1".to_string(), WeightLayer::Conv(&self.conv1))];
        for (i, b) in self.blocks.iter().enumerate() {
            let p = Self::block_name(i);
            v.push((format!("{p}.conv1"), WeightLayer::Conv(&b.conv1)));
            v.push((format!("{p}.conv2"), WeightLayer::Conv(&b.conv2)));
        }
        v.push(("fc".into(), WeightLayer::Linear(&self.fc)));
        v
    }
    fn weight_layers_mut(&mut self) -> Vec<WeightLayerMut<'_>> {
        let mut v = vec![WeightLayerMut::Conv(&mut self.conv1)];
        for b in self.blocks.iter_mut() {
            v.push(WeightLayerMut::Conv(&mut b.conv1));
            v.push(WeightLayerMut::Conv(&mut b.conv2));
        }
        v.push(WeightLayerMut::Linear(&mut self.fc));
        v
    }
    fn batch_norms(&self) -> Vec<(String, &BatchNorm)> {
        let mut v = vec![("bn1".to_string(), &self.bn1)];
        for (i, b) in self.blocks.iter().enumerate() {
            let p = Self::block_name(i);
            v.push((format!("{p}.bn1"), &b.bn1));
            v.push((format!("{p}.bn2"), &b.bn2));
        }
        v
    }
    fn batch_norms_mut(&mut self) -> Vec<&mut BatchNorm> {
        let mut v = vec![&mut self.bn1];
        for b in self.blocks.iter_mut() {
            v.push(&mut b.bn1);
            v.push(&mut b.bn2);
        }
        v
    }
    fn arch_layers(&self) -> Vec<Layer> {
        let mut v = vec![
            conv_arch("conv1", &self.conv1),
            bn_arch("bn1", &self.bn1),
            Layer::Relu,
        ];
        for (i, b) in self.blocks.iter().enumerate() {
            let p = Self::block_name(i);
            let body = vec![
                conv_arch(&format!("{p}.conv1"), &b.conv1),
                bn_arch(&format!("{p}.bn1"), &b.bn1),
                Layer::Relu,
                conv_arch(&format!("{p}.conv2"), &b.conv2),
                bn_arch(&format!("{p}.bn2"), &b.bn2),
            ];
            let shortcut = match b.shortcut {
                None => Vec::new(),
                Some((stride, out_channels)) => vec![Layer::PadSubsample {
                    stride,
                    out_channels,
                }],
            };
            v.push(Layer::Residual { body, shortcut });
            v.push(Layer::Relu);
        }
        v.push(Layer::GlobalAvgPool);
        v.push(linear_arch("fc", &self.fc));
        v
    }
}
