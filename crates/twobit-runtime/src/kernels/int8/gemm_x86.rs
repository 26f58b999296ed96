//! x86 micro-kernels of the int8 GEMM (see `gemm`): AVX512-VNNI (16 positions per
//! register) and AVX2 with or without AVX-VNNI (8 per register). Selected at run time by
//! `GemmIsa::of`.
#![allow(clippy::needless_range_loop)]
use super::gemm::{totals, Int8Gemm, RP, TW};
use super::Affine8;
use std::arch::x86_64::*;
use std::ops::Range;

/// AVX-512 tile: for each block of `RP / planes` rows, the int32 sums of all (row, plane)
/// pairs over the tile's 16-position blocks (4, or fewer for a short tile), then the
/// epilogue.
///
/// # Safety
/// AVX-512F/BW/VNNI; as `gemm::tile`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(super) unsafe fn tile_avx512(
    gm: &Int8Gemm,
    b: &[u8],
    part: &mut [__m512i],
    f: &Affine8,
    qs: Range<usize>,
) {
    let tot = totals(gm, b);
    match (gm.planes, f.width.div_ceil(16)) {
        (2, 4) => rows512::<2, 4>(gm, b, part, f, &tot, qs),
        (2, 3) => rows512::<2, 3>(gm, b, part, f, &tot, qs),
        (2, 2) => rows512::<2, 2>(gm, b, part, f, &tot, qs),
        (2, _) => rows512::<2, 1>(gm, b, part, f, &tot, qs),
        (_, 4) => rows512::<3, 4>(gm, b, part, f, &tot, qs),
        (_, 3) => rows512::<3, 3>(gm, b, part, f, &tot, qs),
        (_, 2) => rows512::<3, 2>(gm, b, part, f, &tot, qs),
        (_, _) => rows512::<3, 1>(gm, b, part, f, &tot, qs),
    }
    if f.stream {
        // Orders the streaming stores before whatever reads the output.
        _mm_sfence();
    }
}

/// k-quads per chunk: the tile's chunk (64 positions: 16 KiB) stays in L1 while every row
/// block reads it; the row blocks' partial sums wait in `part` between chunks.
pub(crate) const KC: usize = 64;

/// `NP` position blocks (16 each) for every row block, k-quads `qs` (whole chunks; the
/// epilogue runs after the last): `RP·NP` accumulators (up to 24 registers), indexed by
/// constants only so they stay in registers.
#[inline(always)]
unsafe fn rows512<const P: usize, const NP: usize>(
    gm: &Int8Gemm,
    b: &[u8],
    part: &mut [__m512i],
    f: &Affine8,
    tot: &[i32; TW],
    qs: Range<usize>,
) {
    let (kq, mo) = (gm.kq, RP / P);
    let bp = b.as_ptr();
    let blocks = gm.rows.div_ceil(mo);
    assert!(part.len() >= blocks * RP * NP);
    assert!(qs.start.is_multiple_of(KC) && qs.end <= kq);
    for k0 in qs.step_by(KC) {
        let k1 = kq.min(k0 + KC);
        for ob in 0..blocks {
            let w = gm.w.as_ptr().add(ob * kq * RP * 4) as *const i32;
            let pp = part.as_mut_ptr().add(ob * RP * NP);
            let mut acc = [[_mm512_setzero_si512(); NP]; RP];
            if k0 > 0 {
                for r in 0..RP {
                    for i in 0..NP {
                        acc[r][i] = pp.add(r * NP + i).read();
                    }
                }
            }
            for q in k0..k1 {
                let bq = bp.add(q * TW * 4);
                let bv: [__m512i; NP] =
                    std::array::from_fn(|i| _mm512_loadu_si512(bq.add(i * 64) as *const _));
                let wq = w.add(q * RP);
                for r in 0..RP {
                    let wv = _mm512_set1_epi32(wq.add(r).read_unaligned());
                    for i in 0..NP {
                        acc[r][i] = _mm512_dpbusd_epi32(acc[r][i], bv[i], wv);
                    }
                }
            }
            // Through memory even on the last chunk: with the epilogue reading the
            // registers, LLVM stored every `vpdpbusd` result to the stack (2.5x slower).
            for r in 0..RP {
                for i in 0..NP {
                    pp.add(r * NP + i).write(acc[r][i]);
                }
            }
            if k1 == kq {
                finish512::<P, NP>(gm, f, ob, pp, tot);
            }
        }
    }
}

/// Row block `ob`'s outputs from its finished sums `acc` (`[RP][NP]`; see
/// `gemm::epilogue`).
#[inline(always)]
unsafe fn finish512<const P: usize, const NP: usize>(
    gm: &Int8Gemm,
    f: &Affine8,
    ob: usize,
    acc: *const __m512i,
    tot: &[i32; TW],
) {
    let acc = |r: usize, i: usize| acc.add(r * NP + i).read();
    let mo = RP / P;
    for c in 0..mo {
        let o = ob * mo + c;
        if o >= gm.rows {
            break;
        }
        for i in 0..NP {
            let sb = if P == 3 {
                acc(c * P + 2, i)
            } else {
                _mm512_setzero_si512()
            };
            out512::<P>(gm, f, o, i * 16, acc(c * P, i), acc(c * P + 1, i), sb, tot);
        }
    }
}

