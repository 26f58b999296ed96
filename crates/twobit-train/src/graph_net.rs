//! Training any network graph: [`GraphNet`] is a burn module built from a file's
//! [`twobit_format::Arch`] and tensors (a model imported from ONNX, or a built-in network's
//! graph from [`crate::models::builtin`]) whose forward interprets the graph's nodes in
//! order. It implements [`QatModel`], so [`crate::Trainer::run`] trains it (QAT,
//! checkpoints, resume, export).
//!
//! Weight layers (Conv, Linear) get slots in node order; batch norms are burn's (batch
//! statistics in training, running statistics in `valid()`); `Add`/`Mul` constants are
//! data, not parameters. Export writes exactly the graph's tensor names.
mod program;

use crate::config::{ModelKind, TrainConfig};
use crate::layers::{QConv2d, QLinear, WeightLayer, WeightLayerMut};
use crate::models::QatModel;
use crate::qat::ForwardWeights;
use crate::trainer::{Progress, RunOptions, TrainData, TrainOutcome, Trainer};
use crate::TrainError;
use burn::module::{Module, Param, RunningState};
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::tensor::{Device, Tensor, TensorData};
use program::{Program, Slot};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::sync::Arc;
use twobit_format::{Arch, FloatTensor, Model, Normalize, Op, Tensor as FileTensor};

/// How [`crate::train_graph`] starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GraphInit {
    /// From the file's (dequantized) weights: fine-tuning.
    Pretrained,
    /// Fresh PyTorch-default initialisation with the run's seed.
    Random,
}

/// A network graph as a trainable module.
#[derive(Module, Debug)]
pub struct GraphNet {
    convs: Vec<QConv2d>,
    linears: Vec<QLinear>,
    bns: Vec<BatchNorm>,
    /// The interpreted graph (structure only; not part of the record).
    #[module(skip)]
    program: Arc<Program>,
    /// A built-in network's kind, else [`ModelKind::Graph`].
    #[module(skip)]
    kind: ModelKind,
}

/// What a parameter tensor is, for random initialisation.
enum Role {
    Weight { fan_in: usize },
    Bias { fan_in: usize },
    Gamma,
    Beta,
    Mean,
    Var,
}

/// Gives a parameter tensor's values by name, shape and role.
type Source<'a> = dyn FnMut(&str, &[usize], Role) -> Result<Vec<f32>, TrainError> + 'a;

fn err(m: impl Into<String>) -> TrainError {
    TrainError::InvalidConfig(m.into())
}

fn shape_of(t: &FileTensor) -> Vec<usize> {
    match t {
        FileTensor::Packed(p) => p.shape.clone(),
        FileTensor::Float(f) => f.shape.clone(),
        FileTensor::Int(t) => t.shape.clone(),
    }
}

impl GraphNet {
    /// The built-in network `kind` (see [`crate::models::builtin`]) for images of shape
    /// `input` and `classes` classes, with the initial weights of `seed`.
    pub fn builtin(
        kind: ModelKind,
        input: [usize; 3],
        classes: usize,
        seed: u64,
        device: &Device,
    ) -> Result<Self, TrainError> {
        let model = crate::models::builtin(kind, input, classes, seed)?;
        Ok(GraphNet {
            kind,
            ..Self::from_model(&model, device)?
        })
    }

    /// The network of `model` starting from its weights (packed tensors dequantized).
    pub fn from_model(model: &Model, device: &Device) -> Result<Self, TrainError> {
        Self::build(model, device, &mut |name, shape, _| {
            crate::export::values(model, name, shape).map_err(|e| err(e.to_string()))
        })
    }

    /// The network of `model` (its graph and tensor shapes; constants kept) with fresh
    /// PyTorch-default parameters: weights and biases `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`
    /// (as [`crate::layers::Init`]), batch norm gamma 1, beta 0, statistics 0 and 1.
    pub fn init(model: &Model, seed: u64, device: &Device) -> Result<Self, TrainError> {
        let mut rng = StdRng::seed_from_u64(seed);
        Self::build(model, device, &mut |_, shape, role| {
            let n: usize = shape.iter().product();
            Ok(match role {
                Role::Weight { fan_in } | Role::Bias { fan_in } => {
                    let bound = 1.0 / (fan_in.max(1) as f32).sqrt();
                    (0..n).map(|_| rng.random_range(-bound..bound)).collect()
                }
                Role::Gamma | Role::Var => vec![1.0; n],
                Role::Beta | Role::Mean => vec![0.0; n],
            })
        })
    }

