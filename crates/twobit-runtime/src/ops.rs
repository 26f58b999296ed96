//! Layer operations on NCHW activations: convolution (packed and fp32), pooling, shortcuts.
use crate::fp32::sgemm;
use crate::kernels::{
    aligned, Affine, Kernel, PackedMatrix, RowOffsets, Scratch, SendPtr, TileInput, SCRATCH, TILE,
};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Geometry of a 2-D convolution over one image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeom {
    /// Input channels.
    pub cin: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Stride (both axes).
    pub stride: usize,
    /// Zero padding (both axes).
    pub pad: usize,
}

impl ConvGeom {
    /// Output height.
    pub fn oh(&self) -> usize {
        (self.h + 2 * self.pad - self.kh) / self.stride + 1
    }
    /// Output width.
    pub fn ow(&self) -> usize {
        (self.w + 2 * self.pad - self.kw) / self.stride + 1
    }
    /// im2col rows: `cin·kh·kw`.
    pub fn k(&self) -> usize {
        self.cin * self.kh * self.kw
    }

    /// Writes the batch with `pad` zeros around every plane into `dst` (every element, so
    /// a reused buffer needs no clearing) and returns the padded height and width.
    fn pad_input(&self, x: &[f32], batch: usize, dst: &mut Vec<f32>) -> (usize, usize) {
        let (h, w, p) = (self.h, self.w, self.pad);
        let (hp, wp) = (h + 2 * p, w + 2 * p);
        let len = batch * self.cin * hp * wp;
        if dst.len() < len {
            dst.resize(len, 0.0);
        }
        dst[..len]
            .par_chunks_mut(hp * wp)
            .zip(x.par_chunks(h * w))
            .for_each(|(plane, src)| {
                plane[..p * wp].fill(0.0);
                plane[(p + h) * wp..].fill(0.0);
                for (y, row) in src.chunks_exact(w).enumerate() {
                    let d = &mut plane[(y + p) * wp..(y + p + 1) * wp];
                    d[..p].fill(0.0);
                    d[p..p + w].copy_from_slice(row);
                    d[p + w..].fill(0.0);
                }
            });
        (hp, wp)
    }

    /// Offset of each im2col row's (channel, ky, kx) in a padded `hp × wp` image, for
    /// `rows >= k()` rows; padding rows repeat the last (the kernels never use them).
    fn row_offsets(&self, rows: usize, hp: usize, wp: usize) -> RowOffsets {
        let per_c = self.kh * self.kw;
        RowOffsets::new(
            (0..rows)
                .map(|k| {
                    let k = k.min(self.k() - 1);
                    let (ci, r) = (k / per_c, k % per_c);
                    (ci * hp * wp + (r / self.kw) * wp + r % self.kw) as u32
                })
                .collect(),
        )
    }

