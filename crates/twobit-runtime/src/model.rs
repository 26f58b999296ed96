//! The network executor: compiles the architecture manifest into ops, runs them.
use crate::kernels::Kernel;
use crate::ops::{self, ConvGeom};
use crate::tensors::{self, Weights};
use crate::RuntimeError;
use std::path::Path;
use std::time::{Duration, Instant};
use twobit_format::{Arch, Layer, Model};

/// Largest activation (values per image) any layer may produce: bounds memory for hostile
/// manifests (2^28 floats = 1 GiB per image).
const MAX_ACTIVATION: usize = 1 << 28;

/// Per-sample activation shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    Chw(usize, usize, usize),
    Flat(usize),
}

impl Shape {
    fn len(self) -> usize {
        match self {
            Shape::Chw(c, h, w) => c * h * w,
            Shape::Flat(f) => f,
        }
    }
    fn channels_inner(self) -> (usize, usize) {
        match self {
            Shape::Chw(c, h, w) => (c, h * w),
            Shape::Flat(f) => (f, 1),
        }
    }
}

/// A conv/linear layer: weight matrix `[rows, cols]` then `y = scale[o]·dot + shift[o]`
/// (bias and any following batch norm folded in).
struct Dense {
    w: Weights,
    rows: usize,
    cols: usize,
    scale: Vec<f32>,
    shift: Vec<f32>,
    /// A following ReLU, fused into the output pass.
    relu: bool,
}

enum OpKind {
    Conv { d: Dense, geom: ConvGeom },
    Linear { d: Dense },
    Affine { scale: Vec<f32>, shift: Vec<f32> },
    Relu,
    MaxPool { k: usize, s: usize },
    GlobalAvgPool,
    Flatten,
    Residual { body: Vec<Op>, shortcut: Vec<Op> },
    PadSubsample { stride: usize, out_c: usize },
}

struct Op {
    label: String,
    kind: OpKind,
    input: Shape,
    output: Shape,
}

/// Time spent in one top-level layer during [`Runtime::forward_profiled`].
#[derive(Clone, Debug)]
pub struct LayerTime {
    /// Layer description (`conv2d conv1.weight`, `relu`, ...).
    pub label: String,
    /// Wall time.
    pub time: Duration,
}

/// A loaded network ready to run.
pub struct Runtime {
    arch: Arch,
    ops: Vec<Op>,
    kernel: Kernel,
}

impl Runtime {
    /// Memory-maps, validates and compiles a `.twobit` file.
    pub fn load(path: &Path) -> Result<Runtime, RuntimeError> {
        Runtime::from_model(&Model::load(path)?)
    }

    /// Compiles an in-memory model (its `arch` must be present).
    pub fn from_model(model: &Model) -> Result<Runtime, RuntimeError> {
        let arch = model.arch.clone().ok_or(RuntimeError::MissingArch)?;
        let [c, h, w] = arch.input;
        let input = Shape::Chw(c, h, w);
        check_size(input, "input")?;
        let n = &arch.normalize;
        if n.mean.len() != c || n.std.len() != c {
            return Err(RuntimeError::Shape(format!(
                "normalize has {} means and {} stds for {c} input channels",
                n.mean.len(),
                n.std.len()
            )));
        }
        if n.std.iter().chain(&n.mean).any(|v| !v.is_finite()) || n.std.contains(&0.0) {
            return Err(RuntimeError::NonFinite("normalize (or a zero std)".into()));
        }
        let mut shape = input;
        let ops = compile(&arch.layers, model, &mut shape)?;
        if shape.len() != arch.classes {
            return Err(RuntimeError::Shape(format!(
                "the network outputs {} values per image, the manifest says {} classes",
                shape.len(),
                arch.classes
            )));
        }
        Ok(Runtime {
            arch,
            ops,
            kernel: Kernel::detect(),
        })
    }

    /// The same network with every 2-bit weight expanded to f32 (fp32 GEMM path).
    pub fn dequantized(&self) -> Runtime {
        Runtime {
            arch: self.arch.clone(),
            ops: dequantize_ops(&self.ops),
            kernel: self.kernel,
        }
    }

    /// Chooses the packed kernel implementation (default: [`Kernel::detect`]). A kernel the
    /// CPU lacks falls back to the portable one.
    pub fn set_kernel(&mut self, kernel: Kernel) {
        self.kernel = kernel;
    }

