//! Compiles a graph into an execution plan: one step per executed operator, values in
//! slots freed after their last use, and the fusions (batch norm folded into the preceding
//! conv/linear, ReLU/Clip into the output pass of the step before) applied only where the
//! intermediate value has no other consumer.
use crate::ops::{Binary, Broadcast, ConvGeom, PoolGeom, Unary};
use crate::tensors::{self, Weights};
use crate::RuntimeError;
use std::collections::{BTreeMap, HashMap};
use twobit_format::graph::INPUT;
use twobit_format::{Arch, Model, Node, Op, Tensor};

/// Largest activation (values per image) any value may hold: bounds memory for hostile
/// manifests (2^28 floats = 1 GiB per image).
pub(crate) const MAX_ACTIVATION: usize = 1 << 28;

/// No clamp.
const OPEN: (f32, f32) = (f32::NEG_INFINITY, f32::INFINITY);

/// A conv/linear layer: weight matrix `[rows, cols]` (per group for a conv: `cols` is
/// `in/group·kh·kw`), then `y = clamp(scale[o]·dot + shift[o], lo, hi)` (bias, a following
/// batch norm and ReLU/Clip folded in).
#[derive(Clone)]
pub(crate) struct Dense {
    pub(crate) w: Weights,
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) scale: Vec<f32>,
    pub(crate) shift: Vec<f32>,
    pub(crate) clamp: (f32, f32),
    /// Int8 set-up, built when the runtime switches to int8 (see `Int8Layer`).
    pub(crate) int8: Option<crate::kernels::int8::Int8Layer>,
}

#[derive(Clone)]
pub(crate) enum Kind {
    /// `direct`: a depthwise convolution, run as a direct loop on float weights.
    Conv {
        d: Dense,
        geom: ConvGeom,
        direct: bool,
    },
    Linear {
        d: Dense,
    },
    /// A standalone batch norm: per-channel `clamp(scale·x + shift)` over `inner` values.
    Affine {
        scale: Vec<f32>,
        shift: Vec<f32>,
        inner: usize,
        clamp: (f32, f32),
    },
    Unary(Unary),
    MaxPool {
        geom: PoolGeom,
        c: usize,
    },
    AvgPool {
        geom: PoolGeom,
        c: usize,
        count_include_pad: bool,
    },
    GlobalAvgPool {
        inner: usize,
    },
    /// `bc[i]` reads input `i` (or the constant) as the output's shape.
    Binary {
        op: Binary,
        bc: [Broadcast; 2],
        constant: Option<Vec<f32>>,
        clamp: (f32, f32),
    },
    Concat {
        sizes: Vec<usize>,
    },
    PadChannels {
        c: usize,
        inner: usize,
        before: usize,
        after: usize,
    },
    Softmax {
        f: usize,
    },
}

/// One executed operator.
#[derive(Clone)]
pub(crate) struct Step {
    pub(crate) label: String,
    pub(crate) kind: Kind,
    /// Slots read.
    pub(crate) inputs: Vec<usize>,
    /// Per input: this is the slot's last use (and it is read once here), so the step may
    /// take the buffer and work in place.
    pub(crate) owned: Vec<bool>,
    /// Slot written.
    pub(crate) output: usize,
    /// Values per sample of each input and of the output.
    pub(crate) in_lens: Vec<usize>,
    pub(crate) out_len: usize,
    /// Slots whose last use is this step (freed after it).
    pub(crate) free: Vec<usize>,
    /// The graph value this step now produces (fusions move it along).
    value: String,
}

/// The compiled network.
#[derive(Clone)]
pub(crate) struct Plan {
    pub(crate) steps: Vec<Step>,
    pub(crate) slots: usize,
    pub(crate) output: usize,
}

fn shape_err(s: impl Into<String>) -> RuntimeError {
    RuntimeError::Shape(s.into())
}

fn numel(s: &[usize]) -> usize {
    s.iter().product()
}

/// `f ∘ g` for clamps applied in turn (clamps are monotone, so the composition is the clamp
/// to the first one's bounds passed through the second).
fn compose((lo, hi): (f32, f32), (c, d): (f32, f32)) -> (f32, f32) {
    let f = |v: f32| crate::ops::clamp(v, c, d);
    (f(lo), f(hi))
}

fn node_label(n: &Node) -> String {
    match n.op.weight() {
        Some(w) => format!("{} {w}", n.op.name()),
        None => format!("{} {}", n.op.name(), n.name),
    }
}

