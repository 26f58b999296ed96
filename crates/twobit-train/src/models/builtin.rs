//! The built-in networks as graph builders: each returns a [`Model`] holding the network's
//! graph (the same description an imported ONNX model has) and its freshly initialised
//! tensors, which [`crate::GraphNet::from_model`] turns into the module that trains.
//!
//! Tensor names are those of the files written before the built-ins became graphs
//! (`conv1.weight`, `layer1.0.bn1.running_mean`, `fc.weight`, ...), and so are the graphs
//! (node for node what their version-1 layer lists convert to).
//!
//! Initial weights are PyTorch's defaults drawn from `StdRng::seed_from_u64(seed)` in
//! construction order, as [`crate::layers::Init`] draws them: per weight layer its weight,
//! then its bias, each `U(-1/sqrt(fan_in), 1/sqrt(fan_in))` element by element; batch norm
//! gamma 1, beta 0, running mean 0, running variance 1 (eps 1e-5).
use crate::config::ModelKind;
use crate::TrainError;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use twobit_format::graph::INPUT;
use twobit_format::{Arch, Builder, FloatTensor, Model, Normalize, Op, Tensor as FileTensor};

/// The built-in network `kind` for images of shape `input` and `classes` classes, with its
/// initial weights for `seed`. [`ModelKind::Graph`] is not built in.
pub fn builtin(
    kind: ModelKind,
    input: [usize; 3],
    classes: usize,
    seed: u64,
) -> Result<Model, TrainError> {
    let mut n = Net::new(seed);
    let too_small = || TrainError::InputShape {
        model: kind.name().into(),
        input,
    };
    let out = match kind {
        ModelKind::Mlp => mlp(&mut n, input, classes),
        ModelKind::Lenet5 => lenet5(&mut n, input, classes).ok_or_else(too_small)?,
        ModelKind::Vgg7 => vgg7(&mut n, input, classes).ok_or_else(too_small)?,
        ModelKind::Resnet20 => resnet20(&mut n, input, classes).ok_or_else(too_small)?,
        ModelKind::Graph => {
            return Err(TrainError::InvalidConfig(
                "model graph is not built in: it trains a network from a file".into(),
            ))
        }
    };
    Ok(n.finish(kind, input, classes, out))
}

/// 784-300-100-10 perceptron (the input size follows the dataset).
fn mlp(n: &mut Net, input: [usize; 3], classes: usize) -> String {
    let x = n.b.then(Op::Flatten, INPUT.into());
    let x = n.linear(x, "fc1", input.iter().product(), 300, true);
    let x = n.relu(x);
    let x = n.linear(x, "fc2", 300, 100, true);
    let x = n.relu(x);
    n.linear(x, "fc3", 100, classes, true)
}

/// LeNet-5 (Caffe variant): conv 20@5x5, ReLU, max-pool 2, conv 50@5x5, ReLU, max-pool 2,
/// fc 500, ReLU, fc; no padding. `None` if the input is smaller than 16x16.
fn lenet5(n: &mut Net, input: [usize; 3], classes: usize) -> Option<String> {
    // Side after a 5x5 valid convolution and a 2x2 pool.
    let conv_pool = |side: usize| (side + 1).saturating_sub(5) / 2;
    let [h, w] = [input[1], input[2]].map(|side| conv_pool(conv_pool(side)));
    if h == 0 || w == 0 {
        return None;
    }
    let x = n.conv(INPUT.into(), "conv1", [input[0], 20, 5], 1, 0, true);
    let x = n.relu(x);
    let x = n.pool(x);
    let x = n.conv(x, "conv2", [20, 50, 5], 1, 0, true);
    let x = n.relu(x);
    let x = n.pool(x);
    let x = n.b.then(Op::Flatten, x);
    let x = n.linear(x, "fc1", 50 * h * w, 500, true);
    let x = n.relu(x);
    Some(n.linear(x, "fc2", 500, classes, true))
}

/// VGG-7 as in TWN: 2x128C3, MP, 2x256C3, MP, 2x512C3, MP, fc 1024, fc; batch norm after
/// every conv and after fc 1024; ReLU; padding 1. Convs and fc1 have no bias (batch norm
/// follows). `None` if the input is smaller than 8x8.
fn vgg7(n: &mut Net, input: [usize; 3], classes: usize) -> Option<String> {
    let (h, w) = (input[1] / 8, input[2] / 8);
    if h == 0 || w == 0 {
        return None;
    }
    let mut x = INPUT.to_string();
    let mut c_in = input[0];
    for (i, c) in [128, 128, 256, 256, 512, 512].into_iter().enumerate() {
        x = n.conv(x, &format!("conv{}", i + 1), [c_in, c, 3], 1, 1, false);
        x = n.batch_norm(x, &format!("bn{}", i + 1), c);
        x = n.relu(x);
        if i % 2 == 1 {
            x = n.pool(x);
        }
        c_in = c;
    }
    let x = n.b.then(Op::Flatten, x);
    let x = n.linear(x, "fc1", 512 * h * w, 1024, false);
    let x = n.batch_norm(x, "bn_fc", 1024);
    let x = n.relu(x);
    Some(n.linear(x, "fc2", 1024, classes, true))
}

