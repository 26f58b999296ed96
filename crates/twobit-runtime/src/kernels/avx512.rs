//! AVX-512F kernels, selected at run time by [`super::Kernel::detect`].
//!
//! * GEMV: a plane's 16 bits are exactly an AVX-512 lane mask, so each 16 weights cost one
//!   activation load and one masked add per plane (`vaddps zmm{k}`), with no mask table.
//! * Tile: the same activation-stationary LUT as the AVX2 kernel, with the 32-column tile
//!   in two 512-bit registers instead of four 256-bit ones, and 16 nibble groups (64 input
//!   rows, one 8-byte block) per pass over the output rows instead of 8: half the per-row
//!   overhead (loading and storing the output tile, scaling the sums).
#![cfg(target_arch = "x86_64")]
#![allow(clippy::needless_range_loop)]
use super::{PackedMatrix, TileInput, TILE};
use std::arch::x86_64::*;

/// Columns per GEMV step: 4 masks of 16 lanes from one 64-bit plane word per plane.
const STEP: usize = 64;

/// Activation floats `gemv_rows` reads: whole 64-column steps (zero padded).
pub(crate) fn gemv_padded_len(stride: usize) -> usize {
    stride.div_ceil(8) * STEP
}

/// GEMV rows `r0..r0+y.len()` with masked adds.
///
/// # Safety
/// The CPU must support AVX-512F; `xp.len() >= gemv_padded_len(m.stride)` with zeros past
/// `m.cols`.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn gemv_rows(m: &PackedMatrix, xp: &[f32], total: f32, r0: usize, y: &mut [f32]) {
    debug_assert!(xp.len() >= gemv_padded_len(m.stride));
    for (i, yo) in y.iter_mut().enumerate() {
        let r = r0 + i;
        let (sp, sn, sb) = if *m.has3.get_unchecked(r) {
            row_sums::<true>(m, xp, r)
        } else {
            row_sums::<false>(m, xp, r)
        };
        let [ct, cp, cn, cb] = *m.coef.get_unchecked(r);
        *yo = ct * total + cp * sp + cn * sn + cb * sb;
    }
}

/// Masked sums of one row: (plus, minus, plus&minus when `H3`).
#[inline(always)]
unsafe fn row_sums<const H3: bool>(m: &PackedMatrix, xp: &[f32], r: usize) -> (f32, f32, f32) {
    let s = m.stride;
    let x = xp.as_ptr();
    let p = m.plus.as_ptr().add(r * s);
    let n = m.minus.as_ptr().add(r * s);
    let zero = _mm512_setzero_ps();
    // Four accumulators per plane: independent add chains hide the add latency.
    let mut ap = [zero; 4];
    let mut an = [zero; 4];
    let mut ab = [zero; 4];
    let words = s / 8;
    for w in 0..words {
        let pw = (p.add(w * 8) as *const u64).read_unaligned();
        let nw = (n.add(w * 8) as *const u64).read_unaligned();
        step::<H3>(x.add(w * STEP), pw, nw, &mut ap, &mut an, &mut ab);
    }
    let rem = s - words * 8;
    if rem > 0 {
        // The row's last bytes; the missing ones are zero, so padded activations are skipped.
        let (mut pb, mut nb) = ([0u8; 8], [0u8; 8]);
        std::ptr::copy_nonoverlapping(p.add(words * 8), pb.as_mut_ptr(), rem);
        std::ptr::copy_nonoverlapping(n.add(words * 8), nb.as_mut_ptr(), rem);
        step::<H3>(
            x.add(words * STEP),
            u64::from_le_bytes(pb),
            u64::from_le_bytes(nb),
            &mut ap,
            &mut an,
            &mut ab,
        );
    }
    let sum4 = |a: [__m512; 4]| {
        _mm512_reduce_add_ps(_mm512_add_ps(
            _mm512_add_ps(a[0], a[1]),
            _mm512_add_ps(a[2], a[3]),
        ))
    };
    (sum4(ap), sum4(an), if H3 { sum4(ab) } else { 0.0 })
}

