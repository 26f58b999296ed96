//! AVX-512 int8 kernels (BW, with VNNI where present), selected at run time by `Isa::of`.
#![allow(clippy::needless_range_loop)]
use super::portable::combine;
use super::{Affine8, Int8Offsets, PackedMatrix, TileInput, GROUPS, TILE};
use std::arch::x86_64::*;

/// GEMV rows with `vpdpbusd`.
///
/// # Safety
/// AVX-512F, BW and VNNI; `q.len() >= m.gemv_i8_len()`, zeros past `m.cols`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn gemv_vnni(m: &PackedMatrix, q: &[i8], total: i32, s: f32, r0: usize, y: &mut [f32]) {
    gemv_body::<true>(m, q, total, s, r0, y)
}

/// GEMV rows with `vpmaddubsw` + `vpmaddwd` (no VNNI).
///
/// # Safety
/// AVX-512F and BW; `q` as for [`gemv_vnni`].
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn gemv_bw(m: &PackedMatrix, q: &[i8], total: i32, s: f32, r0: usize, y: &mut [f32]) {
    gemv_body::<false>(m, q, total, s, r0, y)
}

/// GEMV rows `r0..r0+y.len()`.
///
/// # Safety
/// AVX-512F and BW, and VNNI when `VNNI`; `q.len() >= m.gemv_i8_len()`, zeros past `cols`.
pub(super) unsafe fn gemv_rows<const VNNI: bool>(
    m: &PackedMatrix,
    q: &[i8],
    total: i32,
    s: f32,
    r0: usize,
    y: &mut [f32],
) {
    debug_assert!(q.len() >= m.gemv_i8_len());
    if VNNI {
        gemv_vnni(m, q, total, s, r0, y)
    } else {
        gemv_bw(m, q, total, s, r0, y)
    }
}

#[inline(always)]
unsafe fn gemv_body<const VNNI: bool>(
    m: &PackedMatrix,
    q: &[i8],
    total: i32,
    s: f32,
    r0: usize,
    y: &mut [f32],
) {
    for (i, yo) in y.iter_mut().enumerate() {
        let r = r0 + i;
        let (sp, sn, sb) = if *m.has3.get_unchecked(r) {
            row_sums::<VNNI, true>(m, q, r)
        } else {
            row_sums::<VNNI, false>(m, q, r)
        };
        *yo = combine(*m.coef.get_unchecked(r), total, sp, sn, sb) * s;
    }
}

/// `acc + Σ` of each 4 bytes of `v` (signed), per 32-bit lane.
#[inline(always)]
unsafe fn dot4<const VNNI: bool>(acc: __m512i, v: __m512i) -> __m512i {
    let ones = _mm512_set1_epi8(1);
    if VNNI {
        _mm512_dpbusd_epi32(acc, ones, v)
    } else {
        // Pairs first (|sum| <= 254 fits int16), then pairs of pairs into int32.
        let pairs = _mm512_maddubs_epi16(ones, v);
        _mm512_add_epi32(acc, _mm512_madd_epi16(pairs, _mm512_set1_epi16(1)))
    }
}

