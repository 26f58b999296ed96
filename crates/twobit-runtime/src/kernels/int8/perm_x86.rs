//! The AVX-512 `vpermw` convolution kernel (BW and VNNI), selected at run time by
//! `Int8Perm::supported` (see the module docs of `perm.rs`).
use super::perm::{Int8Perm, PermInput, PW, WINDOW};

/// [`super::perm::window_total`] with `vpsadbw`: the bytes offset by 128 to unsigned, each
/// 64-byte load's sum less `64·128` (masked-off bytes load as 0, count as 128).
///
/// # Safety
/// AVX-512F and BW; the window inside `x.img`.
#[inline(always)]
unsafe fn window_total(w: &Int8Perm, x: &PermInput, base: usize) -> i32 {
    let flip = _mm512_set1_epi8(-128);
    let mut acc = _mm512_setzero_si512();
    let mut loads = 0i32;
    for t in 0..w.kh * w.kw {
        let p = x
            .img
            .as_ptr()
            .add(base + *x.goff.get_unchecked(t * w.cg) as usize);
        for c0 in (0..w.cin).step_by(64) {
            let n = 64.min(w.cin - c0);
            let k = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
            let v = _mm512_xor_si512(_mm512_maskz_loadu_epi8(k, p.add(c0)), flip);
            acc = _mm512_add_epi64(acc, _mm512_sad_epu8(v, _mm512_setzero_si512()));
            loads += 1;
        }
    }
    _mm512_reduce_add_epi64(acc) as i32 - loads * 64 * 128
}
use super::Affine8;
use std::arch::x86_64::*;

/// Positions whose tables are built together and share each index vector's load.
const SPAN: usize = 8;
/// `f32` values of [`SPAN`] positions' tables: [`WINDOW`] groups of 64 bytes each (24 KiB).
const TABLES: usize = SPAN * WINDOW * 16;
const _: () = assert!(PW.is_multiple_of(SPAN) && SPAN.is_multiple_of(4));

/// See [`super::perm::run`].
///
/// # Safety
/// AVX-512F, BW and VNNI; as [`super::perm::run`].
pub(super) unsafe fn run(w: &Int8Perm, x: &PermInput, scratch: &mut Vec<f32>, aff: &Affine8) {
    if w.planes == 3 {
        run_planes::<3>(w, x, scratch, aff)
    } else {
        run_planes::<2>(w, x, scratch, aff)
    }
}

/// The byte matrices of [`table`]: dword `i`'s bytes are the bits of `i` (entries 0-15 as
/// subsets of the first 4 activations), and a 1 in each dword's first byte (the fifth).
#[inline(always)]
unsafe fn table_consts() -> (__m512i, __m512i) {
    let mut lo = [0u8; 64];
    let mut hi = [0u8; 64];
    for i in 0..16 {
        for j in 0..4 {
            lo[4 * i + j] = ((i >> j) & 1) as u8;
        }
        hi[4 * i] = 1;
    }
    (
        _mm512_loadu_si512(lo.as_ptr() as *const _),
        _mm512_loadu_si512(hi.as_ptr() as *const _),
    )
}

/// The 32 subset sums of the 5 int8 values at `p` (in [`super::perm::entry_lane`] order).
///
/// # Safety
/// AVX-512BW and VNNI; `p` readable for 8 bytes.
#[inline(always)]
unsafe fn table(p: *const i8, (clo, chi): (__m512i, __m512i)) -> __m512i {
    let d0 = _mm512_set1_epi32((p as *const i32).read_unaligned());
    let d1 = _mm512_set1_epi32((p.add(4) as *const i32).read_unaligned());
    let lo = _mm512_dpbusd_epi32(_mm512_setzero_si512(), clo, d0);
    let hi = _mm512_dpbusd_epi32(lo, chi, d1);
    _mm512_packs_epi32(lo, hi)
}

