//! Element-wise and data-movement operators: affine (standalone batch norm), activations,
//! broadcasting add/mul, concatenation, channel padding, global pooling and softmax.
use super::clamp;
use rayon::prelude::*;

/// Values per parallel chunk of the element-wise loops: large enough to amortise scheduling.
const CHUNK: usize = 1 << 14;

/// Applies `v = clamp(scale[c]·v + shift[c], lo, hi)` over `[batch, channels, inner]`.
pub fn affine(
    x: &mut [f32],
    channels: usize,
    inner: usize,
    scale: &[f32],
    shift: &[f32],
    (lo, hi): (f32, f32),
) {
    x.par_chunks_mut(channels * inner).for_each(|img| {
        for (c, row) in img.chunks_exact_mut(inner).enumerate() {
            for v in row {
                *v = clamp(scale[c] * *v + shift[c], lo, hi);
            }
        }
    });
}

/// A one-input activation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Unary {
    /// `min(max(x, lo), hi)` (ReLU is `(0, inf)`).
    Clip(f32, f32),
    /// `x` if positive, else `alpha·x`.
    LeakyRelu(f32),
    /// `1 / (1 + exp(-x))`.
    Sigmoid,
    /// `max(0, min(1, alpha·x + beta))`.
    HardSigmoid(f32, f32),
    /// `x·max(0, min(1, x/6 + 1/2))`.
    HardSwish,
}

impl Unary {
    /// The function at one value.
    #[inline(always)]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Unary::Clip(lo, hi) => clamp(x, lo, hi),
            Unary::LeakyRelu(a) => {
                if x >= 0.0 {
                    x
                } else {
                    a * x
                }
            }
            Unary::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Unary::HardSigmoid(a, b) => clamp(a * x + b, 0.0, 1.0),
            Unary::HardSwish => x * clamp(x / 6.0 + 0.5, 0.0, 1.0),
        }
    }
}

/// Applies `f` in place.
pub fn unary(x: &mut [f32], f: Unary) {
    x.par_chunks_mut(CHUNK).for_each(|c| {
        // One loop per variant, so each vectorises.
        match f {
            Unary::Clip(lo, hi) => c.iter_mut().for_each(|v| *v = clamp(*v, lo, hi)),
            _ => c.iter_mut().for_each(|v| *v = f.apply(*v)),
        }
    });
}

/// A two-input element-wise operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binary {
    /// Sum.
    Add,
    /// Product.
    Mul,
}

/// How an operand is read against an output of shape `out` (per sample, padded on the left
/// to rank 3): element strides per axis, 0 where it broadcasts, and per sample (0 for a
/// constant shared by the batch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Broadcast {
    /// Output shape per sample, rank 3.
    pub out: [usize; 3],
    /// Operand strides: (sample, axis 0, axis 1, axis 2).
    pub strides: [usize; 4],
}

impl Broadcast {
    /// Reading an operand of per-sample shape `shape` (rank <= 3) as `out`; `None` unless
    /// numpy's rules allow it. `constant`: one copy for the whole batch.
    pub fn new(shape: &[usize], out: &[usize], constant: bool) -> Option<Broadcast> {
        if shape.len() > 3 || out.len() > 3 || shape.len() > out.len() {
            return None;
        }
        let pad = |s: &[usize]| -> [usize; 3] {
            let mut r = [1; 3];
            r[3 - s.len()..].copy_from_slice(s);
            r
        };
        let (s, o) = (pad(shape), pad(out));
        let mut strides = [0; 4];
        let mut st = 1;
        for i in (0..3).rev() {
            if s[i] != o[i] && s[i] != 1 {
                return None;
            }
            strides[i + 1] = if s[i] == 1 { 0 } else { st };
            st *= s[i];
        }
        strides[0] = if constant { 0 } else { st };
        Some(Broadcast { out: o, strides })
    }
}