    /// Writes im2col rows for output positions `p0..p0+width` of one image into `dst`
    /// (`rows` rows of `ld` values; columns past `width` and rows past `k()` are left alone).
    fn im2col(&self, img: &[f32], p0: usize, width: usize, dst: &mut [f32], ld: usize) {
        let (ow, s, pad) = (self.ow(), self.stride, self.pad);
        for (ci, plane) in img.chunks_exact(self.h * self.w).enumerate() {
            for ky in 0..self.kh {
                for kx in 0..self.kw {
                    let row = (ci * self.kh + ky) * self.kw + kx;
                    let d = &mut dst[row * ld..row * ld + width];
                    // Walk the columns one output row (`oy`) at a time: within a segment
                    // the input row is fixed and `ix = ox*s + kx - pad` is affine, so only
                    // the two borders need zeros and stride 1 is a plain copy.
                    let mut j = 0;
                    while j < width {
                        let p = p0 + j;
                        let (oy, ox0) = (p / ow, p % ow);
                        let seg = (ow - ox0).min(width - j);
                        let out = &mut d[j..j + seg];
                        let iy = (oy * s + ky).wrapping_sub(pad);
                        if iy >= self.h {
                            out.fill(0.0);
                        } else {
                            let src = &plane[iy * self.w..(iy + 1) * self.w];
                            // Valid ox: 0 <= ox*s + kx - pad < w.
                            let lo = pad.saturating_sub(kx).div_ceil(s).max(ox0);
                            let hi = if self.w + pad > kx {
                                (self.w + pad - kx).div_ceil(s)
                            } else {
                                0
                            };
                            let hi = hi.clamp(lo, ox0 + seg);
                            zero_short(&mut out[..lo - ox0]);
                            zero_short(&mut out[hi - ox0..]);
                            let x0 = lo * s + kx - pad;
                            if s == 1 {
                                copy_short(&mut out[lo - ox0..hi - ox0], &src[x0..x0 + hi - lo]);
                            } else {
                                for (i, v) in out[lo - ox0..hi - ox0].iter_mut().enumerate() {
                                    *v = src[x0 + i * s];
                                }
                            }
                        }
                        j += seg;
                    }
                }
            }
        }
    }
}

/// Copies one im2col segment (an output row's run, typically 8-32 floats) with 8-wide moves.
/// `copy_from_slice` called `memmove` for each, and the call overhead was a fifth of a
/// 2-bit convolution's time.
#[inline(always)]
fn copy_short(dst: &mut [f32], src: &[f32]) {
    let n = dst.len();
    assert_eq!(n, src.len());
    if n < 8 {
        for (d, v) in dst.iter_mut().zip(src) {
            *d = *v;
        }
        return;
    }
    let mut i = 0;
    while i + 8 <= n {
        let s: &[f32; 8] = src[i..i + 8].try_into().unwrap();
        dst[i..i + 8].copy_from_slice(s);
        i += 8;
    }
    if i < n {
        // The last 8, overlapping what was already copied.
        let s: &[f32; 8] = src[n - 8..].try_into().unwrap();
        dst[n - 8..].copy_from_slice(s);
    }
}

/// Zeroes a border run (as many values as the padding, usually 0-2) without a `memset` call.
#[inline(always)]
fn zero_short(dst: &mut [f32]) {
    for chunk in dst.chunks_mut(2) {
        for v in chunk {
            *v = 0.0;
        }
    }
}

/// 2-bit convolution without im2col: the tile kernel reads each (channel, ky, kx) row of
/// a `TILE` of output positions straight from the zero-padded input (see [`TileInput`]),
/// then the per-channel affine `y = scale[o]·dot + shift[o]` (then ReLU when `relu`) is
/// applied. Parallel over (image, tile).
#[allow(clippy::too_many_arguments)]
pub fn conv2d_packed(
    m: &PackedMatrix,
    g: &ConvGeom,
    kernel: Kernel,
    x: &[f32],
    batch: usize,
    scale: &[f32],
    shift: &[f32],
    relu: bool,
) -> Vec<f32> {
    assert_eq!(x.len(), batch * g.cin * g.h * g.w, "conv input size");
    assert_eq!(m.cols(), g.k(), "conv weight columns");
    if g.pad == 0 {
        return conv2d_packed_from(m, g, kernel, x, (g.h, g.w), batch, scale, shift, relu);
    }
    // The padded copy's buffer is kept between calls: allocating it per layer cost page
    // faults and a memset each time.
    PADDED.with(|cell| {
        let mut own = Vec::new();
        let mut kept = cell.try_borrow_mut();
        let buf = match kept.as_mut() {
            Ok(b) => &mut **b,
            Err(_) => &mut own,
        };
        let hw = g.pad_input(x, batch, buf);
        conv2d_packed_from(m, g, kernel, buf, hw, batch, scale, shift, relu)
    })
}

