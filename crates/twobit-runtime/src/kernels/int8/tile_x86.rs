//! The AVX-512 int8 tile kernel (BW and VL), selected at run time by `Isa::of`: int16
//! subset-sum tables of a 32-lane tile, looked up per output row and plane nibble (see the
//! module docs of `kernels::int8`).
#![allow(clippy::needless_range_loop)]
use super::{Affine8, Int8Offsets, PackedMatrix, TileInput, GROUPS, TILE};
use std::arch::x86_64::*;

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
    let (mut tot_lo, mut tot_hi) = (zero, zero);
    let st = m.stride;
    let blocks = st.div_ceil(super::BLOCK);
    if blocks == 0 {
        out.fill(0.0);
    }
    // Every group's entry 0 (the empty subset), once: the blocks rewrite entries 1-15, and
    // a short last block's missing groups, whose offsets are 0, read it too.
    for g in 0..GROUPS {
        _mm512_store_si512(t.add(g * 16), zero);
    }
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
            // Entry 0 is always zero, stored once below.
            for i in 1..16 {
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
        let p = Pass {
            m,
            rows: rows.clone(),
            planes: offs.planes,
            t,
            ob: offs.row(b, rows.start),
            nq,
            acc16: acc16.as_mut_ptr() as *mut __m512i,
            out: out.as_mut_ptr(),
            fused,
            tot_f,
            fresh: b < 2,
        };
        match (first, last) {
            (true, true) => p.run::<true, true>(),
            (true, false) => p.run::<true, false>(),
            (false, true) => p.run::<false, true>(),
            (false, false) => p.run::<false, false>(),
        }
    }
    _mm512_storeu_si512(total.as_mut_ptr() as *mut _, tot_lo);
    _mm512_storeu_si512(total.as_mut_ptr().add(16) as *mut _, tot_hi);
    if aff.is_some_and(|f| f.stream) {
        // Orders `store_affine`'s streaming stores before whatever reads the output.
        _mm_sfence();
    }
}

/// One block's pass over the tile's rows (after the block's tables are built).
struct Pass<'a> {
    m: &'a PackedMatrix,
    rows: std::ops::Range<usize>,
    planes: usize,
    t: *const __m512i,
    /// The first row's offsets in this block; the next rows' follow at `planes·GROUPS`.
    ob: *const u8,
    nq: usize,
    /// `planes` int16 vectors per row.
    acc16: *mut __m512i,
    /// `TILE` floats per row.
    out: *mut f32,
    fused: Option<&'a Affine8<'a>>,
    tot_f: (__m512, __m512),
    /// The first pair of blocks: `out` holds nothing yet.
    fresh: bool,
}

impl Pass<'_> {
    /// Every row through [`row_block`], with the block's place in its pair (`FIRST`,
    /// `LAST`) fixed for the loop and pointers stepped rather than recomputed per row.
    ///
    /// # Safety
    /// AVX-512F and BW; the buffers as [`tile`] sizes them.
    #[inline(always)]
    unsafe fn run<const FIRST: bool, const LAST: bool>(self) {
        let (mut ob, mut a16, mut dst) = (self.ob, self.acc16, self.out);
        let three = self.planes == 3;
        for (i, o) in self.rows.clone().enumerate() {
            let c = *self.m.coef.get_unchecked(o);
            let sums = if three && *self.m.has3.get_unchecked(o) {
                row_block::<true, FIRST, LAST>(self.t, ob, self.nq, a16, c, dst, self.fresh)
            } else {
                row_block::<false, FIRST, LAST>(self.t, ob, self.nq, a16, c, dst, self.fresh)
            };
            if let (Some((lo, hi)), true) = (sums, LAST) {
                match self.fused {
                    Some(f) => store_affine(f, i, c[0], (lo, hi), self.tot_f),
                    None => {
                        _mm512_storeu_ps(dst, lo);
                        _mm512_storeu_ps(dst.add(16), hi);
                    }
                }
            }
            ob = ob.add(self.planes * GROUPS);
            a16 = a16.add(self.planes);
            dst = dst.add(TILE);
        }
    }
}

