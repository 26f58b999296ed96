//! The network stored in a file, so the runtime can rebuild the model from the file alone.
//! Serialised as JSON in the file's manifest.
//!
//! Since format version 2 the network is a [`crate::graph`] of nodes (`"graph": 1` in the
//! JSON). Version-1 files stored a layer sequence ([`Layer`], with nested residual blocks);
//! they still load: [`Arch`] converts them into the equivalent graph when it is read.
//!
//! Tensor layouts follow PyTorch/ONNX: linear weight `[out, in]`, conv weight
//! `[out, in/group, kh, kw]`, activations NCHW.
use crate::graph::{Node, Op, INPUT};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Version of the graph description written into [`Arch`]'s JSON.
pub const GRAPH_VERSION: u32 = 1;

/// A network: input shape, normalisation, and its graph.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(into = "ArchWire")]
pub struct Arch {
    /// Model name (`mlp`, `lenet5`, `vgg7`, `resnet20`, or an imported model's name).
    pub name: String,
    /// Input shape (channels, height, width).
    pub input: [usize; 3],
    /// Number of output classes.
    pub classes: usize,
    /// Per-channel normalisation applied to inputs scaled to [0, 1].
    pub normalize: Normalize,
    /// The nodes in topological order; the first reads [`INPUT`].
    pub nodes: Vec<Node>,
    /// The value holding the logits (`[classes]` per image).
    pub output: String,
    /// Calibrated activation ranges (`twobit calibrate`): for a Conv or Linear node, by node
    /// name, the largest `|x|` of its input over the calibration images; the runtime's
    /// per-tensor int8 scale is `range / 127`. Empty when not calibrated.
    pub input_ranges: BTreeMap<String, f32>,
}

/// `x' = (x - mean[c]) / std[c]` per input channel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Normalize {
    /// Per-channel mean.
    pub mean: Vec<f32>,
    /// Per-channel standard deviation.
    pub std: Vec<f32>,
}

impl Normalize {
    /// No normalisation for `channels` channels (mean 0, std 1).
    pub fn identity(channels: usize) -> Self {
        Normalize {
            mean: vec![0.0; channels],
            std: vec![1.0; channels],
        }
    }
}

impl Arch {
    /// The Conv and Linear nodes (the layers that may be quantized), in graph order.
    pub fn weight_nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.op.weight().is_some())
    }

    /// Per-sample shapes of every value, checked against the tensor shapes `tensor` gives.
    pub fn shapes<'t>(
        &self,
        tensor: impl Fn(&str) -> Option<&'t [usize]>,
    ) -> Result<std::collections::BTreeMap<String, Vec<usize>>, String> {
        crate::graph::infer_shapes(&self.input, &self.nodes, tensor)
    }
}

/// The JSON form: the graph (version 2 files), or a version-1 layer list.
#[derive(Serialize, Deserialize)]
pub(crate) struct ArchWire {
    name: String,
    input: [usize; 3],
    classes: usize,
    normalize: Normalize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    graph: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nodes: Option<Vec<Node>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    output: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    layers: Option<Vec<Layer>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    input_ranges: BTreeMap<String, f32>,
}

impl From<Arch> for ArchWire {
    fn from(a: Arch) -> Self {
        ArchWire {
            name: a.name,
            input: a.input,
            classes: a.classes,
            normalize: a.normalize,
            graph: Some(GRAPH_VERSION),
            nodes: Some(a.nodes),
            output: Some(a.output),
            layers: None,
            input_ranges: a.input_ranges,
        }
    }
}

impl Arch {
    /// The graph equivalent to a version-1 layer list (`tensor_shape` gives the weights'
    /// shapes, needed to split the option-A shortcut's zero channels).
    pub fn from_layers(
        name: String,
        input: [usize; 3],
        classes: usize,
        normalize: Normalize,
        layers: &[Layer],
        tensor_shape: &dyn Fn(&str) -> Option<Vec<usize>>,
    ) -> Arch {
        let mut b = Builder::default();
        let mut channels = input[0];
        let output = b.layers(layers, INPUT.to_string(), &mut channels, tensor_shape);
        Arch {
            name,
            input,
            classes,
            normalize,
            nodes: b.nodes,
            output,
            input_ranges: BTreeMap::new(),
        }
    }

    /// Parses the JSON an [`Arch`] serialises to (or a version-1 layer list, converted with
    /// the help of `tensor_shape`).
    pub fn from_json(
        json: &str,
        tensor_shape: &dyn Fn(&str) -> Option<Vec<usize>>,
    ) -> Result<Arch, String> {
        let wire: ArchWire = serde_json::from_str(json).map_err(|e| e.to_string())?;
        Arch::from_wire(wire, tensor_shape)
    }

    /// Reads the stored JSON form. A version-1 layer list is converted into the equivalent
    /// graph; `tensor_shape` gives the stored tensors' shapes (the option-A shortcut's zero
    /// channels are split around the input's channels, which only the weights tell).
    pub(crate) fn from_wire(
        w: ArchWire,
        tensor_shape: &dyn Fn(&str) -> Option<Vec<usize>>,
    ) -> Result<Arch, String> {
        let (nodes, output) = match (w.graph, w.nodes, w.output, w.layers) {
            (Some(GRAPH_VERSION), Some(nodes), Some(output), None) => (nodes, output),
            (Some(v), _, _, _) if v != GRAPH_VERSION => {
                return Err(format!(
                    "graph version {v} is not supported (this build reads {GRAPH_VERSION})"
                ))
            }
            (None, None, None, Some(layers)) => {
                let mut b = Builder::default();
                let mut channels = w.input[0];
                let out = b.layers(&layers, INPUT.to_string(), &mut channels, tensor_shape);
                (b.nodes, out)
            }
            _ => return Err("arch needs either graph, nodes and output, or layers".into()),
        };
        Ok(Arch {
            name: w.name,
            input: w.input,
            classes: w.classes,
            normalize: w.normalize,
            nodes,
            output,
            input_ranges: w.input_ranges,
        })
    }
}

