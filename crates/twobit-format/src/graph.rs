//! The network graph: one description that training builds its module from, the file stores
//! and the runtime executes, and that ONNX models are imported into and exported from.
//!
//! A graph is a list of [`Node`]s in topological order. Each node reads named activation
//! values (the network input is [`INPUT`]) and writes one new value; parameters are named
//! tensors of the model. Operators follow ONNX semantics (pads, strides, dilations, groups,
//! `ceil_mode`, `count_include_pad`, numpy broadcasting); activations are NCHW (or NF after a
//! flatten), with a dynamic batch axis that shapes here leave out: a value's shape is
//! per sample (`[C, H, W]` or `[F]`).
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Name of the network's input value.
pub const INPUT: &str = "input";

/// One operation: `output = op(inputs...)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// Unique node name (from the ONNX file, or generated).
    pub name: String,
    /// The operator and its attributes.
    #[serde(flatten)]
    pub op: Op,
    /// Activation values read, by name.
    pub inputs: Vec<String>,
    /// The value written.
    pub output: String,
}

/// An operator with its attributes. Tensor-valued parameters are referenced by tensor name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// 2-D convolution: weight `[out, in/group, kh, kw]`, optional bias `[out]`.
    Conv {
        /// Weight tensor name.
        weight: String,
        /// Bias tensor name.
        bias: Option<String>,
        /// Strides (h, w).
        strides: [usize; 2],
        /// Zero padding, ONNX order: (top, left, bottom, right).
        pads: [usize; 4],
        /// Dilations (h, w).
        dilations: [usize; 2],
        /// Groups (1: dense; input channels: depthwise).
        group: usize,
    },
    /// `y = x W^T + b` on `[N, F]`: weight `[out, in]` (PyTorch's layout), bias `[out]`.
    Linear {
        /// Weight tensor name.
        weight: String,
        /// Bias tensor name.
        bias: Option<String>,
    },
    /// Batch norm, inference form, over axis 1.
    BatchNorm {
        /// Scale (gamma).
        weight: String,
        /// Shift (beta).
        bias: String,
        /// Running mean.
        running_mean: String,
        /// Running variance.
        running_var: String,
        /// Epsilon.
        eps: f32,
    },
    /// `max(x, 0)`.
    Relu,
    /// `x` if positive, else `alpha * x`.
    LeakyRelu {
        /// Negative slope.
        alpha: f32,
    },
    /// `min(max(x, min), max)`; `None` is unbounded (ReLU6: 0 and 6).
    Clip {
        /// Lower bound.
        min: Option<f32>,
        /// Upper bound.
        max: Option<f32>,
    },
    /// `1 / (1 + exp(-x))`.
    Sigmoid,
    /// `max(0, min(1, alpha * x + beta))`.
    HardSigmoid {
        /// Slope.
        alpha: f32,
        /// Offset.
        beta: f32,
    },
    /// `x * max(0, min(1, x / 6 + 1/2))`.
    HardSwish,
    /// Max pooling over windows; padding never wins (it is `-inf`).
    MaxPool {
        /// Window (h, w).
        kernel: [usize; 2],
        /// Strides (h, w).
        strides: [usize; 2],
        /// Padding (top, left, bottom, right).
        pads: [usize; 4],
        /// Dilations (h, w).
        dilations: [usize; 2],
        /// Output size rounds up (a last partial window is kept).
        ceil_mode: bool,
    },
    /// Average pooling over windows.
    AvgPool {
        /// Window (h, w).
        kernel: [usize; 2],
        /// Strides (h, w).
        strides: [usize; 2],
        /// Padding (top, left, bottom, right).
        pads: [usize; 4],
        /// Output size rounds up.
        ceil_mode: bool,
        /// Padded positions count in the divisor (never those past the padding in ceil mode).
        count_include_pad: bool,
    },
    /// Mean over H and W: `[C, H, W] -> [C, 1, 1]` (ONNX's GlobalAveragePool).
    GlobalAvgPool,
    /// Element-wise sum of two values, or of one value and a constant tensor, broadcast.
    Add {
        /// A constant second operand (tensor name); then `inputs` has one value.
        constant: Option<String>,
    },
    /// Element-wise product, like [`Op::Add`].
    Mul {
        /// A constant second operand (tensor name); then `inputs` has one value.
        constant: Option<String>,
    },
    /// Concatenation of `[C_i, H, W]` values along channels.
    Concat,
    /// `[C, H, W] -> [C*H*W]`, row-major (ONNX Flatten with axis 1).
    Flatten,
    /// Zero channels added before and after: `[C, H, W] -> [before + C + after, H, W]`
    /// (ResNet's option-A shortcut; ONNX Pad on axis 1).
    PadChannels {
        /// Channels of zeros before.
        before: usize,
        /// Channels of zeros after.
        after: usize,
    },
    /// Softmax over the last axis of an `[F]` value (a network's output).
    Softmax,
}

