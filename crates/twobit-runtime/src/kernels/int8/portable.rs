//! Portable int8 kernels (plain Rust, any target), and the batched linear layer's driver.
use super::{Int8Offsets, Kernel, PackedMatrix, TileInput, GROUPS, TILE};
use crate::kernels::portable::table_step;
use crate::kernels::{aligned, RowOffsets, Scratch, SendPtr, SCRATCH};

/// Integer sum of the `q` selected by the bits of one plane byte.
#[inline(always)]
fn masked_sum(q: &[i8], mut bits: u8) -> i32 {
    let mut s = 0i32;
    while bits != 0 {
        s += q[bits.trailing_zeros() as usize] as i32;
        bits &= bits - 1;
    }
    s
}

/// GEMV rows `r0..r0+y.len()`: exact integer masked sums, one float combination per row.
pub(super) fn gemv_rows(m: &PackedMatrix, q: &[i8], total: i32, s: f32, r0: usize, y: &mut [f32]) {
    for (i, yo) in y.iter_mut().enumerate() {
        let r = r0 + i;
        let p = &m.plus[r * m.stride..(r + 1) * m.stride];
        let n = &m.minus[r * m.stride..(r + 1) * m.stride];
        let (mut sp, mut sn, mut sb) = (0i32, 0i32, 0i32);
        for j in 0..m.stride {
            let x = &q[j * 8..j * 8 + 8];
            sp += masked_sum(x, p[j]);
            sn += masked_sum(x, n[j]);
            if m.has3[r] {
                sb += masked_sum(x, p[j] & n[j]);
            }
        }
        *yo = combine(m.coef[r], total, sp, sn, sb) * s;
    }
}

/// `c_T·total + c_p·sp + c_n·sn + c_b·sb` in float (the sums are exact integers).
#[inline(always)]
pub(super) fn combine([ct, cp, cn, cb]: [f32; 4], total: i32, sp: i32, sn: i32, sb: i32) -> f32 {
    ct * total as f32 + cp * sp as f32 + cn * sn as f32 + cb * sb as f32
}

/// Portable tile kernel: int16 subset-sum tables per group of 4 rows (built in the shared
/// `table_step` order), one lookup per plane nibble, integer sums per block.
pub(super) fn tile(
    m: &PackedMatrix,
    rows: std::ops::Range<usize>,
    x: &TileInput<i8>,
    tables: &mut [i16],
    out: &mut [f32],
    total: &mut [i32; TILE],
) {
    let r0 = rows.start;
    out.fill(0.0);
    *total = [0; TILE];
    for k in 0..m.cols {
        for (j, t) in total.iter_mut().enumerate() {
            *t += x.get(k, j) as i32;
        }
    }
    for b0 in (0..m.stride).step_by(super::BLOCK) {
        let nbytes = super::BLOCK.min(m.stride - b0);
        for g in 0..nbytes * 2 {
            let k0 = b0 * 8 + g * 4;
            let tg = &mut tables[g * 16 * TILE..(g + 1) * 16 * TILE];
            tg[..TILE].fill(0);
            for mask in 1..16usize {
                let (prev, low) = table_step(mask);
                for j in 0..TILE {
                    tg[mask * TILE + j] = tg[prev * TILE + j] + x.get(k0 + low, j) as i16;
                }
            }
        }
        for o in rows.clone() {
            let use3 = m.has3[o];
            let pb = &m.plus[o * m.stride + b0..o * m.stride + b0 + nbytes];
            let nb = &m.minus[o * m.stride + b0..o * m.stride + b0 + nbytes];
            let (mut ap, mut an, mut ab) = ([0i32; TILE], [0i32; TILE], [0i32; TILE]);
            for i in 0..nbytes {
                for h in 0..2 {
                    let g = i * 2 + h;
                    debug_assert!(g < GROUPS);
                    let pn = ((pb[i] >> (4 * h)) & 15) as usize;
                    let nn = ((nb[i] >> (4 * h)) & 15) as usize;
                    let t = |e: usize| &tables[(g * 16 + e) * TILE..(g * 16 + e + 1) * TILE];
                    let (tp, tn, tb) = (t(pn), t(nn), t(pn & nn));
                    for j in 0..TILE {
                        ap[j] += tp[j] as i32;
                        an[j] += tn[j] as i32;
                        if use3 {
                            ab[j] += tb[j] as i32;
                        }
                    }
                }
            }
            let c = m.coef[o];
            for j in 0..TILE {
                out[(o - r0) * TILE + j] +=
                    combine([0.0, c[1], c[2], c[3]], 0, ap[j], an[j], ab[j]);
            }
        }
    }
}

