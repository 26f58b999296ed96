//! Batch norm in training mode (batch statistics), optionally fused with the ReLU after it:
//! the kernels, and the backward step of [`super::FastOps::fast_batch_norm`].
//!
//! burn-flex 0.22 runs burn's generic `batch_norm_train`: swapped-axes copies, separate
//! reductions and broadcast element-wise operations, each a pass over memory (ResNet-20's
//! and VGG-7's batch norms took 27-33 % of a training step, `examples/profile_graph.rs`).
//! Here the statistics are one parallel pass per channel (its data then in cache for the
//! variance), the normalisation one pass per image, and the backward the same two passes.
//!
//! The input is `[N, C, S]` (`S` the spatial size, 1 for `[N, C]`). Statistics are summed in
//! `f64` per channel, in a fixed order (each channel is one task), so the results do not
//! depend on the number of threads. The variance is the biased one (burn's, PyTorch's).

use super::kernels::row_sum;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Shape of a batch norm input: `n` samples of `c` channels of `s` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BnShape {
    /// Batch size.
    pub n: usize,
    /// Channels.
    pub c: usize,
    /// Values per channel and sample (`H*W`; 1 for `[N, C]`).
    pub s: usize,
}

impl BnShape {
    /// From dimensions `[N, C, ...]`.
    pub fn of(dims: &[usize]) -> BnShape {
        assert!(
            dims.len() >= 2,
            "batch norm: input {dims:?} has no channel axis"
        );
        BnShape {
            n: dims[0],
            c: dims[1],
            s: dims[2..].iter().product(),
        }
    }
    fn count(&self) -> f64 {
        (self.n * self.s) as f64
    }
}

/// Sum over one channel `ch` of `f(block)` over its `N` blocks of `S` values, in `f64`.
fn channel_sum(sh: &BnShape, data: &[f32], ch: usize, f: impl Fn(&[f32]) -> f32) -> f64 {
    (0..sh.n)
        .map(|i| f(&data[(i * sh.c + ch) * sh.s..][..sh.s]) as f64)
        .sum()
}

/// Per-channel affine map of the normalisation, `y = x * a + b`: `a = gamma / sqrt(var +
/// eps)`, `b = beta - mean * a`. Also returns `1 / sqrt(var + eps)`.
fn affine(gamma: &[f32], beta: &[f32], mean: &[f32], var: &[f32], eps: f64) -> [Vec<f32>; 3] {
    let inv: Vec<f32> = var
        .iter()
        .map(|&v| (1.0 / (v as f64 + eps).sqrt()) as f32)
        .collect();
    let a: Vec<f32> = gamma.iter().zip(&inv).map(|(g, i)| g * i).collect();
    let b = beta
        .iter()
        .zip(mean)
        .zip(&a)
        .map(|((b, m), a)| b - m * a)
        .collect();
    [a, b, inv]
}

/// The normalised value of `x` (`x * a + b`), rectified when `relu`; the backward
/// recomputes it the same way, so its ReLU mask is the forward's exactly.
#[inline(always)]
fn norm(x: f32, a: f32, b: f32, relu: bool) -> f32 {
    let y = x * a + b;
    if relu {
        y.max(0.0)
    } else {
        y
    }
}

/// The output gradient `g` where the output (recomputed from `x`) is positive, with the
/// ReLU (`RELU`, a constant so that the loops are compiled for each case), else `g`.
///
/// Without a comparison: the compiler turned `y > 0` (as a branch, a select, a 0/1 factor or
/// integer bit tests alike) into a branch, which mispredicts when about half the outputs
/// are negative: the fused backward's sums took 3.9 ms instead of 0.5 (16 channels of
/// 32x32, batch 128). `step` is exactly 1 for every positive `y` (the smallest subnormal
/// times 2^252 is above 1) and 0 for zero, negative or NaN `y`.
#[inline(always)]
fn masked<const RELU: bool>(g: f32, x: f32, a: f32, b: f32) -> f32 {
    if RELU {
        const BIG: f32 = 8.507_059e37; // 2^126
                                       // Not `clamp`: that keeps a NaN, `max` maps it to 0.
        #[allow(clippy::manual_clamp)]
        let step = ((x * a + b) * BIG * BIG).max(0.0).min(1.0);
        g * step
    } else {
        g
    }
}

