//! AVX2 + FMA kernels, selected at run time by [`super::Kernel::detect`].
#![cfg(target_arch = "x86_64")]
// Several register arrays are indexed in lockstep; index loops read clearer than zips.
#![allow(clippy::needless_range_loop)]
use super::{PackedMatrix, TileInput, TILE};
use std::arch::x86_64::*;

/// Lane masks: entry `b` has lane `i` all-ones when bit `i` of `b` is set.
#[repr(align(32))]
struct Masks([[u32; 8]; 256]);

static MASKS: Masks = {
    let mut t = [[0u32; 8]; 256];
    let mut b = 0;
    while b < 256 {
        let mut i = 0;
        while i < 8 {
            if b & (1 << i) != 0 {
                t[b][i] = u32::MAX;
            }
            i += 1;
        }
        b += 1;
    }
    Masks(t)
};

#[inline(always)]
unsafe fn mask(b: u8) -> __m256 {
    _mm256_load_ps(MASKS.0[b as usize].as_ptr() as *const f32)
}

#[inline(always)]
unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    _mm_cvtss_f32(s)
}

/// GEMV rows: per plane byte, AND 8 activations with the byte's lane mask and add.
/// Four accumulators per plane hide the add latency.
///
/// # Safety
/// The CPU must support AVX2 and FMA; `xp.len() >= m.stride * 8`.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn gemv_rows(m: &PackedMatrix, xp: &[f32], total: f32, r0: usize, y: &mut [f32]) {
    debug_assert!(xp.len() >= m.stride * 8);
    let s = m.stride;
    let x = xp.as_ptr();
    for (i, yo) in y.iter_mut().enumerate() {
        let r = r0 + i;
        let p = &m.plus[r * s..(r + 1) * s];
        let n = &m.minus[r * s..(r + 1) * s];
        let mut ap = [_mm256_setzero_ps(); 4];
        let mut an = [_mm256_setzero_ps(); 4];
        let mut ab = _mm256_setzero_ps();
        let h3 = m.has3[r];
        let full = s / 4 * 4;
        let mut j = 0;
        while j < full {
            for u in 0..4 {
                let xv = _mm256_loadu_ps(x.add((j + u) * 8));
                let (pb, nb) = (*p.get_unchecked(j + u), *n.get_unchecked(j + u));
                ap[u] = _mm256_add_ps(ap[u], _mm256_and_ps(xv, mask(pb)));
                an[u] = _mm256_add_ps(an[u], _mm256_and_ps(xv, mask(nb)));
                if h3 {
                    ab = _mm256_add_ps(ab, _mm256_and_ps(xv, mask(pb & nb)));
                }
            }
            j += 4;
        }
        while j < s {
            let xv = _mm256_loadu_ps(x.add(j * 8));
            ap[0] = _mm256_add_ps(ap[0], _mm256_and_ps(xv, mask(p[j])));
            an[0] = _mm256_add_ps(an[0], _mm256_and_ps(xv, mask(n[j])));
            if h3 {
                ab = _mm256_add_ps(ab, _mm256_and_ps(xv, mask(p[j] & n[j])));
            }
            j += 1;
        }
        let sp = hsum(_mm256_add_ps(
            _mm256_add_ps(ap[0], ap[1]),
            _mm256_add_ps(ap[2], ap[3]),
        ));
        let sn = hsum(_mm256_add_ps(
            _mm256_add_ps(an[0], an[1]),
            _mm256_add_ps(an[2], an[3]),
        ));
        let sb = hsum(ab);
        let [ct, cp, cn, cb] = m.coef[r];
        *yo = ct * total + cp * sp + cn * sn + cb * sb;
    }
}

/// A 64-byte aligned staging buffer for one group's rows.
#[repr(align(64))]
struct Stage([f32; 4 * TILE]);

/// How one 8-lane vector of a tile row is read (same for every row of the tile).
#[derive(Clone, Copy)]
enum Lanes {
    /// 8 consecutive floats from this lane offset.
    Run(usize),
    /// Anything else (strided convolutions, ragged rows): a gather.
    Gather(__m256i),
}

#[target_feature(enable = "avx2")]
unsafe fn lane_plan(x: &TileInput) -> [Lanes; TILE / 8] {
    let mut plan = [Lanes::Run(0); TILE / 8];
    for (v, l) in plan.iter_mut().enumerate() {
        *l = match x.run(v * 8, 8) {
            Some(s) => Lanes::Run(s),
            None => Lanes::Gather(_mm256_loadu_si256(x.idx.as_ptr().add(v * 8) as *const _)),
        };
    }
    plan
}

/// One vector of a row whose lane `j` is at `row + idx[j]`.
#[inline(always)]
unsafe fn load(row: *const f32, l: Lanes) -> __m256 {
    match l {
        Lanes::Run(s) => _mm256_loadu_ps(row.add(s)),
        Lanes::Gather(ix) => _mm256_i32gather_ps::<4>(row, ix),
    }
}

