//! Quantization-aware training: the forward weights of every quantized layer.
//!
//! Training forward weight (non-TTQ schemes): `wq + (w - w.detach())`, where `wq` is
//! `twobit_quant::fake_quantize(w)` uploaded as a constant. `w - w.detach()` is exactly zero
//! for finite `w`, so the forward sees `wq` bit for bit, and the gradient w.r.t. `w` is the
//! identity (straight-through estimator). (`w + (wq - w).detach()` would round.)
//!
//! TTQ (see `docs/ttq.md`): `wq = m_p * W_p - m_n * W_n` with constant masks, plus
//! `(w - w.detach()) * s` where `s` is `W_p` on the positive region, 1 in the dead zone and
//! `W_n` on the negative region (constant), giving the paper's latent-weight gradient scaling.
use crate::config::WeightScheme;
use crate::layers::{tensor_values, TtqScales, WeightLayer, WeightLayerMut};
use crate::models::QatModel;
use crate::TrainError;
use burn::module::Param;
use burn::tensor::{Device, Tensor, TensorData};
use twobit_quant::{Granularity, Levels, Quantized, Scheme};

/// One prepared forward weight.
#[derive(Clone, Debug)]
pub enum FwWeight {
    /// A linear weight.
    Rank2(Tensor<2>),
    /// A convolution weight.
    Rank4(Tensor<4>),
}

/// The forward weights of a model's weight layers, by slot; `None` means "use the float
/// weight".
#[derive(Clone, Debug, Default)]
pub struct ForwardWeights {
    slots: Vec<Option<FwWeight>>,
}

impl ForwardWeights {
    /// No overrides: a plain float forward.
    pub fn float() -> Self {
        Self::default()
    }

    /// The override of a linear layer.
    pub fn rank2(&self, slot: usize) -> Option<Tensor<2>> {
        match self.slots.get(slot) {
            Some(Some(FwWeight::Rank2(t))) => Some(t.clone()),
            _ => None,
        }
    }

    /// The override of a convolution.
    pub fn rank4(&self, slot: usize) -> Option<Tensor<4>> {
        match self.slots.get(slot) {
            Some(Some(FwWeight::Rank4(t))) => Some(t.clone()),
            _ => None,
        }
    }

    /// Sets the forward weight of a slot.
    pub fn set(&mut self, slot: usize, w: FwWeight) {
        if self.slots.len() <= slot {
            self.slots.resize(slot + 1, None);
        }
        self.slots[slot] = Some(w);
    }
}

/// The weights the evaluation uses: forward tensors plus the [`Quantized`] codes and levels
/// they were decoded from (what export writes).
#[derive(Clone, Debug, Default)]
pub struct EvalWeights {
    /// Forward overrides for the eval model.
    pub forward: ForwardWeights,
    /// Per slot, the quantized tensor (`None` for float layers).
    pub quantized: Vec<Option<Quantized>>,
}

/// What QAT carries from one batch's quantization to the next: each quantized layer's last
/// level rows, by slot. `quat` keeps its side from them (`twobit_quant::quat`); the other
/// schemes ignore them. Checkpoints store it so a resumed run continues bit for bit.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QatState {
    levels: Vec<Option<Vec<Levels>>>,
}

impl QatState {
    /// The previous level rows of a slot.
    pub fn prev(&self, slot: usize) -> Option<&[Levels]> {
        self.levels.get(slot).and_then(|l| l.as_deref())
    }

    fn set(&mut self, slot: usize, levels: Vec<Levels>) {
        if self.levels.len() <= slot {
            self.levels.resize(slot + 1, None);
        }
        self.levels[slot] = Some(levels);
    }

    /// The state as bit patterns (values then thresholds per row), exact and JSON-safe
    /// (thresholds may be infinite).
    pub fn to_bits(&self) -> Vec<Option<Vec<[u32; 7]>>> {
        let row = |l: &Levels| {
            let [v0, v1, v2, v3] = l.values.map(f32::to_bits);
            let [t0, t1, t2] = l.thresholds.map(f32::to_bits);
            [v0, v1, v2, v3, t0, t1, t2]
        };
        self.levels
            .iter()
            .map(|slot| slot.as_ref().map(|rows| rows.iter().map(row).collect()))
            .collect()
    }