// The assembly below addresses the minus and both planes' offsets at 32 and 64 bytes.
const _: () = assert!(GROUPS == 32);

/// Two lookups of one plane: the low and high byte of word register `$w` (offsets `8·e`,
/// scaled by 8 in the address) into groups at displacements `$d0` and `$d1` of `{t}`,
/// added to `$a0` and `$a1`. `esi`/`edi` because `movzx` from a high byte register
/// cannot take a REX-prefixed destination.
macro_rules! pair {
    ($w:literal, $a0:literal, $a1:literal, $d0:literal, $d1:literal) => {
        concat!(
            "movzx esi, {",
            $w,
            ":l}\n",
            "movzx edi, {",
            $w,
            ":h}\n",
            "vpaddw {",
            $a0,
            "}, {",
            $a0,
            "}, zmmword ptr [{t} + rsi*8 + ",
            $d0,
            "]\n",
            "vpaddw {",
            $a1,
            "}, {",
            $a1,
            "}, zmmword ptr [{t} + rdi*8 + ",
            $d1,
            "]\n",
        )
    };
}

/// An octet's 8 groups (1 KiB apart) for each plane `($w, $a, $b)`: four rounds of a
/// [`pair!`] per plane, each plane's word register shifted by 16 between rounds, so the
/// planes' lookups interleave (even groups into `$a`, odd into `$b`).
macro_rules! octet_planes {
    ($(($w:literal, $a:literal, $b:literal)),+) => {
        concat!(
            $(pair!($w, $a, $b, "0", "1024"),)+
            $("shr {", $w, "}, 16\n",)+
            $(pair!($w, $a, $b, "2048", "3072"),)+
            $("shr {", $w, "}, 16\n",)+
            $(pair!($w, $a, $b, "4096", "5120"),)+
            $("shr {", $w, "}, 16\n",)+
            $(pair!($w, $a, $b, "6144", "7168"),)+
        )
    };
}

/// One octet of groups (8 lookups per plane) for the plus and minus planes: their offset
/// words at `o` and `o + GROUPS`, the octet's tables (8 groups of 1 KiB) at `t`; even
/// groups into `a`, odd into `b`.
///
/// In assembly because the compiler's byte extraction (copy, shift, mask: three integer
/// operations per lookup) held the loop to about 4.7 lookups/ns on Zen 5, where pairs
/// taken as the low and high byte of a word register, one shift per pair, reach about
/// 6 (`load + vpaddw` alone: 7.3).
///
/// # Safety
/// AVX-512BW; `o` readable for `GROUPS + 8` bytes, each an offset `8·e` with `e < 16`;
/// `t` readable for 8 KiB.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn octet2(t: *const u8, o: *const u8, a: [&mut __m512i; 2], b: [&mut __m512i; 2]) {
    let [ap, an] = a;
    let [bp, bn] = b;
    std::arch::asm!(
        "mov {wp}, qword ptr [{o}]",
        "mov {wn}, qword ptr [{o} + 32]",
        octet_planes!(("wp", "ap", "bp"), ("wn", "an", "bn")),
        o = in(reg) o,
        t = in(reg) t,
        wp = out(reg_abcd) _,
        wn = out(reg_abcd) _,
        out("rsi") _,
        out("rdi") _,
        ap = inout(zmm_reg) *ap,
        an = inout(zmm_reg) *an,
        bp = inout(zmm_reg) *bp,
        bn = inout(zmm_reg) *bn,
        options(nostack, readonly),
    );
}