/// Compiles `arch` (shapes already checked) against the model's tensors.
pub(crate) fn compile(arch: &Arch, model: &Model) -> Result<Plan, RuntimeError> {
    // Missing tensors first, as their own error.
    for n in &arch.nodes {
        for t in n.op.tensors() {
            tensors::get(model, &node_label(n), t)?;
        }
    }
    let shapes = arch
        .shapes(|name| model.tensors.get(name).map(Tensor::shape))
        .map_err(RuntimeError::Shape)?;
    // The 2-bit kernels read a zero-padded copy of a conv's input: bound it too (before the
    // output, whose size the padding also drives, so the error names the cause).
    for n in &arch.nodes {
        if let Op::Conv { pads, .. } = &n.op {
            let (c, h, w) = chw(&shapes[&n.inputs[0]]);
            let [pt, pl, pb, pr] = *pads;
            let padded = h
                .checked_add(pt)
                .and_then(|v| v.checked_add(pb))
                .zip(w.checked_add(pl).and_then(|v| v.checked_add(pr)))
                .and_then(|(hp, wp)| c.checked_mul(hp)?.checked_mul(wp));
            if !matches!(padded, Some(v) if v <= MAX_ACTIVATION) {
                return Err(shape_err(format!(
                    "{} padded input: {c}x{h}x{w} with pads {pads:?} is larger than {MAX_ACTIVATION} values per image",
                    node_label(n)
                )));
            }
        }
    }
    for (name, s) in &shapes {
        let n = s.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if !matches!(n, Some(n) if n > 0 && n <= MAX_ACTIVATION) {
            return Err(shape_err(format!(
                "value `{name}`: activation {s:?} is empty or larger than {MAX_ACTIVATION} values per image"
            )));
        }
    }
    let out_shape = shapes
        .get(&arch.output)
        .ok_or_else(|| shape_err(format!("output value `{}` is not computed", arch.output)))?;
    if numel(out_shape) != arch.classes {
        return Err(shape_err(format!(
            "the network outputs {} values per image, the manifest says {} classes",
            numel(out_shape),
            arch.classes
        )));
    }
    let mut consumers: HashMap<&str, usize> = HashMap::new();
    for n in &arch.nodes {
        for i in &n.inputs {
            *consumers.entry(i.as_str()).or_default() += 1;
        }
    }
    *consumers.entry(arch.output.as_str()).or_default() += 1;

    let mut slot_of: HashMap<String, usize> = HashMap::from([(INPUT.to_string(), 0)]);
    let mut producer: HashMap<usize, usize> = HashMap::new();
    let mut steps: Vec<Step> = Vec::new();
    let mut slots = 1;
    for node in &arch.nodes {
        let x = &node.inputs[0];
        let xs = &shapes[x];
        let sole = consumers.get(x.as_str()) == Some(&1);
        let prev = producer
            .get(&slot_of[x])
            .map(|&i| &mut steps[i])
            .filter(|s| sole && s.value == *x);
        if let Some(step) = prev {
            if fuse(step, node, model, xs)? {
                step.value = node.output.clone();
                slot_of.insert(node.output.clone(), step.output);
                continue;
            }
        }
        if let Op::Flatten = node.op {
            // Row-major [C, H, W] is already [C·H·W]: the value shares its input's slot.
            slot_of.insert(node.output.clone(), slot_of[x]);
            continue;
        }
        let kind = kind(node, model, &shapes)?;
        let inputs: Vec<usize> = node.inputs.iter().map(|i| slot_of[i]).collect();
        let step = Step {
            label: node_label(node),
            kind,
            owned: vec![false; inputs.len()],
            in_lens: node.inputs.iter().map(|i| numel(&shapes[i])).collect(),
            inputs,
            output: slots,
            out_len: numel(&shapes[&node.output]),
            free: Vec::new(),
            value: node.output.clone(),
        };
        slot_of.insert(node.output.clone(), slots);
        producer.insert(slots, steps.len());
        slots += 1;
        steps.push(step);
    }
    // Last use of each slot; the output's is never.
    let output = slot_of[&arch.output];
    let mut last: BTreeMap<usize, usize> = BTreeMap::new();
    for (i, s) in steps.iter().enumerate() {
        for &slot in &s.inputs {
            last.insert(slot, i);
        }
    }
    last.remove(&output);
    for (slot, i) in last {
        steps[i].free.push(slot);
    }
    for s in &mut steps {
        let once = |slot: usize| s.inputs.iter().filter(|&&v| v == slot).count() == 1;
        s.owned = s
            .inputs
            .iter()
            .map(|&i| s.free.contains(&i) && once(i))
            .collect();
    }
    Ok(Plan {
        steps,
        slots,
        output,
    })
}

