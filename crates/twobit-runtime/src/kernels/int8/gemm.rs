//! Int8 GEMM for convolutions: the 2-bit weights expanded once into int8 bit-planes and
//! multiplied with `vpdpbusd` (AVX512-VNNI, AVX-VNNI) or `vpmaddubsw`+`vpmaddwd` (AVX2),
//! instead of the tile kernel's table lookups.
//!
//! * Weights ([`Int8Gemm`], built by [`PackedMatrix::int8_gemm`]): each plane (plus, minus,
//!   and plus&minus when code 3 occurs) as bytes 0/1, so every level family stays exact:
//!   `Σ w·q = c_p·Σ P·q + c_n·Σ M·q + c_b·Σ B·q (+ c_T·Σ q)`. Blocked by [`RP`]
//!   (row, plane) pairs: 3 rows of 2 planes or 2 rows of 3, `[rows/(RP/planes)][k/4][RP][4]`;
//!   one k-quad of one row and plane is the dword a `vpdpbusd` broadcasts.
//! * Activations: a tile of [`TW`] output positions of one image, im2col'd from the padded
//!   int8 copy into `[k/4][TW][4]` bytes (4 consecutive k of one position form the dword
//!   `vpdpbusd` sums), shifted by +128 to the unsigned operand. The shift adds
//!   `128·Σ_k w` to every sum, subtracted exactly in int32 (a per-row, per-plane constant).
//!   Rows past `cols` hold 128 (q = 0).
//! * Micro-kernel: [`RP`] (row, plane) pairs × up to 4 blocks of 16 positions in int32
//!   accumulators (24 of AVX-512's 32 registers); per k-quad one load per position block
//!   and one broadcast per (row, plane): 10 loads per 24 `vpdpbusd`. `vpdpbusd` does 64
//!   byte MACs per instruction (16 for an fp32 FMA); two planes make that 32 weight MACs.
//!   k runs in chunks of 256 so the tile's chunk stays in L1 (`gemm_x86::KC`). The sums
//!   never overflow: `|Σ| <= 255·cols`.
//! * Epilogue, in registers: the correction, then the per-code sums (`S_3 = S_B`,
//!   `S_2 = S_P - S_B`, `S_0 = S_M - S_B`, `S_1 = T - S_P - S_M + S_B`, exact in int32)
//!   times the row's levels: unlike the plane coefficients (`l2 - l1`, ...), these terms
//!   do not cancel, so four free levels stay as accurate as ternary. Then the image scale,
//!   the per-channel affine and clamp, stored straight to the output (masked for a short
//!   tile).
use super::{Affine8, PackedMatrix};

/// (row, plane) pairs per micro-kernel block: `RP / planes` output rows (rows are padded to
/// a multiple with zero weights).
pub(crate) const RP: usize = 6;
/// Output positions per activation tile (one task): four AVX-512 position blocks.
pub const TW: usize = 64;

/// A matrix's weights as int8 planes for the GEMM kernels (see the module docs): built
/// once per layer by `Runtime::set_activations` when a convolution measures faster this
/// way. `planes` bytes per weight.
#[derive(Clone, Debug)]
pub struct Int8Gemm {
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    /// k-quads: `cols.div_ceil(4)`.
    pub(crate) kq: usize,
    /// 2 (plus, minus) or 3 (and plus&minus).
    pub(crate) planes: usize,
    /// `[rows.div_ceil(mo)][kq][mo][planes][4]` bytes 0/1, `mo = RP / planes`.
    pub(crate) w: Vec<i8>,
    /// Per padded row and plane: `128·Σ_k w` (the +128 shift's contribution).
    pub(crate) corr: Vec<i32>,
    /// Per padded row: the levels of codes 0-3, from the plane coefficients (0 for padding
    /// rows).
    pub(crate) lv: Vec<[f32; 4]>,
    /// Whether any row has a `c_T` (a level family without a zero level): the kernels then
    /// sum each position's activations too.
    pub(crate) total: bool,
}

impl Int8Gemm {
    /// Bytes held (the int8 planes and per-row constants).
    pub fn bytes(&self) -> usize {
        self.w.len() + self.corr.len() * 4 + self.lv.len() * 16
    }

    /// Bytes of one activation tile (`kq` quads of [`TW`] positions).
    pub fn tile_len(&self) -> usize {
        self.kq * TW * 4
    }
}