    /// Inverse of [`QatState::to_bits`].
    pub fn from_bits(bits: &[Option<Vec<[u32; 7]>>]) -> Self {
        let row = |b: &[u32; 7]| {
            let [v0, v1, v2, v3, t0, t1, t2] = b.map(f32::from_bits);
            Levels {
                values: [v0, v1, v2, v3],
                thresholds: [t0, t1, t2],
            }
        };
        let levels = bits
            .iter()
            .map(|slot| slot.as_ref().map(|rows| rows.iter().map(row).collect()))
            .collect();
        QatState { levels }
    }
}

/// Which layers are quantized, and how.
#[derive(Clone, Debug)]
pub struct QatPlan {
    /// The scheme (`Fp`: nothing is quantized).
    pub scheme: WeightScheme,
    /// Per tensor or per output channel.
    pub granularity: Granularity,
    /// Per slot: quantized or kept float.
    pub quantized: Vec<bool>,
}

impl QatPlan {
    /// First and last weight layers stay float unless `quantize_all`.
    pub fn new(
        scheme: WeightScheme,
        granularity: Granularity,
        quantize_all: bool,
        num_layers: usize,
    ) -> Self {
        let quantized = (0..num_layers)
            .map(|i| {
                scheme != WeightScheme::Fp && (quantize_all || (i != 0 && i + 1 != num_layers))
            })
            .collect();
        QatPlan {
            scheme,
            granularity,
            quantized,
        }
    }

    /// The plan of a model: its [`QatModel::float_by_default`] layers (first, last, and a
    /// graph's depthwise convolutions) stay float unless `quantize_all`; weight tensors whose
    /// name matches a `keep` expression always stay float.
    pub fn for_model<M: QatModel>(
        scheme: WeightScheme,
        granularity: Granularity,
        quantize_all: bool,
        keep: &[regex::Regex],
        model: &M,
    ) -> Self {
        let float = model.float_by_default();
        let quantized = model
            .weight_tensor_names()
            .iter()
            .enumerate()
            .map(|(i, (name, _))| {
                scheme != WeightScheme::Fp
                    && (quantize_all || !float.get(i).copied().unwrap_or(false))
                    && !keep.iter().any(|r| r.is_match(name))
            })
            .collect();
        QatPlan {
            scheme,
            granularity,
            quantized,
        }
    }

    /// Whether slot `i` is quantized.
    pub fn is_quantized(&self, slot: usize) -> bool {
        self.quantized.get(slot).copied().unwrap_or(false)
    }

    fn scheme(&self) -> Option<Scheme> {
        match self.scheme {
            WeightScheme::Fp => None,
            WeightScheme::Quant(s) => Some(s),
        }
    }

    /// Attaches TTQ scales to every quantized layer, initialised to the least-squares levels
    /// for TTQ's threshold on the current (initial) weights (`twobit_quant::fit_group`).
    pub fn init_ttq<M: QatModel>(&self, model: &mut M, device: &Device) {
        if self.scheme != WeightScheme::Quant(Scheme::Ttq) {
            return;
        }
        for layer in model.weight_layers_mut() {
            let (slot, shape, values) = match &layer {
                WeightLayerMut::Linear(l) => (
                    l.slot,
                    l.weight.val().dims().to_vec(),
                    tensor_values(l.weight.val()),
                ),
                WeightLayerMut::Conv(c) => (
                    c.slot,
                    c.weight.val().dims().to_vec(),
                    tensor_values(c.weight.val()),
                ),
            };
            if !self.is_quantized(slot) {
                continue;
            }
            let groups = self.granularity.groups(&shape);
            let per = values.len() / groups;
            let (mut pos, mut neg) = (Vec::new(), Vec::new());
            for g in values.chunks(per) {
                let lv = twobit_quant::fit_group(Scheme::Ttq, g);
                // A group with no weight beyond the threshold gets a zero LS scale; keep a
                // small positive one so the scale can still learn.
                pos.push(lv.values[2].max(1e-3)); // see docs/ttq.md
                neg.push((-lv.values[0]).max(1e-3));
            }
            let scales = TtqScales {
                pos: Param::from_tensor(Tensor::from_data(TensorData::new(pos, [groups]), device)),
                neg: Param::from_tensor(Tensor::from_data(TensorData::new(neg, [groups]), device)),
            };
            match layer {
                WeightLayerMut::Linear(l) => l.ttq = Some(scales),
                WeightLayerMut::Conv(c) => c.ttq = Some(scales),
            }
        }
    }