/// Forward: writes all of `y` (`max(0, ...)` when `relu`) and returns the batch mean and
/// biased variance per channel.
pub fn forward(
    sh: &BnShape,
    x: &[f32],
    (gamma, beta): (&[f32], &[f32]),
    eps: f64,
    relu: bool,
    y: &mut [MaybeUninit<f32>],
) -> (Vec<f32>, Vec<f32>) {
    let len = sh.n * sh.c * sh.s;
    assert!(x.len() == len && y.len() == len && gamma.len() == sh.c && beta.len() == sh.c);
    let stats: Vec<(f32, f32)> = (0..sh.c)
        .into_par_iter()
        .map(|ch| {
            let mean = (channel_sum(sh, x, ch, row_sum) / sh.count()) as f32;
            let var = channel_sum(sh, x, ch, |r| {
                let mut acc = [0.0f32; 8];
                let mut it = r.chunks_exact(8);
                for c in &mut it {
                    for (a, v) in acc.iter_mut().zip(c) {
                        *a += (v - mean) * (v - mean);
                    }
                }
                let tail: f32 = it.remainder().iter().map(|v| (v - mean) * (v - mean)).sum();
                acc.iter().sum::<f32>() + tail
            }) / sh.count();
            (mean, var as f32)
        })
        .collect();
    let (mean, var): (Vec<f32>, Vec<f32>) = stats.into_iter().unzip();
    let [a, b, _] = affine(gamma, beta, &mean, &var, eps);
    if len > 0 {
        y.par_chunks_mut(sh.c * sh.s)
            .zip(x.par_chunks(sh.c * sh.s))
            .for_each(|(yi, xi)| {
                for (ch, (yc, xc)) in yi.chunks_mut(sh.s).zip(xi.chunks(sh.s)).enumerate() {
                    let (a, b) = (a[ch], b[ch]);
                    for (d, &v) in yc.iter_mut().zip(xc) {
                        d.write(norm(v, a, b, relu));
                    }
                }
            });
    }
    (mean, var)
}

/// What the backward needs from the forward: the parameters and the batch statistics.
#[derive(Clone, Debug)]
pub struct BnSaved {
    /// `gamma`, `[C]`.
    pub gamma: Vec<f32>,
    /// `beta`, `[C]` (for the ReLU mask).
    pub beta: Vec<f32>,
    /// Batch mean, `[C]`.
    pub mean: Vec<f32>,
    /// Batch biased variance, `[C]`.
    pub var: Vec<f32>,
    /// Epsilon.
    pub eps: f64,
    /// Whether the ReLU is fused.
    pub relu: bool,
}

/// Gradients of the batch norm.
pub struct BnGrads {
    /// `dL/dx`, the input's shape (when asked for).
    pub x: Option<Vec<f32>>,
    /// `dL/dgamma`, `[C]`.
    pub gamma: Vec<f32>,
    /// `dL/dbeta`, `[C]`.
    pub beta: Vec<f32>,
}

/// Backward from the output gradient `dy`: with `g = dy` where the output is positive (all
/// of it without the ReLU) and `xhat = (x - mean) / sqrt(var + eps)`, `dbeta = sum g`,
/// `dgamma = sum g*xhat`, `dx = gamma / sqrt(var + eps) * (g - dbeta/M - xhat*dgamma/M)`.
pub fn backward(sh: &BnShape, x: &[f32], dy: &[f32], st: &BnSaved, want_x: bool) -> BnGrads {
    if st.relu {
        backward_impl::<true>(sh, x, dy, st, want_x)
    } else {
        backward_impl::<false>(sh, x, dy, st, want_x)
    }
}