/// The task with `PL` planes: per quad of positions and window of groups, the quad's
/// tables, then every block of 64 (2 planes) or 32 (3 planes) rows through [`block`];
/// last the [`epilogue`].
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn run_planes<const PL: usize>(
    w: &Int8Perm,
    x: &PermInput,
    scratch: &mut Vec<f32>,
    aff: &Affine8,
) {
    // The tables, then the int32 sums `[nrb][PW][PL][32]` (as `i32` in the `f32` scratch).
    let buf = super::super::aligned(scratch, TABLES + w.nrb * PW * PL * 32);
    let (tab, sums) = buf.split_at_mut(TABLES);
    let tab = tab.as_mut_ptr() as *mut __m512i;
    let sums = sums.as_mut_ptr() as *mut i32;
    let consts = table_consts();
    let idx = w.idx.as_ptr() as *const __m512i;
    let rbs = w.ng * PL;
    // Per half task (`SPAN` positions) and window: the tables, then each block of rows
    // over the half's quads, so each index vector serves `SPAN` positions.
    for p0 in (0..aff.width).step_by(SPAN) {
        let quads = (aff.width - p0).min(SPAN).div_ceil(4);
        for w0 in (0..w.ng).step_by(WINDOW) {
            let nw = WINDOW.min(w.ng - w0);
            for i in 0..4 * quads {
                let xb = x.img.as_ptr().add(x.base[p0 + i] as usize);
                let tq = tab.add(i * WINDOW);
                for g in 0..nw {
                    let p = xb.add(*x.goff.get_unchecked(w0 + g) as usize);
                    _mm512_store_si512(tq.add(g), table(p, consts));
                }
            }
            let first = w0 == 0;
            let mut rb = 0;
            while rb < w.nrb {
                let ix = idx.add(rb * rbs + w0 * PL);
                let two = PL == 2 && rb + 1 < w.nrb;
                for q in 0..quads {
                    let tq = tab.add(4 * q * WINDOW);
                    let s = sums.add((rb * PW + p0 + 4 * q) * PL * 32);
                    if two {
                        block::<PL, 2>(tq, ix, rbs, nw, s, first);
                    } else {
                        block::<PL, 1>(tq, ix, rbs, nw, s, first);
                    }
                }
                rb += if two { 2 } else { 1 };
            }
        }
    }
    let mut total = [0i32; PW];
    if w.total {
        for (t, &b) in total.iter_mut().zip(&x.base).take(aff.width) {
            *t = window_total(w, x, b as usize);
        }
    }
    epilogue::<PL>(w, aff, sums, &total);
    if aff.stream {
        // Orders the epilogue's streaming stores before whatever reads the output.
        _mm_sfence();
    }
}

/// `R` blocks of 32 rows × 4 positions over one window of `nw` groups: int16 sums per
/// plane in registers (one `vpermw` and `vpaddw` per position, plane and block, per
/// group), then widened into the int32 sums `sums` (started on the first window).
#[inline(always)]
unsafe fn block<const PL: usize, const R: usize>(
    tab: *const __m512i,
    idx: *const __m512i,
    rbs: usize,
    nw: usize,
    sums: *mut i32,
    first: bool,
) {
    let z = _mm512_setzero_si512();
    // [r][plane][position], in registers: at most 16 (2 planes) or 12 (3).
    let mut acc = [z; 24];
    for g in 0..nw {
        let t = [
            _mm512_load_si512(tab.add(g)),
            _mm512_load_si512(tab.add(WINDOW + g)),
            _mm512_load_si512(tab.add(2 * WINDOW + g)),
            _mm512_load_si512(tab.add(3 * WINDOW + g)),
        ];
        for r in 0..R {
            for pl in 0..PL {
                let ix = _mm512_load_si512(idx.add(r * rbs + g * PL + pl));
                for (q, &tq) in t.iter().enumerate() {
                    let a = &mut acc[(r * PL + pl) * 4 + q];
                    *a = _mm512_add_epi16(*a, _mm512_permutexvar_epi16(ix, tq));
                }
            }
        }
    }
    for r in 0..R {
        for q in 0..4 {
            for pl in 0..PL {
                let s = acc[(r * PL + pl) * 4 + q];
                let d = sums.add(((r * PW + q) * PL + pl) * 32) as *mut __m512i;
                let lo = _mm512_cvtepi16_epi32(_mm512_castsi512_si256(s));
                let hi = _mm512_cvtepi16_epi32(_mm512_extracti64x4_epi64::<1>(s));
                let (lo, hi) = if first {
                    (lo, hi)
                } else {
                    (
                        _mm512_add_epi32(lo, _mm512_load_si512(d)),
                        _mm512_add_epi32(hi, _mm512_load_si512(d.add(1))),
                    )
                };
                _mm512_store_si512(d, lo);
                _mm512_store_si512(d.add(1), hi);
            }
        }
    }
}

