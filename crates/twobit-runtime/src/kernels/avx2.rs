//! AVX2 + FMA kernels, selected at run time by [`super::Kernel::detect`].
#![cfg(target_arch = "x86_64")]
use super::PackedMatrix;
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

/// The shared tile kernel compiled with AVX2 + FMA.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn tile(m: &PackedMatrix, xt: &[f32], tables: &mut [f32], out: &mut [f32]) {
    super::portable::tile_impl::<true>(m, xt, tables, out)
}
