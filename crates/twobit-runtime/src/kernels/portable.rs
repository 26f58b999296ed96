//! Portable kernels (plain Rust, any target).
use super::{PackedMatrix, TileInput, TILE};

/// One row's plane bits for one k-block (see `BlockWords`).
pub(crate) type Word = u64;
/// Plane bytes per k-block: one `Word`, 8 columns per byte, 2 groups of 4 per byte.
pub(crate) const BLOCK_BYTES: usize = std::mem::size_of::<Word>();
const GROUPS: usize = BLOCK_BYTES * 2;
/// Scratch size: 16 subset sums of 4 activation rows, per group, `TILE` wide.
pub(crate) const TABLE_LEN: usize = GROUPS * 16 * TILE;

/// Portable GEMV over rows `r0..r0+y.len()`: sums of selected activations per set bit.
pub(crate) fn gemv_rows(m: &PackedMatrix, xp: &[f32], total: f32, r0: usize, y: &mut [f32]) {
    for (i, yo) in y.iter_mut().enumerate() {
        let r = r0 + i;
        let p = &m.plus[r * m.stride..(r + 1) * m.stride];
        let n = &m.minus[r * m.stride..(r + 1) * m.stride];
        let (mut sp, mut sn, mut sb) = (0f32, 0f32, 0f32);
        for j in 0..m.stride {
            let x = &xp[j * 8..j * 8 + 8];
            sp += masked_sum(x, p[j]);
            sn += masked_sum(x, n[j]);
            if m.has3[r] {
                sb += masked_sum(x, p[j] & n[j]);
            }
        }
        let [ct, cp, cn, cb] = m.coef[r];
        *yo = ct * total + cp * sp + cn * sn + cb * sb;
    }
}

#[inline(always)]
fn masked_sum(x: &[f32], mut bits: u8) -> f32 {
    let mut s = 0f32;
    while bits != 0 {
        s += x[bits.trailing_zeros() as usize];
        bits &= bits - 1;
    }
    s
}

/// How subset-sum table entry `mask` (1..16) is built: entry `prev` plus activation row
/// `row`. Entries 1-7 add their lowest bit's row to the entry without it; entries 8-15 add
/// row 3 to entries 0-7 (so the AVX-512 kernel keeps 0-7 in registers). Every kernel builds
/// its tables in this order.
#[inline(always)]
pub(crate) fn table_step(mask: usize) -> (usize, usize) {
    if mask >= 8 {
        (mask - 8, 3)
    } else {
        (mask & (mask - 1), mask.trailing_zeros() as usize)
    }
}

/// Portable tile kernel.
pub(crate) fn tile(
    m: &PackedMatrix,
    rows: std::ops::Range<usize>,
    x: &TileInput,
    tables: &mut [f32],
    out: &mut [f32],
) {
    tile_impl(m, rows, x, tables, out)
}

/// Activation-stationary LUT kernel: for each group of 4 input rows, the 16 subset sums of
/// those rows (one `TILE`-wide vector each) are built once and shared by every output row;
/// each output row then adds one table entry per plane nibble, scaled by its coefficient.
/// That is 2 vector FMAs per 4 weights instead of 4 for a dense fp32 GEMM.
fn tile_impl(
    m: &PackedMatrix,
    rows: std::ops::Range<usize>,
    x: &TileInput,
    tables: &mut [f32],
    out: &mut [f32],
) {
    let r0 = rows.start;
    let tables = &mut tables[..TABLE_LEN];
    out.fill(0.0);
    let mut total = [0f32; TILE];
    for k in 0..m.cols {
        for (j, t) in total.iter_mut().enumerate() {
            *t += x.get(k, j);
        }
    }
    let any3 = m.has3.iter().any(|&b| b);
    for b0 in (0..m.stride).step_by(BLOCK_BYTES) {
        let nbytes = BLOCK_BYTES.min(m.stride - b0);
        // Build the subset-sum tables (15 vector adds per group), see `table_step`.
        for g in 0..nbytes * 2 {
            let k0 = b0 * 8 + g * 4;
            let (tg, _) = tables[g * 16 * TILE..].split_at_mut(16 * TILE);
            tg[..TILE].fill(0.0);
            for mask in 1..16usize {
                let (prev, low) = table_step(mask);
                let (head, tail) = tg.split_at_mut(mask * TILE);
                let src = &head[prev * TILE..prev * TILE + TILE];
                let dst = &mut tail[..TILE];
                for j in 0..TILE {
                    dst[j] = src[j] + x.get(k0 + low, j);
                }
            }
        }
        for o in rows.clone() {
            let [_, cp, cn, cb] = m.coef[o];
            let use3 = any3 && m.has3[o];
            let pb = &m.plus[o * m.stride + b0..o * m.stride + b0 + nbytes];
            let nb = &m.minus[o * m.stride + b0..o * m.stride + b0 + nbytes];
            let acc: &mut [f32; TILE] = (&mut out[(o - r0) * TILE..(o - r0 + 1) * TILE])
                .try_into()
                .unwrap();
            let mut a = *acc;
            for i in 0..nbytes {
                let (p, n) = (pb[i], nb[i]);
                if p | n == 0 {
                    continue;
                }
                for h in 0..2 {
                    let g = i * 2 + h;
                    let pn = ((p >> (4 * h)) & 15) as usize;
                    let nn = ((n >> (4 * h)) & 15) as usize;
                    let base = g * 16 * TILE;
                    let tp = &tables[base + pn * TILE..base + pn * TILE + TILE];
                    let tn = &tables[base + nn * TILE..base + nn * TILE + TILE];
                    for j in 0..TILE {
                        a[j] += cp * tp[j] + cn * tn[j];
                    }
                    if use3 {
                        let bn = pn & nn;
                        let tb = &tables[base + bn * TILE..base + bn * TILE + TILE];
                        for j in 0..TILE {
                            a[j] += cb * tb[j];
                        }
                    }
                }
            }
            *acc = a;
        }
    }
    for o in rows.clone() {
        let ct = m.coef[o][0];
        if ct != 0.0 {
            for j in 0..TILE {
                out[(o - r0) * TILE + j] += ct * total[j];
            }
        }
    }
}