impl PackedMatrix {
    /// This matrix's [`Int8Gemm`] (int8 planes, 2-3 bytes per weight).
    pub fn int8_gemm(&self) -> Int8Gemm {
        let planes = if self.has3.iter().any(|&h| h) { 3 } else { 2 };
        let kq = self.cols.div_ceil(4);
        let mo = RP / planes;
        let rp = self.rows.div_ceil(mo) * mo;
        let mut w = vec![0i8; rp * kq * 4 * planes];
        let mut corr = vec![0i32; rp * planes];
        let mut lv = vec![[0f32; 4]; rp];
        for o in 0..self.rows {
            let (ob, c) = (o / mo, o % mo);
            for k in 0..self.cols {
                let [p, n] = self.plane_bits(o, k);
                let at = (((ob * kq + k / 4) * mo + c) * planes) * 4 + k % 4;
                let v = [p, n, p & n];
                for (pl, &v) in v.iter().enumerate().take(planes) {
                    w[at + pl * 4] = v as i8;
                    corr[o * planes + pl] += 128 * v as i32;
                }
            }
            lv[o] = self.code_levels(o);
        }
        Int8Gemm {
            rows: self.rows,
            cols: self.cols,
            kq,
            planes,
            w,
            corr,
            lv,
            total: self.coef.iter().any(|c| c[0] != 0.0),
        }
    }
}

/// Which instructions the GEMM runs on this CPU for a kernel choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemmIsa {
    /// Plain Rust.
    Portable,
    /// AVX2 `vpmaddubsw` + `vpmaddwd`.
    Avx2,
    /// AVX2 with AVX-VNNI (`vpdpbusd` on 256 bits).
    AvxVnni,
    /// AVX512-VNNI (`vpdpbusd` on 512 bits).
    Avx512Vnni,
}

impl GemmIsa {
    /// The best GEMM variant under `kernel` on this CPU (detected at run time): the AVX-512
    /// kernel choice with AVX512-VNNI runs 512-bit `vpdpbusd`, else (and under the AVX2
    /// choice) AVX2 with AVX-VNNI where present; the portable choice runs plain Rust.
    pub fn of(kernel: super::Kernel) -> GemmIsa {
        #[cfg(target_arch = "x86_64")]
        {
            use super::Kernel;
            if kernel == Kernel::Avx512
                && kernel.available()
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vnni")
            {
                return GemmIsa::Avx512Vnni;
            }
            if matches!(kernel, Kernel::Avx512 | Kernel::Avx2) && is_x86_feature_detected!("avx2") {
                return if is_x86_feature_detected!("avxvnni") {
                    GemmIsa::AvxVnni
                } else {
                    GemmIsa::Avx2
                };
            }
        }
        let _ = kernel;
        GemmIsa::Portable
    }

    /// Whether this CPU runs it (the tests force each variant).
    pub fn available(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            match self {
                GemmIsa::Portable => true,
                GemmIsa::Avx2 => is_x86_feature_detected!("avx2"),
                GemmIsa::AvxVnni => {
                    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("avxvnni")
                }
                GemmIsa::Avx512Vnni => {
                    is_x86_feature_detected!("avx512f")
                        && is_x86_feature_detected!("avx512bw")
                        && is_x86_feature_detected!("avx512vnni")
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            self == GemmIsa::Portable
        }
    }

    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            GemmIsa::Portable => "portable",
            GemmIsa::Avx2 => "avx2",
            GemmIsa::AvxVnni => "avx-vnni",
            GemmIsa::Avx512Vnni => "avx512vnni",
        }
    }
}

/// Writes one activation tile: `b[(q·TW + j)·4 + i] = x[koff[4q+i] + idx[j]] + 128` for
/// `j < idx.len()`, 128 for rows past `cols` and for positions past `idx.len()`.
/// Runs of 16 consecutive positions (stride-1 rows of width >= 16) are read 16 at a time,
/// runs of 8 (8-wide images) 8 at a time, anything else byte by byte.
///
/// Panics if a read would lie outside `x`.
pub(crate) fn im2col_tile(gm: &Int8Gemm, x: &[i8], koff: &[u32], idx: &[u32], b: &mut [u8]) {
    im2col_range(gm, x, koff, idx, b, 0..gm.kq)
}

/// [`im2col_tile`] for k-quads `qs` only.
pub(crate) fn im2col_range(
    gm: &Int8Gemm,
    x: &[i8],
    koff: &[u32],
    idx: &[u32],
    b: &mut [u8],
    qs: std::ops::Range<usize>,
) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512vbmi") && is_x86_feature_detected!("avx512bw") {
        // SAFETY: the features were just detected.
        return unsafe { im2col_vbmi(gm, x, koff, idx, b, qs) };
    }
    im2col_body::<false>(gm, x, koff, idx, b, qs)
}

