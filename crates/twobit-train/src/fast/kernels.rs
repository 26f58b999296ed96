//! Plain `f32` kernels behind [`super`]'s operations: the shared pieces (outputs written
//! uninitialised, GEMM wrappers), the fused ReLU + 2x2 max-pool, and (in [`super::conv`],
//! re-exported here) convolution forward and backward as im2col + GEMM per image.
//!
//! Tensors are contiguous NCHW; a weight is `[O, C, k, k]`, read as the row-major matrix
//! `[O, K]` with `K = C*k*k`. Each image's column matrix is `[K, P]` with `P = OH*OW`, its row
//! `(c*k + ky)*k + kx`, its column `oy*OW + ox`.
//!
//! Outputs are written into uninitialised memory ([`output`]): zeroing a whole output first
//! was a full pass over memory that then had left the cache.
//!
//! Work is split over images in a fixed number of chunks ([`CHUNKS`]), not per thread: the
//! weight gradient is the sum of per-chunk partial sums taken in chunk order, so the results
//! are the same on any number of threads.

use gemm::Parallelism;
use rayon::prelude::*;
use std::mem::MaybeUninit;

pub use super::conv::{conv_backward, conv_forward, ConvGrads, ConvShape};

/// Image chunks per batch; the weight gradient adds this many partial sums, in order.
pub const CHUNKS: usize = 8;

/// A vector of `len` values written by `init`, which receives them uninitialised. Every
/// kernel here that takes a `MaybeUninit` output writes all of it.
///
/// # Safety
/// `init` must write every one of the `len` elements.
pub unsafe fn output(len: usize, init: impl FnOnce(&mut [MaybeUninit<f32>])) -> Vec<f32> {
    let mut v = Vec::with_capacity(len);
    init(&mut v.spare_capacity_mut()[..len]);
    // SAFETY: the caller guarantees that `init` initialised all `len` elements.
    unsafe { v.set_len(len) };
    v
}

/// Writes `value` everywhere in `dst` and returns it as initialised.
pub(crate) fn fill(dst: &mut [MaybeUninit<f32>], value: f32) -> &mut [f32] {
    for v in dst.iter_mut() {
        v.write(value);
    }
    // SAFETY: every element was just written.
    unsafe { assume_init(dst) }
}

/// # Safety
/// Every element of `dst` must be initialised.
pub(crate) unsafe fn assume_init(dst: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    // SAFETY: `MaybeUninit<f32>` has `f32`'s layout; the caller vouches for initialisation.
    unsafe { &mut *(dst as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// Sum of a row with eight independent partial sums, so it vectorises (`iter().sum()` is
/// one serial chain of additions).
pub(crate) fn row_sum(row: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let mut chunks = row.chunks_exact(8);
    for c in &mut chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    let tail: f32 = chunks.remainder().iter().sum();
    acc.iter().sum::<f32>() + tail
}

/// A matrix view for the GEMMs: element (r, c) is `data[r*rs + c*cs]`.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a> {
    data: &'a [f32],
    rs: usize,
    cs: usize,
}

impl<'a> Mat<'a> {
    pub(crate) fn rows(data: &'a [f32], cols: usize) -> Self {
        Mat {
            data,
            rs: cols,
            cs: 1,
        }
    }
    /// The transpose of a row-major matrix with `cols` columns.
    pub(crate) fn transposed(data: &'a [f32], cols: usize) -> Self {
        Mat {
            data,
            rs: 1,
            cs: cols,
        }
    }
    fn covers(&self, rows: usize, cols: usize) -> bool {
        rows == 0 || cols == 0 || (rows - 1) * self.rs + (cols - 1) * self.cs < self.data.len()
    }
}

/// `dst += a[m, k] * b[k, n]`, `dst` row-major `[m, n]`; single-threaded (callers split
/// work over images).
pub(crate) fn gemm_add(dst: &mut [f32], m: usize, n: usize, k: usize, a: Mat, b: Mat) {
    assert!(dst.len() == m * n && a.covers(m, k) && b.covers(k, n));
    if m * n * k != 0 {
        // SAFETY: sizes checked above; `dst` is initialised and does not alias the inputs.
        unsafe { gemm_raw(dst.as_mut_ptr(), m, n, k, a, b, true) }
    }
}

/// `dst = a[m, k] * b[k, n]` into uninitialised `dst` (`[m, n]`), returned initialised.
pub(crate) fn gemm_set<'d>(
    dst: &'d mut [MaybeUninit<f32>],
    m: usize,
    n: usize,
    k: usize,
    a: Mat,
    b: Mat,
) -> &'d mut [f32] {
    assert!(dst.len() == m * n && a.covers(m, k) && b.covers(k, n));
    if m * n * k == 0 {
        return fill(dst, 0.0);
    }
    // SAFETY: sizes checked above; with `read_dst` false the GEMM only writes `dst`, all of
    // its `m * n` elements, which then are initialised.
    unsafe {
        gemm_raw(dst.as_mut_ptr().cast(), m, n, k, a, b, false);
        assume_init(dst)
    }
}