    /// The kernel in use.
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// The architecture manifest.
    pub fn arch(&self) -> &Arch {
        &self.arch
    }

    /// Input values per image (`c·h·w`).
    pub fn input_len(&self) -> usize {
        self.arch.input.iter().product()
    }

    /// Bytes of conv/linear weights as held in memory now (packed planes + level
    /// coefficients, or 4 bytes per float weight). Biases and folded batch norm excluded.
    pub fn weight_bytes(&self) -> usize {
        fn walk(ops: &[Op]) -> usize {
            ops.iter()
                .map(|op| match &op.kind {
                    OpKind::Conv { d, .. } | OpKind::Linear { d } => match &d.w {
                        Weights::Packed(p) => p.weight_bytes(),
                        Weights::Float(v) => v.len() * 4,
                    },
                    OpKind::Residual { body, shortcut } => walk(body) + walk(shortcut),
                    _ => 0,
                })
                .sum()
        }
        walk(&self.ops)
    }

    /// Bytes the same conv/linear weights take as fp32.
    pub fn fp32_weight_bytes(&self) -> usize {
        fn walk(ops: &[Op]) -> usize {
            ops.iter()
                .map(|op| match &op.kind {
                    OpKind::Conv { d, .. } | OpKind::Linear { d } => d.rows * d.cols * 4,
                    OpKind::Residual { body, shortcut } => walk(body) + walk(shortcut),
                    _ => 0,
                })
                .sum()
        }
        walk(&self.ops)
    }

    /// Logits `[batch, classes]` for normalised NCHW input `[batch, c, h, w]`.
    ///
    /// # Panics
    /// When `input.len() != batch * c * h * w`; use [`Runtime::try_forward`] to get an error.
    pub fn forward(&self, input: &[f32], batch: usize) -> Vec<f32> {
        self.try_forward(input, batch)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Runtime::forward`] returning an error for a wrong input length.
    pub fn try_forward(&self, input: &[f32], batch: usize) -> Result<Vec<f32>, RuntimeError> {
        self.check_input(input, batch)?;
        Ok(run(&self.ops, self.kernel, input.to_vec(), batch, None))
    }

    /// Logits for raw pixels in `[0, 1]`, normalised here with the manifest's `normalize`.
    ///
    /// # Panics
    /// When `input.len() != batch * c * h * w`; use [`Runtime::try_forward_raw`].
    pub fn forward_raw(&self, input: &[f32], batch: usize) -> Vec<f32> {
        self.try_forward_raw(input, batch)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Runtime::forward_raw`] returning an error for a wrong input length.
    pub fn try_forward_raw(&self, input: &[f32], batch: usize) -> Result<Vec<f32>, RuntimeError> {
        self.check_input(input, batch)?;
        let x = normalize(input, &self.arch);
        Ok(run(&self.ops, self.kernel, x, batch, None))
    }

    /// Like [`Runtime::try_forward`], also timing each top-level layer.
    pub fn forward_profiled(
        &self,
        input: &[f32],
        batch: usize,
    ) -> Result<(Vec<f32>, Vec<LayerTime>), RuntimeError> {
        self.check_input(input, batch)?;
        let mut times = Vec::new();
        let y = run(
            &self.ops,
            self.kernel,
            input.to_vec(),
            batch,
            Some(&mut times),
        );
        Ok((y, times))
    }

    fn check_input(&self, input: &[f32], batch: usize) -> Result<(), RuntimeError> {
        let expected = batch.checked_mul(self.input_len());
        if expected != Some(input.len()) || batch == 0 {
            return Err(RuntimeError::Input {
                got: input.len(),
                batch,
                expected: expected.unwrap_or(usize::MAX),
            });
        }
        Ok(())
    }
}

fn normalize(x: &[f32], arch: &Arch) -> Vec<f32> {
    let [c, h, w] = arch.input;
    let n = &arch.normalize;
    let mut y = x.to_vec();
    for img in y.chunks_exact_mut(c * h * w) {
        for (ci, plane) in img.chunks_exact_mut(h * w).enumerate() {
            let (m, s) = (n.mean[ci], n.std[ci]);
            for v in plane {
                *v = (*v - m) / s;
            }
        }
    }
    y
}