/// [`im2col_tile`] with 16-position runs interleaved by one `vpermb` each.
///
/// # Safety
/// AVX-512F/BW/VBMI.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
unsafe fn im2col_vbmi(
    gm: &Int8Gemm,
    x: &[i8],
    koff: &[u32],
    idx: &[u32],
    b: &mut [u8],
    qs: std::ops::Range<usize>,
) {
    im2col_body::<true>(gm, x, koff, idx, b, qs)
}

/// See [`im2col_tile`]; `VBMI`: only inlined into [`im2col_vbmi`].
#[inline(always)]
fn im2col_body<const VBMI: bool>(
    gm: &Int8Gemm,
    x: &[i8],
    koff: &[u32],
    idx: &[u32],
    b: &mut [u8],
    qs: std::ops::Range<usize>,
) {
    assert!(qs.end <= gm.kq);
    assert!(idx.len() <= TW && koff.len() >= gm.cols && b.len() >= gm.tile_len());
    let width = idx.len();
    // The furthest byte any read touches (runs read 16 bytes from their start).
    let kmax = koff[..gm.cols].iter().copied().max().unwrap_or(0) as usize;
    let imax = idx.iter().copied().max().unwrap_or(0) as usize;
    assert!(kmax + imax < x.len(), "im2col reads past its input");
    // Per 8 positions: 2 = first half of a 16-run, 1 = an 8-run, 0 = gather.
    let mut kind = [0u8; TW / 8];
    let run = |j0: usize, n: usize| {
        j0 + n <= width
            && (1..n).all(|i| idx[j0 + i] == idx[j0] + i as u32)
            && kmax + idx[j0] as usize + n <= x.len()
    };
    let mut r = 0;
    while r < width / 8 {
        if run(8 * r, 16) {
            kind[r] = 2;
            r += 2;
        } else {
            kind[r] = run(8 * r, 8) as u8;
            r += 1;
        }
    }
    for q in qs {
        let bq = &mut b[q * TW * 4..(q + 1) * TW * 4];
        let k0 = 4 * q;
        let nk = 4.min(gm.cols - k0);
        if nk < 4 {
            bq.fill(0x80);
        }
        let rows: [usize; 4] = std::array::from_fn(|i| koff[k0 + i.min(nk - 1)] as usize);
        let mut r = 0;
        while r < TW / 8 {
            let j0 = 8 * r;
            match kind[r] {
                2 if nk == 4 => {
                    let s = idx[j0] as usize;
                    let (src, dst) = (rows.map(|o| o + s), &mut bq[j0 * 4..]);
                    // SAFETY: `run` checked `kmax + s + 16 <= x.len()`; `bq` has TW·4 bytes;
                    // VBMI only inside `im2col_vbmi`.
                    #[cfg(target_arch = "x86_64")]
                    unsafe {
                        if VBMI {
                            interleave16_vbmi(x.as_ptr(), src, dst)
                        } else {
                            interleave::<16>(x.as_ptr(), src, dst)
                        }
                    };
                    // SAFETY: as above.
                    #[cfg(not(target_arch = "x86_64"))]
                    unsafe {
                        interleave::<16>(x.as_ptr(), src, dst)
                    };
                    r += 2;
                    continue;
                }
                1 if nk == 4 => {
                    let s = idx[j0] as usize;
                    // SAFETY: as above, for 8 bytes.
                    unsafe { interleave::<8>(x.as_ptr(), rows.map(|o| o + s), &mut bq[j0 * 4..]) };
                }
                _ => {
                    for j in j0..(j0 + 8).min(width) {
                        for i in 0..nk {
                            let v = x[koff[k0 + i] as usize + idx[j] as usize];
                            bq[j * 4 + i] = (v as u8) ^ 0x80;
                        }
                    }
                }
            }
            r += 1;
        }
        bq[width * 4..].fill(0x80);
    }
}

