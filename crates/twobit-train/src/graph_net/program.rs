//! The compiled graph: node steps over numbered values, and the forward interpreter.
use super::{err, GraphNet};
use crate::qat::ForwardWeights;
use crate::TrainError;
use burn::tensor::activation::{leaky_relu, relu, sigmoid, softmax};
use burn::tensor::module::{avg_pool2d, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, MaxPoolOptions};
use burn::tensor::{Tensor, TensorData};
use std::collections::BTreeMap;
use twobit_format::graph::INPUT;
use twobit_format::{Arch, Op};

/// Where a weight slot's layer lives.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Slot {
    Conv(usize),
    Linear(usize),
}

/// A constant `Add`/`Mul` operand.
#[derive(Debug)]
pub(crate) struct Constant {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// One node: its operator, the index of its layer (conv, linear, batch norm) or constant,
/// its input value ids with whether each read is the last, and its output id.
#[derive(Debug)]
struct Step {
    op: Op,
    param: usize,
    /// A 2x2/2 max pool reading a ReLU's input: the fused ReLU + pool; a batch norm whose
    /// only reader is a ReLU: the fused batch norm + ReLU, writing the ReLU's output.
    fused: bool,
    /// A final softmax, left out of the training forward.
    final_softmax: bool,
    inputs: Vec<(usize, bool)>,
    output: usize,
}

/// The graph compiled for [`GraphNet`].
#[derive(Debug)]
pub(crate) struct Program {
    pub arch: Arch,
    steps: Vec<Step>,
    values: usize,
    output: usize,
    pub slots: Vec<Slot>,
    pub weight_names: Vec<(String, Option<String>)>,
    pub bn_names: Vec<[String; 4]>,
    pub constants: Vec<Constant>,
    pub float_default: Vec<bool>,
    pub fingerprint: String,
}

/// A value: `[N, F]` or `[N, C, H, W]`.
#[derive(Clone, Debug)]
enum Value {
    R2(Tensor<2>),
    R4(Tensor<4>),
}

impl Value {
    fn r4(self) -> Tensor<4> {
        match self {
            Value::R4(t) => t,
            // Shape inference admitted the graph; a flat value here is a broadcast corner.
            Value::R2(t) => {
                let [n, f] = t.dims();
                t.reshape([n, 1, 1, f])
            }
        }
    }
}

macro_rules! unary {
    ($v:expr, |$t:ident| $e:expr) => {
        match $v {
            Value::R2($t) => Value::R2($e),
            Value::R4($t) => Value::R4($e),
        }
    };
}

/// FNV-1a, stable across builds (the std hasher is not), for checkpoint fingerprints.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Program {
    pub fn compile(
        arch: &Arch,
        shapes: &BTreeMap<&str, Vec<usize>>,
        constants: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    ) -> Result<Program, TrainError> {
        let mut ids: BTreeMap<&str, usize> = BTreeMap::new();
        ids.insert(INPUT, 0);
        for n in &arch.nodes {
            let next = ids.len();
            ids.insert(&n.output, next);
        }
        let output = *ids
            .get(arch.output.as_str())
            .ok_or_else(|| err(format!("output value {} is not computed", arch.output)))?;
        // Readers per value, to fuse a ReLU into the 2x2 max pool that alone reads it.
        let mut readers: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, n) in arch.nodes.iter().enumerate() {
            for x in &n.inputs {
                readers.entry(x).or_default().push(i);
            }
        }
        let mut fused_relu = vec![false; arch.nodes.len()];
        let mut pool_reads = BTreeMap::new();
        for (i, n) in arch.nodes.iter().enumerate() {
            if n.op != Op::Relu || n.output == arch.output {
                continue;
            }
            if let Some(&[j]) = readers.get(n.output.as_str()).map(Vec::as_slice) {
                if arch.nodes[j].op == Op::max_pool(2, 2) {
                    fused_relu[i] = true;
                    pool_reads.insert(j, n.inputs[0].as_str());
                }
            }
        }
        // A ReLU that is not fused into a pool, alone reading a batch norm's output, is fused
        // into the batch norm: node of the batch norm -> the ReLU's output.
        let producer: BTreeMap<&str, usize> = arch
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.output.as_str(), i))
            .collect();
        let mut bn_relu: BTreeMap<usize, &str> = BTreeMap::new();
        for (i, n) in arch.nodes.iter().enumerate() {
            if n.op != Op::Relu || fused_relu[i] {
                continue;
            }
            let Some(&j) = producer.get(n.inputs[0].as_str()) else {
                continue;
            };
            let alone = readers.get(n.inputs[0].as_str()).map(Vec::as_slice) == Some(&[i][..]);
            if matches!(arch.nodes[j].op, Op::BatchNorm { .. })
                && alone
                && arch.nodes[j].output != arch.output
            {
                fused_relu[i] = true;
                bn_relu.insert(j, n.output.as_str());
            }
        }
        let (mut slots, mut weight_names, mut bn_names) = (Vec::new(), Vec::new(), Vec::new());
        let (mut n_conv, mut n_lin, mut float_default) = (0, 0, Vec::new());
        let mut consts: Vec<Constant> = Vec::new();
        let mut used = std::collections::BTreeSet::new();
        let mut steps = Vec::new();
        for (i, n) in arch.nodes.iter().enumerate() {
            // Every parameter tensor belongs to one layer: shared weights would be exported
            // twice under one name.
            for t in n.op.tensors() {
                if !used.insert(t.to_string()) && !constants.contains_key(t) {
                    return Err(err(format!("tensor {t} is used by two layers")));
                }
            }
            let param = match &n.op {
                Op::Conv {
                    weight,
                    bias,
                    group,
                    ..
                } => {
                    let ws = &shapes[weight.as_str()];
                    slots.push(Slot::Conv(n_conv));
                    weight_names.push((weight.clone(), bias.clone()));
                    // Depthwise: one input channel per group, more than one group.
                    float_default.push(*group > 1 && ws[1] == 1);
                    n_conv += 1;
                    n_conv - 1
                }
                Op::Linear { weight, bias } => {
                    slots.push(Slot::Linear(n_lin));
                    weight_names.push((weight.clone(), bias.clone()));
                    float_default.push(false);
                    n_lin += 1;
                    n_lin - 1
                }
                Op::BatchNorm {
                    weight,
                    bias,
                    running_mean,
                    running_var,
                    ..
                } => {
                    bn_names.push([weight, bias, running_mean, running_var].map(|s| s.clone()));
                    bn_names.len() - 1
                }
                Op::Add { constant: Some(c) } | Op::Mul { constant: Some(c) } => {
                    match consts.iter().position(|k| &k.name == c) {
                        Some(k) => k,
                        None => {
                            let (shape, values) = constants[c].clone();
                            consts.push(Constant {
                                name: c.clone(),
                                shape,
                                values,
                            });
                            consts.len() - 1
                        }
                    }
                }
                _ => 0,
            };
            if fused_relu[i] {
                continue;
            }
            let inputs = match pool_reads.get(&i) {
                Some(x) => vec![ids[x]],
                None => n.inputs.iter().map(|x| ids[x.as_str()]).collect(),
            };
            steps.push(Step {
                op: n.op.clone(),
                param,
                fused: pool_reads.contains_key(&i) || bn_relu.contains_key(&i),
                final_softmax: n.op == Op::Softmax && n.output == arch.output,
                inputs: inputs.into_iter().map(|v| (v, false)).collect(),
                output: ids[bn_relu.get(&i).copied().unwrap_or(n.output.as_str())],
            });
        }
        // Mark each value's last read (the output is never released).
        let mut seen = std::collections::BTreeSet::from([output]);
        for s in steps.iter_mut().rev() {
            for (v, last) in s.inputs.iter_mut().rev() {
                *last = seen.insert(*v);
            }
        }
        if let Some(f) = float_default.first_mut() {
            *f = true;
        }
        if let Some(f) = float_default.last_mut() {
            *f = true;
        }
        let mut key = serde_json::to_vec(&(&arch.input, &arch.nodes, &arch.output))
            .expect("graph serialises");
        for (w, _) in &weight_names {
            key.extend(format!("{w}{:?}", shapes[w.as_str()]).bytes());
        }
        Ok(Program {
            arch: arch.clone(),
            steps,
            values: ids.len(),
            output,
            slots,
            weight_names,
            bn_names,
            constants: consts,
            float_default,
            fingerprint: format!("{:016x}", fnv(&key)),
        })
    }

    pub fn slot_of_conv(&self, i: usize) -> usize {
        self.slots
            .iter()
            .position(|s| matches!(s, Slot::Conv(j) if *j == i))
            .expect("conv has a slot")
    }

    pub fn slot_of_linear(&self, i: usize) -> usize {
        self.slots
            .iter()
            .position(|s| matches!(s, Slot::Linear(j) if *j == i))
            .expect("linear has a slot")
    }

    /// Broadcastable tensor of constant `k` for a value of rank `rank` (batch axis 1).
    fn constant(&self, k: usize, rank: usize, device: &burn::tensor::Device) -> Value {
        let c = &self.constants[k];
        // A constant's leading axis beyond the value's per-sample rank is the batch axis (1).
        let per: &[usize] = if c.shape.len() == rank {
            &c.shape[1..]
        } else {
            &c.shape
        };
        let mut dims = vec![1usize; rank];
        let k = per.len().min(rank - 1);
        dims[rank - k..].copy_from_slice(&per[per.len() - k..]);
        let data = |d: Vec<usize>| TensorData::new(c.values.clone(), d);
        if rank == 2 {
            Value::R2(Tensor::from_data(data(dims), device))
        } else {
            Value::R4(Tensor::from_data(data(dims), device))
        }
    }

    /// Interprets the steps; `full` applies a final softmax too.
    pub fn run(&self, net: &GraphNet, x: Tensor<4>, fw: &ForwardWeights, full: bool) -> Tensor<2> {
        let device = x.device();
        let mut vals: Vec<Option<Value>> = vec![None; self.values];
        vals[0] = Some(Value::R4(x));
        for s in &self.steps {
            let mut ins: Vec<Value> = s
                .inputs
                .iter()
                .map(|&(v, last)| {
                    let slot = &mut vals[v];
                    // The last read takes the value, so its memory is freed (or reused).
                    if last { slot.take() } else { slot.clone() }.expect("value computed earlier")
                })
                .collect();
            let x = ins.swap_remove(0);
            let y = match &s.op {
                Op::Conv { .. } => Value::R4(net.convs[s.param].forward(x.r4(), fw)),
                Op::Linear { .. } => match x {
                    Value::R2(t) => Value::R2(net.linears[s.param].forward(t, fw)),
                    Value::R4(t) => Value::R2(net.linears[s.param].forward(t.flatten(1, 3), fw)),
                },
                Op::BatchNorm { .. } => {
                    let bn = &net.bns[s.param];
                    unary!(x, |t| crate::fast::batch_norm(bn, t, s.fused))
                }
                Op::Relu => unary!(x, |t| relu(t)),
                Op::LeakyRelu { alpha } => unary!(x, |t| leaky_relu(t, *alpha as f64)),
                Op::Clip { min, max } => unary!(x, |t| match (min, max) {
                    (Some(a), Some(b)) => t.clamp(*a, *b),
                    (Some(a), None) => t.clamp_min(*a),
                    (None, Some(b)) => t.clamp_max(*b),
                    (None, None) => t,
                }),
                Op::Sigmoid => unary!(x, |t| sigmoid(t)),
                Op::HardSigmoid { alpha, beta } => {
                    unary!(x, |t| (t * *alpha + *beta).clamp(0.0, 1.0))
                }
                Op::HardSwish => {
                    unary!(x, |t| t.clone() * (t / 6.0 + 0.5).clamp(0.0, 1.0))
                }
                Op::MaxPool {
                    kernel,
                    strides,
                    pads,
                    dilations,
                    ceil_mode,
                } => {
                    let t = x.r4();
                    if s.fused {
                        Value::R4(crate::fast::relu_pool2(t))
                    } else {
                        let o = MaxPoolOptions::new(*kernel)
                            .with_stride(*strides)
                            .with_padding_pairs([(pads[0], pads[2]), (pads[1], pads[3])])
                            .with_dilation(*dilations)
                            .with_ceil_mode(*ceil_mode);
                        Value::R4(max_pool2d(t, o))
                    }
                }
                Op::AvgPool {
                    kernel,
                    strides,
                    pads,
                    ceil_mode,
                    count_include_pad,
                } => {
                    let o = AvgPoolOptions::new(*kernel)
                        .with_stride(*strides)
                        .with_padding_pairs([(pads[0], pads[2]), (pads[1], pads[3])])
                        .with_count_include_pad(*count_include_pad)
                        .with_ceil_mode(*ceil_mode);
                    Value::R4(avg_pool2d(x.r4(), o))
                }
                // Width first, then height (the summation order ResNet-20's files were trained with).
                Op::GlobalAvgPool => Value::R4(x.r4().mean_dim(3).mean_dim(2)),
                Op::Add { constant } | Op::Mul { constant } => {
                    let b = match constant {
                        Some(_) => {
                            let rank = if matches!(x, Value::R2(_)) { 2 } else { 4 };
                            self.constant(s.param, rank, &device)
                        }
                        None => ins.pop().expect("two inputs"),
                    };
                    let add = matches!(s.op, Op::Add { .. });
                    match (x, b) {
                        (Value::R2(a), Value::R2(b)) => Value::R2(if add { a + b } else { a * b }),
                        (a, b) => {
                            let (a, b) = (a.r4(), b.r4());
                            Value::R4(if add { a + b } else { a * b })
                        }
                    }
                }
                Op::Concat => {
                    let mut all = vec![x.r4()];
                    all.extend(ins.into_iter().map(Value::r4));
                    Value::R4(Tensor::cat(all, 1))
                }
                Op::Flatten => match x {
                    Value::R4(t) => Value::R2(t.flatten(1, 3)),
                    v => v,
                },
                Op::PadChannels { before, after } => {
                    let t = x.r4();
                    let [n, _, h, w] = t.dims();
                    let mut parts = Vec::new();
                    if *before > 0 {
                        parts.push(Tensor::zeros([n, *before, h, w], &device));
                    }
                    parts.push(t);
                    if *after > 0 {
                        parts.push(Tensor::zeros([n, *after, h, w], &device));
                    }
                    Value::R4(Tensor::cat(parts, 1))
                }
                Op::Softmax if s.final_softmax && !full => x,
                Op::Softmax => match x {
                    Value::R2(t) => Value::R2(softmax(t, 1)),
                    Value::R4(t) => Value::R4(softmax(t, 1)),
                },
            };
            vals[s.output] = Some(y);
        }
        match vals[self.output].take().expect("output computed") {
            Value::R2(t) => t,
            Value::R4(t) => t.flatten(1, 3),
        }
    }
}
