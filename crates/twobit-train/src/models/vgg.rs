use super::{bn_arch, conv_arch, linear_arch, QatModel};
use crate::config::ModelKind;
use crate::fast::relu_pool2;
use crate::layers::{Init, QConv2d, QLinear, WeightLayer, WeightLayerMut};
use crate::qat::ForwardWeights;
use crate::TrainError;
use burn::module::Module;
use burn::nn::BatchNorm;
use burn::tensor::activation::relu;
use burn::tensor::Tensor;
use twobit_format::Layer;

/// VGG-7 as in TWN: 2x128C3, MP, 2x256C3, MP, 2x512C3, MP, fc 1024, fc 10; batch norm after
/// every conv and after fc 1024; ReLU; padding 1. Convs and fc1 have no bias (batch norm
/// follows).
#[derive(Module, Debug)]
pub struct Vgg7 {
    convs: Vec<QConv2d>,
    bns: Vec<BatchNorm>,
    fc1: QLinear,
    bn_fc: BatchNorm,
    fc2: QLinear,
    #[module(skip)]
    input: [usize; 3],
}

const WIDTHS: [usize; 6] = [128, 128, 256, 256, 512, 512];

impl Vgg7 {
    /// A freshly initialised network; the input must be at least 8x8.
    pub fn new(init: &mut Init, input: [usize; 3], classes: usize) -> Result<Self, TrainError> {
        let (h, w) = (input[1] / 8, input[2] / 8);
        if h == 0 || w == 0 {
            return Err(TrainError::InputShape {
                model: "vgg7".into(),
                input,
            });
        }
        let mut c_in = input[0];
        let mut convs = Vec::new();
        let mut bns = Vec::new();
        for c in WIDTHS {
            convs.push(init.conv(c_in, c, 3, 1, 1, false));
            bns.push(init.batch_norm(c));
            c_in = c;
        }
        let mut fc1 = init.linear(512 * h * w, 1024);
        fc1.bias = None;
        Ok(Vgg7 {
            convs,
            bns,
            fc1,
            bn_fc: init.batch_norm(1024),
            fc2: init.linear(1024, classes),
            input,
        })
    }
}

impl QatModel for Vgg7 {
    fn kind(&self) -> ModelKind {
        ModelKind::Vgg7
    }
    fn input(&self) -> [usize; 3] {
        self.input
    }
    fn forward(&self, mut x: Tensor<4>, fw: &ForwardWeights) -> Tensor<2> {
        for (i, (conv, bn)) in self.convs.iter().zip(&self.bns).enumerate() {
            let y = bn.forward(conv.forward(x, fw));
            x = if i % 2 == 1 { relu_pool2(y) } else { relu(y) };
        }
        let x: Tensor<2> = x.flatten(1, 3);
        let x = relu(self.bn_fc.forward(self.fc1.forward(x, fw)));
        self.fc2.forward(x, fw)
    }
    fn weight_layers(&self) -> Vec<(String, WeightLayer<'_>)> {
        let mut v: Vec<_> = self
            .convs
            .iter()
            .enumerate()
            .map(|(i, c)| (format!("conv{}", i + 1), WeightLayer::Conv(c)))
            .collect();
        v.push(("fc1".into(), WeightLayer::Linear(&self.fc1)));
        v.push(("fc2".into(), WeightLayer::Linear(&self.fc2)));
        v
    }
    fn weight_layers_mut(&mut self) -> Vec<WeightLayerMut<'_>> {
        let mut v: Vec<_> = self.convs.iter_mut().map(WeightLayerMut::Conv).collect();
        v.push(WeightLayerMut::Linear(&mut self.fc1));
        v.push(WeightLayerMut::Linear(&mut self.fc2));
        v
    }
    fn batch_norms(&self) -> Vec<(String, &BatchNorm)> {
        let mut v: Vec<_> = self
            .bns
            .iter()
            .enumerate()
            .map(|(i, b)| (format!("bn{}", i + 1), b))
            .collect();
        v.push(("bn_fc".into(), &self.bn_fc));
        v
    }
    fn batch_norms_mut(&mut self) -> Vec<&mut BatchNorm> {
        let mut v: Vec<_> = self.bns.iter_mut().collect();
        v.push(&mut self.bn_fc);
        v
    }
    fn arch_layers(&self) -> Vec<Layer> {
        let mut v = Vec::new();
        for (i, (conv, bn)) in self.convs.iter().zip(&self.bns).enumerate() {
            v.push(conv_arch(&format!("conv{}", i + 1), conv));
            v.push(bn_arch(&format!("bn{}", i + 1), bn));
            v.push(Layer::Relu);
            if i % 2 == 1 {
                v.push(Layer::MaxPool2d {
                    kernel: 2,
                    stride: 2,
                });
            }
        }
        v.push(Layer::Flatten);
        v.push(linear_arch("fc1", &self.fc1));
        v.push(bn_arch("bn_fc", &self.bn_fc));
        v.push(Layer::Relu);
        v.push(linear_arch("fc2", &self.fc2));
        v
    }
}