/// [`interleave`] of 16 positions as one `vpermb` of the four rows' 16 bytes: 7
/// instructions per 64 bytes instead of 20 (the im2col was a fifth of a GEMM convolution).
///
/// # Safety
/// AVX-512F/BW/VBMI (only called from [`im2col_vbmi`]); as [`interleave`].
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn interleave16_vbmi(x: *const i8, rows: [usize; 4], d: &mut [u8]) {
    use std::arch::x86_64::*;
    debug_assert!(d.len() >= 64);
    let l = |i: usize| _mm_loadu_si128(x.add(rows[i]) as *const __m128i);
    let v = _mm512_castsi128_si512(l(0));
    let v = _mm512_inserti32x4::<1>(v, l(1));
    let v = _mm512_inserti32x4::<2>(v, l(2));
    let v = _mm512_inserti32x4::<3>(v, l(3));
    // Output byte 4j + i is row i's byte j: byte 16i + j of `v`.
    const IDX: [u8; 64] = {
        let mut t = [0u8; 64];
        let mut p = 0;
        while p < 64 {
            t[p] = ((p % 4) * 16 + p / 4) as u8;
            p += 1;
        }
        t
    };
    let idx = _mm512_loadu_si512(IDX.as_ptr() as *const _);
    let o = _mm512_xor_si512(_mm512_permutexvar_epi8(idx, v), _mm512_set1_epi8(-128));
    _mm512_storeu_si512(d.as_mut_ptr() as *mut _, o);
}