impl Op {
    /// The operator's name as stored (`conv`, `linear`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Op::Conv { .. } => "conv",
            Op::Linear { .. } => "linear",
            Op::BatchNorm { .. } => "batch_norm",
            Op::Relu => "relu",
            Op::LeakyRelu { .. } => "leaky_relu",
            Op::Clip { .. } => "clip",
            Op::Sigmoid => "sigmoid",
            Op::HardSigmoid { .. } => "hard_sigmoid",
            Op::HardSwish => "hard_swish",
            Op::MaxPool { .. } => "max_pool",
            Op::AvgPool { .. } => "avg_pool",
            Op::GlobalAvgPool => "global_avg_pool",
            Op::Add { .. } => "add",
            Op::Mul { .. } => "mul",
            Op::Concat => "concat",
            Op::Flatten => "flatten",
            Op::PadChannels { .. } => "pad_channels",
            Op::Softmax => "softmax",
        }
    }

    /// The weight tensor of a Conv or Linear node (the quantizable layers).
    pub fn weight(&self) -> Option<&str> {
        match self {
            Op::Conv { weight, .. } | Op::Linear { weight, .. } => Some(weight),
            _ => None,
        }
    }

    /// Every tensor the operator references.
    pub fn tensors(&self) -> Vec<&str> {
        match self {
            Op::Conv { weight, bias, .. } | Op::Linear { weight, bias } => {
                std::iter::once(weight.as_str())
                    .chain(bias.as_deref())
                    .collect()
            }
            Op::BatchNorm {
                weight,
                bias,
                running_mean,
                running_var,
                ..
            } => vec![weight, bias, running_mean, running_var],
            Op::Add { constant } | Op::Mul { constant } => {
                constant.as_deref().into_iter().collect()
            }
            _ => Vec::new(),
        }
    }

    /// How many activation inputs the operator takes (`None`: one or more).
    pub fn arity(&self) -> Option<usize> {
        match self {
            Op::Add { constant } | Op::Mul { constant } => {
                Some(if constant.is_some() { 1 } else { 2 })
            }
            Op::Concat => None,
            _ => Some(1),
        }
    }

    /// A 2-D convolution with the common defaults: square kernel stride and symmetric padding.
    pub fn conv(weight: String, bias: Option<String>, stride: usize, padding: usize) -> Op {
        Op::Conv {
            weight,
            bias,
            strides: [stride, stride],
            pads: [padding; 4],
            dilations: [1, 1],
            group: 1,
        }
    }

    /// Max pooling with a square window, no padding, floor rounding.
    pub fn max_pool(kernel: usize, stride: usize) -> Op {
        Op::MaxPool {
            kernel: [kernel; 2],
            strides: [stride; 2],
            pads: [0; 4],
            dilations: [1, 1],
            ceil_mode: false,
        }
    }
}

/// Output length of a sliding window along one axis, ONNX rules: `None` when the window
/// does not fit or a parameter is zero.
///
/// `floor((len + pad0 + pad1 - dilation*(k-1) - 1) / stride) + 1`, or with `ceil` rounding
/// up, then dropping a last window that would start inside the end padding (as PyTorch and
/// onnxruntime do).
pub fn window_out(
    len: usize,
    k: usize,
    stride: usize,
    pads: (usize, usize),
    dilation: usize,
    ceil: bool,
) -> Option<usize> {
    if k == 0 || stride == 0 || dilation == 0 {
        return None;
    }
    let span = dilation.checked_mul(k - 1)?.checked_add(1)?;
    let padded = len.checked_add(pads.0)?.checked_add(pads.1)?;
    let room = padded.checked_sub(span)?;
    let mut out = if ceil {
        room.div_ceil(stride) + 1
    } else {
        room / stride + 1
    };
    if ceil && (out - 1) * stride >= len + pads.0 {
        out -= 1;
    }
    Some(out)
}