/// 64 columns: bit `i` of a plane word (little-endian bytes) is column `i`, so its 16-bit
/// quarters are the lane masks of the four 16-float activation vectors.
#[inline(always)]
unsafe fn step<const H3: bool>(
    x: *const f32,
    pw: u64,
    nw: u64,
    ap: &mut [__m512; 4],
    an: &mut [__m512; 4],
    ab: &mut [__m512; 4],
) {
    let (pw, nw) = (u64::from_le(pw), u64::from_le(nw));
    for u in 0..4 {
        let xv = _mm512_loadu_ps(x.add(u * 16));
        let kp = (pw >> (16 * u)) as __mmask16;
        let kn = (nw >> (16 * u)) as __mmask16;
        ap[u] = _mm512_mask_add_ps(ap[u], kp, ap[u], xv);
        an[u] = _mm512_mask_add_ps(an[u], kn, an[u], xv);
        if H3 {
            ab[u] = _mm512_mask_add_ps(ab[u], kp & kn, ab[u], xv);
        }
    }
}

/// How one 16-lane vector of a tile row is read (same for every row of the tile).
#[derive(Clone, Copy)]
enum Lanes {
    /// 16 consecutive floats from this lane offset.
    Whole(usize),
    /// Two runs of 8 (e.g. two output rows of an 8-wide image).
    Halves(usize, usize),
    /// Anything else (strided convolutions, ragged rows): a gather.
    Gather(__m512i),
}

#[target_feature(enable = "avx512f")]
unsafe fn lane_plan(x: &TileInput) -> [Lanes; TILE / 16] {
    let mut plan = [Lanes::Whole(0); TILE / 16];
    for (v, l) in plan.iter_mut().enumerate() {
        let l0 = v * 16;
        *l = match (x.run(l0, 16), x.run(l0, 8), x.run(l0 + 8, 8)) {
            (Some(s), _, _) => Lanes::Whole(s),
            (None, Some(a), Some(b)) => Lanes::Halves(a, b),
            _ => Lanes::Gather(_mm512_loadu_si512(x.idx.as_ptr().add(l0) as *const _)),
        };
    }
    plan
}

/// Prefetches the lines a row's vectors will load (runs only; a gather's lanes are left to
/// the gather).
#[inline(always)]
unsafe fn prefetch(row: *const f32, plan: &[Lanes; TILE / 16]) {
    for l in plan {
        let (a, b) = match *l {
            Lanes::Whole(s) => (s, s + 15),
            Lanes::Halves(a, b) => (a, b + 7),
            Lanes::Gather(_) => continue,
        };
        _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(a) as *const i8);
        _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(b) as *const i8);
    }
}

/// One vector of a row whose lane `j` is at `row + idx[j]`.
#[inline(always)]
unsafe fn load(row: *const f32, l: Lanes) -> __m512 {
    match l {
        Lanes::Whole(s) => _mm512_loadu_ps(row.add(s)),
        Lanes::Halves(a, b) => {
            let lo = _mm512_castps256_ps512(_mm256_loadu_ps(row.add(a)));
            let hi = _mm256_castps_pd(_mm256_loadu_ps(row.add(b)));
            _mm512_castpd_ps(_mm512_insertf64x4::<1>(_mm512_castps_pd(lo), hi))
        }
        Lanes::Gather(ix) => _mm512_i32gather_ps::<4>(ix, row),
    }
}

/// Plane bytes per block of the AVX-512 tile kernel's two [`super::BlockWords`] layouts:
/// 16 groups of 4 columns (16-entry tables) or 8 groups of 5 (32-entry tables). Both fill
/// 32 KiB of tables per block.
pub(crate) const NIBBLE_BLOCK: usize = 8;
/// See [`NIBBLE_BLOCK`].
pub(crate) const QUINT_BLOCK: usize = 5;
/// Output rows per pass from which 5-column groups pay: each row then makes one lookup per
/// plane per 5 weights instead of per 4, but each table costs 31 adds instead of 15, shared
/// by the rows. vgg7's convolutions at batch 64 (`cargo bench -p twobit-runtime --bench
/// kernels -- vgg7`): 5-7 % faster from 256 rows, 20 % slower at 128.
pub(crate) const QUINT_MIN_ROWS: usize = 256;
const _: () = assert!(16 * 16 * TILE <= super::portable::TABLE_LEN);
const _: () = assert!(8 * 32 * TILE <= super::portable::TABLE_LEN);