/// Masked sums of one row: (plus, minus, plus&minus when `H3`). Two accumulators per
/// plane, in named registers (an array indexed by the word's parity was kept on the stack,
/// a store and a load per step), so consecutive words' `vpdpbusd` do not wait on each other.
#[inline(always)]
unsafe fn row_sums<const VNNI: bool, const H3: bool>(
    m: &PackedMatrix,
    q: &[i8],
    r: usize,
) -> (i32, i32, i32) {
    let st = m.stride;
    let x = q.as_ptr();
    let p = m.plus.as_ptr().add(r * st);
    let n = m.minus.as_ptr().add(r * st);
    let zero = _mm512_setzero_si512();
    let (mut a0, mut a1) = ([zero; 3], [zero; 3]);
    let words = st / 8;
    let mut w = 0;
    while w + 2 <= words {
        let (p0, n0) = (plane_word(p, w), plane_word(n, w));
        let (p1, n1) = (plane_word(p, w + 1), plane_word(n, w + 1));
        gemv_step::<VNNI, H3>(x.add(w * 64), p0, n0, &mut a0);
        gemv_step::<VNNI, H3>(x.add(w * 64 + 64), p1, n1, &mut a1);
        w += 2;
    }
    if w < words {
        gemv_step::<VNNI, H3>(x.add(w * 64), plane_word(p, w), plane_word(n, w), &mut a0);
    }
    let rem = st - words * 8;
    if rem > 0 {
        // The row's last bytes; missing ones are zero, so padding is never selected.
        let (mut pb, mut nb) = ([0u8; 8], [0u8; 8]);
        std::ptr::copy_nonoverlapping(p.add(words * 8), pb.as_mut_ptr(), rem);
        std::ptr::copy_nonoverlapping(n.add(words * 8), nb.as_mut_ptr(), rem);
        let (pw, nw) = (u64::from_le_bytes(pb), u64::from_le_bytes(nb));
        gemv_step::<VNNI, H3>(x.add(words * 64), pw, nw, &mut a1);
    }
    let red = |i: usize| _mm512_reduce_add_epi32(_mm512_add_epi32(a0[i], a1[i]));
    (red(0), red(1), if H3 { red(2) } else { 0 })
}

/// Plane word `w` (8 bytes) of a row.
#[inline(always)]
unsafe fn plane_word(plane: *const u8, w: usize) -> u64 {
    u64::from_le((plane.add(w * 8) as *const u64).read_unaligned())
}

/// 64 columns of one row into the accumulators (plus, minus, both). (Functions, not
/// closures, in the hot loops: a closure does not inherit its caller's
/// `target_feature`s, and was not inlined.)
#[inline(always)]
unsafe fn gemv_step<const VNNI: bool, const H3: bool>(
    x: *const i8,
    pw: u64,
    nw: u64,
    a: &mut [__m512i; 3],
) {
    let xv = _mm512_loadu_si512(x as *const _);
    a[0] = dot4::<VNNI>(a[0], _mm512_maskz_mov_epi8(pw, xv));
    a[1] = dot4::<VNNI>(a[1], _mm512_maskz_mov_epi8(nw, xv));
    if H3 {
        a[2] = dot4::<VNNI>(a[2], _mm512_maskz_mov_epi8(pw & nw, xv));
    }
}

/// How a tile row's 32 int8 lanes are loaded (the same for every row of the tile).
#[derive(Clone, Copy)]
enum Lanes {
    /// 32 consecutive bytes from this lane offset.
    Whole(usize),
    /// Four runs of 8 (output rows of 8-, 16- or 32-wide images).
    Runs([usize; 4]),
    /// Anything else (strided convolutions, ragged tiles): lane by lane.
    Scalar,
}

fn lane_plan(x: &TileInput<i8>) -> Lanes {
    if let Some(s) = x.run(0, TILE) {
        return Lanes::Whole(s);
    }
    let runs: Option<Vec<usize>> = (0..4).map(|i| x.run(8 * i, 8)).collect();
    match runs {
        Some(r) => Lanes::Runs([r[0], r[1], r[2], r[3]]),
        None => Lanes::Scalar,
    }
}

/// Row `k`'s 32 lanes widened to int16.
#[inline(always)]
unsafe fn load_row(x: &TileInput<i8>, k: usize, plan: Lanes) -> __m512i {
    let row = x.row(k);
    let v = match plan {
        Lanes::Whole(s) => _mm256_loadu_si256(row.add(s) as *const __m256i),
        Lanes::Runs([a, b, c, d]) => {
            _mm256_set_epi64x(word(row, d), word(row, c), word(row, b), word(row, a))
        }
        Lanes::Scalar => {
            let mut buf = [0i8; TILE];
            for j in 0..TILE {
                buf[j] = *row.add(*x.idx.get_unchecked(j) as usize);
            }
            _mm256_loadu_si256(buf.as_ptr() as *const __m256i)
        }
    };
    _mm512_cvtepi8_epi16(v)
}

/// 8 bytes at `row + o`.
#[inline(always)]
unsafe fn word(row: *const i8, o: usize) -> i64 {
    (row.add(o) as *const i64).read_unaligned()
}

