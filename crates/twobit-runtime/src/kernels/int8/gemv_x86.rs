//! AVX-512 int8 GEMV (BW, with VNNI where present), selected at run time by `Isa::of`.
use super::portable::combine;
use super::PackedMatrix;
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