    /// Keeps TTQ's scales positive after an optimizer step (a projection: a scale that a
    /// step drove below [`TTQ_MIN_SCALE`] is set to it), so the level table stays ordered
    /// `-W_n < 0 < W_p` as the file format requires.
    pub fn project_ttq<M: QatModel>(&self, model: &mut M) {
        if self.scheme != WeightScheme::Quant(Scheme::Ttq) {
            return;
        }
        let clamp = |p: Param<Tensor<1>>| {
            p.map(|t| {
                let tracked = t.is_require_grad();
                let t = Tensor::from_inner(t.inner().clamp_min(TTQ_MIN_SCALE));
                if tracked {
                    t.require_grad()
                } else {
                    t
                }
            })
        };
        for layer in model.weight_layers_mut() {
            let ttq = match layer {
                WeightLayerMut::Linear(l) => &mut l.ttq,
                WeightLayerMut::Conv(c) => &mut c.ttq,
            };
            if let Some(sc) = ttq.take() {
                *ttq = Some(TtqScales {
                    pos: clamp(sc.pos),
                    neg: clamp(sc.neg),
                });
            }
        }
    }

    /// The training forward weights (straight-through), one quantizer call per layer, each
    /// after the layer's previous fit in `state`, which is updated.
    pub fn train_weights<M: QatModel>(
        &self,
        model: &M,
        state: &mut QatState,
    ) -> Result<ForwardWeights, TrainError> {
        let mut fw = ForwardWeights::float();
        let Some(scheme) = self.scheme() else {
            return Ok(fw);
        };
        for (name, layer) in model.weight_layers() {
            let slot = layer.slot();
            if !self.is_quantized(slot) {
                continue;
            }
            let prev = state.prev(slot);
            let (w, levels) = match &layer {
                WeightLayer::Linear(l) => {
                    let (w, lv) = self.forward_one(l.weight.val(), &layer, scheme, prev, &name)?;
                    (FwWeight::Rank2(w), lv)
                }
                WeightLayer::Conv(c) => {
                    let (w, lv) = self.forward_one(c.weight.val(), &layer, scheme, prev, &name)?;
                    (FwWeight::Rank4(w), lv)
                }
            };
            if let Some(lv) = levels {
                state.set(slot, lv);
            }
            fw.set(slot, w);
        }
        Ok(fw)
    }

    /// One layer's training forward weight, and the level rows to carry to the next batch
    /// (none for TTQ: its levels are its learned scales).
    fn forward_one<const D: usize>(
        &self,
        w: Tensor<D>,
        layer: &WeightLayer<'_>,
        scheme: Scheme,
        prev: Option<&[Levels]>,
        name: &str,
    ) -> Result<(Tensor<D>, Option<Vec<Levels>>), TrainError> {
        if scheme == Scheme::Ttq {
            let w = ttq_forward(w, ttq_of(layer, name)?, self.granularity, name)?;
            return Ok((w, None));
        }
        let (w, lv) = ste_forward(w, scheme, self.granularity, prev, name)?;
        Ok((w, Some(lv)))
    }

    /// Quantizes every quantized layer once for evaluation (and export), after the last
    /// training fits in `state` (read, not updated). `model` is the evaluation
    /// (non-autodiff) model.
    pub fn eval_weights<M: QatModel>(
        &self,
        model: &M,
        state: &QatState,
    ) -> Result<EvalWeights, TrainError> {
        let mut out = EvalWeights::default();
        let layers = model.weight_layers();
        out.quantized = vec![None; layers.len()];
        let Some(scheme) = self.scheme() else {
            return Ok(out);
        };
        for (name, layer) in layers {
            let slot = layer.slot();
            if !self.is_quantized(slot) {
                continue;
            }
            let shape = layer.shape();
            let values = layer.weight_values();
            let q = if scheme == Scheme::Ttq {
                let scales = ttq_of(&layer, &name)?;
                let levels = ttq_levels(&values, &shape, scales, self.granularity);
                twobit_quant::quantize_with_levels(
                    &values,
                    &shape,
                    Scheme::Ttq,
                    self.granularity,
                    levels,
                )
            } else {
                twobit_quant::quantize_after(
                    &values,
                    &shape,
                    scheme,
                    self.granularity,
                    state.prev(slot),
                )
            }
            .map_err(|source| TrainError::Quant {
                layer: name.clone(),
                source,
            })?;
            let deq = twobit_quant::dequantize(&q);
            let device = match &layer {
                WeightLayer::Linear(l) => l.weight.val().device(),
                WeightLayer::Conv(c) => c.weight.val().device(),
            };
            let w = match &layer {
                WeightLayer::Linear(_) => FwWeight::Rank2(Tensor::from_data(
                    TensorData::new(deq, [shape[0], shape[1]]),
                    &device,
                )),
                WeightLayer::Conv(_) => FwWeight::Rank4(Tensor::from_data(
                    TensorData::new(deq, [shape[0], shape[1], shape[2], shape[3]]),
                    &device,
                )),
            };
            out.forward.set(slot, w);
            out.quantized[slot] = Some(q);
        }
        Ok(out)
    }
}