/// int16 lanes `lo..lo+16` of `v` as float.
#[inline(always)]
unsafe fn half_ps<const HI: i32>(v: __m512i) -> __m512 {
    _mm512_cvtepi32_ps(_mm512_cvtepi16_epi32(_mm512_extracti64x4_epi64::<HI>(v)))
}

/// The int16 tile kernel (see the module docs): per block of 32 groups, the 16-entry
/// tables of every group (one 512-bit vector per entry), then per output row one `vpaddw`
/// per plane nibble at the offsets `offs` holds. A row's int16 sums are carried over two
/// blocks (64 groups: |sum| <= 64·508 < 2^15) in `acc16` and then widened and scaled into
/// its fp32 outputs: doing that every block was a quarter of the kernel's time.
///
/// # Safety
/// AVX-512F, BW and VL; sizes as checked by `PackedMatrix::tile_i8` (`offs` built for `m`);
/// `tables` 64-byte aligned with `TABLE_LEN` values, `acc16` 64-byte aligned with
/// `rows.len()·3·TILE`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn tile(
    m: &PackedMatrix,
    rows: std::ops::Range<usize>,
    offs: &Int8Offsets,
    x: &TileInput<i8>,
    tables: &mut [i16],
    acc16: &mut [i16],
    out: &mut [f32],
    total: &mut [i32; TILE],
    aff: Option<&Affine8>,
) {
    debug_assert!(
        tables.len() >= super::TABLE_LEN && (tables.as_ptr() as usize).is_multiple_of(64)
    );
    debug_assert!(
        acc16.len() >= rows.len() * 3 * TILE && (acc16.as_ptr() as usize).is_multiple_of(64)
    );
    let plan = lane_plan(x);
    let t = tables.as_mut_ptr() as *mut __m512i;
    let zero = _mm512_setzero_si512();
    out.fill(0.0);
    let (mut tot_lo, mut tot_hi) = (zero, zero);
    let st = m.stride;
    let blocks = st.div_ceil(super::BLOCK);
    for b in 0..blocks {
        let b0 = b * super::BLOCK;
        let nbytes = super::BLOCK.min(st - b0);
        let ng = nbytes * 2;
        let mut tot = zero;
        for g in 0..ng {
            let k0 = b0 * 8 + g * 4;
            let r = [
                load_row(x, k0, plan),
                load_row(x, k0 + 1, plan),
                load_row(x, k0 + 2, plan),
                load_row(x, k0 + 3, plan),
            ];
            let tg = t.add(g * 16);
            // Entries 0-7 from rows 0-2, then 8-15 = 0-7 plus row 3 (`table_step` order).
            let mut e = [zero; 16];
            e[1] = r[0];
            e[2] = r[1];
            e[3] = _mm512_add_epi16(r[0], r[1]);
            for i in 0..4 {
                e[4 + i] = _mm512_add_epi16(e[i], r[2]);
            }
            for i in 0..8 {
                e[8 + i] = _mm512_add_epi16(e[i], r[3]);
            }
            for i in 0..16 {
                _mm512_store_si512(tg.add(i), e[i]);
            }
            if k0 + 4 <= m.cols {
                tot = _mm512_add_epi16(tot, e[15]);
            } else {
                for i in 0..4 {
                    if k0 + i < m.cols {
                        tot = _mm512_add_epi16(tot, r[i]);
                    }
                }
            }
        }
        // A short last block: the missing groups of the last octet point at entry 0.
        for g in ng..ng.next_multiple_of(8) {
            _mm512_store_si512(t.add(g * 16), zero);
        }
        tot_lo = _mm512_add_epi32(tot_lo, _mm512_cvtepi16_epi32(_mm512_castsi512_si256(tot)));
        tot_hi = _mm512_add_epi32(
            tot_hi,
            _mm512_cvtepi16_epi32(_mm512_extracti64x4_epi64::<1>(tot)),
        );
        // Octets of groups the rows visit: a short block (a small layer's only one) skips
        // its empty groups.
        let nq = ng.div_ceil(8);
        let first = b % 2 == 0;
        let last = b % 2 == 1 || b + 1 == blocks;
        // The last block writes through the affine, when given (its totals are complete:
        // the block's table pass above added its own).
        let fused = aff.filter(|_| b + 1 == blocks);
        let tot_f = (_mm512_cvtepi32_ps(tot_lo), _mm512_cvtepi32_ps(tot_hi));
        for o in rows.clone() {
            let i = o - rows.start;
            let ob = offs.row(b, o);
            let a16 = acc16.as_mut_ptr().add(i * 3 * TILE) as *mut __m512i;
            let dst = out.as_mut_ptr().add(i * TILE);
            let c = *m.coef.get_unchecked(o);
            let h3 = offs.planes == 3 && *m.has3.get_unchecked(o);
            let sums = match (h3, first, last) {
                (false, true, true) => row_block::<false, true, true>(t, ob, nq, a16, c, dst),
                (false, true, false) => row_block::<false, true, false>(t, ob, nq, a16, c, dst),
                (false, false, true) => row_block::<false, false, true>(t, ob, nq, a16, c, dst),
                (false, false, false) => row_block::<false, false, false>(t, ob, nq, a16, c, dst),
                (true, true, true) => row_block::<true, true, true>(t, ob, nq, a16, c, dst),
                (true, true, false) => row_block::<true, true, false>(t, ob, nq, a16, c, dst),
                (true, false, true) => row_block::<true, false, true>(t, ob, nq, a16, c, dst),
                (true, false, false) => row_block::<true, false, false>(t, ob, nq, a16, c, dst),
            };
            if let (Some((lo, hi)), true) = (sums, last) {
                match fused {
                    Some(f) => store_affine(f, i, c[0], (lo, hi), tot_f),
                    None => {
                        _mm512_storeu_ps(dst, lo);
                        _mm512_storeu_ps(dst.add(16), hi);
                    }
                }
            }
        }
    }
    _mm512_storeu_si512(total.as_mut_ptr() as *mut _, tot_lo);
    _mm512_storeu_si512(total.as_mut_ptr().add(16) as *mut _, tot_hi);
}