/// [`octet2`] with the third plane (plus&minus), its word at `o + 2·GROUPS`.
///
/// # Safety
/// As [`octet2`], `o` readable for `2·GROUPS + 8` bytes.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn octet3(t: *const u8, o: *const u8, a: [&mut __m512i; 3], b: [&mut __m512i; 3]) {
    let [ap, an, ab] = a;
    let [bp, bn, bb] = b;
    std::arch::asm!(
        "mov {wp}, qword ptr [{o}]",
        "mov {wn}, qword ptr [{o} + 32]",
        "mov {wb}, qword ptr [{o} + 64]",
        octet_planes!(("wp", "ap", "bp"), ("wn", "an", "bn"), ("wb", "ab", "bb")),
        o = in(reg) o,
        t = in(reg) t,
        wp = out(reg_abcd) _,
        wn = out(reg_abcd) _,
        wb = out(reg_abcd) _,
        out("rsi") _,
        out("rdi") _,
        ap = inout(zmm_reg) *ap,
        an = inout(zmm_reg) *an,
        ab = inout(zmm_reg) *ab,
        bp = inout(zmm_reg) *bp,
        bn = inout(zmm_reg) *bn,
        bb = inout(zmm_reg) *bb,
        options(nostack, readonly),
    );
}

/// One output row over one block: int16 sums per plane (started at zero on a pair's first
/// block, else from `a16`), then either kept in `a16` (`None`) or, on a pair's last block,
/// widened into `dst (0 when fresh) + c_p·Sp + c_n·Sn (+ c_b·Sb)` for the row's 32 lanes,
/// returned for the caller to store.
#[inline(always)]
unsafe fn row_block<const H3: bool, const FIRST: bool, const LAST: bool>(
    t: *const __m512i,
    ob: *const u8,
    nq: usize,
    a16: *mut __m512i,
    [_, cp, cn, cb]: [f32; 4],
    dst: *mut f32,
    fresh: bool,
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
    // Two sums per plane (even and odd groups): one chain of dependent adds per plane
    // limited the loop to one lookup per cycle and plane.
    let (mut ap1, mut an1, mut ab1) = (zero, zero, zero);
    let mut octet = |q: usize| {
        let (tq, oq) = (tb.add(q * 8 * 1024), ob.add(q * 8));
        if H3 {
            octet3(
                tq,
                oq,
                [&mut ap, &mut an, &mut ab],
                [&mut ap1, &mut an1, &mut ab1],
            );
        } else {
            octet2(tq, oq, [&mut ap, &mut an], [&mut ap1, &mut an1]);
        }
    };
    // A full block (every block but a short last one) unrolled: the loop's own counter
    // and branch were a measurable share of a 64-lookup pass.
    if nq == GROUPS / 8 {
        for q in 0..GROUPS / 8 {
            octet(q);
        }
    } else {
        for q in 0..nq {
            octet(q);
        }
    }
    ap = _mm512_add_epi16(ap, ap1);
    an = _mm512_add_epi16(an, an1);
    if H3 {
        ab = _mm512_add_epi16(ab, ab1);
    }
    if !LAST {
        _mm512_store_si512(a16, ap);
        _mm512_store_si512(a16.add(1), an);
        if H3 {
            _mm512_store_si512(a16.add(2), ab);
        }
        return None;
    }
    // The first pair starts the outputs (no `out.fill(0.0)`: 64 KiB per tile for 512 rows).
    let (mut lo, mut hi) = if fresh {
        (_mm512_setzero_ps(), _mm512_setzero_ps())
    } else {
        (_mm512_loadu_ps(dst), _mm512_loadu_ps(dst.add(16)))
    };
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
    if f.stream && w == 32 && (d as usize).is_multiple_of(64) {
        // Whole aligned rows of a large output bypass the cache (see `Affine8::stream`);
        // `tile` ends with an `sfence`.
        _mm512_stream_ps(d, affine_half(lo, tlo, ct, sc, sh, floor, ceil));
        _mm512_stream_ps(d.add(16), affine_half(hi, thi, ct, sc, sh, floor, ceil));
        return;
    }
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