fn check_size(s: Shape, what: &str) -> Result<(), RuntimeError> {
    let n = match s {
        Shape::Chw(c, h, w) => c.checked_mul(h).and_then(|v| v.checked_mul(w)),
        Shape::Flat(f) => Some(f),
    };
    match n {
        Some(n) if n > 0 && n <= MAX_ACTIVATION => Ok(()),
        _ => Err(RuntimeError::Shape(format!(
            "{what}: activation {s:?} is empty or larger than {MAX_ACTIVATION} values per image"
        ))),
    }
}

/// Builds a dense layer from its weight and optional bias, checking the weight's rank.
fn dense(
    model: &Model,
    label: &str,
    weight: &str,
    bias: Option<&String>,
    rank: usize,
) -> Result<(Vec<usize>, Dense), RuntimeError> {
    let (shape, w) = tensors::weights(model, label, weight)?;
    if shape.len() != rank || shape.contains(&0) {
        return Err(RuntimeError::Shape(format!(
            "{label}: weight shape {shape:?}, expected {rank} non-zero dimensions"
        )));
    }
    let rows = shape[0];
    let cols = shape[1..].iter().product();
    let shift = match bias {
        Some(b) => tensors::float_vec(model, label, b, rows)?,
        None => vec![0.0; rows],
    };
    Ok((
        shape,
        Dense {
            w,
            rows,
            cols,
            scale: vec![1.0; rows],
            shift,
            relu: false,
        },
    ))
}