/// Entry `e` of the group table at `tg`, from `off = 8·e` (an address scaled by 8).
#[inline(always)]
unsafe fn entry(tg: *const u8, off: u8) -> __m512i {
    _mm512_load_si512(tg.add(off as usize * 8) as *const __m512i)
}

/// One output row over one block: int16 sums per plane (started at zero on a pair's first
/// block, else from `a16`), then either kept in `a16` (`None`) or, on a pair's last block,
/// widened into `dst + c_p·Sp + c_n·Sn (+ c_b·Sb)` for the row's 32 lanes, returned for
/// the caller to store.
#[inline(always)]
unsafe fn row_block<const H3: bool, const FIRST: bool, const LAST: bool>(
    t: *const __m512i,
    ob: *const u8,
    nq: usize,
    a16: *mut __m512i,
    [_, cp, cn, cb]: [f32; 4],
    dst: *mut f32,
) -> Option<(__m512, __m512)> {
    let zero = _mm512_setzero_si512();
    let (mut ap, mut an, mut ab) = if FIRST {
        (zero, zero, zero)
    } else {
        let b = if H3 {
            _mm512_load_si512(a16.add(2))
        } else {
            zero
        };
        (_mm512_load_si512(a16), _mm512_load_si512(a16.add(1)), b)
    };
    let tb = t as *const u8;
    // Eight offsets per 64-bit load, split with shifts: one load per 8 lookups besides the
    // table entries' (the load ports, not the adds, bound this loop).
    let ow = ob as *const u64;
    for q in 0..nq {
        let (wp, wn) = (
            ow.add(q).read_unaligned(),
            ow.add(GROUPS / 8 + q).read_unaligned(),
        );
        let wb = if H3 {
            ow.add(GROUPS / 4 + q).read_unaligned()
        } else {
            0
        };
        let tq = tb.add(q * 8 * 1024);
        // Two sums per plane (even and odd groups, named registers): one chain of
        // dependent adds per plane limited the loop to one lookup per cycle and plane.
        let (mut ap1, mut an1, mut ab1) = (zero, zero, zero);
        for i in (0..8).step_by(2) {
            let (tg, th) = (tq.add(i * 1024), tq.add((i + 1) * 1024));
            ap = _mm512_add_epi16(ap, entry(tg, (wp >> (8 * i)) as u8));
            an = _mm512_add_epi16(an, entry(tg, (wn >> (8 * i)) as u8));
            ap1 = _mm512_add_epi16(ap1, entry(th, (wp >> (8 * i + 8)) as u8));
            an1 = _mm512_add_epi16(an1, entry(th, (wn >> (8 * i + 8)) as u8));
            if H3 {
                ab = _mm512_add_epi16(ab, entry(tg, (wb >> (8 * i)) as u8));
                ab1 = _mm512_add_epi16(ab1, entry(th, (wb >> (8 * i + 8)) as u8));
            }
        }
        ap = _mm512_add_epi16(ap, ap1);
        an = _mm512_add_epi16(an, an1);
        if H3 {
            ab = _mm512_add_epi16(ab, ab1);
        }
    }
    if !LAST {
        _mm512_store_si512(a16, ap);
        _mm512_store_si512(a16.add(1), an);
        if H3 {
            _mm512_store_si512(a16.add(2), ab);
        }
        return None;
    }
    let mut lo = _mm512_loadu_ps(dst);
    let mut hi = _mm512_loadu_ps(dst.add(16));
    let (vp, vn) = (_mm512_set1_ps(cp), _mm512_set1_ps(cn));
    lo = _mm512_fmadd_ps(half_ps::<0>(ap), vp, lo);
    hi = _mm512_fmadd_ps(half_ps::<1>(ap), vp, hi);
    lo = _mm512_fmadd_ps(half_ps::<0>(an), vn, lo);
    hi = _mm512_fmadd_ps(half_ps::<1>(an), vn, hi);
    if H3 {
        let vb = _mm512_set1_ps(cb);
        lo = _mm512_fmadd_ps(half_ps::<0>(ab), vb, lo);
        hi = _mm512_fmadd_ps(half_ps::<1>(ab), vb, hi);
    }
    Some((lo, hi))
}