/// `acc = clamp(acc op other, lo, hi)` where `acc` holds `batch` outputs (shape `bc.out`)
/// and `other` is read through `bc`.
pub fn binary(op: Binary, acc: &mut [f32], other: &[f32], bc: &Broadcast, (lo, hi): (f32, f32)) {
    match op {
        Binary::Add => broadcast_apply(acc, other, bc, |d, v| *d = clamp(*d + v, lo, hi)),
        Binary::Mul => broadcast_apply(acc, other, bc, |d, v| *d = clamp(*d * v, lo, hi)),
    }
}

/// `other` broadcast to `batch` outputs of shape `bc.out` (to combine with a second operand
/// that is the smaller one).
pub fn expand(other: &[f32], bc: &Broadcast, batch: usize) -> Vec<f32> {
    let mut y = vec![0f32; batch * bc.out.iter().product::<usize>()];
    broadcast_apply(&mut y, other, bc, |d, v| *d = v);
    y
}

/// Calls `f(acc[i], other[j(i)])` for every output element, parallel over samples.
fn broadcast_apply(
    acc: &mut [f32],
    other: &[f32],
    bc: &Broadcast,
    f: impl Fn(&mut f32, f32) + Sync,
) {
    let [d0, d1, d2] = bc.out;
    let [sn, s0, s1, s2] = bc.strides;
    if sn == d0 * d1 * d2 {
        // Not broadcast on any axis (each axis matches or is 1): one flat zip.
        acc.par_chunks_mut(CHUNK)
            .zip(other.par_chunks(CHUNK))
            .for_each(|(a, o)| a.iter_mut().zip(o).for_each(|(d, &v)| f(d, v)));
        return;
    }
    acc.par_chunks_mut(d0 * d1 * d2)
        .enumerate()
        .for_each(|(b, sample)| {
            for i0 in 0..d0 {
                for i1 in 0..d1 {
                    let base = b * sn + i0 * s0 + i1 * s1;
                    let row = &mut sample[(i0 * d1 + i1) * d2..][..d2];
                    if s2 == 0 {
                        let v = other[base];
                        row.iter_mut().for_each(|d| f(d, v));
                    } else {
                        let o = &other[base..base + d2];
                        row.iter_mut().zip(o).for_each(|(d, &v)| f(d, v));
                    }
                }
            }
        });
}

/// Concatenates per-sample blocks: input `i` contributes `sizes[i]` values per sample.
pub fn concat(inputs: &[&[f32]], sizes: &[usize], batch: usize) -> Vec<f32> {
    let total: usize = sizes.iter().sum();
    let mut y = vec![0f32; batch * total];
    y.par_chunks_mut(total).enumerate().for_each(|(b, out)| {
        let mut at = 0;
        for (x, &n) in inputs.iter().zip(sizes) {
            out[at..at + n].copy_from_slice(&x[b * n..(b + 1) * n]);
            at += n;
        }
    });
    y
}

/// `[batch, c, inner] -> [batch, before + c + after, inner]` with zero channels.
pub fn pad_channels(
    x: &[f32],
    batch: usize,
    c: usize,
    inner: usize,
    (before, after): (usize, usize),
) -> Vec<f32> {
    let oc = before + c + after;
    let mut y = vec![0f32; batch * oc * inner];
    for (b, out) in y.chunks_exact_mut(oc * inner).enumerate() {
        out[before * inner..(before + c) * inner]
            .copy_from_slice(&x[b * c * inner..(b + 1) * c * inner]);
    }
    y
}

/// Mean over each `inner`-long plane: `[nc, inner] -> [nc]`.
pub fn global_avg_pool(x: &[f32], inner: usize) -> Vec<f32> {
    x.chunks_exact(inner)
        .map(|p| p.iter().sum::<f32>() / inner as f32)
        .collect()
}

/// Softmax over each `f`-long row, in place; the row maximum is subtracted first so `exp`
/// cannot overflow.
pub fn softmax(x: &mut [f32], f: usize) {
    for row in x.chunks_exact_mut(f) {
        let m = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let mut s = 0f32;
        for v in row.iter_mut() {
            *v = (*v - m).exp();
            s += *v;
        }
        for v in row.iter_mut() {
            *v /= s;
        }
    }
}