/// Row `o`'s 16 outputs from position `j0`, from its plane sums (shifted by +128).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn out512<const P: usize>(
    gm: &Int8Gemm,
    f: &Affine8,
    o: usize,
    j0: usize,
    sp: __m512i,
    sn: __m512i,
    sb: __m512i,
    tot: &[i32; TW],
) {
    let corr = gm.corr.as_ptr().add(o * P);
    let sp = _mm512_sub_epi32(sp, _mm512_set1_epi32(*corr));
    let sn = _mm512_sub_epi32(sn, _mm512_set1_epi32(*corr.add(1)));
    let sb = if P == 3 {
        _mm512_sub_epi32(sb, _mm512_set1_epi32(*corr.add(2)))
    } else {
        sb
    };
    // The per-code sums (`gemm::code_sums`), exact in int32, times the levels
    // (`gemm::epilogue`'s order; code 1 only when some level 1 is not 0).
    let s0 = _mm512_sub_epi32(sn, sb);
    let s2 = _mm512_sub_epi32(sp, sb);
    let l = gm.lv.get_unchecked(o);
    let mut v = if gm.total {
        let t = _mm512_loadu_si512(tot.as_ptr().add(j0) as *const _);
        let s1 = _mm512_sub_epi32(_mm512_sub_epi32(t, sp), s0);
        _mm512_mul_ps(_mm512_cvtepi32_ps(s1), _mm512_set1_ps(l[1]))
    } else {
        _mm512_setzero_ps()
    };
    v = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s0), _mm512_set1_ps(l[0]), v);
    v = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s2), _mm512_set1_ps(l[2]), v);
    if P == 3 {
        v = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sb), _mm512_set1_ps(l[3]), v);
    }
    let sc = _mm512_set1_ps(*f.scale.get_unchecked(o) * f.s);
    let y = _mm512_fmadd_ps(v, sc, _mm512_set1_ps(*f.shift.get_unchecked(o)));
    // `max` returns its second operand for a NaN: NaN becomes `floor`.
    let y = _mm512_min_ps(
        _mm512_max_ps(y, _mm512_set1_ps(f.floor)),
        _mm512_set1_ps(f.ceil),
    );
    let left = f.width - j0.min(f.width);
    let k = if left >= 16 {
        0xFFFF
    } else {
        (1u16 << left) - 1
    };
    let d = f.dst.add(o * f.stride + j0);
    if f.stream && left >= 16 && (d as usize).is_multiple_of(64) {
        // A large output bypasses the cache (`Affine8::stream`); `tile_avx512` fences.
        _mm512_stream_ps(d, y);
    } else {
        _mm512_mask_storeu_ps(d, k, y);
    }
}

/// AVX2 tile, with AVX-VNNI's `vpdpbusd` when `VNNI`.
///
/// # Safety
/// AVX2 (and AVX-VNNI when `VNNI`); as `gemm::tile`.
pub(super) unsafe fn tile_avx2<const VNNI: bool>(gm: &Int8Gemm, b: &[u8], f: &Affine8) {
    if VNNI {
        tile_avxvnni(gm, b, f)
    } else {
        tile_avx2_only(gm, b, f)
    }
}

#[target_feature(enable = "avx2,fma,avxvnni")]
unsafe fn tile_avxvnni(gm: &Int8Gemm, b: &[u8], f: &Affine8) {
    tile256::<true>(gm, b, f)
}

#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2_only(gm: &Int8Gemm, b: &[u8], f: &Affine8) {
    tile256::<false>(gm, b, f)
}

#[inline(always)]
unsafe fn tile256<const VNNI: bool>(gm: &Int8Gemm, b: &[u8], f: &Affine8) {
    let tot = totals(gm, b);
    let nb = f.width.div_ceil(8);
    let mut n = 0;
    while n < nb {
        let two = n + 2 <= nb;
        match (gm.planes, two) {
            (2, true) => block256::<VNNI, 2, 2>(gm, b, n, f, &tot),
            (2, false) => block256::<VNNI, 2, 1>(gm, b, n, f, &tot),
            (_, true) => block256::<VNNI, 3, 2>(gm, b, n, f, &tot),
            (_, false) => block256::<VNNI, 3, 1>(gm, b, n, f, &tot),
        }
        n += if two { 2 } else { 1 };
    }
}