/// Broadcasts two per-sample shapes (numpy rules, aligned on the right). A leading axis of
/// size 1 beyond the longer rank stands for the batch axis and is dropped.
pub fn broadcast(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for i in 0..rank {
        let da = if i < rank - a.len() {
            1
        } else {
            a[i - (rank - a.len())]
        };
        let db = if i < rank - b.len() {
            1
        } else {
            b[i - (rank - b.len())]
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        };
    }
    Some(out)
}

/// Why a graph is not well formed, as a sentence naming the node.
pub type GraphError = String;

/// Per-sample shapes of every value of a graph, computed from the input shape and the
/// shapes of the tensors the nodes reference (`tensor` returns `None` for a missing one).
///
/// Checks, per node: inputs defined earlier (topological order), names unique, arity,
/// weight/bias/statistics shapes that fit the input, windows that fit, broadcastable
/// operands, and non-empty results. The first failure is returned as one sentence.
pub fn infer_shapes<'t>(
    input: &[usize],
    nodes: &[Node],
    tensor: impl Fn(&str) -> Option<&'t [usize]>,
) -> Result<BTreeMap<String, Vec<usize>>, GraphError> {
    let mut shapes: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    shapes.insert(INPUT.to_string(), input.to_vec());
    for node in nodes {
        let at = || format!("node {} ({})", node.name, node.op.name());
        let t = |name: &str| -> Result<&'t [usize], GraphError> {
            tensor(name).ok_or_else(|| format!("{}: tensor `{name}` is not in the file", at()))
        };
        if let Some(n) = node.op.arity() {
            if node.inputs.len() != n {
                return Err(format!(
                    "{}: takes {n} input(s), has {}",
                    at(),
                    node.inputs.len()
                ));
            }
        } else if node.inputs.is_empty() {
            return Err(format!("{}: has no inputs", at()));
        }
        let mut ins = Vec::with_capacity(node.inputs.len());
        for i in &node.inputs {
            ins.push(shapes.get(i).cloned().ok_or_else(|| {
                format!("{}: input `{i}` is not produced by an earlier node", at())
            })?);
        }
        if shapes.contains_key(&node.output) {
            return Err(format!(
                "{}: value `{}` is written twice",
                at(),
                node.output
            ));
        }
        let x = &ins[0];
        let chw = || match x.as_slice() {
            &[c, h, w] => Ok((c, h, w)),
            _ => Err(format!("{}: needs a [C, H, W] input, got {x:?}", at())),
        };
        let out: Vec<usize> = match &node.op {
            Op::Conv {
                weight,
                bias,
                strides,
                pads,
                dilations,
                group,
            } => {
                let (c, h, w) = chw()?;
                let ws = t(weight)?;
                let &[o, ig, kh, kw] = ws else {
                    return Err(format!(
                        "{}: weight {ws:?} is not [out, in/group, kh, kw]",
                        at()
                    ));
                };
                if *group == 0 || ws.contains(&0) || c % group != 0 || o % group != 0 {
                    return Err(format!(
                        "{}: weight {ws:?} with group {group} does not fit {c} input channels",
                        at()
                    ));
                }
                if ig * group != c {
                    return Err(format!(
                        "{}: weight {ws:?} expects {} input channels, the input has {c}",
                        at(),
                        ig * group
                    ));
                }
                check_bias(bias.as_deref(), o, &t, &at)?;
                let oh = window_out(h, kh, strides[0], (pads[0], pads[2]), dilations[0], false);
                let ow = window_out(w, kw, strides[1], (pads[1], pads[3]), dilations[1], false);
                match (oh, ow) {
                    (Some(oh), Some(ow)) => vec![o, oh, ow],
                    _ => {
                        return Err(format!(
                            "{}: kernel {kh}x{kw} strides {strides:?} pads {pads:?} dilations {dilations:?} does not fit {h}x{w}",
                            at()
                        ))
                    }
                }
            }
            Op::Linear { weight, bias } => {
                let &[f] = x.as_slice() else {
                    return Err(format!(
                        "{}: needs a flat [F] input, got {x:?} (add a flatten first)",
                        at()
                    ));
                };
                let ws = t(weight)?;
                let &[o, i] = ws else {
                    return Err(format!("{}: weight {ws:?} is not [out, in]", at()));
                };
                if i != f || o == 0 {
                    return Err(format!(
                        "{}: weight {ws:?} expects {i} inputs, the input has {f}",
                        at()
                    ));
                }
                check_bias(bias.as_deref(), o, &t, &at)?;
                vec![o]
            }
            Op::BatchNorm {
                weight,
                bias,
                running_mean,
                running_var,
                eps,
            } => {
                if !eps.is_finite() || *eps < 0.0 {
                    return Err(format!(
                        "{}: eps {eps} must be finite and non-negative",
                        at()
                    ));
                }
                let c = *x.first().ok_or_else(|| format!("{}: scalar input", at()))?;
                for name in [weight, bias, running_mean, running_var] {
                    let s = t(name)?;
                    if s != [c] {
                        return Err(format!(
                            "{}: tensor `{name}` has shape {s:?}, expected [{c}]",
                            at()
                        ));
                    }
                }
                x.clone()
            }
            Op::Relu | Op::Sigmoid | Op::HardSwish => x.clone(),
            Op::LeakyRelu { alpha } => {
                finite(&[*alpha], &at)?;
                x.clone()
            }
            Op::HardSigmoid { alpha, beta } => {
                finite(&[*alpha, *beta], &at)?;
                x.clone()
            }
            Op::Clip { min, max } => {
                finite(&[min.unwrap_or(0.0), max.unwrap_or(0.0)], &at)?;
                if let (Some(lo), Some(hi)) = (min, max) {
                    if lo > hi {
                        return Err(format!("{}: min {lo} is above max {hi}", at()));
                    }
                }
                x.clone()
            }
            Op::MaxPool {
                kernel,
                strides,
                pads,
                dilations,
                ceil_mode,
            } => {
                let (c, h, w) = chw()?;
                pool_out(c, h, w, kernel, strides, pads, dilations, *ceil_mode, &at)?
            }
            Op::AvgPool {
                kernel,
                strides,
                pads,
                ceil_mode,
                ..
            } => {
                let (c, h, w) = chw()?;
                pool_out(c, h, w, kernel, strides, pads, &[1, 1], *ceil_mode, &at)?
            }
            Op::GlobalAvgPool => {
                let (c, _, _) = chw()?;
                vec![c, 1, 1]
            }
            Op::Add { constant } | Op::Mul { constant } => {
                let other: Vec<usize> = match constant {
                    Some(name) => {
                        let s = t(name)?.to_vec();
                        // A constant's axis beyond the value's rank is the batch axis: 1.
                        if s.len() > x.len() + 1 || (s.len() == x.len() + 1 && s[0] != 1) {
                            return Err(format!(
                                "{}: constant `{name}` {s:?} does not broadcast to {x:?}",
                                at()
                            ));
                        }
                        s[s.len().saturating_sub(x.len())..].to_vec()
                    }
                    None => ins[1].clone(),
                };
                broadcast(x, &other).ok_or_else(|| {
                    format!("{}: shapes {x:?} and {other:?} do not broadcast", at())
                })?
            }
            Op::Concat => {
                let (_, h, w) = chw()?;
                let mut c = 0usize;
                for s in &ins {
                    match s.as_slice() {
                        &[ci, hi, wi] if hi == h && wi == w => {
                            c = c
                                .checked_add(ci)
                                .ok_or_else(|| format!("{}: overflow", at()))?
                        }
                        _ => {
                            return Err(format!(
                                "{}: inputs {ins:?} differ in more than channels",
                                at()
                            ))
                        }
                    }
                }
                vec![c, h, w]
            }
            Op::Flatten => {
                let n = x
                    .iter()
                    .try_fold(1usize, |a, &d| a.checked_mul(d))
                    .ok_or_else(|| format!("{}: overflow", at()))?;
                vec![n]
            }
            Op::PadChannels { before, after } => {
                let (c, h, w) = chw()?;
                let c = c
                    .checked_add(*before)
                    .and_then(|c| c.checked_add(*after))
                    .ok_or_else(|| format!("{}: overflow", at()))?;
                vec![c, h, w]
            }
            Op::Softmax => {
                if x.len() != 1 {
                    return Err(format!("{}: needs a flat [F] input, got {x:?}", at()));
                }
                x.clone()
            }
        };
        let numel = out.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if out.contains(&0) || numel.is_none() {
            return Err(format!("{}: empty or overflowing output {out:?}", at()));
        }
        shapes.insert(node.output.clone(), out);
    }
    Ok(shapes)
}