    fn build(model: &Model, device: &Device, source: &mut Source<'_>) -> Result<Self, TrainError> {
        let arch = model
            .arch
            .as_ref()
            .ok_or_else(|| err("the file has no network architecture"))?;
        let shapes: BTreeMap<&str, Vec<usize>> = model
            .tensors
            .iter()
            .map(|(n, t)| (n.as_str(), shape_of(t)))
            .collect();
        arch.shapes(|t| shapes.get(t).map(Vec::as_slice))
            .map_err(|e| err(format!("architecture: {e}")))?;
        let mut constants = BTreeMap::new();
        for node in &arch.nodes {
            if let Op::Add { constant: Some(c) } | Op::Mul { constant: Some(c) } = &node.op {
                let v = crate::export::values(model, c, &shapes[c.as_str()])
                    .map_err(|e| err(e.to_string()))?;
                constants.insert(c.clone(), (shapes[c.as_str()].clone(), v));
            }
        }
        let program = Program::compile(arch, &shapes, constants)?;
        let tensor = |v: Vec<f32>, shape: &[usize]| TensorData::new(v, shape.to_vec());
        let (mut convs, mut linears, mut bns) = (Vec::new(), Vec::new(), Vec::new());
        for node in &arch.nodes {
            match &node.op {
                Op::Conv {
                    weight,
                    bias,
                    strides,
                    pads,
                    dilations,
                    group,
                } => {
                    let ws = &shapes[weight.as_str()];
                    let fan_in = ws[1] * ws[2] * ws[3];
                    let w = source(weight, ws, Role::Weight { fan_in })?;
                    let b = match bias {
                        Some(b) => Some(source(b, &[ws[0]], Role::Bias { fan_in })?),
                        None => None,
                    };
                    convs.push(QConv2d {
                        weight: Param::from_tensor(Tensor::from_data(tensor(w, ws), device)),
                        bias: b.map(|b| {
                            Param::from_tensor(Tensor::from_data(tensor(b, &[ws[0]]), device))
                        }),
                        ttq: None,
                        stride: *strides,
                        pads: *pads,
                        dilation: *dilations,
                        groups: *group,
                        slot: program.slot_of_conv(convs.len()),
                    });
                }
                Op::Linear { weight, bias } => {
                    let ws = &shapes[weight.as_str()];
                    let fan_in = ws[1];
                    let w = source(weight, ws, Role::Weight { fan_in })?;
                    let b = match bias {
                        Some(b) => Some(source(b, &[ws[0]], Role::Bias { fan_in })?),
                        None => None,
                    };
                    linears.push(QLinear {
                        weight: Param::from_tensor(Tensor::from_data(tensor(w, ws), device)),
                        bias: b.map(|b| {
                            Param::from_tensor(Tensor::from_data(tensor(b, &[ws[0]]), device))
                        }),
                        ttq: None,
                        slot: program.slot_of_linear(linears.len()),
                    });
                }
                Op::BatchNorm {
                    weight,
                    bias,
                    running_mean,
                    running_var,
                    eps,
                } => {
                    let c = shapes[weight.as_str()][0];
                    // burn needs a positive epsilon; ONNX allows 0. Widened through its
                    // shortest decimal form, so 1e-5 (f32) is burn's 1e-5 (f64), exactly.
                    let eps = eps.to_string().parse::<f64>().unwrap_or(*eps as f64);
                    let mut bn = BatchNormConfig::new(c)
                        .with_epsilon(eps.max(1e-12))
                        .init(device);
                    let t1 = |v: Vec<f32>| Tensor::<1>::from_data(tensor(v, &[c]), device);
                    bn.gamma = Param::from_tensor(t1(source(weight, &[c], Role::Gamma)?));
                    bn.beta = Param::from_tensor(t1(source(bias, &[c], Role::Beta)?));
                    bn.running_mean =
                        RunningState::new(t1(source(running_mean, &[c], Role::Mean)?));
                    bn.running_var = RunningState::new(t1(source(running_var, &[c], Role::Var)?));
                    bns.push(bn);
                }
                _ => {}
            }
        }
        Ok(GraphNet {
            convs,
            linears,
            bns,
            program: Arc::new(program),
            kind: ModelKind::Graph,
        })
    }

    /// The graph's architecture as read.
    pub fn graph(&self) -> &Arch {
        &self.program.arch
    }

    /// The whole graph's output `[N, classes]`, including a final softmax (which
    /// [`QatModel::forward`] leaves out: the loss takes logits).
    pub fn forward_full(&self, x: Tensor<4>, fw: &ForwardWeights) -> Tensor<2> {
        self.program.run(self, x, fw, true)
    }
}