/// Smallest TTQ scale kept after a step (see [`QatPlan::project_ttq`]).
pub const TTQ_MIN_SCALE: f32 = 1e-4;

fn ttq_of<'a>(layer: &'a WeightLayer<'_>, name: &str) -> Result<&'a TtqScales, TrainError> {
    layer.ttq().ok_or_else(|| {
        TrainError::InvalidConfig(format!(
            "layer {name} is quantized with ttq but has no learned scales"
        ))
    })
}

fn quant_err(name: &str) -> impl FnOnce(twobit_quant::QuantError) -> TrainError + '_ {
    move |source| TrainError::Quant {
        layer: name.to_string(),
        source,
    }
}

/// `wq + (w - w.detach())` with `wq = fake_quantize(w)` after the previous fit `prev`;
/// also returns the fitted level rows.
pub fn ste_forward<const D: usize>(
    w: Tensor<D>,
    scheme: Scheme,
    granularity: Granularity,
    prev: Option<&[Levels]>,
    name: &str,
) -> Result<(Tensor<D>, Vec<Levels>), TrainError> {
    let shape = w.dims();
    let host = tensor_values(w.clone());
    let mut q = vec![0f32; host.len()];
    let levels = twobit_quant::fake_quantize(&host, &shape, scheme, granularity, prev, &mut q)
        .map_err(quant_err(name))?;
    let wq = Tensor::<D>::from_data(TensorData::new(q, shape), &w.device());
    Ok((wq + (w.clone() - w.detach()), levels))
}

/// The TTQ level rows for the current weights and learned scales.
pub fn ttq_levels(
    values: &[f32],
    shape: &[usize],
    scales: &TtqScales,
    granularity: Granularity,
) -> Vec<Levels> {
    let groups = granularity.groups(shape);
    let per = values.len() / groups.max(1);
    let pos = tensor_values(scales.pos.val());
    let neg = tensor_values(scales.neg.val());
    values
        .chunks(per.max(1))
        .enumerate()
        .map(|(g, w)| twobit_quant::ttq::levels(w, pos[g], neg[g]))
        .collect()
}

/// TTQ's forward weight with the paper's gradients (see `docs/ttq.md`).
pub fn ttq_forward<const D: usize>(
    w: Tensor<D>,
    scales: &TtqScales,
    granularity: Granularity,
    name: &str,
) -> Result<Tensor<D>, TrainError> {
    let shape = w.dims();
    let host = tensor_values(w.clone());
    if let Some((index, &value)) = host.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(quant_err(name)(twobit_quant::QuantError::NonFinite {
            index,
            value,
        }));
    }
    let levels = ttq_levels(&host, &shape, scales, granularity);
    let per = host.len() / levels.len();
    let n = host.len();
    let (mut mp, mut mn, mut s) = (vec![0f32; n], vec![0f32; n], vec![1f32; n]);
    for (i, &x) in host.iter().enumerate() {
        let lv = &levels[i / per];
        match lv.code(x) {
            2 => {
                mp[i] = 1.0;
                s[i] = lv.values[2];
            }
            0 => {
                mn[i] = 1.0;
                s[i] = -lv.values[0];
            }
            _ => {}
        }
    }
    let device = w.device();
    let mut gshape = [1usize; D];
    gshape[0] = levels.len();
    let wp = scales.pos.val().reshape(gshape);
    let wn = scales.neg.val().reshape(gshape);
    let mp = Tensor::<D>::from_data(TensorData::new(mp, shape), &device);
    let mn = Tensor::<D>::from_data(TensorData::new(mn, shape), &device);
    let s = Tensor::<D>::from_data(TensorData::new(s, shape), &device);
    let wq = mp * wp - mn * wn;
    Ok(wq + (w.clone() - w.detach()) * s)
}