/// Tile kernel with intrinsics: same activation-stationary LUT algorithm as the portable
/// one, but with separate plus/minus accumulators (8 independent add chains instead of 4
/// dependent FMA chains) and no bounds checks in the inner loop. Each group's 4 activation
/// rows are read once, in place (see [`TileInput`]).
///
/// # Safety
/// The CPU must support AVX2 and FMA; sizes as checked by `PackedMatrix::tile_matmul`.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn tile(
    m: &PackedMatrix,
    rows: std::ops::Range<usize>,
    words: &[[super::portable::Word; 2]],
    x: &TileInput,
    tables: &mut [f32],
    out: &mut [f32],
) {
    use super::portable::{BLOCK_BYTES, TABLE_LEN};
    const V: usize = TILE / 8;
    // Half a block at a time: with 16 registers, 16 groups per row pass ran slower than 8.
    const SUB: usize = 4;
    debug_assert!(tables.len() >= TABLE_LEN && out.len() >= rows.len() * TILE);
    debug_assert_eq!(words.len(), m.stride.div_ceil(BLOCK_BYTES) * m.rows);
    debug_assert_eq!(x.koff.len(), m.stride * 8);
    let tb = tables.as_mut_ptr();
    let plan = lane_plan(x);
    // A group's 4 activation rows, staged once (16 registers would not hold them).
    let mut stage = Stage([0.0; 4 * TILE]);
    let xp = stage.0.as_mut_ptr();
    let op = out.as_mut_ptr();
    let zero = _mm256_setzero_ps();
    for i in 0..rows.len() * V {
        _mm256_storeu_ps(op.add(i * 8), zero);
    }
    let any3 = m.has3.iter().any(|&b| b);
    for b0 in (0..m.stride).step_by(SUB) {
        let nbytes = SUB.min(m.stride - b0);
        // Subset-sum tables (15 vector adds per group), in `portable::table_step`'s order.
        for g in 0..nbytes * 2 {
            let t = tb.add(g * 16 * TILE);
            let k0 = b0 * 8 + g * 4;
            for i in 0..4 {
                let row = x.row(k0 + i);
                for v in 0..V {
                    _mm256_store_ps(xp.add(i * TILE + v * 8), load(row, plan[v]));
                }
            }
            let x0 = xp as *const f32;
            for v in 0..V {
                _mm256_storeu_ps(t.add(v * 8), zero);
            }
            for mask in 1..16usize {
                let (prev, low) = super::portable::table_step(mask);
                let src = t.add(prev * TILE);
                let xr = x0.add(low * TILE);
                let dst = t.add(mask * TILE);
                for v in 0..V {
                    let s = _mm256_add_ps(
                        _mm256_loadu_ps(src.add(v * 8)),
                        _mm256_loadu_ps(xr.add(v * 8)),
                    );
                    _mm256_storeu_ps(dst.add(v * 8), s);
                }
            }
        }
        // Unused groups of a partial block: their plane bits are zero, so only entry 0
        // (zero) is read.
        for g in nbytes * 2..SUB * 2 {
            for v in 0..V {
                _mm256_storeu_ps(tb.add(g * 16 * TILE + v * 8), zero);
            }
        }
        for o in rows.clone() {
            let [pw, nw] = *words.get_unchecked((b0 / BLOCK_BYTES) * m.rows + o);
            let shift = 8 * (b0 % BLOCK_BYTES);
            let (p, n) = ((pw >> shift) as u32, (nw >> shift) as u32);
            let mut ap = [zero; V];
            let mut an = [zero; V];
            let mut ab = [zero; V];
            let use3 = any3 && *m.has3.get_unchecked(o);
            if use3 {
                block_sums::<true>(tb, p, n, &mut ap, &mut an, &mut ab);
            } else {
                block_sums::<false>(tb, p, n, &mut ap, &mut an, &mut ab);
            }
            let [_, cp, cn, cb] = *m.coef.get_unchecked(o);
            let (cp, cn, cb) = (_mm256_set1_ps(cp), _mm256_set1_ps(cn), _mm256_set1_ps(cb));
            let dst = op.add((o - rows.start) * TILE);
            for v in 0..V {
                let mut a = _mm256_loadu_ps(dst.add(v * 8));
                a = _mm256_fmadd_ps(cp, ap[v], a);
                a = _mm256_fmadd_ps(cn, an[v], a);
                if use3 {
                    a = _mm256_fmadd_ps(cb, ab[v], a);
                }
                _mm256_storeu_ps(dst.add(v * 8), a);
            }
        }
    }
    // Code-1 level times the column sums (zero for ternary, so usually skipped).
    if m.coef.iter().all(|c| c[0] == 0.0) {
        return;
    }
    let mut total = [zero; V];
    for k in 0..m.cols {
        let row = x.row(k);
        for (v, t) in total.iter_mut().enumerate() {
            *t = _mm256_add_ps(*t, load(row, plan[v]));
        }
    }
    for o in rows.clone() {
        let c = _mm256_set1_ps(m.coef[o][0]);
        for (v, t) in total.iter().enumerate() {
            let dst = op.add((o - rows.start) * TILE + v * 8);
            _mm256_storeu_ps(dst, _mm256_fmadd_ps(c, *t, _mm256_loadu_ps(dst)));
        }
    }
}

/// Adds one half block's table entries (8 nibble groups) into the plus/minus(/both) sums.
#[inline(always)]
unsafe fn block_sums<const USE3: bool>(
    tb: *const f32,
    p: u32,
    n: u32,
    ap: &mut [__m256; super::TILE / 8],
    an: &mut [__m256; super::TILE / 8],
    ab: &mut [__m256; super::TILE / 8],
) {
    use super::TILE;
    for g in 0..8 {
        let base = tb.add(g * 16 * TILE);
        let (pn, nn) = ((p >> (4 * g)) & 15, (n >> (4 * g)) & 15);
        let tp = base.add(pn as usize * TILE);
        let tn = base.add(nn as usize * TILE);
        for v in 0..TILE / 8 {
            ap[v] = _mm256_add_ps(ap[v], _mm256_loadu_ps(tp.add(v * 8)));
            an[v] = _mm256_add_ps(an[v], _mm256_loadu_ps(tn.add(v * 8)));
        }
        if USE3 {
            let tbb = base.add((pn & nn) as usize * TILE);
            for v in 0..TILE / 8 {
                ab[v] = _mm256_add_ps(ab[v], _mm256_loadu_ps(tbb.add(v * 8)));
            }
        }
    }
}
