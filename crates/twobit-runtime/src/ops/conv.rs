//! Convolutions: packed 2-bit (tile kernels reading a zero-padded input in place), fp32
//! (im2col + GEMM per group) and a direct loop for depthwise convolutions.
use super::{clamp, ConvGeom};
use crate::fp32::sgemm;
use crate::kernels::{
    aligned, Affine, Kernel, PackedMatrix, RowOffsets, Scratch, SendPtr, TileInput, SCRATCH, TILE,
};
use rayon::prelude::*;
use std::mem::MaybeUninit;

impl ConvGeom {
    /// Writes the batch with the pads' zeros around every plane into `dst` (every element,
    /// so a reused buffer needs no clearing) and returns the padded height and width.
    fn pad_input(&self, x: &[f32], batch: usize, dst: &mut Vec<f32>) -> (usize, usize) {
        let (h, w) = (self.h, self.w);
        let [pt, pl, _, _] = self.pads;
        let (hp, wp) = self.padded();
        let len = batch * self.cin * hp * wp;
        if dst.len() < len {
            dst.resize(len, 0.0);
        }
        dst[..len]
            .par_chunks_mut(hp * wp)
            .zip(x.par_chunks(h * w))
            .for_each(|(plane, src)| {
                plane[..pt * wp].fill(0.0);
                plane[(pt + h) * wp..].fill(0.0);
                for (y, row) in src.chunks_exact(w).enumerate() {
                    let d = &mut plane[(y + pt) * wp..(y + pt + 1) * wp];
                    d[..pl].fill(0.0);
                    d[pl..pl + w].copy_from_slice(row);
                    d[pl + w..].fill(0.0);
                }
            });
        (hp, wp)
    }

    /// Offset of each im2col row's (channel, ky, kx) of one group in a padded `hp × wp`
    /// image, for `rows >= k()` rows; padding rows repeat the last (the kernels never use
    /// them). Dilation only spreads the offsets.
    pub(super) fn row_offsets(&self, rows: usize, hp: usize, wp: usize) -> RowOffsets {
        let per_c = self.kh * self.kw;
        let [dh, dw] = self.dilations;
        RowOffsets::new(
            (0..rows)
                .map(|k| {
                    let k = k.min(self.k() - 1);
                    let (ci, r) = (k / per_c, k % per_c);
                    (ci * hp * wp + (r / self.kw) * dh * wp + (r % self.kw) * dw) as u32
                })
                .collect(),
        )
    }

