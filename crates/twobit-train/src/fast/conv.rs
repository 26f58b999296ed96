//! Convolution forward and backward as im2col + GEMM (see [`super::kernels`] for the
//! layout and the chunking that makes results independent of the thread count).

use super::kernels::{fill, gemm_add, gemm_set, row_sum, Mat, CHUNKS};
use rayon::prelude::*;
use std::mem::MaybeUninit;

#[cfg(target_arch = "x86_64")]
mod direct;

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
    /// Images per GEMM: enough that a GEMM has about [`GROUP_COLUMNS`] columns, so that
    /// small images (8x8: 64 positions) do not pack the weight (or add into the weight
    /// gradient) once per image; at most a chunk. Depends on the shape only.
    fn group(&self) -> usize {
        GROUP_COLUMNS
            .div_ceil(self.p().max(1))
            .clamp(1, self.chunk())
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

/// Fills columns `off..off + P` of `cols` (`K` rows of `ld` values) from one image `x`
/// (`[C, H, W]`).
fn im2col(s: &ConvShape, x: &[f32], cols: &mut [f32], ld: usize, off: usize) {
    if s.stride == 1 && s.pad > 0 {
        return im2col_padded(s, x, cols, ld, off);
    }
    let (ow, p) = (s.ow(), s.p());
    let mut rows = cols.chunks_mut(ld).map(|r| &mut r[off..off + p]);
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

/// [`im2col`] of a padded stride-1 convolution (ResNet-20's and VGG-7's 3x3): from a
/// zero-padded copy of each plane, every line is one fixed-block copy with no padding
/// checks. The general loop (a `memcpy` and up to two `memset` calls per line) took as long
/// as the GEMM on ResNet-20's 16-channel layers (`examples/conv_bench.rs`). Compiled for
/// AVX-512 where the CPU has it (the crate's baseline is SSE2: 16-byte moves).
fn im2col_padded(s: &ConvShape, x: &[f32], cols: &mut [f32], ld: usize, off: usize) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F (checked just above).
        return unsafe { im2col_padded_avx512(s, x, cols, ld, off) };
    }
    im2col_padded_body(s, x, cols, ld, off)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn im2col_padded_avx512(s: &ConvShape, x: &[f32], cols: &mut [f32], ld: usize, off: usize) {
    im2col_padded_body(s, x, cols, ld, off)
}

#[inline(always)]
fn im2col_padded_body(s: &ConvShape, x: &[f32], cols: &mut [f32], ld: usize, off: usize) {
    let (ow, p) = (s.ow(), s.p());
    let mut rows = cols.chunks_mut(ld).map(|r| &mut r[off..off + p]);
    let (hp, wp) = (s.h + 2 * s.pad, s.w + 2 * s.pad);
    let mut padded = vec![0.0f32; hp * wp]; // borders stay zero
    for plane in x.chunks_exact(s.h * s.w) {
        for (iy, line) in plane.chunks_exact(s.w).enumerate() {
            copy_line(&mut padded[(iy + s.pad) * wp + s.pad..][..s.w], line);
        }
        for ky in 0..s.k {
            for kx in 0..s.k {
                let dst = rows.next().expect("K rows");
                for (oy, line) in dst.chunks_exact_mut(ow).enumerate() {
                    copy_line(line, &padded[(oy + ky) * wp + kx..][..ow]);
                }
            }
        }
    }
}

/// `dst = src` (equal lengths) in fixed blocks of 16 and 8 values, which compile to inline
/// vector moves: a `copy_from_slice` of a short line is a `memcpy` call.
#[inline(always)]
fn copy_line(dst: &mut [f32], src: &[f32]) {
    let mut d = dst.chunks_exact_mut(16);
    let mut s = src.chunks_exact(16);
    for (a, b) in (&mut d).zip(&mut s) {
        let v: [f32; 16] = b.try_into().expect("16 values");
        a.copy_from_slice(&v);
    }
    let (d, s) = (d.into_remainder(), s.remainder());
    let mut d8 = d.chunks_exact_mut(8);
    let mut s8 = s.chunks_exact(8);
    for (a, b) in (&mut d8).zip(&mut s8) {
        let v: [f32; 8] = b.try_into().expect("8 values");
        a.copy_from_slice(&v);
    }
    for (a, b) in d8.into_remainder().iter_mut().zip(s8.remainder()) {
        *a = *b;
    }
}

/// Writes columns `off..off + P` of `cols` (`K` rows of `ld` values) back as one image's
/// gradient `dx` (`[C, H, W]`), adding the entries that read the same input. Writes all of
/// `dx`.
fn col2im(s: &ConvShape, cols: &[f32], ld: usize, off: usize, dx: &mut [MaybeUninit<f32>]) {
    let (ow, p) = (s.ow(), s.p());
    let dx = fill(dx, 0.0); // per image, so it is still in cache for the additions
    let mut rows = cols.chunks(ld).map(|r| &r[off..off + p]);
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

/// Output positions per GEMM that [`ConvShape::group`] aims at.
pub const GROUP_COLUMNS: usize = 64;

/// Copies `g` images' `[rows, P]` blocks (consecutive, `rows * P` apart in `src`) side by
/// side into `dst`, `[rows, g*P]`.
fn gather(src: &[f32], rows: usize, p: usize, dst: &mut [f32]) {
    let g = src.len() / (rows * p);
    for (j, img) in src.chunks_exact(rows * p).enumerate() {
        for (r, line) in img.chunks_exact(p).enumerate() {
            dst[r * g * p + j * p..][..p].copy_from_slice(line);
        }
    }
}

/// Convolution forward: `y[n] = w * im2col(x[n]) + bias`. `y` is `[N, O, OH, OW]`; all
/// of it is written.
///
/// One GEMM per image when an image has [`GROUP_COLUMNS`] output positions or more:
/// grouping images into wider GEMMs was measured slower then (the column matrix leaves L2;
/// LeNet-5 conv2 forward 3.6 -> 4.5 ms at 8 MiB groups). Smaller images go in groups
/// ([`ConvShape::group`]). Padded stride-1 convolutions with few channels on CPUs with
/// AVX-512 (ResNet-20's) run a direct kernel instead (`conv/direct.rs`).
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
    let (chunk, group) = (s.chunk(), s.group());
    // ResNet-20's small layers (and the input gradients of its stride-1 ones): no column
    // matrix at all (`direct`).
    #[cfg(target_arch = "x86_64")]
    if direct::applies(s) {
        // The weight as `[K, O]`: the kernel reads one kernel offset's output channels
        // together.
        let mut wt = vec![0.0f32; w.len()];
        for (o, row) in w.chunks_exact(kd).enumerate() {
            for (kk, &v) in row.iter().enumerate() {
                wt[kk * s.o + o] = v;
            }
        }
        y.par_chunks_mut(chunk * s.out_len())
            .zip(x.par_chunks(chunk * s.in_len()))
            .for_each(|(ys, xs)| {
                let mut d = direct::Direct::new(s);
                for (yn, xn) in ys
                    .chunks_exact_mut(s.out_len())
                    .zip(xs.chunks_exact(s.in_len()))
                {
                    d.image(s, xn, &wt, bias, yn);
                }
            });
        return;
    }
    y.par_chunks_mut(chunk * s.out_len())
        .zip(x.par_chunks(chunk * s.in_len()))
        .for_each(|(ys, xs)| {
            let mut cols = vec![0.0f32; kd * p * group];
            let mut out = vec![0.0f32; if group > 1 { s.o * p * group } else { 0 }];
            for (yg, xg) in ys
                .chunks_mut(group * s.out_len())
                .zip(xs.chunks(group * s.in_len()))
            {
                let ld = xg.len() / s.in_len() * p;
                for (j, xn) in xg.chunks_exact(s.in_len()).enumerate() {
                    im2col(s, xn, &mut cols, ld, j * p);
                }
                let (lhs, rhs) = (Mat::rows(w, kd), Mat::rows(&cols, ld));
                if group == 1 {
                    let yn = gemm_set(yg, s.o, p, kd, lhs, rhs);
                    // The bias after the GEMM, while the image's output is in cache: filling
                    // it in first and letting the GEMM accumulate cost a pass over cold
                    // memory (14 % of a LeNet-5 step).
                    if let Some(b) = bias {
                        for (row, &bo) in yn.chunks_exact_mut(p).zip(b) {
                            row.iter_mut().for_each(|v| *v += bo);
                        }
                    }
                    continue;
                }
                let out = &mut out[..s.o * ld];
                gemm_add_zeroed(out, s.o, ld, kd, lhs, rhs);
                // Scatter the group's `[O, g*P]` back to its images' `[O, P]`, with the bias.
                for (j, yn) in yg.chunks_exact_mut(s.out_len()).enumerate() {
                    for (o, dst) in yn.chunks_exact_mut(p).enumerate() {
                        let b = bias.map_or(0.0, |b| b[o]);
                        for (d, v) in dst.iter_mut().zip(&out[o * ld + j * p..][..p]) {
                            d.write(v + b);
                        }
                    }
                }
            }
        });
}

/// `dst = a * b` into an initialised `dst`.
fn gemm_add_zeroed(dst: &mut [f32], m: usize, n: usize, k: usize, a: Mat, b: Mat) {
    dst.fill(0.0);
    gemm_add(dst, m, n, k, a, b);
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

/// One chunk's share of [`conv_backward`]: adds its weight gradient, transposed (`[K, O]`),
/// to `dw` and its bias gradient to `db`
/// (when not empty) and writes its images' input gradients to all of `dxs` (when given).
fn backward_chunk(
    s: &ConvShape,
    (xs, dys): (&[f32], &[f32]),
    w: &[f32],
    (dw, db): (&mut [f32], &mut [f32]),
    mut dxs: Option<&mut [MaybeUninit<f32>]>,
) {
    let (kd, p) = (s.kdim(), s.p());
    // The 16-channel layers' weight gradient without a column matrix (`direct`); only when
    // the input gradient does not go through column matrices here.
    #[cfg(target_arch = "x86_64")]
    if dxs.is_none() && !dw.is_empty() && direct::applies_dw(s) {
        let mut d = direct::Direct::new(s);
        for (xn, dyn_) in xs
            .chunks_exact(s.in_len())
            .zip(dys.chunks_exact(s.out_len()))
        {
            for (d, row) in db.iter_mut().zip(dyn_.chunks_exact(p)) {
                *d += row_sum(row);
            }
            d.weight_gradient(s, xn, dyn_);
        }
        d.weight_gradient_into(s, dw);
        return;
    }
    let group = s.group();
    let mut cols = vec![0.0f32; if dw.is_empty() { 0 } else { kd * p * group }];
    let mut dcols = vec![0.0f32; if dxs.is_some() { kd * p * group } else { 0 }];
    let mut dyg = vec![0.0f32; if group > 1 { s.o * p * group } else { 0 }];
    for (gi, (xg, dy_g)) in xs
        .chunks(group * s.in_len())
        .zip(dys.chunks(group * s.out_len()))
        .enumerate()
    {
        let imgs = xg.len() / s.in_len();
        let ld = imgs * p;
        for dyn_ in dy_g.chunks_exact(s.out_len()) {
            for (d, row) in db.iter_mut().zip(dyn_.chunks_exact(p)) {
                *d += row_sum(row);
            }
        }
        // The group's output gradient as one `[O, g*P]` matrix.
        let dym: &[f32] = if group == 1 {
            dy_g
        } else {
            gather(dy_g, s.o, p, &mut dyg[..s.o * ld]);
            &dyg[..s.o * ld]
        };
        if !dw.is_empty() {
            for (j, xn) in xg.chunks_exact(s.in_len()).enumerate() {
                im2col(s, xn, &mut cols, ld, j * p);
            }
            dw_add(dw, s, ld, &cols, dym);
        }
        if let Some(dxs) = dxs.as_deref_mut() {
            let lhs = Mat::transposed(w, kd);
            let dc = &mut dcols[..kd * ld];
            gemm_add_zeroed(dc, kd, ld, s.o, lhs, Mat::rows(dym, ld));
            let base = gi * group * s.in_len();
            for j in 0..imgs {
                let at = base + j * s.in_len();
                col2im(s, dc, ld, j * p, &mut dxs[at..at + s.in_len()]);
            }
        }
    }
}

/// `dwt += cols * dy^T`: the weight gradient transposed (`[K, O]`), from `cols`
/// (`[K, ld]`) and `dy` (`[O, ld]`), `dy^T` as a strided view: the GEMM packs it anyway, and
/// a transposed copy first made ResNet-20's layers 5-8 % slower (`examples/conv_bench.rs`).
///
/// Transposed, so that the GEMM's operands have the forward's layouts: `dy * cols^T` into a
/// row-major `[O, K]` reads both operands along the summed axis, and took 3-5x the forward's
/// time on 32x32 images (ResNet-20's 16 channels: 31 ms against 6 for a batch of 128; measured
/// again with the current kernels: 2-4x).
fn dw_add(dwt: &mut [f32], s: &ConvShape, ld: usize, cols: &[f32], dy: &[f32]) {
    gemm_add(
        dwt,
        s.kdim(),
        s.o,
        ld,
        Mat::rows(cols, ld),
        Mat::transposed(&dy[..s.o * ld], ld),
    );
}

/// The input gradient of a stride-1 convolution with padding `pad < k`, as a forward
/// convolution: `dx = conv(dy, w')` with padding `k - 1 - pad`, where `w'[c, o, ky, kx] =
/// w[o, c, k-1-ky, k-1-kx]` (the kernel transposed and flipped). One GEMM per image over
/// im2col of `dy`, like the forward, instead of a GEMM into `[K, P]` columns that col2im then
/// adds back: ResNet-20's 16-channel 32x32 layers' backward took 3.1x their forward that way.
fn input_gradient_stride1(s: &ConvShape, w: &[f32], dy: &[f32]) -> Vec<f32> {
    let k2 = s.k * s.k;
    let mut wt = vec![0.0f32; w.len()];
    for o in 0..s.o {
        for c in 0..s.c {
            let src = &w[(o * s.c + c) * k2..][..k2];
            let dst = &mut wt[(c * s.o + o) * k2..][..k2];
            for (d, v) in dst.iter_mut().zip(src.iter().rev()) {
                *d = *v;
            }
        }
    }
    let t = ConvShape {
        n: s.n,
        c: s.o,
        h: s.oh(),
        w: s.ow(),
        o: s.c,
        k: s.k,
        stride: 1,
        pad: s.k - 1 - s.pad,
    };
    debug_assert_eq!((t.oh(), t.ow()), (s.h, s.w));
    // SAFETY: `conv_forward` writes all of its output.
    unsafe { super::kernels::output(s.n * s.in_len(), |dx| conv_forward(&t, dy, &wt, None, dx)) }
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
    // A stride-1 convolution that keeps the image size ("same" padding): the input gradient
    // is a forward convolution of `dy` (below), not per-image GEMMs into column matrices
    // folded back by col2im. Without padding (LeNet-5) that convolution would run over the
    // larger input's positions, more work than col2im's way (conv2: 9.7 ms fwd + bwd, 8.5
    // before).
    let transposed = want_x && s.stride == 1 && 2 * s.pad + 1 == s.k && s.p() > 0;
    let mut dx = (want_x && !transposed).then(|| Vec::with_capacity(x.len()));
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
    if transposed {
        dx = Some(input_gradient_stride1(s, w, dy));
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
        w: want_w.then(|| {
            // Summed transposed (`[K, O]`), transposed back once.
            let t = sum(dws, s.o * kd);
            let mut w = vec![0.0f32; s.o * kd];
            for (kk, row) in t.chunks_exact(s.o).enumerate() {
                for (o, &v) in row.iter().enumerate() {
                    w[o * kd + kk] = v;
                }
            }
            w
        }),
        bias: want_b.then(|| sum(dbs, s.o)),
    }
}