/// Lane indices of one 16×16 transpose stage (swapping bit `b` of the row with bit `b` of
/// the lane): the kept row's and the partner row's `vpermt2ps` selections.
const fn stage(b: usize) -> ([u32; 16], [u32; 16]) {
    let bit = 1 << b;
    let (mut lo, mut hi) = ([0u32; 16], [0u32; 16]);
    let mut l = 0;
    while l < 16 {
        if l & bit == 0 {
            lo[l] = l as u32;
            hi[l] = (l ^ bit) as u32;
        } else {
            lo[l] = (16 + (l ^ bit)) as u32;
            hi[l] = (16 + l) as u32;
        }
        l += 1;
    }
    (lo, hi)
}

/// [`super::perm::hwc_image`] (after its zero fill) in blocks of 16 channels × 16
/// positions: 16 row loads, quantized in float, one [`transpose16`], and 16 stores of 16
/// channel bytes. Channel blocks outermost: 16 planes read in step are 16 streams the
/// prefetcher follows, where all channels of one row at a time missed the caches.
///
/// # Safety
/// AVX-512F and BW; the sizes as `hwc_image` checks them.
#[target_feature(enable = "avx512f,avx512bw")]
pub(super) unsafe fn hwc_image(
    img: &[f32],
    (c, h, w): (usize, usize, usize),
    s: f32,
    (pt, pl, wp): (usize, usize, usize),
    d: &mut [i8],
) {
    // The image into L2 in one sequential sweep first (one load per line): the 16 planes
    // read in step below are short streams (1-4 KiB per plane in vgg7) that the
    // prefetcher does not follow from memory; prefetch instructions alone did not help.
    // After a per-image scale's pass over the image this costs little.
    let mut touch = 0u32;
    for l in (0..img.len()).step_by(16) {
        touch ^= img.get_unchecked(l).to_bits();
    }
    std::hint::black_box(touch);
    let inv = _mm512_set1_ps(if s > 0.0 { 1.0 / s } else { 0.0 });
    let (lo, hi) = (_mm512_set1_ps(-127.0), _mm512_set1_ps(127.0));
    for c0 in (0..c).step_by(16) {
        let nc = 16.min(c - c0);
        let kc = ((1u32 << nc) - 1) as u16;
        for (y, x0) in (0..h).flat_map(|y| (0..w).step_by(16).map(move |x0| (y, x0))) {
            let nx = 16.min(w - x0);
            let kx = ((1u32 << nx) - 1) as u16;
            let mut v = [_mm512_setzero_ps(); 16];
            for (i, v) in v.iter_mut().enumerate().take(nc) {
                let src = img.as_ptr().add(((c0 + i) * h + y) * w + x0);
                // As `quantize_inv`: the clamp first (`max` returns -127 for a NaN), then
                // round to nearest even (below).
                let q = _mm512_mul_ps(_mm512_maskz_loadu_ps(kx, src), inv);
                *v = _mm512_min_ps(_mm512_max_ps(q, lo), hi);
            }
            transpose16(&mut v);
            for (j, v) in v.iter().enumerate().take(nx) {
                let q = _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(*v));
                let at = d.as_mut_ptr().add(((pt + y) * wp + pl + x0 + j) * c + c0);
                // A masked byte store only for a short channel block: on Zen 5 it cost
                // several times a plain one.
                if nc == 16 {
                    _mm_storeu_si128(at as *mut _, q);
                } else {
                    _mm_mask_storeu_epi8(at as *mut _, kc, q);
                }
            }
        }
    }
}