impl QatModel for GraphNet {
    fn kind(&self) -> ModelKind {
        self.kind
    }
    fn input(&self) -> [usize; 3] {
        self.program.arch.input
    }
    fn forward(&self, x: Tensor<4>, fw: &ForwardWeights) -> Tensor<2> {
        self.program.run(self, x, fw, false)
    }
    fn weight_layers(&self) -> Vec<(String, WeightLayer<'_>)> {
        let p = &self.program;
        p.slots
            .iter()
            .zip(&p.weight_names)
            .map(|(slot, (w, _))| {
                let name = w.strip_suffix(".weight").unwrap_or(w).to_string();
                let layer = match *slot {
                    Slot::Conv(i) => WeightLayer::Conv(&self.convs[i]),
                    Slot::Linear(i) => WeightLayer::Linear(&self.linears[i]),
                };
                (name, layer)
            })
            .collect()
    }
    fn weight_layers_mut(&mut self) -> Vec<WeightLayerMut<'_>> {
        let mut convs: Vec<Option<&mut QConv2d>> = self.convs.iter_mut().map(Some).collect();
        let mut lins: Vec<Option<&mut QLinear>> = self.linears.iter_mut().map(Some).collect();
        self.program
            .slots
            .iter()
            .filter_map(|slot| match *slot {
                Slot::Conv(i) => convs[i].take().map(WeightLayerMut::Conv),
                Slot::Linear(i) => lins[i].take().map(WeightLayerMut::Linear),
            })
            .collect()
    }
    fn batch_norms(&self) -> Vec<(String, &BatchNorm)> {
        self.program
            .bn_names
            .iter()
            .zip(&self.bns)
            .map(|(n, bn)| {
                (
                    n[0].strip_suffix(".weight").unwrap_or(&n[0]).to_string(),
                    bn,
                )
            })
            .collect()
    }
    fn batch_norms_mut(&mut self) -> Vec<&mut BatchNorm> {
        self.bns.iter_mut().collect()
    }
    fn arch(&self, _classes: usize, normalize: Normalize) -> Arch {
        Arch {
            normalize,
            // Ranges calibrated on the file's weights do not describe the trained ones.
            input_ranges: Default::default(),
            ..self.program.arch.clone()
        }
    }
    fn weight_tensor_names(&self) -> Vec<(String, Option<String>)> {
        self.program.weight_names.clone()
    }
    fn batch_norm_tensor_names(&self) -> Vec<[String; 4]> {
        self.program.bn_names.clone()
    }
    fn constant_tensors(&self) -> Vec<(String, FileTensor)> {
        self.program
            .constants
            .iter()
            .map(|c| {
                let t = FloatTensor::from_f32(c.shape.clone(), &c.values);
                (c.name.clone(), FileTensor::Float(t))
            })
            .collect()
    }
    fn float_by_default(&self) -> Vec<bool> {
        self.program.float_default.clone()
    }
    fn fingerprint(&self) -> Option<String> {
        Some(self.program.fingerprint.clone())
    }
}

/// Trains the graph of `start` (e.g. an imported ONNX model) on `data`: from its weights
/// ([`GraphInit::Pretrained`], fine-tuning) or freshly initialised ([`GraphInit::Random`]).
/// Without a configured normalisation the file's own (`arch.normalize`) is used, as the
/// pretrained weights expect; the written file carries it. The graph's input must be the
/// dataset's image shape and its output one logit per class.
pub fn train_graph(
    config: &TrainConfig,
    data: &TrainData,
    start: &Model,
    init: GraphInit,
    opts: &RunOptions,
    progress: &mut dyn Progress,
) -> Result<TrainOutcome, TrainError> {
    let mut config = config.clone();
    config.model = ModelKind::Graph;
    if config.normalize.is_none() {
        config.normalize = start.arch.as_ref().map(|a| a.normalize.clone());
    }
    let t = Trainer::new(&config, data)?;
    let net = match init {
        GraphInit::Pretrained => GraphNet::from_model(start, &t.device)?,
        GraphInit::Random => GraphNet::init(start, config.seed, &t.device)?,
    };
    let arch = net.graph();
    if arch.input != data.splits.train.shape {
        return Err(TrainError::InputShape {
            model: arch.name.clone(),
            input: data.splits.train.shape,
        });
    }
    let shapes: BTreeMap<&str, Vec<usize>> = start
        .tensors
        .iter()
        .map(|(n, t)| (n.as_str(), shape_of(t)))
        .collect();
    let out = arch
        .shapes(|t| shapes.get(t).map(Vec::as_slice))
        .map_err(err)?
        .remove(&arch.output)
        .unwrap_or_default();
    let classes = data.classes;
    if out.iter().product::<usize>() != classes {
        return Err(err(format!(
            "the graph outputs {out:?} values per image, the dataset has {classes} classes"
        )));
    }
    Ok(t.run(net, opts, progress)?.outcome)
}