/// Tile kernel: the portable kernel's activation-stationary LUT (see `portable::tile_impl`)
/// on 512-bit vectors, in the layout `block_bytes` of `words` selects ([`NIBBLE_BLOCK`] or
/// [`QUINT_BLOCK`]). Each group's activation rows are read once, in place (see
/// [`TileInput`]), and the tables are built from registers.
///
/// With `affine`, the result goes through it to the layer output instead of staying in
/// `out` (which then holds partial sums).
///
/// # Safety
/// The CPU must support AVX-512F and FMA; sizes as checked by `PackedMatrix::tile_matmul`
/// (`words` in the layout `block_bytes`); `affine` as in [`super::Affine`].
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn tile(
    m: &PackedMatrix,
    rows: std::ops::Range<usize>,
    block_bytes: usize,
    words: &[[super::portable::Word; 2]],
    x: &TileInput,
    tables: &mut [f32],
    out: &mut [f32],
    affine: Option<&super::Affine>,
) {
    if block_bytes == QUINT_BLOCK {
        tile_b::<5, QUINT_BLOCK>(m, rows, words, x, tables, out, affine)
    } else {
        debug_assert_eq!(block_bytes, NIBBLE_BLOCK);
        tile_b::<4, NIBBLE_BLOCK>(m, rows, words, x, tables, out, affine)
    }
}

