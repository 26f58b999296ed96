//! Plain `f32` kernels behind [`super`]'s operations: convolution forward and backward as
//! im2col + GEMM per image, and the fused ReLU + 2x2 max-pool.
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
fn fill(dst: &mut [MaybeUninit<f32>], value: f32) -> &mut [f32] {
    for v in dst.iter_mut() {
        v.write(value);
    }
    // SAFETY: every element was just written.
    unsafe { assume_init(dst) }
}

/// # Safety
/// Every element of `dst` must be initialised.
unsafe fn assume_init(dst: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    // SAFETY: `MaybeUninit<f32>` has `f32`'s layout; the caller vouches for initialisation.
    unsafe { &mut *(dst as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// Shape of one square convolution over a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvShape {
    /// Batch size.
    pub n: usize,
    /// Input channels.
    pub c: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels.
    pub o: usize,
    /// Kernel side.
    pub k: usize,
    /// Stride (both axes).
    pub stride: usize,
    /// Zero padding (both axes).
    pub pad: usize,
}

impl ConvShape {
    /// Output height.
    pub fn oh(&self) -> usize {
        (self.h + 2 * self.pad - self.k) / self.stride + 1
    }
    /// Output width.
    pub fn ow(&self) -> usize {
        (self.w + 2 * self.pad - self.k) / self.stride + 1
    }
    /// Rows of the column matrix (`C*k*k`).
    pub fn kdim(&self) -> usize {
        self.c * self.k * self.k
    }
    /// Output positions per image.
    pub fn p(&self) -> usize {
        self.oh() * self.ow()
    }
    fn in_len(&self) -> usize {
        self.c * self.h * self.w
    }
    fn out_len(&self) -> usize {
        self.o * self.p()
    }
    /// Images per chunk.
    fn chunk(&self) -> usize {
        self.n.div_ceil(CHUNKS).max(1)
    }
    /// The output columns `lo..hi` whose input column `ox*stride + kx - pad` lies inside the
    /// image, and the input column of `lo`.
    fn valid_cols(&self, kx: usize) -> (usize, usize, usize) {
        let lo = (self.pad.saturating_sub(kx).div_ceil(self.stride)).min(self.ow());
        // Last input column reachable: w - 1 = ox*stride + kx - pad.
        let hi = match (self.w + self.pad).checked_sub(kx + 1) {
            Some(last) => (last / self.stride + 1).min(self.ow()),
            None => 0,
        };
        let hi = hi.max(lo);
        (lo, hi, (lo * self.stride + kx).saturating_sub(self.pad))
    }

    /// The input row read by output row `oy` at kernel row `ky`, if inside the image.
    fn input_row(&self, oy: usize, ky: usize) -> Option<usize> {
        (oy * self.stride + ky)
            .checked_sub(self.pad)
            .filter(|&iy| iy < self.h)
    }
}

/// Fills `cols` (`[K, P]`) from one image `x` (`[C, H, W]`).
fn im2col(s: &ConvShape, x: &[f32], cols: &mut [f32]) {
    let (ow, p) = (s.ow(), s.p());
    let mut rows = cols.chunks_exact_mut(p);
    if s.stride == 1 && s.pad == 0 {
        // Every line is one run (LeNet-5). Kept beside the general loop below, measured with
        // `examples/ops.rs`: through the general loop LeNet-5's conv2 forward took 3.2-3.3 ms
        // instead of 2.3 ms, and 2.6 ms with its per-line row checks hoisted out.
        for plane in x.chunks_exact(s.h * s.w) {
            for ky in 0..s.k {
                for kx in 0..s.k {
                    let dst = rows.next().expect("K rows");
                    for (oy, line) in dst.chunks_exact_mut(ow).enumerate() {
                        line.copy_from_slice(&plane[(oy + ky) * s.w + kx..][..ow]);
                    }
                }
            }
        }
        return;
    }
    // Once per call: `valid_cols` divides by the stride.
    let ranges: Vec<_> = (0..s.k).map(|kx| s.valid_cols(kx)).collect();
    for plane in x.chunks_exact(s.h * s.w) {
        for ky in 0..s.k {
            for &(lo, hi, ix0) in &ranges {
                let dst = rows.next().expect("K rows");
                for (oy, line) in dst.chunks_exact_mut(ow).enumerate() {
                    let Some(iy) = s.input_row(oy, ky) else {
                        line.fill(0.0);
                        continue;
                    };
                    let src = &plane[iy * s.w..(iy + 1) * s.w];
                    // Padding columns only where there are some: an empty `fill` is still
                    // a `memset` call, per line.
                    if lo > 0 {
                        line[..lo].fill(0.0);
                    }
                    if hi < ow {
                        line[hi..].fill(0.0);
                    }
                    if hi == lo {
                        continue;
                    }
                    if s.stride == 1 {
                        line[lo..hi].copy_from_slice(&src[ix0..ix0 + hi - lo]);
                    } else {
                        let src = src[ix0..].iter().step_by(s.stride);
                        for (v, &u) in line[lo..hi].iter_mut().zip(src) {
                            *v = u;
                        }
                    }
                }
            }
        }
    }
}

/// Writes the column matrix `cols` (`[K, P]`) back as one image's gradient `dx`
/// (`[C, H, W]`), adding the entries that read the same input. Writes all of `dx`.
fn col2im(s: &ConvShape, cols: &[f32], dx: &mut [MaybeUninit<f32>]) {
    let (ow, p) = (s.ow(), s.p());
    let dx = fill(dx, 0.0); // per image, so it is still in cache for the additions
    let mut rows = cols.chunks_exact(p);
    if s.stride == 1 && s.pad == 0 {
        // As in `im2col`: every line is one run.
        for plane in dx.chunks_exact_mut(s.h * s.w) {
            for ky in 0..s.k {
                for kx in 0..s.k {
                    let src = rows.next().expect("K rows");
                    for (oy, line) in src.chunks_exact(ow).enumerate() {
                        let dst = &mut plane[(oy + ky) * s.w + kx..][..ow];
                        for (d, v) in dst.iter_mut().zip(line) {
                            *d += v;
                        }
                    }
                }
            }
        }
        return;
    }
    // Once per call: `valid_cols` divides by the stride.
    let ranges: Vec<_> = (0..s.k).map(|kx| s.valid_cols(kx)).collect();
    for plane in dx.chunks_exact_mut(s.h * s.w) {
        for ky in 0..s.k {
            for &(lo, hi, ix0) in &ranges {
                let src = rows.next().expect("K rows");
                for (oy, line) in src.chunks_exact(ow).enumerate() {
                    let Some(iy) = s.input_row(oy, ky).filter(|_| hi > lo) else {
                        continue;
                    };
                    let dst = &mut plane[iy * s.w..(iy + 1) * s.w];
                    if s.stride == 1 {
                        let dst = &mut dst[ix0..ix0 + hi - lo];
                        for (d, v) in dst.iter_mut().zip(&line[lo..hi]) {
                            *d += v;
                        }
                    } else {
                        let dst = dst[ix0..].iter_mut().step_by(s.stride);
                        for (d, v) in dst.zip(&line[lo..hi]) {
                            *d += v;
                        }
                    }
                }
            }
        }
    }
}

/// Sum of a row with eight independent partial sums, so it vectorises (`iter().sum()` is
/// one serial chain of additions).
fn row_sum(row: &[f32]) -> f32 {
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
struct Mat<'a> {
    data: &'a [f32],
    rs: usize,
    cs: usize,
}

impl<'a> Mat<'a> {
    fn rows(data: &'a [f32], cols: usize) -> Self {
        Mat {
            data,
            rs: cols,
            cs: 1,
        }
    }
    /// The transpose of a row-major matrix with `cols` columns.
    fn transposed(data: &'a [f32], cols: usize) -> Self {
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
fn gemm_add(dst: &mut [f32], m: usize, n: usize, k: usize, a: Mat, b: Mat) {
    assert!(dst.len() == m * n && a.covers(m, k) && b.covers(k, n));
    if m * n * k != 0 {
        // SAFETY: sizes checked above; `dst` is initialised and does not alias the inputs.
        unsafe { gemm_raw(dst.as_mut_ptr(), m, n, k, a, b, true) }
    }
}

/// `dst = a[m, k] * b[k, n]` into uninitialised `dst` (`[m, n]`), returned initialised.
fn gemm_set<'d>(
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
unsafe fn gemm_raw(dst: *mut f32, m: usize, n: usize, k: usize, a: Mat, b: Mat, read_dst: bool) {
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

/// Convolution forward: `y[n] = w * im2col(x[n]) + bias`. `y` is `[N, O, OH, OW]`; all
/// of it is written.
///
/// One GEMM per image: grouping images into wider GEMMs was measured slower here (the
/// column matrix then leaves L2; LeNet-5 conv2 forward 3.6 -> 4.5 ms at 8 MiB groups).
pub fn conv_forward(
    s: &ConvShape,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [MaybeUninit<f32>],
) {
    let (kd, p) = (s.kdim(), s.p());
    assert_eq!(x.len(), s.n * s.in_len());
    assert_eq!(w.len(), s.o * kd);
    assert_eq!(y.len(), s.n * s.out_len());
    let chunk = s.chunk();
    y.par_chunks_mut(chunk * s.out_len())
        .zip(x.par_chunks(chunk * s.in_len()))
        .for_each(|(ys, xs)| {
            let mut cols = vec![0.0f32; kd * p];
            for (yn, xn) in ys
                .chunks_exact_mut(s.out_len())
                .zip(xs.chunks_exact(s.in_len()))
            {
                im2col(s, xn, &mut cols);
                let (lhs, rhs) = (Mat::rows(w, kd), Mat::rows(&cols, p));
                let yn = gemm_set(yn, s.o, p, kd, lhs, rhs);
                // The bias after the GEMM, while the image's output is in cache: filling it in
                // first and letting the GEMM accumulate cost a pass over cold memory (14 % of
                // a LeNet-5 step).
                if let Some(b) = bias {
                    for (row, &bo) in yn.chunks_exact_mut(p).zip(b) {
                        row.iter_mut().for_each(|v| *v += bo);
                    }
                }
            }
        });
}

/// Gradients of one convolution, each computed only when asked for.
pub struct ConvGrads {
    /// `dL/dx`, `[N, C, H, W]`.
    pub x: Option<Vec<f32>>,
    /// `dL/dw`, `[O, C, k, k]`.
    pub w: Option<Vec<f32>>,
    /// `dL/dbias`, `[O]`.
    pub bias: Option<Vec<f32>>,
}

/// One chunk's share of [`conv_backward`]: adds its weight and bias gradients to `dw`, `db`
/// (when not empty) and writes its images' input gradients to all of `dxs` (when given).
fn backward_chunk(
    s: &ConvShape,
    (xs, dys): (&[f32], &[f32]),
    w: &[f32],
    (dw, db): (&mut [f32], &mut [f32]),
    mut dxs: Option<&mut [MaybeUninit<f32>]>,
) {
    let (kd, p) = (s.kdim(), s.p());
    let mut cols = vec![0.0f32; kd * p];
    let mut dcols = vec![MaybeUninit::<f32>::uninit(); if dxs.is_some() { kd * p } else { 0 }];
    for (i, (xn, dyn_)) in xs
        .chunks_exact(s.in_len())
        .zip(dys.chunks_exact(s.out_len()))
        .enumerate()
    {
        if !dw.is_empty() {
            im2col(s, xn, &mut cols);
            let rhs = Mat::transposed(&cols, p);
            gemm_add(dw, s.o, kd, p, Mat::rows(dyn_, p), rhs);
        }
        for (d, row) in db.iter_mut().zip(dyn_.chunks_exact(p)) {
            *d += row_sum(row);
        }
        if let Some(dxs) = dxs.as_deref_mut() {
            let lhs = Mat::transposed(w, kd);
            let dcols = gemm_set(&mut dcols, kd, p, s.o, lhs, Mat::rows(dyn_, p));
            col2im(s, dcols, &mut dxs[i * s.in_len()..(i + 1) * s.in_len()]);
        }
    }
}

/// Convolution backward from the output gradient `dy` (`[N, O, OH, OW]`); `want` says which
/// of (input, weight, bias) gradients to compute.
pub fn conv_backward(
    s: &ConvShape,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    want: [bool; 3],
) -> ConvGrads {
    let [want_x, want_w, want_b] = want;
    let kd = s.kdim();
    assert_eq!(x.len(), s.n * s.in_len());
    assert_eq!(w.len(), s.o * kd);
    assert_eq!(dy.len(), s.n * s.out_len());
    let chunk = s.chunk();
    let mut dx = want_x.then(|| Vec::with_capacity(x.len()));
    let zeros = |want: bool, len: usize| if want { vec![0.0f32; len] } else { Vec::new() };
    // Per-chunk partial weight and bias gradients, summed below in chunk order.
    let per_chunk = |(xs, dys): (&[f32], &[f32]), dxs: Option<&mut [MaybeUninit<f32>]>| {
        let (mut dw, mut db) = (zeros(want_w, s.o * kd), zeros(want_b, s.o));
        backward_chunk(s, (xs, dys), w, (&mut dw, &mut db), dxs);
        (dw, db)
    };
    let inputs = x
        .par_chunks(chunk * s.in_len())
        .zip(dy.par_chunks(chunk * s.out_len()));
    let partials: Vec<(Vec<f32>, Vec<f32>)> = match dx.as_mut() {
        Some(dx) => {
            let spare = &mut dx.spare_capacity_mut()[..x.len()];
            inputs
                .zip(spare.par_chunks_mut(chunk * s.in_len()))
                .map(|(item, dxs)| per_chunk(item, Some(dxs)))
                .collect()
        }
        None => inputs.map(|item| per_chunk(item, None)).collect(),
    };
    if let Some(dx) = dx.as_mut() {
        // SAFETY: the chunks wrote every image's gradient, all `x.len()` values.
        unsafe { dx.set_len(x.len()) };
    }
    // Chunk order, whatever thread computed each part.
    let sum = |parts: Vec<Vec<f32>>, len: usize| {
        let mut total = vec![0.0f32; len];
        for part in parts {
            for (t, v) in total.iter_mut().zip(part) {
                *t += v;
            }
        }
        total
    };
    let (dws, dbs): (Vec<_>, Vec<_>) = partials.into_iter().unzip();
    ConvGrads {
        x: dx,
        w: want_w.then(|| sum(dws, s.o * kd)),
        bias: want_b.then(|| sum(dbs, s.o)),
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