/// # Safety
/// `dst` must be valid for `m * n` writes (and reads when `read_dst`), not alias `a` or `b`,
/// and `a`, `b` must cover `m x k` and `k x n` ([`Mat::covers`]).
pub(crate) unsafe fn gemm_raw(
    dst: *mut f32,
    m: usize,
    n: usize,
    k: usize,
    a: Mat,
    b: Mat,
    read_dst: bool,
) {
    // SAFETY: forwarded from the caller.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            n as isize,
            read_dst,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        )
    }
}

/// Shape of a ReLU + 2x2/2 max-pool: `planes = N*C` planes of `h x w`; output `h/2 x w/2`
/// (an odd last row or column is dropped, as in a floor-mode pool).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolShape {
    /// `N*C`.
    pub planes: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
}

impl PoolShape {
    fn out_plane(&self) -> usize {
        (self.h / 2) * (self.w / 2)
    }
}

/// `y = max(0, max over each 2x2 window of x)`, i.e. a max-pool of `relu(x)`. Writes all
/// of `y`.
pub fn relu_pool2_forward(s: &PoolShape, x: &[f32], y: &mut [MaybeUninit<f32>]) {
    let (oh, ow) = (s.h / 2, s.w / 2);
    assert_eq!(x.len(), s.planes * s.h * s.w);
    assert_eq!(y.len(), s.planes * s.out_plane());
    if s.out_plane() == 0 {
        return;
    }
    y.par_chunks_mut(s.out_plane())
        .zip(x.par_chunks(s.h * s.w))
        .for_each(|(yp, xp)| {
            // Row pairs as slices and windows as 2-element chunks: no index arithmetic or
            // bounds checks in the inner loop, which the compiler then vectorises.
            for (out, rows) in yp
                .chunks_exact_mut(ow)
                .zip(xp.chunks_exact(2 * s.w))
                .take(oh)
            {
                let (r0, r1) = rows.split_at(s.w);
                for ((o, a), b) in out
                    .iter_mut()
                    .zip(r0.chunks_exact(2))
                    .zip(r1.chunks_exact(2))
                {
                    o.write(a[0].max(a[1]).max(b[0].max(b[1])).max(0.0));
                }
            }
        });
}

/// Gradient of [`relu_pool2_forward`]: each output's gradient goes to its window's maximum
/// (the first in row-major order on ties) when that maximum is positive (ReLU's gradient at 0
/// is 0); every other input gets 0. Writes all of `dx`.
pub fn relu_pool2_backward(s: &PoolShape, x: &[f32], dy: &[f32], dx: &mut [MaybeUninit<f32>]) {
    let (oh, ow) = (s.h / 2, s.w / 2);
    assert_eq!(x.len(), s.planes * s.h * s.w);
    assert_eq!(dx.len(), x.len());
    assert_eq!(dy.len(), s.planes * s.out_plane());
    if s.out_plane() == 0 {
        fill(dx, 0.0); // no window: no gradient
        return;
    }
    let plane = s.h * s.w;
    dx.par_chunks_mut(plane)
        .zip(x.par_chunks(plane))
        .zip(dy.par_chunks(s.out_plane()))
        .for_each(|((dxp, xp), dyp)| {
            // Rows past the last full window (odd height) get no gradient.
            fill(&mut dxp[2 * oh * s.w..], 0.0);
            let rows = dxp.chunks_exact_mut(2 * s.w).zip(xp.chunks_exact(2 * s.w));
            for ((drows, xrows), g) in rows.zip(dyp.chunks_exact(ow)) {
                let (d0, d1) = drows.split_at_mut(s.w);
                let (r0, r1) = xrows.split_at(s.w);
                // An odd last column gets no gradient.
                fill(&mut d0[2 * ow..], 0.0);
                fill(&mut d1[2 * ow..], 0.0);
                let windows = d0
                    .chunks_exact_mut(2)
                    .zip(d1.chunks_exact_mut(2))
                    .zip(r0.chunks_exact(2).zip(r1.chunks_exact(2)));
                for (((da, db), (a, b)), &g) in windows.zip(g) {
                    let m = a[0].max(a[1]).max(b[0].max(b[1]));
                    let g = if m > 0.0 { g } else { 0.0 };
                    let t0 = a[0] == m;
                    let t1 = !t0 && a[1] == m;
                    let t2 = !(t0 || t1) && b[0] == m;
                    let t3 = !(t0 || t1 || t2);
                    da[0].write(if t0 { g } else { 0.0 });
                    da[1].write(if t1 { g } else { 0.0 });
                    db[0].write(if t2 { g } else { 0.0 });
                    db[1].write(if t3 { g } else { 0.0 });
                }
            }
        });
}