    /// Writes im2col rows for all output positions of one group's channels `img` into
    /// `dst` (`k()` rows of `ld` values).
    fn im2col(&self, img: &[f32], dst: &mut [f32], ld: usize) {
        let (ow, [sh, sw], [dh, dw]) = (self.ow(), self.strides, self.dilations);
        let [pt, pl, _, _] = self.pads;
        let width = self.oh() * ow;
        for (ci, plane) in img.chunks_exact(self.h * self.w).enumerate() {
            for ky in 0..self.kh {
                for kx in 0..self.kw {
                    let row = (ci * self.kh + ky) * self.kw + kx;
                    let d = &mut dst[row * ld..row * ld + width];
                    let kxd = kx * dw;
                    // Valid ox: 0 <= ox*sw + kx*dw - pl < w; the border runs get zeros and
                    // stride 1 is a plain copy.
                    let lo = pl.saturating_sub(kxd).div_ceil(sw).min(ow);
                    let hi = if self.w + pl > kxd {
                        (self.w + pl - kxd).div_ceil(sw)
                    } else {
                        0
                    };
                    let hi = hi.clamp(lo, ow);
                    for (oy, out) in d.chunks_exact_mut(ow).enumerate() {
                        let iy = (oy * sh + ky * dh).wrapping_sub(pt);
                        if iy >= self.h {
                            out.fill(0.0);
                            continue;
                        }
                        let src = &plane[iy * self.w..(iy + 1) * self.w];
                        zero_short(&mut out[..lo]);
                        zero_short(&mut out[hi..]);
                        if lo < hi {
                            let x0 = lo * sw + kxd - pl;
                            if sw == 1 {
                                copy_short(&mut out[lo..hi], &src[x0..x0 + hi - lo]);
                            } else {
                                for (i, v) in out[lo..hi].iter_mut().enumerate() {
                                    *v = src[x0 + i * sw];
                                }
                            }
                        }
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
/// then `y = clamp(scale[o]·dot + shift[o], lo, hi)` is applied. `m` holds one matrix per
/// group (`out/group` rows of `k()` columns). Parallel over (image, group, tile).
#[allow(clippy::too_many_arguments)]
pub fn conv2d_packed(
    m: &[PackedMatrix],
    g: &ConvGeom,
    kernel: Kernel,
    x: &[f32],
    batch: usize,
    scale: &[f32],
    shift: &[f32],
    (lo, hi): (f32, f32),
) -> Vec<f32> {
    assert_eq!(x.len(), batch * g.cin * g.h * g.w, "conv input size");
    assert_eq!(m.len(), g.group, "one matrix per group");
    assert!(m.iter().all(|m| m.cols() == g.k()), "conv weight columns");
    let run =
        |xp: &[f32], hw| conv2d_packed_from(m, g, kernel, xp, hw, batch, scale, shift, lo, hi);
    if g.pads == [0; 4] {
        return run(x, (g.h, g.w));
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
        run(buf, hw)
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
    m: &[PackedMatrix],
    g: &ConvGeom,
    kernel: Kernel,
    xp: &[f32],
    (hp, wp): (usize, usize),
    batch: usize,
    scale: &[f32],
    shift: &[f32],
    lo: f32,
    hi: f32,
) -> Vec<f32> {
    let og = m[0].rows();
    let (o, positions, ow) = (og * g.group, g.oh() * g.ow(), g.ow());
    let [sh, sw] = g.strides;
    let cin_g = g.cin / g.group;
    let img_len = g.cin * hp * wp;
    let koff = g.row_offsets(m[0].stride * 8, hp, wp);
    let len = batch * o * positions;
    // Every element is written below (each task its (image, group, tile) for all of the
    // group's channels), so the output is not zeroed first; `set_len` comes after.
    let mut y: Vec<f32> = Vec::with_capacity(len);
    let tiles = positions.div_ceil(TILE);
    let out = SendPtr(y.as_mut_ptr());
    let words: Vec<_> = m.iter().map(|m| m.block_words(kernel, og)).collect();
    let per_img = g.group * tiles;
    (0..batch * per_img).into_par_iter().for_each(|task| {
        let (b, gi, t) = (task / per_img, task % per_img / tiles, task % tiles);
        let p0 = t * TILE;
        let width = TILE.min(positions - p0);
        // Window corner of each output position; lanes past `width` repeat the first.
        let idx = std::array::from_fn(|j| {
            let p = p0 + if j < width { j } else { 0 };
            ((p / ow) * sh * wp + (p % ow) * sw) as u32
        });
        let img = &xp[b * img_len..(b + 1) * img_len];
        let input = TileInput::new(&img[gi * cin_g * hp * wp..], &koff, idx);
        let rows = gi * og..(gi + 1) * og;
        SCRATCH.with(|cell| {
            // No nested parallelism below, so this thread cannot re-enter the borrow.
            let Scratch { tables, acc, .. } = &mut *cell.borrow_mut();
            let acc = aligned(acc, og * TILE);
            let affine = Affine {
                scale: &scale[rows.clone()],
                shift: &shift[rows.clone()],
                floor: lo,
                ceil: hi,
                dst: out
                    .get()
                    .wrapping_add((b * o + rows.start) * positions + p0),
                stride: positions,
                width,
            };
            // SAFETY: (b, group, t) is unique to this task, so its positions `p0..p0 +
            // width` of the group's channels are disjoint from every other task's and lie
            // inside `y`'s capacity (uninitialised memory: written, never read).
            unsafe { m[gi].tile_affine(kernel, &words[gi], &input, tables, acc, &affine) };
        })
    });
    // SAFETY: the tasks above wrote all `len` elements: every (image, group, tile) task
    // writes its positions for every channel of its group.
    unsafe { y.set_len(len) };
    y
}

/// fp32 convolution: per image and group, full im2col then one GEMM (`gemm` crate), then
/// the affine and clamp. `w` is `[out, k()]`, groups' rows consecutive.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_f32(
    w: &[f32],
    o: usize,
    g: &ConvGeom,
    x: &[f32],
    batch: usize,
    scale: &[f32],
    shift: &[f32],
    (lo, hi): (f32, f32),
) -> Vec<f32> {
    let (k, positions) = (g.k(), g.oh() * g.ow());
    let in_len = g.cin * g.h * g.w;
    let (og, in_g) = (o / g.group, in_len / g.group);
    assert_eq!(x.len(), batch * in_len, "conv input size");
    assert_eq!(w.len(), o * k, "conv weight size");
    let len = batch * o * positions;
    // Not zeroed: the GEMM writes every output before it is read (as in the 2-bit path).
    let mut y: Vec<f32> = Vec::with_capacity(len);
    // Parallelise across images when there are enough, else inside the GEMM.
    let outer = batch >= rayon::current_num_threads();
    let run = |(b, yb): (usize, &mut [MaybeUninit<f32>]), cols: &mut Vec<f32>| {
        cols.resize(k * positions, 0.0);
        for (gi, yg) in yb.chunks_mut(og * positions).enumerate() {
            let img = &x[b * in_len + gi * in_g..b * in_len + (gi + 1) * in_g];
            g.im2col(img, cols, positions);
            let wg = &w[gi * og * k..(gi + 1) * og * k];
            sgemm(og, positions, k, wg, cols, false, yg, !outer);
        }
        // SAFETY: `sgemm` wrote all of `yb`.
        let yb = unsafe { &mut *(yb as *mut [MaybeUninit<f32>] as *mut [f32]) };
        for (oc, row) in yb.chunks_exact_mut(positions).enumerate() {
            for v in row {
                *v = clamp(scale[oc] * *v + shift[oc], lo, hi);
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
    // SAFETY: every image's chunk was written by its GEMMs.
    unsafe { y.set_len(len) };
    y
}

/// Direct convolution loop (for depthwise convolutions, where a GEMM per group would be a
/// dot product of `kh·kw` terms): `w` is `[out, k()]`. Parallel over output planes.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_direct(
    w: &[f32],
    o: usize,
    g: &ConvGeom,
    x: &[f32],
    batch: usize,
    scale: &[f32],
    shift: &[f32],
    (lo, hi): (f32, f32),
) -> Vec<f32> {
    let (oh, ow, hw) = (g.oh(), g.ow(), g.h * g.w);
    let (og, cin_g) = (o / g.group, g.cin / g.group);
    let ([sh, sw], [dh, dw], [pt, pl, _, _]) = (g.strides, g.dilations, g.pads);
    assert_eq!(x.len(), batch * g.cin * hw, "conv input size");
    assert_eq!(w.len(), o * g.k(), "conv weight size");
    let mut y = vec![0f32; batch * o * oh * ow];
    y.par_chunks_mut(oh * ow).enumerate().for_each(|(i, out)| {
        let (b, oc) = (i / o, i % o);
        let c0 = oc / og * cin_g;
        for ci in 0..cin_g {
            let plane = &x[(b * g.cin + c0 + ci) * hw..][..hw];
            for ky in 0..g.kh {
                for kx in 0..g.kw {
                    let wv = w[((oc * cin_g + ci) * g.kh + ky) * g.kw + kx];
                    for oy in 0..oh {
                        let iy = (oy * sh + ky * dh).wrapping_sub(pt);
                        if iy >= g.h {
                            continue;
                        }
                        let row = &plane[iy * g.w..(iy + 1) * g.w];
                        for (ox, v) in out[oy * ow..(oy + 1) * ow].iter_mut().enumerate() {
                            let ix = (ox * sw + kx * dw).wrapping_sub(pl);
                            if ix < g.w {
                                *v += wv * row[ix];
                            }
                        }
                    }
                }
            }
        }
        for v in out {
            *v = clamp(scale[oc] * *v + shift[oc], lo, hi);
        }
    });
    y
}