/// Folds `node` (reading `step`'s sole output, of shape `xs`) into `step` when possible.
fn fuse(step: &mut Step, node: &Node, model: &Model, xs: &[usize]) -> Result<bool, RuntimeError> {
    let c = match &node.op {
        Op::Relu => (0.0, f32::INFINITY),
        Op::Clip { min, max } => (
            min.unwrap_or(f32::NEG_INFINITY),
            max.unwrap_or(f32::INFINITY),
        ),
        Op::BatchNorm { .. } => {
            let (Kind::Conv { d, .. } | Kind::Linear { d }) = &mut step.kind else {
                return Ok(false);
            };
            if d.clamp != OPEN {
                return Ok(false);
            }
            // The 2-bit weights stay untouched, only the per-channel scale/shift change.
            let (scale, shift) = batch_norm(node, model, xs[0])?;
            for o in 0..d.rows {
                d.scale[o] *= scale[o];
                d.shift[o] = d.shift[o] * scale[o] + shift[o];
            }
            step.label.push_str(" + batch_norm");
            return Ok(true);
        }
        _ => return Ok(false),
    };
    let clamp = match &mut step.kind {
        Kind::Conv { d, .. } | Kind::Linear { d } => &mut d.clamp,
        Kind::Affine { clamp, .. } | Kind::Binary { clamp, .. } => clamp,
        _ => return Ok(false),
    };
    *clamp = compose(*clamp, c);
    step.label.push_str(" + ");
    step.label.push_str(node.op.name());
    Ok(true)
}

/// A batch norm's per-channel `(scale, shift)` for `c` channels.
fn batch_norm(node: &Node, model: &Model, c: usize) -> Result<(Vec<f32>, Vec<f32>), RuntimeError> {
    let Op::BatchNorm {
        weight,
        bias,
        running_mean,
        running_var,
        eps,
    } = &node.op
    else {
        unreachable!("called for batch norms")
    };
    let label = node_label(node);
    let g = tensors::float_vec(model, &label, weight, c)?;
    let b = tensors::float_vec(model, &label, bias, c)?;
    let m = tensors::float_vec(model, &label, running_mean, c)?;
    let v = tensors::float_vec(model, &label, running_var, c)?;
    if v.iter().any(|&x| x + eps <= 0.0) {
        return Err(shape_err(format!(
            "{label}: variance + eps must be positive"
        )));
    }
    let scale: Vec<f32> = (0..c).map(|i| g[i] / (v[i] + eps).sqrt()).collect();
    let shift = (0..c).map(|i| b[i] - m[i] * scale[i]).collect();
    Ok((scale, shift))
}

/// A conv/linear layer's weights (`groups` matrices) and bias.
fn dense(
    model: &Model,
    label: &str,
    weight: &str,
    bias: Option<&String>,
    groups: usize,
) -> Result<(Vec<usize>, Dense), RuntimeError> {
    let (shape, w) = tensors::weights(model, label, weight, groups)?;
    let rows = shape[0];
    let cols = shape[1..].iter().product();
    let shift = match bias {
        Some(b) => tensors::float_vec(model, label, b, rows)?,
        None => vec![0.0; rows],
    };
    let d = Dense {
        w,
        rows,
        cols,
        scale: vec![1.0; rows],
        shift,
        clamp: OPEN,
        int8: None,
    };
    Ok((shape, d))
}

fn chw(s: &[usize]) -> (usize, usize, usize) {
    match *s {
        [c, h, w] => (c, h, w),
        // `infer_shapes` only lets [C, H, W] values reach the spatial operators.
        _ => (s.first().copied().unwrap_or(1), 1, 1),
    }
}