thread_local! {
    // Not a `Scratch` field: the calling thread holds this across the parallel loop, whose
    // tasks (possibly on this thread) borrow `SCRATCH`.
    static PADDED: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// [`conv2d_packed`] on an input whose planes are `hp × wp` with the padding already in
/// place (`xp` may be longer than the batch).
#[allow(clippy::too_many_arguments)]
fn conv2d_packed_from(
    m: &PackedMatrix,
    g: &ConvGeom,
    kernel: Kernel,
    xp: &[f32],
    (hp, wp): (usize, usize),
    batch: usize,
    scale: &[f32],
    shift: &[f32],
    relu: bool,
) -> Vec<f32> {
    let (o, positions, ow) = (m.rows(), g.oh() * g.ow(), g.ow());
    let img_len = g.cin * hp * wp;
    let koff = g.row_offsets(m.stride * 8, hp, wp);
    let len = batch * o * positions;
    // Every element is written below (each task its (image, tile) for all channels), so
    // the output is not zeroed first; `set_len` comes after the writes.
    let mut y: Vec<f32> = Vec::with_capacity(len);
    let tiles = positions.div_ceil(TILE);
    let out = SendPtr(y.as_mut_ptr());
    let words = m.block_words(kernel, o);
    (0..batch * tiles).into_par_iter().for_each(|task| {
        let (b, t) = (task / tiles, task % tiles);
        let p0 = t * TILE;
        let width = TILE.min(positions - p0);
        // Window corner of each output position; lanes past `width` repeat the first.
        let idx = std::array::from_fn(|j| {
            let p = p0 + if j < width { j } else { 0 };
            ((p / ow) * g.stride * wp + (p % ow) * g.stride) as u32
        });
        let input = TileInput::new(&xp[b * img_len..(b + 1) * img_len], &koff, idx);
        SCRATCH.with(|cell| {
            // No nested parallelism below, so this thread cannot re-enter the borrow.
            let Scratch { tables, acc, .. } = &mut *cell.borrow_mut();
            let acc = aligned(acc, o * TILE);
            let affine = Affine {
                scale,
                shift,
                floor: if relu { 0.0 } else { f32::NEG_INFINITY },
                dst: out.get().wrapping_add(b * o * positions + p0),
                stride: positions,
                width,
            };
            // SAFETY: (b, t) is unique to this task, so its positions `p0..p0 + width` of
            // every channel are disjoint from every other task's and lie inside `y`'s
            // capacity (uninitialised memory: written, never read).
            unsafe { m.tile_affine(kernel, &words, &input, tables, acc, &affine) };
        })
    });
    // SAFETY: the tasks above wrote all `len` elements: every (image, tile) task writes
    // its positions for every channel.
    unsafe { y.set_len(len) };
    y
}

/// fp32 convolution: per image, full im2col then one GEMM (`gemm` crate), then the affine
/// (and ReLU when `relu`).
#[allow(clippy::too_many_arguments)]
pub fn conv2d_f32(
    w: &[f32],
    o: usize,
    g: &ConvGeom,
    x: &[f32],
    batch: usize,
    scale: &[f32],
    shift: &[f32],
    relu: bool,
) -> Vec<f32> {
    let (k, positions) = (g.k(), g.oh() * g.ow());
    let in_len = g.cin * g.h * g.w;
    assert_eq!(x.len(), batch * in_len, "conv input size");
    assert_eq!(w.len(), o * k, "conv weight size");
    let len = batch * o * positions;
    // Not zeroed: the GEMM writes every output before it is read (as in the 2-bit path).
    let mut y: Vec<f32> = Vec::with_capacity(len);
    // Parallelise across images when there are enough, else inside the GEMM.
    let outer = batch >= rayon::current_num_threads();
    let run = |(b, yb): (usize, &mut [MaybeUninit<f32>]), cols: &mut Vec<f32>| {
        cols.resize(k * positions, 0.0);
        g.im2col(
            &x[b * in_len..(b + 1) * in_len],
            0,
            positions,
            cols,
            positions,
        );
        sgemm(o, positions, k, w, cols, false, yb, !outer);
        // SAFETY: `sgemm` wrote all of `yb`.
        let yb = unsafe { &mut *(yb as *mut [MaybeUninit<f32>] as *mut [f32]) };
        let floor = if relu { 0.0 } else { f32::NEG_INFINITY };
        for (oc, row) in yb.chunks_exact_mut(positions).enumerate() {
            for v in row {
                *v = (scale[oc] * *v + shift[oc]).max(floor);
            }
        }
    };
    let spare = &mut y.spare_capacity_mut()[..len];
    if outer {
        spare
            .par_chunks_mut(o * positions)
            .enumerate()
            .for_each(|item| {
                // The GEMM is sequential here (`!outer`), so no re-entrant borrow.
                SCRATCH.with(|cell| run(item, &mut cell.borrow_mut().cols))
            });
    } else {
        let mut cols = Vec::new();
        for item in spare.chunks_mut(o * positions).enumerate() {
            run(item, &mut cols);
        }
    }
    // SAFETY: every image's chunk was written by its GEMM.
    unsafe { y.set_len(len) };
    y
}

/// Applies `v = scale[c]·v + shift[c]` over `[batch, channels, inner]`.
pub fn affine(x: &mut [f32], channels: usize, inner: usize, scale: &[f32], shift: &[f32]) {
    x.par_chunks_mut(channels * inner).for_each(|img| {
        for (c, row) in img.chunks_exact_mut(inner).enumerate() {
            for v in row {
                *v = scale[c] * *v + shift[c];
            }
        }
    });
}

/// In-place ReLU.
pub fn relu(x: &mut [f32]) {
    x.par_chunks_mut(4096).for_each(|c| {
        for v in c {
            *v = v.max(0.0);
        }
    });
}

/// Max pooling, square window, no padding: `[n, c, h, w] -> [n, c, oh, ow]`.
pub fn max_pool(x: &[f32], nc: usize, h: usize, w: usize, k: usize, s: usize) -> Vec<f32> {
    let (oh, ow) = ((h - k) / s + 1, (w - k) / s + 1);
    let mut y = vec![0f32; nc * oh * ow];
    y.par_chunks_mut(oh * ow).enumerate().for_each(|(i, out)| {
        let plane = &x[i * h * w..(i + 1) * h * w];
        for oy in 0..oh {
            for ox in 0..ow {
                let mut m = f32::NEG_INFINITY;
                for ky in 0..k {
                    for kx in 0..k {
                        m = m.max(plane[(oy * s + ky) * w + ox * s + kx]);
                    }
                }
                out[oy * ow + ox] = m;
            }
        }
    });
    y
}

/// Mean over each `inner`-long plane: `[nc, inner] -> [nc]`.
pub fn global_avg_pool(x: &[f32], inner: usize) -> Vec<f32> {
    x.chunks_exact(inner)
        .map(|p| p.iter().sum::<f32>() / inner as f32)
        .collect()
}

/// ResNet option-A shortcut: `x[:, :, ::s, ::s]`, then zero channels before and after.
pub fn pad_subsample(
    x: &[f32],
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    s: usize,
    out_c: usize,
) -> Vec<f32> {
    let (oh, ow) = (h.div_ceil(s), w.div_ceil(s));
    let before = (out_c - c) / 2;
    let mut y = vec![0f32; n * out_c * oh * ow];
    for b in 0..n {
        for ci in 0..c {
            let src = &x[(b * c + ci) * h * w..(b * c + ci + 1) * h * w];
            let dst = &mut y[(b * out_c + before + ci) * oh * ow..][..oh * ow];
            for oy in 0..oh {
                for ox in 0..ow {
                    dst[oy * ow + ox] = src[oy * s * w + ox * s];
                }
            }
        }
    }
    y
}