fn compile(layers: &[Layer], model: &Model, shape: &mut Shape) -> Result<Vec<Op>, RuntimeError> {
    let mut ops: Vec<Op> = Vec::new();
    for layer in layers {
        let input = *shape;
        let (label, kind) = match layer {
            Layer::Conv2d {
                weight,
                bias,
                stride,
                padding,
            } => {
                let label = format!("conv2d {weight}");
                let Shape::Chw(c, h, w) = input else {
                    return Err(RuntimeError::Unsupported(format!(
                        "{label} on a flat input"
                    )));
                };
                let (ws, d) = dense(model, &label, weight, bias.as_ref(), 4)?;
                let geom = ConvGeom {
                    cin: ws[1],
                    h,
                    w,
                    kh: ws[2],
                    kw: ws[3],
                    stride: *stride,
                    pad: *padding,
                };
                if ws[1] != c {
                    return Err(RuntimeError::Shape(format!(
                        "{label}: weight expects {} input channels, the input has {c}",
                        ws[1]
                    )));
                }
                if *stride == 0
                    || padding
                        .checked_mul(2)
                        .and_then(|p| p.checked_add(h.max(w)))
                        .is_none()
                    || h + 2 * padding < geom.kh
                    || w + 2 * padding < geom.kw
                {
                    return Err(RuntimeError::Shape(format!(
                        "{label}: kernel {}x{} stride {stride} padding {padding} does not fit {h}x{w}",
                        geom.kh, geom.kw
                    )));
                }
                // The 2-bit kernels read a zero-padded copy of the input.
                check_size(
                    Shape::Chw(c, h + 2 * padding, w + 2 * padding),
                    &format!("{label} padded input"),
                )?;
                *shape = Shape::Chw(d.rows, geom.oh(), geom.ow());
                (label, OpKind::Conv { d, geom })
            }
            Layer::Linear { weight, bias } => {
                let label = format!("linear {weight}");
                let (_, d) = dense(model, &label, weight, bias.as_ref(), 2)?;
                if d.cols != input.len() {
                    return Err(RuntimeError::Shape(format!(
                        "{label}: weight expects {} inputs, the input has {}",
                        d.cols,
                        input.len()
                    )));
                }
                if let Shape::Chw(..) = input {
                    return Err(RuntimeError::Unsupported(format!(
                        "{label} on an NCHW input (add a flatten or global_avg_pool first)"
                    )));
                }
                *shape = Shape::Flat(d.rows);
                (label, OpKind::Linear { d })
            }
            Layer::BatchNorm {
                weight,
                bias,
                running_mean,
                running_var,
                eps,
            } => {
                let label = format!("batch_norm {weight}");
                let (c, _) = input.channels_inner();
                let g = tensors::float_vec(model, &label, weight, c)?;
                let b = tensors::float_vec(model, &label, bias, c)?;
                let m = tensors::float_vec(model, &label, running_mean, c)?;
                let v = tensors::float_vec(model, &label, running_var, c)?;
                if !eps.is_finite() || *eps < 0.0 || v.iter().any(|&x| x + eps <= 0.0) {
                    return Err(RuntimeError::Shape(format!(
                        "{label}: variance + eps must be positive"
                    )));
                }
                let scale: Vec<f32> = (0..c).map(|i| g[i] / (v[i] + eps).sqrt()).collect();
                let fusable = matches!(
                    ops.last(),
                    Some(Op { kind: OpKind::Conv { d, .. } | OpKind::Linear { d }, .. }) if !d.relu
                );
                let shift: Vec<f32> = (0..c).map(|i| b[i] - m[i] * scale[i]).collect();
                // Fold into the preceding conv/linear's output affine: the 2-bit weights stay
                // untouched, only the per-channel scale/shift change.
                if let (
                    true,
                    Some(Op {
                        kind: OpKind::Conv { d, .. } | OpKind::Linear { d },
                        label: prev,
                        ..
                    }),
                ) = (fusable, ops.last_mut())
                {
                    for i in 0..c {
                        d.scale[i] *= scale[i];
                        d.shift[i] = d.shift[i] * scale[i] + shift[i];
                    }
                    prev.push_str(" + ");
                    prev.push_str(&label);
                    continue;
                }
                (label, OpKind::Affine { scale, shift })
            }
            Layer::Relu => {
                // Fuse into the preceding conv/linear's output pass (saves a sweep).
                if let Some(Op {
                    kind: OpKind::Conv { d, .. } | OpKind::Linear { d },
                    label: prev,
                    ..
                }) = ops.last_mut()
                {
                    if !d.relu {
                        d.relu = true;
                        prev.push_str(" + relu");
                        continue;
                    }
                }
                ("relu".into(), OpKind::Relu)
            }
            Layer::MaxPool2d { kernel, stride } => {
                let Shape::Chw(c, h, w) = input else {
                    return Err(RuntimeError::Unsupported(
                        "max_pool2d on a flat input".into(),
                    ));
                };
                if *kernel == 0 || *stride == 0 || *kernel > h || *kernel > w {
                    return Err(RuntimeError::Shape(format!(
                        "max_pool2d: kernel {kernel} stride {stride} does not fit {h}x{w}"
                    )));
                }
                *shape = Shape::Chw(c, (h - kernel) / stride + 1, (w - kernel) / stride + 1);
                (
                    format!("max_pool2d {kernel}"),
                    OpKind::MaxPool {
                        k: *kernel,
                        s: *stride,
                    },
                )
            }
            Layer::GlobalAvgPool => {
                let Shape::Chw(c, ..) = input else {
                    return Err(RuntimeError::Unsupported(
                        "global_avg_pool on a flat input".into(),
                    ));
                };
                *shape = Shape::Flat(c);
                ("global_avg_pool".into(), OpKind::GlobalAvgPool)
            }
            Layer::Flatten => {
                *shape = Shape::Flat(input.len());
                ("flatten".into(), OpKind::Flatten)
            }
            Layer::Residual { body, shortcut } => {
                let mut sb = input;
                let body = compile(body, model, &mut sb)?;
                let mut ss = input;
                let shortcut = compile(shortcut, model, &mut ss)?;
                if sb != ss {
                    return Err(RuntimeError::Shape(format!(
                        "residual: body gives {sb:?}, shortcut gives {ss:?}"
                    )));
                }
                *shape = sb;
                ("residual".into(), OpKind::Residual { body, shortcut })
            }
            Layer::PadSubsample {
                stride,
                out_channels,
            } => {
                let Shape::Chw(c, h, w) = input else {
                    return Err(RuntimeError::Unsupported(
                        "pad_subsample on a flat input".into(),
                    ));
                };
                if *stride == 0 || *out_channels < c {
                    return Err(RuntimeError::Shape(format!(
                        "pad_subsample: stride {stride}, {c} -> {out_channels} channels"
                    )));
                }
                *shape = Shape::Chw(*out_channels, h.div_ceil(*stride), w.div_ceil(*stride));
                (
                    format!("pad_subsample {stride}"),
                    OpKind::PadSubsample {
                        stride: *stride,
                        out_c: *out_channels,
                    },
                )
            }
        };
        check_size(*shape, &label)?;
        ops.push(Op {
            label,
            kind,
            input,
            output: *shape,
        });
    }
    Ok(ops)
}