/// He et al.'s CIFAR ResNet-20: conv 16, 3 stages x 3 basic blocks (16/32/64 channels;
/// conv-bn-relu-conv-bn plus the option-A shortcut, then ReLU), global average pool, fc.
/// `None` if the input is smaller than 4x4.
fn resnet20(n: &mut Net, input: [usize; 3], classes: usize) -> Option<String> {
    if input[1] < 4 || input[2] < 4 {
        return None;
    }
    let x = n.conv(INPUT.into(), "conv1", [input[0], 16, 3], 1, 1, false);
    let x = n.batch_norm(x, "bn1", 16);
    let mut x = n.relu(x);
    let mut c_in = 16;
    for (stage, c) in [16usize, 32, 64].into_iter().enumerate() {
        for block in 0..3 {
            let stride = if stage > 0 && block == 0 { 2 } else { 1 };
            let p = format!("layer{}.{block}", stage + 1);
            let y = n.conv(
                x.clone(),
                &format!("{p}.conv1"),
                [c_in, c, 3],
                stride,
                1,
                false,
            );
            let y = n.batch_norm(y, &format!("{p}.bn1"), c);
            let y = n.relu(y);
            let y = n.conv(y, &format!("{p}.conv2"), [c, c, 3], 1, 1, false);
            let y = n.batch_norm(y, &format!("{p}.bn2"), c);
            let s = if stride != 1 || c_in != c {
                n.b.pad_subsample(x, stride, c_in, c)
            } else {
                x
            };
            let sum = n.b.push(Op::Add { constant: None }, vec![y, s]);
            x = n.relu(sum);
            c_in = c;
        }
    }
    let x = n.b.then(Op::GlobalAvgPool, x);
    let x = n.b.then(Op::Flatten, x);
    Some(n.linear(x, "fc", 64, classes, true))
}

/// A graph under construction with its tensors and the initialisation RNG.
struct Net {
    b: Builder,
    tensors: BTreeMap<String, FileTensor>,
    rng: StdRng,
}

impl Net {
    fn new(seed: u64) -> Self {
        Net {
            b: Builder::default(),
            tensors: BTreeMap::new(),
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// `n` values of `U(-bound, bound)`, drawn in order.
    fn uniform(&mut self, n: usize, bound: f32) -> Vec<f32> {
        (0..n)
            .map(|_| self.rng.random_range(-bound..bound))
            .collect()
    }

    fn tensor(&mut self, name: String, shape: Vec<usize>, values: &[f32]) -> String {
        let t = FileTensor::Float(FloatTensor::from_f32(shape, values));
        self.tensors.insert(name.clone(), t);
        name
    }

    /// A square convolution from `c_in` to `c_out` channels, weight `[c_out, c_in, k, k]`;
    /// its bias (if any) is drawn after it.
    fn conv(
        &mut self,
        x: String,
        name: &str,
        [c_in, c_out, k]: [usize; 3],
        stride: usize,
        padding: usize,
        bias: bool,
    ) -> String {
        let bound = 1.0 / ((c_in * k * k) as f32).sqrt();
        let w = self.uniform(c_out * c_in * k * k, bound);
        let w = self.tensor(format!("{name}.weight"), vec![c_out, c_in, k, k], &w);
        let b = bias.then(|| {
            let b = self.uniform(c_out, bound);
            self.tensor(format!("{name}.bias"), vec![c_out], &b)
        });
        self.b.then(Op::conv(w, b, stride, padding), x)
    }

    /// A linear layer `[d_out, d_in]`. Its bias is drawn even when the layer has none (VGG-7's
    /// fc1, before batch norm): the built-ins always drew it, and the draws after it (and so
    /// a seed's initial weights) stay what they were.
    fn linear(&mut self, x: String, name: &str, d_in: usize, d_out: usize, bias: bool) -> String {
        let bound = 1.0 / (d_in as f32).sqrt();
        let w = self.uniform(d_out * d_in, bound);
        let w = self.tensor(format!("{name}.weight"), vec![d_out, d_in], &w);
        let b = self.uniform(d_out, bound);
        let b = bias.then(|| self.tensor(format!("{name}.bias"), vec![d_out], &b));
        self.b.then(Op::Linear { weight: w, bias: b }, x)
    }

    /// Batch norm over `c` channels: gamma 1, beta 0, statistics 0 and 1, eps 1e-5 (burn's
    /// and PyTorch's defaults; momentum 0.1 is the trainer's).
    fn batch_norm(&mut self, x: String, name: &str, c: usize) -> String {
        let mut t = |t: &str, v: f32| self.tensor(format!("{name}.{t}"), vec![c], &vec![v; c]);
        let op = Op::BatchNorm {
            weight: t("weight", 1.0),
            bias: t("bias", 0.0),
            running_mean: t("running_mean", 0.0),
            running_var: t("running_var", 1.0),
            eps: 1e-5,
        };
        self.b.then(op, x)
    }

    fn relu(&mut self, x: String) -> String {
        self.b.then(Op::Relu, x)
    }

    /// 2x2 max pool, stride 2.
    fn pool(&mut self, x: String) -> String {
        self.b.then(Op::max_pool(2, 2), x)
    }

    fn finish(self, kind: ModelKind, input: [usize; 3], classes: usize, output: String) -> Model {
        Model {
            tensors: self.tensors,
            arch: Some(Arch {
                name: kind.name().into(),
                input,
                classes,
                // The trainer sets the run's normalisation.
                normalize: Normalize::identity(input[0]),
                nodes: self.b.nodes,
                output,
                input_ranges: Default::default(),
            }),
            provenance: BTreeMap::new(),
        }
    }
}
