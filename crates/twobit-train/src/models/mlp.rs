use super::{linear_arch, QatModel};
use crate::config::ModelKind;
use crate::layers::{Init, QLinear, WeightLayer, WeightLayerMut};
use crate::qat::ForwardWeights;
use burn::module::Module;
use burn::nn::BatchNorm;
use burn::tensor::activation::relu;
use burn::tensor::Tensor;
use twobit_format::Layer;

/// 784-300-100-10 perceptron (input size follows the dataset).
#[derive(Module, Debug)]
pub struct Mlp {
    fc1: QLinear,
    fc2: QLinear,
    fc3: QLinear,
    #[module(skip)]
    input: [usize; 3],
}

impl Mlp {
    /// A freshly initialised network.
    pub fn new(init: &mut Init, input: [usize; 3], classes: usize) -> Self {
        let d = input.iter().product();
        Mlp {
            fc1: init.linear(d, 300),
            fc2: init.linear(300, 100),
            fc3: init.linear(100, classes),
            input,
        }
    }
}

impl QatModel for Mlp {
    fn kind(&self) -> ModelKind {
        ModelKind::Mlp
    }
    fn input(&self) -> [usize; 3] {
        self.input
    }
    fn forward(&self, x: Tensor<4>, fw: &ForwardWeights) -> Tensor<2> {
        let x: Tensor<2> = x.flatten(1, 3);
        let x = relu(self.fc1.forward(x, fw));
        let x = relu(self.fc2.forward(x, fw));
        self.fc3.forward(x, fw)
    }
    fn weight_layers(&self) -> Vec<(String, WeightLayer<'_>)> {
        vec![
            ("fc1".into(), WeightLayer::Linear(&self.fc1)),
            ("fc2".into(), WeightLayer::Linear(&self.fc2)),
            ("fc3".into(), WeightLayer::Linear(&self.fc3)),
        ]
    }
    fn weight_layers_mut(&mut self) -> Vec<WeightLayerMut<'_>> {
        vec![
            WeightLayerMut::Linear(&mut self.fc1),
            WeightLayerMut::Linear(&mut self.fc2),
            WeightLayerMut::Linear(&mut self.fc3),
        ]
    }
    fn batch_norms(&self) -> Vec<(String, &BatchNorm)> {
        Vec::new()
    }
    fn batch_norms_mut(&mut self) -> Vec<&mut BatchNorm> {
        Vec::new()
    }
    fn arch_layers(&self) -> Vec<Layer> {
        vec![
            Layer::Flatten,
            linear_arch("fc1", &self.fc1),
            Layer::Relu,
            linear_arch("fc2", &self.fc2),
            Layer::Relu,
            linear_arch("fc3", &self.fc3),
        ]
    }
}
