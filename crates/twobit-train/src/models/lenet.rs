use super::{conv_arch, conv_pool, linear_arch, QatModel};
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

/// LeNet-5 (Caffe variant): conv 20@5x5, max-pool 2, conv 50@5x5, max-pool 2, fc 500, fc 10,
/// ReLU, no padding.
#[derive(Module, Debug)]
pub struct Lenet5 {
    conv1: QConv2d,
    conv2: QConv2d,
    fc1: QLinear,
    fc2: QLinear,
    #[module(skip)]
    input: [usize; 3],
}

impl Lenet5 {
    /// A freshly initialised network; the input must be at least 16x16.
    pub fn new(init: &mut Init, input: [usize; 3], classes: usize) -> Result<Self, TrainError> {
        let h = conv_pool(conv_pool(input[1], 5), 5);
        let w = conv_pool(conv_pool(input[2], 5), 5);
        if h == 0 || w == 0 {
            return Err(TrainError::InputShape {
                model: "lenet5".into(),
                input,
            });
        }
        Ok(Lenet5 {
            conv1: init.conv(input[0], 20, 5, 1, 0, true),
            conv2: init.conv(20, 50, 5, 1, 0, true),
            fc1: init.linear(50 * h * w, 500),
            fc2: init.linear(500, classes),
            input,
        })
    }
}

impl QatModel for Lenet5 {
    fn kind(&self) -> ModelKind {
        ModelKind::Lenet5
    }
    fn input(&self) -> [usize; 3] {
        self.input
    }
    fn forward(&self, x: Tensor<4>, fw: &ForwardWeights) -> Tensor<2> {
        // ReLU then pool, as the file's architecture says, fused in one operation.
        let x = relu_pool2(self.conv1.forward(x, fw));
        let x = relu_pool2(self.conv2.forward(x, fw));
        let x: Tensor<2> = x.flatten(1, 3);
        let x = relu(self.fc1.forward(x, fw));
        self.fc2.forward(x, fw)
    }
    fn weight_layers(&self) -> Vec<(String, WeightLayer<'_>)> {
        vec![
            ("conv1".into(), WeightLayer::Conv(&self.conv1)),
            ("conv2".into(), WeightLayer::Conv(&self.conv2)),
            ("fc1".into(), WeightLayer::Linear(&self.fc1)),
            ("fc2".into(), WeightLayer::Linear(&self.fc2)),
        ]
    }
    fn weight_layers_mut(&mut self) -> Vec<WeightLayerMut<'_>> {
        vec![
            WeightLayerMut::Conv(&mut self.conv1),
            WeightLayerMut::Conv(&mut self.conv2),
            WeightLayerMut::Linear(&mut self.fc1),
            WeightLayerMut::Linear(&mut self.fc2),
        ]
    }
    fn batch_norms(&self) -> Vec<(String, &BatchNorm)> {
        Vec::new()
    }
    fn batch_norms_mut(&mut self) -> Vec<&mut BatchNorm> {
        Vec::new()
    }
    fn arch_layers(&self) -> Vec<Layer> {
        let pool = Layer::MaxPool2d {
            kernel: 2,
            stride: 2,
        };
        vec![
            conv_arch("conv1", &self.conv1),
            Layer::Relu,
            pool.clone(),
            conv_arch("conv2", &self.conv2),
            Layer::Relu,
            pool,
            Layer::Flatten,
            linear_arch("fc1", &self.fc1),
            Layer::Relu,
            linear_arch("fc2", &self.fc2),
        ]
    }
}