/// `acc + Σ` of each dword's 4 byte products (`a` unsigned, `w` 0/1).
#[inline(always)]
unsafe fn dot256<const VNNI: bool>(acc: __m256i, a: __m256i, w: __m256i) -> __m256i {
    if VNNI {
        _mm256_dpbusd_avx_epi32(acc, a, w)
    } else {
        // Pairs in int16 (at most 2·255: no saturation with 0/1 weights), then into int32.
        let pairs = _mm256_maddubs_epi16(a, w);
        _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
    }
}

/// Position blocks `n0..n0+NP` (8 positions each) for every row block: `RP·NP`
/// accumulators (12 of AVX2's 16 registers for two blocks: one broadcast serves two
/// `vpdpbusd`, where one block was bound by its loads).
#[inline(always)]
unsafe fn block256<const VNNI: bool, const P: usize, const NP: usize>(
    gm: &Int8Gemm,
    b: &[u8],
    n0: usize,
    f: &Affine8,
    tot: &[i32; TW],
) {
    let (kq, mo) = (gm.kq, RP / P);
    let bp = b.as_ptr().add(n0 * 32);
    for ob in 0..gm.rows.div_ceil(mo) {
        let w = gm.w.as_ptr().add(ob * kq * RP * 4) as *const i32;
        let mut acc = [[_mm256_setzero_si256(); NP]; RP];
        for q in 0..kq {
            let bq = bp.add(q * TW * 4);
            let bv: [__m256i; NP] =
                std::array::from_fn(|i| _mm256_loadu_si256(bq.add(i * 32) as *const _));
            let wq = w.add(q * RP);
            for r in 0..RP {
                let wv = _mm256_set1_epi32(wq.add(r).read_unaligned());
                for i in 0..NP {
                    acc[r][i] = dot256::<VNNI>(acc[r][i], bv[i], wv);
                }
            }
        }
        // Through memory, as in `rows512`, so the loop keeps its sums in registers.
        let mut sums = [[[0i32; 8]; NP]; RP];
        for r in 0..RP {
            for i in 0..NP {
                _mm256_storeu_si256(sums[r][i].as_mut_ptr() as *mut _, acc[r][i]);
            }
        }
        for c in 0..mo {
            let o = ob * mo + c;
            if o >= gm.rows {
                break;
            }
            for i in 0..NP {
                let j0 = (n0 + i) * 8;
                if j0 >= f.width {
                    break;
                }
                let ld = |r: usize| _mm256_loadu_si256(sums[r][i].as_ptr() as *const _);
                let sb = if P == 3 {
                    ld(c * P + 2)
                } else {
                    _mm256_setzero_si256()
                };
                out256::<P>(gm, f, o, j0, ld(c * P), ld(c * P + 1), sb, tot);
            }
        }
    }
}

/// Row `o`'s 8 outputs from position `j0` (see `out512`).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn out256<const P: usize>(
    gm: &Int8Gemm,
    f: &Affine8,
    o: usize,
    j0: usize,
    sp: __m256i,
    sn: __m256i,
    sb: __m256i,
    tot: &[i32; TW],
) {
    let corr = gm.corr.as_ptr().add(o * P);
    let sp = _mm256_sub_epi32(sp, _mm256_set1_epi32(*corr));
    let sn = _mm256_sub_epi32(sn, _mm256_set1_epi32(*corr.add(1)));
    let sb = if P == 3 {
        _mm256_sub_epi32(sb, _mm256_set1_epi32(*corr.add(2)))
    } else {
        sb
    };
    // As in `out512`.
    let s0 = _mm256_sub_epi32(sn, sb);
    let s2 = _mm256_sub_epi32(sp, sb);
    let l = gm.lv.get_unchecked(o);
    let mut v = if gm.total {
        let t = _mm256_loadu_si256(tot.as_ptr().add(j0) as *const _);
        let s1 = _mm256_sub_epi32(_mm256_sub_epi32(t, sp), s0);
        _mm256_mul_ps(_mm256_cvtepi32_ps(s1), _mm256_set1_ps(l[1]))
    } else {
        _mm256_setzero_ps()
    };
    v = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s0), _mm256_set1_ps(l[0]), v);
    v = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s2), _mm256_set1_ps(l[2]), v);
    if P == 3 {
        v = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sb), _mm256_set1_ps(l[3]), v);
    }
    let sc = _mm256_set1_ps(*f.scale.get_unchecked(o) * f.s);
    let y = _mm256_fmadd_ps(v, sc, _mm256_set1_ps(*f.shift.get_unchecked(o)));
    let y = _mm256_min_ps(
        _mm256_max_ps(y, _mm256_set1_ps(f.floor)),
        _mm256_set1_ps(f.ceil),
    );
    let d = f.dst.add(o * f.stride + j0);
    let left = f.width - j0;
    if left >= 8 {
        _mm256_storeu_ps(d, y);
    } else {
        let mut buf = [0f32; 8];
        _mm256_storeu_ps(buf.as_mut_ptr(), y);
        std::ptr::copy_nonoverlapping(buf.as_ptr(), d, left);
    }
}