fn backward_impl<const RELU: bool>(
    sh: &BnShape,
    x: &[f32],
    dy: &[f32],
    st: &BnSaved,
    want_x: bool,
) -> BnGrads {
    let len = sh.n * sh.c * sh.s;
    assert!(x.len() == len && dy.len() == len);
    let [a, b, inv] = affine(&st.gamma, &st.beta, &st.mean, &st.var, st.eps);
    let sums: Vec<(f32, f32)> = (0..sh.c)
        .into_par_iter()
        .map(|ch| {
            let (a, b, m, inv) = (a[ch], b[ch], st.mean[ch], inv[ch]);
            let (mut sg, mut sgx) = (0.0f64, 0.0f64);
            for i in 0..sh.n {
                let at = (i * sh.c + ch) * sh.s;
                let (xs, gs) = (&x[at..at + sh.s], &dy[at..at + sh.s]);
                let (mut g8, mut gx8) = ([0.0f32; 8], [0.0f32; 8]);
                let mut it = xs.chunks_exact(8).zip(gs.chunks_exact(8));
                for (xc, gc) in &mut it {
                    // Fixed-size arrays, so that the eight lanes compile to vector operations.
                    let xc: &[f32; 8] = xc.try_into().expect("8 values");
                    let gc: &[f32; 8] = gc.try_into().expect("8 values");
                    let g: [f32; 8] = std::array::from_fn(|k| masked::<RELU>(gc[k], xc[k], a, b));
                    let xh: [f32; 8] = std::array::from_fn(|k| (xc[k] - m) * inv);
                    for k in 0..8 {
                        g8[k] += g[k];
                        gx8[k] += g[k] * xh[k];
                    }
                }
                let done = sh.s / 8 * 8;
                let (mut tg, mut tgx) = (0.0f32, 0.0f32);
                for (&xv, &gv) in xs[done..].iter().zip(&gs[done..]) {
                    let g = masked::<RELU>(gv, xv, a, b);
                    tg += g;
                    tgx += g * ((xv - m) * inv);
                }
                sg += (g8.iter().sum::<f32>() + tg) as f64;
                sgx += (gx8.iter().sum::<f32>() + tgx) as f64;
            }
            (sg as f32, sgx as f32)
        })
        .collect();
    let (dbeta, dgamma): (Vec<f32>, Vec<f32>) = sums.into_iter().unzip();
    let dx = want_x.then(|| {
        let count = sh.count() as f32;
        let mg: Vec<f32> = dbeta.iter().map(|v| v / count).collect();
        let mgx: Vec<f32> = dgamma.iter().map(|v| v / count).collect();
        let mut dx = Vec::with_capacity(len);
        if len > 0 {
            dx.spare_capacity_mut()[..len]
                .par_chunks_mut(sh.c * sh.s)
                .zip(x.par_chunks(sh.c * sh.s).zip(dy.par_chunks(sh.c * sh.s)))
                .for_each(|(di, (xi, gi))| {
                    let planes = di
                        .chunks_mut(sh.s)
                        .zip(xi.chunks(sh.s).zip(gi.chunks(sh.s)));
                    for (ch, (dc, (xc, gc))) in planes.enumerate() {
                        let (a, b, m, inv) = (a[ch], b[ch], st.mean[ch], inv[ch]);
                        let (mg, mgx) = (mg[ch], mgx[ch]);
                        for ((d, &xv), &gv) in dc.iter_mut().zip(xc).zip(gc) {
                            let g = masked::<RELU>(gv, xv, a, b);
                            d.write(a * (g - mg - (xv - m) * inv * mgx));
                        }
                    }
                });
        }
        // SAFETY: the loop above wrote every sample's values, all `len` of them.
        unsafe { dx.set_len(len) };
        dx
    });
    BnGrads {
        x: dx,
        gamma: dgamma,
        beta: dbeta,
    }
}
