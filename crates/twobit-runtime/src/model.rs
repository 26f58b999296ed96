//! The network executor: compiles the graph in the architecture manifest into a plan
//! ([`crate::plan`]) and runs it ([`crate::exec`]).
use crate::exec::run;
use crate::kernels::Kernel;
use crate::plan::{compile, Kind, Plan, MAX_ACTIVATION};
use crate::tensors::Weights;
use crate::{Activations, RuntimeError};
use std::path::Path;
use std::time::Duration;
use twobit_format::{Arch, Model};

/// Time spent in one executed operator (with what was fused into it) during
/// [`Runtime::forward_profiled`].
#[derive(Clone, Debug)]
pub struct LayerTime {
    /// Step description (`conv conv1.weight + batch_norm + relu`, `add n7 + relu`, ...).
    pub label: String,
    /// Wall time.
    pub time: Duration,
}

/// A loaded network ready to run.
pub struct Runtime {
    pub(crate) arch: Arch,
    pub(crate) plan: Plan,
    pub(crate) kernel: Kernel,
    pub(crate) act: Activations,
    /// A convolution path forced for every int8 layer instead of the measured one.
    pub(crate) int8_conv: Option<crate::kernels::int8::ConvPath>,
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
        let len = c.checked_mul(h).and_then(|v| v.checked_mul(w));
        if !matches!(len, Some(n) if n > 0 && n <= MAX_ACTIVATION) {
            return Err(RuntimeError::Shape(format!(
                "input: {:?} is empty or larger than {MAX_ACTIVATION} values per image",
                arch.input
            )));
        }
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
        let plan = compile(&arch, model)?;
        Ok(Runtime {
            arch,
            plan,
            kernel: Kernel::detect(),
            act: Activations::F32,
            int8_conv: None,
        })
    }

    /// The same network with every 2-bit weight expanded to f32 (fp32 GEMM path).
    pub fn dequantized(&self) -> Runtime {
        let mut plan = self.plan.clone();
        for s in &mut plan.steps {
            if let Kind::Conv { d, .. } | Kind::Linear { d } = &mut s.kind {
                d.w = Weights::Float(d.w.to_f32());
                d.int8 = None;
            }
        }
        Runtime {
            arch: self.arch.clone(),
            plan,
            kernel: self.kernel,
            act: Activations::F32,
            int8_conv: self.int8_conv,
        }
    }

    /// Chooses the packed kernel implementation (default: [`Kernel::detect`]). A kernel the
    /// CPU lacks falls back to the portable one.
    pub fn set_kernel(&mut self, kernel: Kernel) {
        self.kernel = kernel;
    }

    /// Makes every int8 convolution take `path` instead of the one measured fastest when
    /// switching to int8 (`None`, the default, measures); takes effect at the next
    /// [`Runtime::set_activations`]. For tests and for runs that must not depend on timing.
    pub fn set_int8_conv_path(&mut self, path: Option<crate::kernels::int8::ConvPath>) {
        self.int8_conv = path;
    }

    /// Chooses the activation type of the 2-bit layers (default [`Activations::F32`]).
    /// With [`Activations::Int8`] every packed conv/linear layer quantizes its input to
    /// int8 per image on the fly and sums in integers (`kernels::int8`); float layers
    /// (depthwise, the dequantized network) are unaffected.
    /// Switching to int8 prepares each packed layer once, measured on this machine with the
    /// current kernel (a few milliseconds per layer): a linear layer's table offsets (2 bits
    /// per weight per plane, see [`crate::kernels::int8::Int8Offsets`]), the batch below
    /// which one GEMV per sample beats the tile kernel and whether fp32 activations win at
    /// 32 samples; a convolution's fastest path among
    /// the int8 tile kernel, the int8 GEMM (int8 planes, 2-3 bytes per weight), the
    /// `vpermw` kernel (index vectors, 0.8-1.2 bytes per weight; AVX512-BW and VNNI, one
    /// group) and fp32 activations, with what it needs (see
    /// [`crate::ops::int8_conv_layer`]). What is kept
    /// counts in [`Runtime::weight_bytes`]; switching back drops it.
    pub fn set_activations(&mut self, act: Activations) {
        use crate::kernels::int8::{ActScale, ConvPath, Int8Layer};
        self.act = act;
        let kernel = self.kernel;
        // The k-th conv/linear step is the k-th Conv/Linear node (fusion folds only batch
        // norm and clamps into a step): its calibrated range, if any.
        let mut ranges = self.arch.weight_nodes().map(|n| {
            self.arch
                .input_ranges
                .get(&n.name)
                .map_or(ActScale::PerRow, |r| ActScale::Fixed(r / 127.0))
        });
        for s in &mut self.plan.steps {
            let act_scale = match &s.kind {
                Kind::Conv { .. } | Kind::Linear { .. } => ranges.next().unwrap_or_default(),
                _ => ActScale::PerRow,
            };
            let act_scale = if act == Activations::Int8Calibrated {
                act_scale
            } else {
                ActScale::PerRow
            };
            match (&mut s.kind, act.is_int8()) {
                (Kind::Linear { d }, true) => {
                    d.int8 = match &d.w {
                        Weights::Packed(p) => {
                            let offsets: Vec<_> = p.iter().map(|m| m.int8_offsets()).collect();
                            let gemv_below = p[0].measure_gemv_below(kernel, &offsets[0]);
                            let f32_from = p[0].measure_f32_from(kernel, &offsets[0], gemv_below);
                            Some(Int8Layer {
                                offsets,
                                gemm: Vec::new(),
                                perm: Vec::new(),
                                conv: ConvPath::Tile,
                                gemv_below,
                                f32_from,
                                act_scale,
                            })
                        }
                        _ => None,
                    }
                }
                (Kind::Conv { d, geom, .. }, true) => {
                    d.int8 = match &d.w {
                        Weights::Packed(p) => Some(Int8Layer {
                            act_scale,
                            ..match self.int8_conv {
                                Some(path) => crate::ops::int8_conv_layer_on(p, geom, path),
                                None => crate::ops::int8_conv_layer(p, geom, kernel),
                            }
                        }),
                        _ => None,
                    }
                }
                (Kind::Conv { d, .. } | Kind::Linear { d }, false) => d.int8 = None,
                _ => {}
            }
        }
    }

    /// With int8 activations, each convolution's measured path (see
    /// [`crate::kernels::int8::ConvPath`]) by step label; empty with fp32 activations.
    pub fn int8_conv_paths(&self) -> Vec<(String, &'static str)> {
        self.plan
            .steps
            .iter()
            .filter_map(|s| match &s.kind {
                Kind::Conv { d, .. } => d.int8.as_ref().map(|l| (s.label.clone(), l.conv.name())),
                _ => None,
            })
            .collect()
    }

    /// The activation type in use.
    pub fn activations(&self) -> Activations {
        self.act
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
    /// coefficients, or 4 bytes per float weight; with int8 activations, plus the int8
    /// table offsets). Biases and folded batch norm excluded.
    pub fn weight_bytes(&self) -> usize {
        self.dense()
            .map(|d| d.w.bytes() + d.int8.as_ref().map_or(0, |l| l.bytes()))
            .sum()
    }

    /// Bytes the same conv/linear weights take as fp32.
    pub fn fp32_weight_bytes(&self) -> usize {
        self.dense().map(|d| d.rows * d.cols * 4).sum()
    }

    fn dense(&self) -> impl Iterator<Item = &crate::plan::Dense> {
        self.plan.steps.iter().filter_map(|s| match &s.kind {
            Kind::Conv { d, .. } | Kind::Linear { d } => Some(d),
            _ => None,
        })
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
        Ok(run(
            &self.plan,
            self.kernel,
            self.act,
            input.to_vec(),
            batch,
            None,
        ))
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
        Ok(run(&self.plan, self.kernel, self.act, x, batch, None))
    }

    /// Like [`Runtime::try_forward`], also timing each executed operator.
    pub fn forward_profiled(
        &self,
        input: &[f32],
        batch: usize,
    ) -> Result<(Vec<f32>, Vec<LayerTime>), RuntimeError> {
        self.check_input(input, batch)?;
        let mut times = Vec::new();
        let y = run(
            &self.plan,
            self.kernel,
            self.act,
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