/// [`tile`] with `B`-column groups (`1 << B` table entries, 4 or 5) and `BLOCK` plane bytes
/// (`8·BLOCK/B` groups) per block.
#[target_feature(enable = "avx512f,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_b<const B: usize, const BLOCK: usize>(
    m: &PackedMatrix,
    rows: std::ops::Range<usize>,
    words: &[[super::portable::Word; 2]],
    x: &TileInput,
    tables: &mut [f32],
    out: &mut [f32],
    affine: Option<&super::Affine>,
) {
    const V: usize = TILE / 16;
    let (entries, groups) = (1usize << B, BLOCK * 8 / B);
    debug_assert_eq!(groups * B, BLOCK * 8);
    debug_assert!(tables.len() >= groups * entries * TILE && out.len() >= rows.len() * TILE);
    debug_assert_eq!(words.len(), m.stride.div_ceil(BLOCK) * m.rows);
    debug_assert_eq!(x.koff.len(), m.stride * 8);
    let kpad = m.stride * 8;
    let tb = tables.as_mut_ptr();
    let op = out.as_mut_ptr();
    let plan = lane_plan(x);
    let zero = _mm512_setzero_ps();
    let any3 = m.has3.iter().any(|&b| b);
    // Code-1 level times the column sums (zero for ternary, so usually skipped).
    let with_total = m.coef.iter().any(|c| c[0] != 0.0);
    // With a single block and no such term, the affine is applied in the block's epilogue,
    // straight from registers to the layer output. With more blocks the separate pass is
    // faster: stores to the (cold) layer output inside the row loop stalled it (vgg7's
    // 128-128 conv: 70 against 63 ms).
    let fused = if with_total || m.stride > BLOCK {
        None
    } else {
        affine
    };
    let masks = tail_masks(fused.map_or(TILE, |f| f.width));
    // Entry 0 of every group is zero and nothing else writes it (the builds below skip it),
    // so it is stored once per call. Unused groups of a partial block keep stale entries,
    // never read: their plane bits are zero, so they only look up entry 0.
    for g in 0..groups {
        for v in 0..V {
            _mm512_storeu_ps(tb.add(g * entries * TILE + v * 16), zero);
        }
    }
    for b0 in (0..m.stride).step_by(BLOCK) {
        let (first, last) = (b0 == 0, b0 + BLOCK >= m.stride);
        let ngroups = (BLOCK.min(m.stride - b0) * 8).div_ceil(B);
        for g in 0..ngroups {
            let t = tb.add(g * entries * TILE);
            let k0 = b0 * 8 + g * B;
            // Plain loops: closures (`array::from_fn`) do not inherit the target features,
            // so their loads were out-of-line calls.
            let mut r = [[zero; V]; B];
            for (i, ri) in r.iter_mut().enumerate() {
                // Rows past the padded columns (a row's last group) have zero plane bits,
                // so their entries are never read: any valid row will do.
                let row = x.row((k0 + i).min(kpad - 1));
                for v in 0..V {
                    ri[v] = load(row, plan[v]);
                }
            }
            // Entries 0-7 (rows 0-2) in registers; the higher ones add the subset sums `h` of
            // rows 3.. to them (row 3 for B = 4; row 3, row 4 and both for B = 5).
            let mut e = [[zero; V]; 8];
            for mask in 1..8usize {
                let low = mask.trailing_zeros() as usize;
                for v in 0..V {
                    e[mask][v] = _mm512_add_ps(e[mask & (mask - 1)][v], r[low][v]);
                }
            }
            let highs = 1usize << (B - 3);
            let mut h = [[zero; V]; 4];
            for hm in 1..highs {
                let low = hm.trailing_zeros() as usize;
                for v in 0..V {
                    h[hm][v] = _mm512_add_ps(h[hm & (hm - 1)][v], r[3 + low][v]);
                }
            }
            for v in 0..V {
                let at = |entry: usize| t.add(entry * TILE + v * 16);
                for i in 1..8 {
                    _mm512_storeu_ps(at(i), e[i][v]);
                }
                for hm in 1..highs {
                    _mm512_storeu_ps(at(hm * 8), h[hm][v]);
                    for i in 1..8 {
                        _mm512_storeu_ps(at(hm * 8 + i), _mm512_add_ps(e[i][v], h[hm][v]));
                    }
                }
            }
        }
        // With few output rows (the 4-column layout is used below 256) a block's row loop is
        // short, and the next block's table build waited on its activation rows: prefetch
        // them, one per output row (vgg7's 128-128 conv: 60.5 -> 57.4 ms). With more rows the
        // prefetches cost more than they hid (2-6 % slower on the 256- and 512-row layers).
        let next_k0 = (b0 + BLOCK) * 8;
        let prefetch_rows = if last || B != 4 {
            0
        } else {
            (kpad - next_k0).min(BLOCK * 8)
        };
        for o in rows.clone() {
            if o - rows.start < prefetch_rows {
                prefetch(x.row(next_k0 + o - rows.start), &plan);
            }
            let [p, n] = *words.get_unchecked((b0 / BLOCK) * m.rows + o);
            let use3 = any3 && *m.has3.get_unchecked(o);
            // A block at most half full (a short row's only block) skips the empty groups.
            // Decided per row: hoisted out of the row loop, the generated code made the
            // 5-column layers 5 % slower.
            let half = ngroups <= groups / 2;
            let (ap, an, ab) = match (use3, half) {
                (true, false) => block_sums::<true, B>(tb, p, n, groups),
                (false, false) => block_sums::<false, B>(tb, p, n, groups),
                (true, true) => block_sums::<true, B>(tb, p, n, groups / 2),
                (false, true) => block_sums::<false, B>(tb, p, n, groups / 2),
            };
            let [_, cp, cn, cb] = *m.coef.get_unchecked(o);
            let (cp, cn, cb) = (_mm512_set1_ps(cp), _mm512_set1_ps(cn), _mm512_set1_ps(cb));
            let dst = op.add((o - rows.start) * TILE);
            let mut a = [zero; V];
            for v in 0..V {
                // The first block starts the sum (the tile is not zeroed beforehand).
                a[v] = if first {
                    _mm512_mul_ps(cp, ap[v])
                } else {
                    _mm512_fmadd_ps(cp, ap[v], _mm512_loadu_ps(dst.add(v * 16)))
                };
                a[v] = _mm512_fmadd_ps(cn, an[v], a[v]);
                if use3 {
                    a[v] = _mm512_fmadd_ps(cb, ab[v], a[v]);
                }
            }
            match fused {
                Some(f) if last => {
                    let sc = _mm512_set1_ps(*f.scale.get_unchecked(o - rows.start));
                    let sh = _mm512_set1_ps(*f.shift.get_unchecked(o - rows.start));
                    let fl = _mm512_set1_ps(f.floor);
                    let ce = _mm512_set1_ps(f.ceil);
                    let d = f.dst.add((o - rows.start) * f.stride);
                    for v in 0..V {
                        _mm512_mask_storeu_ps(
                            d.add(v * 16),
                            masks[v],
                            affine_vec(a[v], sc, sh, fl, ce),
                        );
                    }
                }
                _ => {
                    for v in 0..V {
                        _mm512_storeu_ps(dst.add(v * 16), a[v]);
                    }
                    if let (true, Some(f)) = (last, affine) {
                        // The affine pass that follows writes this row's output: fetch its
                        // (cold) lines for writing now, so the pass does not wait on them.
                        let d = f.dst.add((o - rows.start) * f.stride) as *const i8;
                        _mm_prefetch::<_MM_HINT_ET0>(d);
                        _mm_prefetch::<_MM_HINT_ET0>(d.wrapping_add(64 * V - 1));
                    }
                }
            }
        }
    }
    if !with_total {
        if let (Some(f), None) = (affine, fused) {
            store_affine(out, f);
        }
        return;
    }
    let mut total = [zero; V];
    for k in 0..m.cols {
        let row = x.row(k);
        for (v, t) in total.iter_mut().enumerate() {
            *t = _mm512_add_ps(*t, load(row, plan[v]));
        }
    }
    for o in rows.clone() {
        let c = _mm512_set1_ps(m.coef[o][0]);
        for (v, t) in total.iter().enumerate() {
            let dst = op.add((o - rows.start) * TILE + v * 16);
            _mm512_storeu_ps(dst, _mm512_fmadd_ps(c, *t, _mm512_loadu_ps(dst)));
        }
    }
    if let Some(f) = affine {
        store_affine(out, f);
    }
}