/// The step for a node that was not fused.
fn kind(
    node: &Node,
    model: &Model,
    shapes: &BTreeMap<String, Vec<usize>>,
) -> Result<Kind, RuntimeError> {
    let label = node_label(node);
    let xs = &shapes[&node.inputs[0]];
    let ys = &shapes[&node.output];
    let (c, h, w) = chw(xs);
    let pool = |kernel, strides, pads, dilations| PoolGeom {
        h,
        w,
        kernel,
        strides,
        pads,
        dilations,
        oh: ys[1],
        ow: ys[2],
    };
    Ok(match &node.op {
        Op::Conv {
            weight,
            bias,
            strides,
            pads,
            dilations,
            group,
        } => {
            let (ws, mut d) = dense(model, &label, weight, bias.as_ref(), *group)?;
            let geom = ConvGeom {
                cin: c,
                h,
                w,
                kh: ws[2],
                kw: ws[3],
                strides: *strides,
                pads: *pads,
                dilations: *dilations,
                group: *group,
            };
            // Depthwise: one input channel per group, so a packed GEMM per group would be a
            // dot product of kh·kw terms; a direct loop on float weights is simpler and
            // faster.
            let direct = *group > 1 && *group == c;
            if direct {
                d.w = Weights::Float(d.w.to_f32());
            }
            Kind::Conv { d, geom, direct }
        }
        Op::Linear { weight, bias } => Kind::Linear {
            d: dense(model, &label, weight, bias.as_ref(), 1)?.1,
        },
        Op::BatchNorm { .. } => {
            let (scale, shift) = batch_norm(node, model, xs[0])?;
            Kind::Affine {
                scale,
                shift,
                inner: numel(xs) / xs[0],
                clamp: OPEN,
            }
        }
        Op::Relu => Kind::Unary(Unary::Clip(0.0, f32::INFINITY)),
        Op::Clip { min, max } => Kind::Unary(Unary::Clip(
            min.unwrap_or(f32::NEG_INFINITY),
            max.unwrap_or(f32::INFINITY),
        )),
        Op::LeakyRelu { alpha } => Kind::Unary(Unary::LeakyRelu(*alpha)),
        Op::Sigmoid => Kind::Unary(Unary::Sigmoid),
        Op::HardSigmoid { alpha, beta } => Kind::Unary(Unary::HardSigmoid(*alpha, *beta)),
        Op::HardSwish => Kind::Unary(Unary::HardSwish),
        Op::MaxPool {
            kernel,
            strides,
            pads,
            dilations,
            ..
        } => Kind::MaxPool {
            geom: pool(*kernel, *strides, *pads, *dilations),
            c,
        },
        Op::AvgPool {
            kernel,
            strides,
            pads,
            count_include_pad,
            ..
        } => Kind::AvgPool {
            geom: pool(*kernel, *strides, *pads, [1, 1]),
            c,
            count_include_pad: *count_include_pad,
        },
        Op::GlobalAvgPool => Kind::GlobalAvgPool { inner: h * w },
        Op::Add { constant } | Op::Mul { constant } => {
            let op = if matches!(node.op, Op::Add { .. }) {
                Binary::Add
            } else {
                Binary::Mul
            };
            let (bs, values) = match constant {
                Some(name) => match tensors::get(model, &label, name)? {
                    Tensor::Float(t) => {
                        let s = &t.shape[t.shape.len().saturating_sub(xs.len())..];
                        (s.to_vec(), Some(tensors::float_values(t, name)?))
                    }
                    Tensor::Packed(_) => {
                        return Err(RuntimeError::Unsupported(format!(
                            "{label}: constant `{name}` is 2-bit packed; only weights may be packed"
                        )))
                    }
                    Tensor::Int(_) => return Err(tensors::not_float(&label, name)),
                },
                None => (shapes[&node.inputs[1]].clone(), None),
            };
            let bc = |s: &[usize], constant| {
                Broadcast::new(s, ys, constant).ok_or_else(|| {
                    RuntimeError::Unsupported(format!("{label}: broadcasting {s:?} to {ys:?}"))
                })
            };
            Kind::Binary {
                op,
                bc: [bc(xs, false)?, bc(&bs, values.is_some())?],
                constant: values,
                clamp: OPEN,
            }
        }
        Op::Concat => Kind::Concat {
            sizes: node.inputs.iter().map(|i| numel(&shapes[i])).collect(),
        },
        Op::PadChannels { before, after } => Kind::PadChannels {
            c,
            inner: h * w,
            before: *before,
            after: *after,
        },
        Op::Softmax => Kind::Softmax { f: xs[0] },
        // Handled by the caller (no step).
        Op::Flatten => unreachable!("flatten aliases its input"),
    })
}