/// Builds a graph, naming nodes `n0, n1, ...` and their outputs `v0, v1, ...`. Used for
/// version-1 files and by the built-in models.
#[derive(Default)]
pub struct Builder {
    /// The nodes so far.
    pub nodes: Vec<Node>,
}

impl Builder {
    /// Appends `op` reading `inputs`; returns its output value's name.
    pub fn push(&mut self, op: Op, inputs: Vec<String>) -> String {
        let i = self.nodes.len();
        let output = format!("v{i}");
        self.nodes.push(Node {
            name: format!("n{i}"),
            op,
            inputs,
            output: output.clone(),
        });
        output
    }

    /// Appends `op` reading one value.
    pub fn then(&mut self, op: Op, x: String) -> String {
        self.push(op, vec![x])
    }

    /// ResNet's option-A shortcut from `in_channels` to `out_channels`:
    /// `x[:, :, ::stride, ::stride]` (a 1x1 max pool with that stride), then zero channels,
    /// half before (rounded down) and the rest after.
    pub fn pad_subsample(
        &mut self,
        x: String,
        stride: usize,
        in_channels: usize,
        out_channels: usize,
    ) -> String {
        let x = if stride > 1 {
            self.then(Op::max_pool(1, stride), x)
        } else {
            x
        };
        let extra = out_channels.saturating_sub(in_channels);
        if extra == 0 {
            return x;
        }
        self.then(
            Op::PadChannels {
                before: extra / 2,
                after: extra - extra / 2,
            },
            x,
        )
    }

    /// Appends a version-1 layer sequence starting from value `x` with `channels` channels;
    /// returns the last value (and leaves its channel count in `channels`).
    fn layers(
        &mut self,
        layers: &[Layer],
        mut x: String,
        channels: &mut usize,
        shape: &dyn Fn(&str) -> Option<Vec<usize>>,
    ) -> String {
        for l in layers {
            x = match l {
                Layer::Conv2d {
                    weight,
                    bias,
                    stride,
                    padding,
                } => {
                    *channels = shape(weight).and_then(|s| s.first().copied()).unwrap_or(0);
                    self.then(Op::conv(weight.clone(), bias.clone(), *stride, *padding), x)
                }
                Layer::Linear { weight, bias } => self.then(
                    Op::Linear {
                        weight: weight.clone(),
                        bias: bias.clone(),
                    },
                    x,
                ),
                Layer::BatchNorm {
                    weight,
                    bias,
                    running_mean,
                    running_var,
                    eps,
                } => self.then(
                    Op::BatchNorm {
                        weight: weight.clone(),
                        bias: bias.clone(),
                        running_mean: running_mean.clone(),
                        running_var: running_var.clone(),
                        eps: *eps,
                    },
                    x,
                ),
                Layer::Relu => self.then(Op::Relu, x),
                Layer::MaxPool2d { kernel, stride } => self.then(Op::max_pool(*kernel, *stride), x),
                // Version 1's global pool gave [C]; the graph's gives [C, 1, 1] as ONNX does.
                Layer::GlobalAvgPool => {
                    let p = self.then(Op::GlobalAvgPool, x);
                    self.then(Op::Flatten, p)
                }
                Layer::Flatten => self.then(Op::Flatten, x),
                Layer::Residual { body, shortcut } => {
                    let mut cb = *channels;
                    let b = self.layers(body, x.clone(), &mut cb, shape);
                    let s = self.layers(shortcut, x, channels, shape);
                    *channels = cb;
                    self.push(Op::Add { constant: None }, vec![b, s])
                }
                Layer::PadSubsample {
                    stride,
                    out_channels,
                } => {
                    let c = *channels;
                    *channels = *out_channels;
                    self.pad_subsample(x, *stride, c, *out_channels)
                }
            };
        }
        x
    }
}

/// A version-1 layer (files written before the graph description). Read only.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Layer {
    /// 2-D convolution, weight `[out, in, kh, kw]`, square stride and zero padding.
    Conv2d {
        /// Weight tensor name.
        weight: String,
        /// Bias tensor name, if any.
        bias: Option<String>,
        /// Stride (both axes).
        stride: usize,
        /// Zero padding (both axes).
        padding: usize,
    },
    /// Fully connected, weight `[out, in]`.
    Linear {
        /// Weight tensor name.
        weight: String,
        /// Bias tensor name, if any.
        bias: Option<String>,
    },
    /// Batch norm (inference form) over axis 1.
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
    /// max(x, 0).
    Relu,
    /// Max pooling, square window, no padding.
    MaxPool2d {
        /// Window size.
        kernel: usize,
        /// Stride.
        stride: usize,
    },
    /// Mean over H and W: NCHW -> NC.
    GlobalAvgPool,
    /// NCHW -> N(CHW), row-major.
    Flatten,
    /// `body(x) + shortcut(x)`; an empty shortcut is the identity.
    Residual {
        /// Main branch.
        body: Vec<Layer>,
        /// Shortcut branch.
        shortcut: Vec<Layer>,
    },
    /// ResNet option-A shortcut.
    PadSubsample {
        /// Spatial stride.
        stride: usize,
        /// Output channel count.
        out_channels: usize,
    },
}