/// The table entries of a block's first `groups` `B`-bit groups, summed per plane (plus,
/// minus, and plus&minus when `USE3`). `groups` is a constant at every call, so the loop is
/// unrolled. One accumulator per plane and vector: rows are independent, so out-of-order
/// execution overlaps consecutive rows' add chains; splitting even and odd groups into two
/// accumulator sets (indexed by `g & 1`) cost more than it hid.
#[inline(always)]
unsafe fn block_sums<const USE3: bool, const B: usize>(
    tb: *const f32,
    p: super::portable::Word,
    n: super::portable::Word,
    groups: usize,
) -> (
    [__m512; TILE / 16],
    [__m512; TILE / 16],
    [__m512; TILE / 16],
) {
    const V: usize = TILE / 16;
    let mask: super::portable::Word = (1 << B) - 1;
    let zero = _mm512_setzero_ps();
    let (mut ap, mut an, mut ab) = ([zero; V], [zero; V], [zero; V]);
    for g in 0..groups {
        let base = tb.add((g << B) * TILE);
        let (pn, nn) = ((p >> (B * g)) & mask, (n >> (B * g)) & mask);
        let tp = base.add(pn as usize * TILE);
        let tn = base.add(nn as usize * TILE);
        for v in 0..V {
            ap[v] = _mm512_add_ps(ap[v], _mm512_loadu_ps(tp.add(v * 16)));
            an[v] = _mm512_add_ps(an[v], _mm512_loadu_ps(tn.add(v * 16)));
        }
        if USE3 {
            let tbb = base.add((pn & nn) as usize * TILE);
            for v in 0..V {
                ab[v] = _mm512_add_ps(ab[v], _mm512_loadu_ps(tbb.add(v * 16)));
            }
        }
    }
    (ap, an, ab)
}

/// Lane masks of a tile row's vectors for its first `width` lanes (all ones when full).
#[inline(always)]
fn tail_masks(width: usize) -> [__mmask16; TILE / 16] {
    std::array::from_fn(|v| {
        let n = width.saturating_sub(v * 16).min(16);
        ((1u32 << n) - 1) as __mmask16
    })
}

/// `min(max(scale·a + shift, floor), ceil)`: multiply, then add, as in the portable
/// `Affine::store`.
#[inline(always)]
unsafe fn affine_vec(
    a: __m512,
    scale: __m512,
    shift: __m512,
    floor: __m512,
    ceil: __m512,
) -> __m512 {
    _mm512_min_ps(
        _mm512_max_ps(_mm512_add_ps(_mm512_mul_ps(scale, a), shift), floor),
        ceil,
    )
}

/// The per-channel affine and ReLU after a conv tile (see [`super::Affine`]), from the
/// tile's `acc`, 16 lanes at a time, with masked stores for a partial tile.
///
/// # Safety
/// AVX-512F; `f` as in [`super::Affine`]; `acc.len() >= f.scale.len()·TILE`.
#[target_feature(enable = "avx512f")]
unsafe fn store_affine(acc: &[f32], f: &super::Affine) {
    debug_assert!(f.width <= TILE && acc.len() >= f.scale.len() * TILE);
    let fl = _mm512_set1_ps(f.floor);
    let ce = _mm512_set1_ps(f.ceil);
    let masks = tail_masks(f.width);
    for (r, (&sc, &sh)) in f.scale.iter().zip(f.shift).enumerate() {
        let (sc, sh) = (_mm512_set1_ps(sc), _mm512_set1_ps(sh));
        let d = f.dst.add(r * f.stride);
        for (v, &k) in masks.iter().enumerate() {
            let y = affine_vec(
                _mm512_loadu_ps(acc.as_ptr().add(r * TILE + v * 16)),
                sc,
                sh,
                fl,
                ce,
            );
            if k == 0xffff {
                _mm512_storeu_ps(d.add(v * 16), y);
            } else {
                _mm512_mask_storeu_ps(d.add(v * 16), k, y);
            }
        }
    }
}