fn check_bias<'t>(
    bias: Option<&str>,
    out: usize,
    t: &impl Fn(&str) -> Result<&'t [usize], GraphError>,
    at: &impl Fn() -> String,
) -> Result<(), GraphError> {
    if let Some(b) = bias {
        let s = t(b)?;
        if s != [out] {
            return Err(format!(
                "{}: bias `{b}` has shape {s:?}, expected [{out}]",
                at()
            ));
        }
    }
    Ok(())
}

fn finite(v: &[f32], at: &impl Fn() -> String) -> Result<(), GraphError> {
    if v.iter().all(|x| x.is_finite()) {
        Ok(())
    } else {
        Err(format!("{}: attributes must be finite", at()))
    }
}

#[allow(clippy::too_many_arguments)]
fn pool_out(
    c: usize,
    h: usize,
    w: usize,
    kernel: &[usize; 2],
    strides: &[usize; 2],
    pads: &[usize; 4],
    dilations: &[usize; 2],
    ceil: bool,
    at: &impl Fn() -> String,
) -> Result<Vec<usize>, GraphError> {
    // ONNX: padding must be smaller than the window (else a window could be all padding).
    if pads[0] >= kernel[0].max(1)
        || pads[2] >= kernel[0].max(1)
        || pads[1] >= kernel[1].max(1)
        || pads[3] >= kernel[1].max(1)
    {
        return Err(format!(
            "{}: pads {pads:?} not smaller than the kernel {kernel:?}",
            at()
        ));
    }
    let oh = window_out(
        h,
        kernel[0],
        strides[0],
        (pads[0], pads[2]),
        dilations[0],
        ceil,
    );
    let ow = window_out(
        w,
        kernel[1],
        strides[1],
        (pads[1], pads[3]),
        dilations[1],
        ceil,
    );
    match (oh, ow) {
        (Some(oh), Some(ow)) => Ok(vec![c, oh, ow]),
        _ => Err(format!(
            "{}: kernel {kernel:?} strides {strides:?} pads {pads:?} does not fit {h}x{w}",
            at()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_sizes_follow_onnx() {
        // 3x3 same-padded convolution keeps the size; stride 2 halves it, rounding up.
        assert_eq!(window_out(32, 3, 1, (1, 1), 1, false), Some(32));
        assert_eq!(window_out(32, 3, 2, (1, 1), 1, false), Some(16));
        assert_eq!(window_out(7, 3, 2, (1, 1), 1, false), Some(4));
        // Dilation 2 widens a 3-tap kernel to 5.
        assert_eq!(window_out(10, 3, 1, (0, 0), 2, false), Some(6));
        // ceil_mode keeps a last partial window...
        assert_eq!(window_out(5, 2, 2, (0, 0), 1, false), Some(2));
        assert_eq!(window_out(5, 2, 2, (0, 0), 1, true), Some(3));
        // ...unless it would start in the end padding (PyTorch's rule).
        assert_eq!(window_out(4, 2, 2, (1, 1), 1, true), Some(3));
        assert_eq!(window_out(3, 3, 2, (1, 1), 1, true), Some(2));
        assert_eq!(window_out(2, 3, 1, (0, 0), 1, false), None);
        assert_eq!(window_out(2, 1, 0, (0, 0), 1, false), None);
    }

    #[test]
    fn broadcasting() {
        assert_eq!(broadcast(&[8, 4, 4], &[8, 1, 1]), Some(vec![8, 4, 4]));
        assert_eq!(broadcast(&[8, 4, 4], &[4]), Some(vec![8, 4, 4]));
        assert_eq!(broadcast(&[8, 4, 4], &[3, 1, 1]), None);
        assert_eq!(broadcast(&[1], &[10]), Some(vec![10]));
    }
}
