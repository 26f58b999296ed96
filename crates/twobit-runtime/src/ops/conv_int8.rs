//! 2-bit convolution with int8 activations: each image quantized once (one scale per
//! image) into a zero-padded int8 copy, then the int8 tile kernel reads it in place, as the
//! fp32 path reads its padded copy (see `conv::conv2d_packed`).
use super::ConvGeom;
use crate::kernels::int8::{quantize_with, row_scale, Affine8, Int8Offsets};
use crate::kernels::{aligned, Kernel, PackedMatrix, Scratch, SendPtr, TileInput, SCRATCH, TILE};
use rayon::prelude::*;

/// Values under which the quantization runs on the calling thread: waking the pool cost
/// more than the work in batch-1 networks (ResNet-20's layers: 16-64 Ki values).
const SMALL: usize = 1 << 16;

thread_local! {
    // Kept between calls, as the fp32 path's padded copy: a fresh buffer per layer costs
    // page faults. Not in `Scratch`: the calling thread holds it across the parallel loop.
    static PADDED_I8: std::cell::RefCell<Vec<i8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Quantizes every image of `x` with its scale into `dst` with the pads' zeros in place
/// (every element written); returns the padded height and width.
fn pad_quantize(g: &ConvGeom, x: &[f32], scales: &[f32], dst: &mut Vec<i8>) -> (usize, usize) {
    let (h, w) = (g.h, g.w);
    let [pt, pl, _, _] = g.pads;
    let (hp, wp) = g.padded();
    let len = scales.len() * g.cin * hp * wp;
    if dst.len() < len {
        dst.resize(len, 0);
    }
    let per_img = g.cin;
    let plane = |(i, (plane, src)): (usize, (&mut [i8], &[f32]))| {
        let s = scales[i / per_img];
        plane[..pt * wp].fill(0);
        plane[(pt + h) * wp..].fill(0);
        for (y, row) in src.chunks_exact(w).enumerate() {
            let d = &mut plane[(y + pt) * wp..(y + pt + 1) * wp];
            d[..pl].fill(0);
            quantize_with(row, s, &mut d[pl..pl + w]);
            d[pl + w..].fill(0);
        }
    };
    if len < SMALL {
        dst[..len]
            .chunks_mut(hp * wp)
            .zip(x.chunks(h * w))
            .enumerate()
            .for_each(plane);
    } else {
        dst[..len]
            .par_chunks_mut(hp * wp)
            .zip(x.par_chunks(h * w))
            .enumerate()
            .for_each(plane);
    }
    (hp, wp)
}

/// [`super::conv2d_packed`] with int8 activations (one scale per image): same arguments
/// and output. Builds each group's [`Int8Offsets`] for this call.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_packed_i8(
    m: &[PackedMatrix],
    g: &ConvGeom,
    kernel: Kernel,
    x: &[f32],
    batch: usize,
    scale: &[f32],
    shift: &[f32],
    clamp: (f32, f32),
) -> Vec<f32> {
    let offs: Vec<_> = m.iter().map(|m| m.int8_offsets()).collect();
    conv2d_packed_i8_with(m, &offs, g, kernel, x, batch, scale, shift, clamp)
}

/// [`conv2d_packed_i8`] with each group's [`Int8Offsets`] given (`offs[i]` built from
/// `m[i]`; a runtime keeps them between calls).
#[allow(clippy::too_many_arguments)]
pub fn conv2d_packed_i8_with(
    m: &[PackedMatrix],
    offs: &[Int8Offsets],
    g: &ConvGeom,
    kernel: Kernel,
    x: &[f32],
    batch: usize,
    scale: &[f32],
    shift: &[f32],
    (lo, hi): (f32, f32),
) -> Vec<f32> {
    assert_eq!(offs.len(), m.len(), "int8 offsets per group");
    let in_len = g.cin * g.h * g.w;
    assert_eq!(x.len(), batch * in_len, "conv input size");
    assert_eq!(m.len(), g.group, "one matrix per group");
    assert!(m.iter().all(|m| m.cols() == g.k()), "conv weight columns");
    let scales: Vec<f32> = if x.len() < SMALL {
        x.chunks(in_len).map(row_scale).collect()
    } else {
        x.par_chunks(in_len).map(row_scale).collect()
    };
    PADDED_I8.with(|cell| {
        let mut own = Vec::new();
        let mut kept = cell.try_borrow_mut();
        let buf = match kept.as_mut() {
            Ok(b) => &mut **b,
            Err(_) => &mut own,
        };
        let (hp, wp) = pad_quantize(g, x, &scales, buf);
        let xp: &[i8] = buf;
        let og = m[0].rows();
        let (o, positions, ow) = (og * g.group, g.oh() * g.ow(), g.ow());
        let [sh, sw] = g.strides;
        let cin_g = g.cin / g.group;
        let img_len = g.cin * hp * wp;
        let koff = g.row_offsets(m[0].stride * 8, hp, wp);
        let len = batch * o * positions;
        // Every element is written below (each task its positions for all of its group's
        // channels), so the output is not zeroed first.
        let mut y: Vec<f32> = Vec::with_capacity(len);
        let tiles = positions.div_ceil(TILE);
        let out = SendPtr(y.as_mut_ptr());
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
            let mg = &m[gi];
            SCRATCH.with(|cell| {
                // No nested parallelism below, so this thread cannot re-enter the borrow.
                let Scratch {
                    tables_i16, acc, ..
                } = &mut *cell.borrow_mut();
                let acc = aligned(acc, og * TILE);
                let rows = gi * og..(gi + 1) * og;
                let aff = Affine8 {
                    scale: &scale[rows.clone()],
                    s: scales[b],
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
                // width` of the group's channels are written by no other task, and lie
                // inside `y`'s capacity (uninitialised memory: written, never read).
                unsafe { mg.tile_i8_affine(kernel, &offs[gi], &input, tables_i16, acc, &aff) };
            })
        });
        // SAFETY: the tasks above wrote all `len` elements.
        unsafe { y.set_len(len) };
        y
    })
}