/// See [`PackedMatrix::matmul_i8`].
#[allow(clippy::too_many_arguments)]
pub(super) fn matmul_i8(
    m: &PackedMatrix,
    offs: Option<&Int8Offsets>,
    gemv_below: usize,
    kernel: Kernel,
    act: super::ActScale,
    x: &[f32],
    batch: usize,
    y: &mut [f32],
) {
    use rayon::prelude::*;
    assert_eq!(x.len(), batch * m.cols, "matmul input size");
    assert_eq!(y.len(), batch * m.rows, "matmul output size");
    // Under AVX2 the GEMV has SIMD code and the tile does not: one GEMV per sample always.
    let simd_gemv_only = matches!(
        super::Isa::of(kernel),
        super::Isa::Avx2 | super::Isa::AvxVnni
    );
    if batch < gemv_below || simd_gemv_only {
        let mut q = vec![0i8; m.gemv_i8_len()];
        for (xs, ys) in x.chunks(m.cols).zip(y.chunks_mut(m.rows)) {
            let s = act.quantize(xs, &mut q[..m.cols]);
            m.gemv_i8(kernel, &q, s, ys);
        }
        return;
    }
    let (kpad, rows) = (m.stride * 8, m.rows);
    let tiles = batch.div_ceil(TILE);
    // As the fp32 `matmul`: split rows too when there are few tiles, so every core works.
    let want = (rayon::current_num_threads() * 4).div_ceil(tiles);
    let chunks = want.clamp(1, rows.div_ceil(64).max(1));
    let chunk = rows.div_ceil(chunks);
    // Per sample: its scale; each tile's samples quantized and transposed once (`kpad` rows
    // of TILE, zero past `cols` and past the batch).
    let tile_len = kpad * TILE;
    let mut xts = vec![0i8; tiles * tile_len];
    let mut scales = vec![0f32; tiles * TILE];
    xts.par_chunks_mut(tile_len)
        .zip(scales.par_chunks_mut(TILE))
        .enumerate()
        .for_each(|(t, (xt, sc))| {
            let mut q = vec![0i8; m.cols];
            for j in 0..TILE.min(batch - t * TILE) {
                let n = t * TILE + j;
                sc[j] = act.quantize(&x[n * m.cols..(n + 1) * m.cols], &mut q);
                for (k, &v) in q.iter().enumerate() {
                    xt[k * TILE + j] = v;
                }
            }
        });
    let out = SendPtr(y.as_mut_ptr());
    let koff = RowOffsets::dense(kpad);
    let built;
    let offs = match offs {
        Some(o) => o,
        None => {
            built = m.int8_offsets();
            &built
        }
    };
    (0..tiles * chunks).into_par_iter().for_each(|task| {
        let (t, c) = (task / chunks, task % chunks);
        let r = c * chunk..((c + 1) * chunk).min(rows);
        if r.is_empty() {
            return;
        }
        let xt = TileInput::dense(&xts[t * tile_len..(t + 1) * tile_len], &koff);
        SCRATCH.with(|cell| {
            // No nested parallelism below, so this thread cannot re-enter the borrow.
            let Scratch {
                tables_i16, acc, ..
            } = &mut *cell.borrow_mut();
            let acc = aligned(acc, r.len() * TILE);
            let mut total = [0i32; TILE];
            m.tile_i8(kernel, r.clone(), offs, &xt, tables_i16, acc, &mut total);
            let n0 = t * TILE;
            for j in 0..TILE.min(batch - n0) {
                let s = scales[n0 + j];
                // SAFETY: (tile, row chunk) is unique to this task: samples n0..n0+TILE,
                // rows r, all inside `y`.
                let dst = unsafe {
                    std::slice::from_raw_parts_mut(
                        out.get().add((n0 + j) * rows + r.start),
                        r.len(),
                    )
                };
                for (i, d) in dst.iter_mut().enumerate() {
                    let ct = m.coef[r.start + i][0];
                    *d = s * (acc[i * TILE + j] + ct * total[j] as f32);
                }
            }
        })
    });
}