fn dequantize_ops(ops: &[Op]) -> Vec<Op> {
    let dq = |d: &Dense| Dense {
        w: Weights::Float(match &d.w {
            Weights::Packed(p) => p.dequantize(),
            Weights::Float(v) => v.clone(),
        }),
        rows: d.rows,
        cols: d.cols,
        scale: d.scale.clone(),
        shift: d.shift.clone(),
        relu: d.relu,
    };
    ops.iter()
        .map(|op| Op {
            label: op.label.clone(),
            input: op.input,
            output: op.output,
            kind: match &op.kind {
                OpKind::Conv { d, geom } => OpKind::Conv {
                    d: dq(d),
                    geom: *geom,
                },
                OpKind::Linear { d } => OpKind::Linear { d: dq(d) },
                OpKind::Affine { scale, shift } => OpKind::Affine {
                    scale: scale.clone(),
                    shift: shift.clone(),
                },
                OpKind::Relu => OpKind::Relu,
                OpKind::MaxPool { k, s } => OpKind::MaxPool { k: *k, s: *s },
                OpKind::GlobalAvgPool => OpKind::GlobalAvgPool,
                OpKind::Flatten => OpKind::Flatten,
                OpKind::Residual { body, shortcut } => OpKind::Residual {
                    body: dequantize_ops(body),
                    shortcut: dequantize_ops(shortcut),
                },
                OpKind::PadSubsample { stride, out_c } => OpKind::PadSubsample {
                    stride: *stride,
                    out_c: *out_c,
                },
            },
        })
        .collect()
}

fn run(
    ops: &[Op],
    kernel: Kernel,
    mut x: Vec<f32>,
    batch: usize,
    mut times: Option<&mut Vec<LayerTime>>,
) -> Vec<f32> {
    for op in ops {
        let t0 = Instant::now();
        x = run_op(op, kernel, x, batch);
        if let Some(t) = times.as_deref_mut() {
            t.push(LayerTime {
                label: op.label.clone(),
                time: t0.elapsed(),
            });
        }
    }
    x
}

fn linear(d: &Dense, kernel: Kernel, x: &[f32], batch: usize) -> Vec<f32> {
    let mut y = vec![0f32; batch * d.rows];
    match &d.w {
        Weights::Packed(p) => p.matmul(kernel, x, batch, &mut y),
        Weights::Float(w) => crate::fp32::sgemm(batch, d.rows, d.cols, x, w, true, &mut y, true),
    }
    let floor = if d.relu { 0.0 } else { f32::NEG_INFINITY };
    for row in y.chunks_exact_mut(d.rows) {
        for (o, v) in row.iter_mut().enumerate() {
            *v = (d.scale[o] * *v + d.shift[o]).max(floor);
        }
    }
    y
}

fn run_op(op: &Op, kernel: Kernel, mut x: Vec<f32>, batch: usize) -> Vec<f32> {
    match &op.kind {
        OpKind::Conv { d, geom } => match &d.w {
            Weights::Packed(p) => {
                ops::conv2d_packed(p, geom, kernel, &x, batch, &d.scale, &d.shift, d.relu)
            }
            Weights::Float(w) => {
                ops::conv2d_f32(w, d.rows, geom, &x, batch, &d.scale, &d.shift, d.relu)
            }
        },
        OpKind::Linear { d } => linear(d, kernel, &x, batch),
        OpKind::Affine { scale, shift } => {
            let (c, inner) = op.input.channels_inner();
            ops::affine(&mut x, c, inner, scale, shift);
            x
        }
        OpKind::Relu => {
            ops::relu(&mut x);
            x
        }
        OpKind::MaxPool { k, s } => {
            let Shape::Chw(c, h, w) = op.input else {
                unreachable!("checked at load")
            };
            ops::max_pool(&x, batch * c, h, w, *k, *s)
        }
        OpKind::GlobalAvgPool => {
            let (_, inner) = op.input.channels_inner();
            ops::global_avg_pool(&x, inner)
        }
        OpKind::Flatten => x,
        OpKind::Residual { body, shortcut } => {
            let s = run(shortcut, kernel, x.clone(), batch, None);
            let mut b = run(body, kernel, x, batch, None);
            for (v, s) in b.iter_mut().zip(&s) {
                *v += s;
            }
            b
        }
        OpKind::PadSubsample { stride, out_c } => {
            let Shape::Chw(c, h, w) = op.input else {
                unreachable!("checked at load")
            };
            ops::pad_subsample(&x, batch, c, h, w, *stride, *out_c)
        }
    }
}