/// `d[4j + i] = x[rows[i] + j] + 128` for `j < N` (8 or 16): SSE2 byte and word unpacks on
/// x86-64 (always present there), a plain loop elsewhere.
///
/// # Safety
/// `x + rows[i]` readable for `N` bytes; `d.len() >= 4·N`.
#[inline(always)]
unsafe fn interleave<const N: usize>(x: *const i8, rows: [usize; 4], d: &mut [u8]) {
    debug_assert!(d.len() >= 4 * N);
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        let flip = _mm_set1_epi8(-128);
        let dp = d.as_mut_ptr() as *mut __m128i;
        let l = |i: usize| {
            let p = x.add(rows[i]) as *const __m128i;
            if N == 16 {
                _mm_xor_si128(_mm_loadu_si128(p), flip)
            } else {
                _mm_xor_si128(_mm_loadl_epi64(p), flip)
            }
        };
        let (r0, r1, r2, r3) = (l(0), l(1), l(2), l(3));
        let (a, b) = (_mm_unpacklo_epi8(r0, r1), _mm_unpacklo_epi8(r2, r3));
        _mm_storeu_si128(dp, _mm_unpacklo_epi16(a, b));
        _mm_storeu_si128(dp.add(1), _mm_unpackhi_epi16(a, b));
        if N == 16 {
            let (a, b) = (_mm_unpackhi_epi8(r0, r1), _mm_unpackhi_epi8(r2, r3));
            _mm_storeu_si128(dp.add(2), _mm_unpacklo_epi16(a, b));
            _mm_storeu_si128(dp.add(3), _mm_unpackhi_epi16(a, b));
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    for j in 0..N {
        for i in 0..4 {
            d[4 * j + i] = (*x.add(rows[i] + j) as u8) ^ 0x80;
        }
    }
}

/// One tile through the GEMM: every output row of `gm` for the tile's `f.width` positions,
/// written through `f` (its `s` is the image's activation scale). `b` is the tile from
/// [`im2col_tile`].
///
/// # Safety
/// `f` must satisfy [`Affine8`]'s contract for `gm.rows` rows, `f.width <= TW`;
/// `isa.available()`.
pub(crate) unsafe fn tile(isa: GemmIsa, gm: &Int8Gemm, b: &[u8], part: &mut Vec<i32>, f: &Affine8) {
    tile_chunks(isa, gm, b, part, f, 0..gm.kq)
}

/// k-quads per chunk of the AVX-512 GEMM (see `gemm_x86::KC`).
#[cfg(target_arch = "x86_64")]
pub(crate) const KC: usize = super::gemm_x86::KC;
/// k-quads per chunk (one chunk: only the AVX-512 GEMM takes them one at a time).
#[cfg(not(target_arch = "x86_64"))]
pub(crate) const KC: usize = usize::MAX;

/// Whether [`tile_chunks`] takes k chunks one at a time with `isa` (so the caller can
/// im2col each chunk just before it is read, while it is in L1): the AVX-512 GEMM without
/// position totals.
pub(crate) fn chunked(isa: GemmIsa, gm: &Int8Gemm) -> bool {
    isa == GemmIsa::Avx512Vnni && !gm.total
}

/// [`tile`] over k-quads `qs` only: whole chunks of [`KC`] in order, the epilogue after the
/// last (`qs.end == gm.kq`); only when [`chunked`], else `qs` must be all of them. `part`
/// carries the sums between calls.
///
/// # Safety
/// As [`tile`]; the chunks of one tile in order, with the same `part`.
pub(crate) unsafe fn tile_chunks(
    isa: GemmIsa,
    gm: &Int8Gemm,
    b: &[u8],
    part: &mut Vec<i32>,
    f: &Affine8,
    qs: std::ops::Range<usize>,
) {
    assert!(b.len() >= gm.tile_len() && f.width <= TW);
    assert!(f.scale.len() == gm.rows && f.shift.len() == gm.rows);
    assert!(
        qs == (0..gm.kq) || chunked(isa, gm),
        "k chunks without `chunked`"
    );
    match isa {
        #[cfg(target_arch = "x86_64")]
        GemmIsa::Avx512Vnni => {
            // Partial sums between k chunks: every row block's accumulators, 64-byte
            // aligned vectors.
            let n = gm.rows.div_ceil(RP / gm.planes) * RP * TW;
            let part = super::super::aligned(part, n);
            let part = std::slice::from_raw_parts_mut(part.as_mut_ptr() as *mut _, n / 16);
            super::gemm_x86::tile_avx512(gm, b, part, f, qs)
        }
        #[cfg(target_arch = "x86_64")]
        GemmIsa::AvxVnni => super::gemm_x86::tile_avx2::<true>(gm, b, f),
        #[cfg(target_arch = "x86_64")]
        GemmIsa::Avx2 => super::gemm_x86::tile_avx2::<false>(gm, b, f),
        _ => tile_portable(gm, b, f),
    }
}

/// The portable GEMM (and the SIMD kernels' reference): the same sums in plain integers,
/// the same epilogue.
///
/// # Safety
/// As [`tile`].
pub(crate) unsafe fn tile_portable(gm: &Int8Gemm, b: &[u8], f: &Affine8) {
    let (kq, pl) = (gm.kq, gm.planes);
    let mo = RP / pl;
    let tot = totals(gm, b);
    let mut acc = vec![[0i32; 3]; TW];
    for o in 0..gm.rows {
        let (ob, c) = (o / mo, o % mo);
        acc.iter_mut().for_each(|a| *a = [0; 3]);
        for q in 0..kq {
            let wq = &gm.w[((ob * kq + q) * mo + c) * pl * 4..][..pl * 4];
            let bq = &b[q * TW * 4..(q + 1) * TW * 4];
            for (j, a) in acc.iter_mut().enumerate().take(f.width) {
                for (p, a) in a.iter_mut().enumerate().take(pl) {
                    for i in 0..4 {
                        *a += bq[j * 4 + i] as i32 * wq[p * 4 + i] as i32;
                    }
                }
            }
        }
        let d = f.dst.add(o * f.stride);
        for (j, a) in acc.iter().enumerate().take(f.width) {
            let s: [i32; 3] = std::array::from_fn(|p| {
                if p < pl {
                    a[p] - gm.corr[o * pl + p]
                } else {
                    0
                }
            });
            d.add(j).write(epilogue(gm, f, o, s, tot[j]));
        }
    }
}

/// Each position's `Σ_k q` (only when some row needs it; zeros otherwise).
pub(crate) fn totals(gm: &Int8Gemm, b: &[u8]) -> [i32; TW] {
    let mut t = [0i32; TW];
    if gm.total {
        for q in 0..gm.kq {
            for (j, t) in t.iter_mut().enumerate() {
                *t += (0..4)
                    .map(|i| b[(q * TW + j) * 4 + i] as i32 - 128)
                    .sum::<i32>();
            }
        }
    }
    t
}

/// Per-code sums from the plane sums `[S_P, S_M, S_B]` and the total `t` (see the module
/// docs; `S_B = 0` with two planes, and `t` only matters when level 1 is not 0).
#[inline(always)]
pub(crate) fn code_sums([sp, sn, sb]: [i32; 3], t: i32) -> [i32; 4] {
    [sn - sb, t - sp - sn + sb, sp - sb, sb]
}

/// One output: `clamp(scale·s·Σ_c l_c·S_c + shift)`, in the order the SIMD kernels use
/// (code 1 only when some row's level 1 is not 0).
#[inline(always)]
pub(crate) fn epilogue(gm: &Int8Gemm, f: &Affine8, o: usize, s: [i32; 3], t: i32) -> f32 {
    let [l0, l1, l2, l3] = gm.lv[o];
    let [s0, s1, s2, s3] = code_sums(s, t);
    let v = if gm.total { l1 * s1 as f32 } else { 0.0 };
    let v = v + l0 * s0 as f32 + l2 * s2 as f32 + l3 * s3 as f32;
    crate::ops::clamp(f.scale[o] * f.s * v + f.shift[o], f.floor, f.ceil)
}

#[cfg(test)]
#[path = "gemm_tests.rs"]
mod tests;