/// Row `r` of a finished tile through the affine (see [`Affine8`]), with masked stores for
/// a short last tile.
///
/// # Safety
/// AVX-512F; [`Affine8`]'s contract for row `r`.
#[inline(always)]
unsafe fn store_affine(
    f: &Affine8,
    r: usize,
    ct: f32,
    (lo, hi): (__m512, __m512),
    (tlo, thi): (__m512, __m512),
) {
    let sc = _mm512_set1_ps(*f.scale.get_unchecked(r) * f.s);
    let sh = _mm512_set1_ps(*f.shift.get_unchecked(r));
    let ct = _mm512_set1_ps(ct);
    let (floor, ceil) = (_mm512_set1_ps(f.floor), _mm512_set1_ps(f.ceil));
    let d = f.dst.add(r * f.stride);
    let w = f.width as u32;
    let k_lo = if w >= 16 { 0xFFFF } else { (1u16 << w) - 1 };
    let k_hi = if w >= 32 {
        0xFFFF
    } else {
        ((1u32 << w.saturating_sub(16)) - 1) as u16
    };
    _mm512_mask_storeu_ps(d, k_lo, affine_half(lo, tlo, ct, sc, sh, floor, ceil));
    _mm512_mask_storeu_ps(
        d.add(16),
        k_hi,
        affine_half(hi, thi, ct, sc, sh, floor, ceil),
    );
}

/// `min(max(sc·(v + ct·t) + sh, floor), ceil)`; `max` returns its second operand for a
/// NaN, so a NaN becomes `floor`, as in `ops::clamp`.
#[inline(always)]
unsafe fn affine_half(
    v: __m512,
    t: __m512,
    ct: __m512,
    sc: __m512,
    sh: __m512,
    floor: __m512,
    ceil: __m512,
) -> __m512 {
    let v = _mm512_fmadd_ps(_mm512_fmadd_ps(t, ct, v), sc, sh);
    _mm512_min_ps(_mm512_max_ps(v, floor), ceil)
}
