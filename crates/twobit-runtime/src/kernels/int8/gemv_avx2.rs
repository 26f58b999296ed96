//! AVX2 int8 GEMV (with AVX-VNNI where present), selected at run time by `Isa::of`: the
//! AVX-512 GEMV's masked sums without byte masks. Per 32 columns each plane's 4 bytes are
//! spread to one byte per column (`vpshufb` of the broadcast word, `vpand` with the bit,
//! `vpminub` with 1), giving 0/1 weights that multiply the int8 activations in
//! `vpdpbusd` (AVX-VNNI) or `vpmaddubsw` + `vpmaddwd`.
use super::portable::combine;
use super::PackedMatrix;
use std::arch::x86_64::*;

/// GEMV rows `r0..r0+y.len()` (see `PackedMatrix::gemv_i8`).
///
/// # Safety
/// AVX2, and AVX-VNNI when `VNNI`; `q.len() >= m.gemv_i8_len()`, zeros past `m.cols`.
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
        gemv_plain(m, q, total, s, r0, y)
    }
}

#[target_feature(enable = "avx2,avxvnni")]
unsafe fn gemv_vnni(m: &PackedMatrix, q: &[i8], total: i32, s: f32, r0: usize, y: &mut [f32]) {
    body::<true>(m, q, total, s, r0, y)
}

#[target_feature(enable = "avx2")]
unsafe fn gemv_plain(m: &PackedMatrix, q: &[i8], total: i32, s: f32, r0: usize, y: &mut [f32]) {
    body::<false>(m, q, total, s, r0, y)
}

#[inline(always)]
unsafe fn body<const VNNI: bool>(
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
            row::<VNNI, true>(m, q, r)
        } else {
            row::<VNNI, false>(m, q, r)
        };
        *yo = combine(*m.coef.get_unchecked(r), total, sp, sn, sb) * s;
    }
}

/// One byte per column of 32 plane bits: 1 where the bit is set.
#[inline(always)]
unsafe fn spread(bits: u32) -> __m256i {
    // Byte j of the result takes byte j/8 of `bits` (in-lane shuffle: the low half reads
    // bytes 0-1, the high half 2-3), then its bit j%8.
    let spread = _mm256_setr_epi8(
        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3,
        3, 3,
    );
    let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    let v = _mm256_shuffle_epi8(_mm256_set1_epi32(bits as i32), spread);
    _mm256_min_epu8(_mm256_and_si256(v, bit), _mm256_set1_epi8(1))
}

/// `acc + Σ w·x` per dword (`w` bytes 0/1, `x` int8).
#[inline(always)]
unsafe fn dot<const VNNI: bool>(acc: __m256i, w: __m256i, x: __m256i) -> __m256i {
    if VNNI {
        _mm256_dpbusd_avx_epi32(acc, w, x)
    } else {
        // Pairs fit int16 (|sum| <= 254), then pairs of pairs into int32.
        let pairs = _mm256_maddubs_epi16(w, x);
        _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
    }
}

/// Masked sums of one row: (plus, minus, plus&minus when `H3`).
#[inline(always)]
unsafe fn row<const VNNI: bool, const H3: bool>(
    m: &PackedMatrix,
    q: &[i8],
    r: usize,
) -> (i32, i32, i32) {
    let st = m.stride;
    let p = m.plus.as_ptr().add(r * st);
    let n = m.minus.as_ptr().add(r * st);
    let zero = _mm256_setzero_si256();
    let (mut ap, mut an, mut ab) = (zero, zero, zero);
    let x = q.as_ptr();
    let words = st / 4;
    for i in 0..words {
        let (pw, nw) = (word(p, i), word(n, i));
        step::<VNNI, H3>(x.add(32 * i), pw, nw, &mut ap, &mut an, &mut ab);
    }
    let rem = st - 4 * words;
    if rem > 0 {
        // The row's last bytes; missing ones are zero, so padding is never selected.
        let (mut pb, mut nb) = ([0u8; 4], [0u8; 4]);
        std::ptr::copy_nonoverlapping(p.add(4 * words), pb.as_mut_ptr(), rem);
        std::ptr::copy_nonoverlapping(n.add(4 * words), nb.as_mut_ptr(), rem);
        let (pw, nw) = (u32::from_le_bytes(pb), u32::from_le_bytes(nb));
        step::<VNNI, H3>(x.add(32 * words), pw, nw, &mut ap, &mut an, &mut ab);
    }
    (hsum(ap), hsum(an), if H3 { hsum(ab) } else { 0 })
}

/// Plane word `i` (4 bytes) of a row.
#[inline(always)]
unsafe fn word(plane: *const u8, i: usize) -> u32 {
    (plane.add(4 * i) as *const u32).read_unaligned()
}

/// 32 columns of one row into the accumulators. (A function, not a closure: closures do
/// not inherit their caller's `target_feature`s.)
#[inline(always)]
unsafe fn step<const VNNI: bool, const H3: bool>(
    x: *const i8,
    pw: u32,
    nw: u32,
    ap: &mut __m256i,
    an: &mut __m256i,
    ab: &mut __m256i,
) {
    let x = _mm256_loadu_si256(x as *const _);
    *ap = dot::<VNNI>(*ap, spread(pw), x);
    *an = dot::<VNNI>(*an, spread(nw), x);
    if H3 {
        *ab = dot::<VNNI>(*ab, spread(pw & nw), x);
    }
}

/// Sum of the 8 int32 lanes.
#[inline(always)]
unsafe fn hsum(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s)
}
