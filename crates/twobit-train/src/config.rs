//! Training configuration and the names accepted on the command line.
use crate::TrainError;
use regex::Regex;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use twobit_format::Normalize;
use twobit_quant::{Granularity, Scheme};

/// A network architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ModelKind {
    /// 784-300-100-10 multilayer perceptron.
    Mlp,
    /// LeNet-5 (20 and 50 5x5 convolutions, fc 500, fc 10).
    Lenet5,
    /// VGG-7 as in the TWN paper.
    Vgg7,
    /// He et al.'s CIFAR ResNet-20 with option-A shortcuts.
    Resnet20,
    /// Any network graph from a file (see [`crate::train_graph`]).
    Graph,
}

impl ModelKind {
    /// The CLI name.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Mlp => "mlp",
            ModelKind::Lenet5 => "lenet5",
            ModelKind::Vgg7 => "vgg7",
            ModelKind::Resnet20 => "resnet20",
            ModelKind::Graph => "graph",
        }
    }
}

impl FromStr for ModelKind {
    type Err = TrainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "mlp" => Ok(ModelKind::Mlp),
            "lenet5" => Ok(ModelKind::Lenet5),
            "vgg7" => Ok(ModelKind::Vgg7),
            "resnet20" => Ok(ModelKind::Resnet20),
            "graph" => Ok(ModelKind::Graph),
            _ => Err(TrainError::UnknownModel(s.to_string())),
        }
    }
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How weights are represented in training: float (`fp`) or a 2-bit scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightScheme {
    /// No quantization (float baseline).
    Fp,
    /// A 2-bit scheme from the quantizer crate.
    Quant(Scheme),
}

impl WeightScheme {
    /// The CLI name.
    pub fn name(self) -> &'static str {
        match self {
            WeightScheme::Fp => "fp",
            WeightScheme::Quant(s) => s.name(),
        }
    }
}

impl FromStr for WeightScheme {
    type Err = TrainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "fp" {
            return Ok(WeightScheme::Fp);
        }
        s.parse::<Scheme>()
            .map(WeightScheme::Quant)
            .map_err(|_| TrainError::UnknownScheme(s.to_string()))
    }
}

impl fmt::Display for WeightScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The optimizer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OptimizerKind {
    /// SGD, momentum 0.9, dampening 0 (PyTorch semantics), L2 weight decay.
    Sgd,
    /// Adam (beta 0.9/0.999, eps 1e-8), L2 weight decay added to the gradient.
    Adam,
}

impl FromStr for OptimizerKind {
    type Err = TrainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sgd" => Ok(OptimizerKind::Sgd),
            "adam" => Ok(OptimizerKind::Adam),
            _ => Err(TrainError::UnknownOptimizer(s.to_string())),
        }
    }
}

impl OptimizerKind {
    /// The CLI name.
    pub fn name(self) -> &'static str {
        match self {
            OptimizerKind::Sgd => "sgd",
            OptimizerKind::Adam => "adam",
        }
    }
}

/// The learning-rate schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScheduleKind {
    /// Cosine annealing from `lr` to 0, updated every iteration.
    Cosine,
    /// `lr`, divided by 10 after 50 % and again after 75 % of the epochs.
    Step,
}

impl FromStr for ScheduleKind {
    type Err = TrainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cosine" => Ok(ScheduleKind::Cosine),
            "step" => Ok(ScheduleKind::Step),
            _ => Err(TrainError::UnknownSchedule(s.to_string())),
        }
    }
}

impl ScheduleKind {
    /// The CLI name.
    pub fn name(self) -> &'static str {
        match self {
            ScheduleKind::Cosine => "cosine",
            ScheduleKind::Step => "step",
        }
    }
}

/// Everything that determines a training run.
#[derive(Clone, Debug)]
pub struct TrainConfig {
    /// The network.
    pub model: ModelKind,
    /// Float or a 2-bit scheme.
    pub scheme: WeightScheme,
    /// One level table per tensor or per output channel.
    pub granularity: Granularity,
    /// Quantize the first and last weight layers too (kept float by default).
    pub quantize_all: bool,
    /// Number of epochs.
    pub epochs: usize,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Initial learning rate (`None`: 0.05 for SGD, 0.001 for Adam).
    pub lr: Option<f64>,
    /// L2 weight decay.
    pub weight_decay: f64,
    /// The optimizer.
    pub optimizer: OptimizerKind,
    /// The learning-rate schedule.
    pub schedule: ScheduleKind,
    /// Seed for initialisation, data order and augmentation.
    pub seed: u64,
    /// Train on the first `n` training images only.
    pub train_limit: Option<usize>,
    /// Evaluate on the first `n` test images only.
    pub test_limit: Option<usize>,
    /// Weight tensors whose name matches one of these regular expressions stay float.
    pub keep: Vec<String>,
    /// Input normalisation instead of the dataset's (`--mean/--std`, or an imported
    /// file's); it is also written into the trained file.
    pub normalize: Option<Normalize>,
    /// Random augmentation of training images; `None`: the dataset's default (crop and
    /// flip for CIFAR-10, none otherwise).
    pub augment: Option<twobit_data::Augment>,
}

impl TrainConfig {
    /// A configuration with the defaults of `twobit train`.
    pub fn new(model: ModelKind, scheme: WeightScheme) -> Self {
        TrainConfig {
            model,
            scheme,
            granularity: Granularity::Tensor,
            quantize_all: false,
            epochs: 15,
            batch_size: 128,
            lr: None,
            weight_decay: 5e-4,
            optimizer: OptimizerKind::Sgd,
            schedule: ScheduleKind::Cosine,
            seed: 1,
            train_limit: None,
            test_limit: None,
            keep: Vec::new(),
            normalize: None,
            augment: None,
        }
    }

    /// The initial learning rate, resolving the optimizer's default.
    pub fn learning_rate(&self) -> f64 {
        self.lr.unwrap_or(match self.optimizer {
            OptimizerKind::Sgd => 0.05,
            OptimizerKind::Adam => 1e-3,
        })
    }

    /// Checks ranges.
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |m: &str| Err(TrainError::InvalidConfig(m.to_string()));
        if self.epochs == 0 {
            return bad("--epochs must be at least 1");
        }
        if self.batch_size == 0 {
            return bad("--batch-size must be at least 1");
        }
        let lr = self.learning_rate();
        if !(lr.is_finite() && lr > 0.0) {
            return bad("--lr must be a positive number");
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad("--weight-decay must be a non-negative number");
        }
        if self.train_limit == Some(0) {
            return bad("--train-limit must be at least 1");
        }
        self.keep_regexes()?;
        if let Some(n) = &self.normalize {
            let ok = !n.mean.is_empty()
                && n.mean.len() == n.std.len()
                && n.mean.iter().all(|m| m.is_finite())
                && n.std.iter().all(|s| s.is_finite() && *s > 0.0);
            if !ok {
                return bad("--mean/--std need one finite mean and positive std per channel");
            }
        }
        Ok(())
    }

    /// The compiled `keep` expressions.
    pub fn keep_regexes(&self) -> Result<Vec<Regex>, TrainError> {
        self.keep
            .iter()
            .map(|k| {
                Regex::new(k).map_err(|e| TrainError::InvalidConfig(format!("--keep {k}: {e}")))
            })
            .collect()
    }
}