/// The four stages' selections.
static STAGES: [([u32; 16], [u32; 16]); 4] = [stage(0), stage(1), stage(2), stage(3)];

/// Transposes 16 vectors of 16 floats in place.
#[inline(always)]
unsafe fn transpose16(v: &mut [__m512; 16]) {
    for (b, (lo, hi)) in STAGES.iter().enumerate() {
        let (lo, hi) = (
            _mm512_loadu_si512(lo.as_ptr() as *const _),
            _mm512_loadu_si512(hi.as_ptr() as *const _),
        );
        let bit = 1 << b;
        for i in 0..16 {
            if i & bit == 0 {
                let (a, c) = (v[i], v[i | bit]);
                v[i] = _mm512_permutex2var_ps(a, lo, c);
                v[i | bit] = _mm512_permutex2var_ps(a, hi, c);
            }
        }
    }
}

/// The task's outputs: per 16 rows and position, the per-code sums (see the module docs
/// of `perm.rs`) times the rows' levels, through the image scale, the rows' affine and
/// clamp (rows in the lanes), transposed, and stored as rows of `width`: streaming stores
/// for whole aligned rows of a large output (see `Affine8::stream`; the caller's `run`
/// ends with an `sfence`).
#[inline(always)]
unsafe fn epilogue<const PL: usize>(
    w: &Int8Perm,
    aff: &Affine8,
    sums: *const i32,
    total: &[i32; PW],
) {
    let (floor, ceil) = (_mm512_set1_ps(aff.floor), _mm512_set1_ps(aff.ceil));
    let s = _mm512_set1_ps(aff.s);
    let wmask = ((1u32 << aff.width) - 1) as u16;
    let stream = aff.stream && aff.width == PW;
    for r0 in (0..w.rows).step_by(16) {
        let nr = 16.min(w.rows - r0);
        let rmask = ((1u32 << nr) - 1) as u16;
        let sc = _mm512_mul_ps(_mm512_maskz_loadu_ps(rmask, aff.scale.as_ptr().add(r0)), s);
        let sh = _mm512_maskz_loadu_ps(rmask, aff.shift.as_ptr().add(r0));
        let (rb, h) = (r0 / 32, r0 % 32);
        // No closures here: they do not inherit the target features.
        let l = w.lv.as_ptr().add(rb * 4 * 32 + h);
        let lv = [
            _mm512_loadu_ps(l),
            _mm512_loadu_ps(l.add(32)),
            _mm512_loadu_ps(l.add(64)),
            _mm512_loadu_ps(l.add(96)),
        ];
        let mut v = [_mm512_setzero_ps(); 16];
        for (j, v) in v.iter_mut().enumerate() {
            let at = sums.add((rb * PW + j) * PL * 32 + h) as *const __m512i;
            // 32 `i32` per plane: two vectors apart.
            let (p, m) = (_mm512_load_si512(at), _mm512_load_si512(at.add(2)));
            let b = if PL == 3 {
                _mm512_load_si512(at.add(4))
            } else {
                _mm512_setzero_si512()
            };
            // S_0 = S_M - S_B, S_2 = S_P - S_B, S_3 = S_B, S_1 = T - S_P - S_M + S_B.
            let mut a = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(m, b)), lv[0]);
            a = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(p, b)), lv[2], a);
            if PL == 3 {
                a = _mm512_fmadd_ps(_mm512_cvtepi32_ps(b), lv[3], a);
            }
            if w.total {
                let t = _mm512_set1_epi32(total[j]);
                let s1 = _mm512_add_epi32(_mm512_sub_epi32(t, _mm512_add_epi32(p, m)), b);
                a = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s1), lv[1], a);
            }
            *v = _mm512_min_ps(_mm512_max_ps(_mm512_fmadd_ps(a, sc, sh), floor), ceil);
        }
        transpose16(&mut v);
        for (i, v) in v.iter().enumerate().take(nr) {
            let d = aff.dst.add((r0 + i) * aff.stride);
            if stream && (d as usize).is_multiple_of(64) {
                _mm512_stream_ps(d, *v);
            } else {
                _mm512_mask_storeu_ps(d, wmask, *v);
            }
        }
    }
}
