//! The `vpermw` convolution kernel: output channels in the lanes, one 32-entry table per
//! output position and group of 5 input channels, looked up in registers.
//!
//! The tile kernel (`tile_x86.rs`) puts 32 output positions in the lanes and looks its
//! tables up from memory, one load per output row, plane and group: two loads per cycle
//! cap it, and each row carries its int16 sums through memory from block to block. Here
//! the lanes are 32 output rows instead:
//!
//! * Activations: each image quantized once into a zero-padded **channels-last** int8 copy
//!   (`[hp][wp][cin]`), so the 5 channels of one group at one kernel tap are 5 consecutive
//!   bytes of a position's window.
//! * Tables: for one position and group, the 32 subset sums of its 5 activations, built in
//!   registers from two dword broadcasts: `vpdpbusd` against a constant 0/1 byte matrix
//!   gives entries 0-15 (subsets of the first 4), a second `vpdpbusd` adds the fifth
//!   (entries 16-31), `vpackssdw` packs both into one vector of 32 int16 entries (in the
//!   order [`entry_lane`] gives; |entry| <= 635).
//! * Weights ([`Int8Perm`]): per 32 output rows, group and plane, a vector of 32 int16
//!   indices: row `r`'s lane holds the table lane of its 5 plane bits. One `vpermw` then
//!   looks up 32 rows × 5 weights, against one load per 32 × 4 in the tile kernel.
//! * Micro-kernel: 4 positions × 64 rows × 2 planes (or 4 × 32 × 3) of int16 sums in 16
//!   (12) registers, over a window of [`WINDOW`] groups (|sum| <= 48·635 < 2^15); then
//!   widened and added to the task's int32 sums: exact over the whole row.
//! * Epilogue, as the GEMM's: the per-code sums (`S_3 = S_B`, `S_2 = S_P - S_B`,
//!   `S_0 = S_M - S_B`, `S_1 = T - S_P - S_M + S_B`, exact in int32; `T`, the window's
//!   activation total, only where the base code's level is not zero) times the rows'
//!   levels (vectors: one row per lane), so four free levels are as accurate as ternary;
//!   then the image scale, the per-channel affine and clamp, a 16×16 transpose, and rows
//!   of 16 positions stored to the channels-first output.
//!
//! Groups run over the channels of one tap (`cin` padded to a multiple of 5 with zero
//! weights), so the layout needs one group per conv (`group == 1`). The kernel needs
//! AVX512-BW and VNNI ([`Int8Perm::supported`]); elsewhere the portable one runs.
use super::{Affine8, Kernel, PackedMatrix};

/// Input channels per group: a 32-entry table fills one `vpermw` table register.
pub(crate) const G: usize = 5;
/// Groups per int16 window: `48·5·127 = 30480 < 2^15`.
pub(crate) const WINDOW: usize = 48;
/// Output positions per task (four micro-kernel quads; one 16×16 transpose per 16 rows).
pub(crate) const PW: usize = 16;
const _: () = assert!(WINDOW * G * 127 <= i16::MAX as usize);

/// The lane of table entry `e` (`e < 32`, bit `j` = channel `j` of the group): `vpackssdw`
/// interleaves the two dword vectors (entries 0-15, then 16-31) per 128-bit lane, 4 and 4.
pub(crate) const fn entry_lane(e: usize) -> usize {
    let (hi, e) = (e / 16, e % 16);
    8 * (e / 4) + 4 * hi + e % 4
}

/// One vector of 32 int16 table lanes, 64-byte aligned for the kernel's loads.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, align(64))]
pub(crate) struct Lanes(pub(crate) [i16; 32]);

/// A convolution's weights as `vpermw` indices (see the module docs), built by
/// [`PackedMatrix::int8_perm`] for one geometry's column order.
#[derive(Clone, Debug)]
pub struct Int8Perm {
    pub(crate) rows: usize,
    /// 32-row blocks (rows padded with zero weights).
    pub(crate) nrb: usize,
    /// 2 (plus, minus) or 3 (and plus&minus, where code 3 occurs).
    pub(crate) planes: usize,
    pub(crate) cin: usize,
    /// Channel groups per tap: `cin.div_ceil(5)`.
    pub(crate) cg: usize,
    pub(crate) kh: usize,
    pub(crate) kw: usize,
    /// Groups: taps × `cg`.
    pub(crate) ng: usize,
    /// `[nrb][ng][planes]` vectors of 32 table lanes (0, the empty subset, for padding).
    pub(crate) idx: Vec<Lanes>,
    /// `[nrb][4][32]` the rows' levels of codes 0-3 (0 for padding rows).
    pub(crate) lv: Vec<f32>,
    /// Whether any row's base code (1) has a nonzero level: the outputs then need each
    /// window's activation total.
    pub(crate) total: bool,
}

impl Int8Perm {
    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.idx.len() * 64 + self.lv.len() * 4
    }

    /// Whether `kernel` runs the AVX-512 code here: [`Kernel::Avx512`] on a CPU with
    /// AVX512-BW (`vpermw`) and VNNI (the tables); else the portable code runs.
    pub(crate) fn simd(kernel: Kernel) -> bool {
        kernel == Kernel::Avx512 && kernel.available() && Self::supported()
    }

    /// Whether this CPU runs the AVX-512 kernel (AVX512-BW for `vpermw`, VNNI for the
    /// tables): a runtime measures this path only then.
    pub fn supported() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vnni")
        }
        #[cfg(not(target_arch = "x86_64"))]
        false
    }

    /// Byte offset of each group from a position's window corner in the channels-last copy
    /// (`wp` padded width, dilations `[dh, dw]`).
    pub(crate) fn group_offsets(&self, wp: usize, [dh, dw]: [usize; 2]) -> Vec<u32> {
        let mut v = Vec::with_capacity(self.ng);
        for ky in 0..self.kh {
            for kx in 0..self.kw {
                for j in 0..self.cg {
                    v.push(((ky * dh * wp + kx * dw) * self.cin + j * G) as u32);
                }
            }
        }
        v
    }
}

impl PackedMatrix {
    /// This matrix as `vpermw` indices for a convolution of `cin` channels and a `kh × kw`
    /// kernel (columns `c·kh·kw + ky·kw + kx`), or `None` where the columns do not match.
    pub fn int8_perm(&self, cin: usize, kh: usize, kw: usize) -> Option<Int8Perm> {
        if self.cols != cin * kh * kw || cin == 0 {
            return None;
        }
        let planes = if self.has3.iter().any(|&h| h) { 3 } else { 2 };
        let (taps, cg) = (kh * kw, cin.div_ceil(G));
        let ng = taps * cg;
        let nrb = self.rows.div_ceil(32);
        let mut idx = vec![Lanes::default(); nrb * ng * planes];
        let mut lv = vec![0f32; nrb * 4 * 32];
        for o in 0..self.rows {
            let (rb, lane) = (o / 32, o % 32);
            for t in 0..taps {
                for j in 0..cg {
                    let gi = t * cg + j;
                    let (mut p, mut n) = (0usize, 0usize);
                    for c in j * G..cin.min(j * G + G) {
                        let [bp, bn] = self.plane_bits(o, c * taps + t);
                        p |= (bp as usize) << (c - j * G);
                        n |= (bn as usize) << (c - j * G);
                    }
                    let at = (rb * ng + gi) * planes;
                    idx[at].0[lane] = entry_lane(p) as i16;
                    idx[at + 1].0[lane] = entry_lane(n) as i16;
                    if planes == 3 {
                        idx[at + 2].0[lane] = entry_lane(p & n) as i16;
                    }
                }
            }
            for (i, l) in self.code_levels(o).into_iter().enumerate() {
                lv[(rb * 4 + i) * 32 + lane] = l;
            }
        }
        Some(Int8Perm {
            rows: self.rows,
            nrb,
            planes,
            cin,
            cg,
            kh,
            kw,
            ng,
            idx,
            total: self.coef.iter().any(|c| c[0] != 0.0),
            lv,
        })
    }
}

/// The channels-first image `img` (`[c][h][w]`) quantized with scale `s` (as
/// [`super::quantize_with`]) into the zero-padded channels-last `d` (`[hp][wp][c]`, `pt`
/// rows above and `pl` columns left of the image).
pub(crate) fn hwc_image(
    kernel: Kernel,
    img: &[f32],
    (c, h, w): (usize, usize, usize),
    s: f32,
    (pt, pl, wp): (usize, usize, usize),
    d: &mut [i8],
) {
    assert!(img.len() == c * h * w && pl + w <= wp && (pt + h) * wp * c <= d.len());
    d.fill(0);
    #[cfg(target_arch = "x86_64")]
    if Int8Perm::simd(kernel) {
        // SAFETY: AVX-512F/BW detected; the sizes were checked above.
        return unsafe { super::perm_x86::hwc_image(img, (c, h, w), s, (pt, pl, wp), d) };
    }
    let mut q = vec![0i8; w];
    for ci in 0..c {
        for y in 0..h {
            super::quantize_with(&img[(ci * h + y) * w..][..w], s, &mut q);
            for (xi, &v) in q.iter().enumerate() {
                d[((pt + y) * wp + pl + xi) * c + ci] = v;
            }
        }
    }
}

/// One task's input: `width` (at most [`PW`]) output positions of one image.
pub(crate) struct PermInput<'a> {
    /// The image's channels-last int8 copy, readable 8 bytes past every group's start.
    pub(crate) img: &'a [i8],
    /// Per position, its window corner's byte offset (lanes past `width` repeat the first).
    pub(crate) base: [u32; PW],
    /// [`Int8Perm::group_offsets`].
    pub(crate) goff: &'a [u32],
}

/// Runs one task: the AVX-512 kernel where [`Int8Perm::simd`], else the portable one.
///
/// # Safety
/// `aff` satisfies [`Affine8`]'s contract for `w.rows` rows and `aff.width <= PW`; every
/// `base[j] + goff[g] + 8 <= img.len()`.
pub(crate) unsafe fn run(
    kernel: Kernel,
    w: &Int8Perm,
    x: &PermInput,
    scratch: &mut Vec<f32>,
    aff: &Affine8,
) {
    debug_assert!(aff.width <= PW && aff.scale.len() == w.rows);
    debug_assert!(
        x.base.iter().max().map(|&b| b as usize).unwrap_or(0)
            + x.goff.iter().max().map(|&g| g as usize).unwrap_or(0)
            + 8
            <= x.img.len()
    );
    #[cfg(target_arch = "x86_64")]
    if Int8Perm::simd(kernel) {
        return super::perm_x86::run(w, x, scratch, aff);
    }
    let _ = kernel;
    portable(w, x, scratch, aff)
}

/// The portable kernel: the same tables and indices, int32 sums over all groups, the
/// per-code combination (`gemm::code_sums`).
///
/// # Safety
/// As [`run`].
pub(crate) unsafe fn portable(w: &Int8Perm, x: &PermInput, scratch: &mut Vec<f32>, aff: &Affine8) {
    let pl = w.planes;
    let acc = super::super::aligned(scratch, w.nrb * 32 * PW);
    for (j, &b) in x.base.iter().enumerate().take(aff.width) {
        let total = if w.total {
            window_total(w, x, b as usize)
        } else {
            0
        };
        let mut sums = vec![0i32; w.nrb * pl * 32];
        for (g, &go) in x.goff.iter().enumerate() {
            let a = &x.img[(b + go) as usize..(b + go) as usize + G];
            let mut t = [0i32; 32];
            for e in 0..32 {
                t[entry_lane(e)] = (0..G)
                    .filter(|c| e >> c & 1 == 1)
                    .map(|c| a[c] as i32)
                    .sum();
            }
            for rb in 0..w.nrb {
                let ix = &w.idx[(rb * w.ng + g) * pl..(rb * w.ng + g + 1) * pl];
                let s = &mut sums[rb * pl * 32..(rb + 1) * pl * 32];
                for (s, i) in s.iter_mut().zip(ix.iter().flat_map(|v| v.0)) {
                    *s += t[i as usize];
                }
            }
        }
        for rb in 0..w.nrb {
            for lane in 0..32 {
                let at = |p: usize| sums[(rb * pl + p) * 32 + lane];
                let s = [at(0), at(1), if pl == 3 { at(2) } else { 0 }];
                let lv = |i: usize| w.lv[(rb * 4 + i) * 32 + lane];
                // `total` is 0 without a base-code level: then `lv(1)` is 0 too.
                let c = super::gemm::code_sums(s, total);
                acc[(rb * 32 + lane) * PW + j] =
                    (0..4).map(|i| lv(i) as f64 * c[i] as f64).sum::<f64>() as f32;
            }
        }
    }
    for r in 0..w.rows {
        let (sc, sf) = (aff.scale[r] * aff.s, aff.shift[r]);
        let d = aff.dst.add(r * aff.stride) as *mut std::mem::MaybeUninit<f32>;
        let d = std::slice::from_raw_parts_mut(d, aff.width);
        for (j, d) in d.iter_mut().enumerate() {
            d.write(crate::ops::clamp(
                sc * acc[r * PW + j] + sf,
                aff.floor,
                aff.ceil,
            ));
        }
    }
}

/// The activation total of the window at `base`: each tap's `cin` bytes.
pub(crate) fn window_total(w: &Int8Perm, x: &PermInput, base: usize) -> i32 {
    (0..w.kh * w.kw)
        .map(|t| {
            let at = base + x.goff[t * w.cg] as usize;
            x.img[at..at + w.cin].iter().map(|&v| v as i32).sum::<i32>()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The AVX-512 channels-last quantization writes what the portable one writes, bit for
    /// bit: NaN, infinities, ties, short channel and position blocks, pads.
    #[test]
    fn hwc_image_builds_agree() {
        if !Int8Perm::simd(Kernel::Avx512) {
            eprintln!("SKIPPED hwc_image_builds_agree: no AVX512-BW/VNNI here");
            return;
        }
        let specials = [
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            0.5,
            -0.5,
            1.5,
            2.5,
        ];
        for (c, h, w) in [(1, 1, 1), (3, 5, 7), (16, 2, 16), (21, 3, 17), (40, 4, 33)] {
            let img: Vec<f32> = (0..c * h * w)
                .map(|i| match i % 11 {
                    k @ 0..7 => specials[k],
                    k => ((i * 7919) % 2000) as f32 / 7.0 - 140.0 + k as f32,
                })
                .collect();
            let (pt, pl, wp) = (1, 2, w + 3);
            let len = (h + 2) * wp * c;
            let build = |k| {
                let mut d = vec![7i8; len];
                hwc_image(k, &img, (c, h, w), 1.0, (pt, pl, wp), &mut d);
                d
            };
            assert_eq!(
                build(Kernel::Avx512),
                build(Kernel::Portable),
                "{c}x{h}x{w}"
            );
        }
    }

    #[test]
    fn entry_lanes_are_a_permutation() {
        let mut seen = [false; 32];
        for e in 0..32 {
            let l = entry_lane(e);
            assert!(!seen[l], "lane {l} twice");
            seen[l] = true;
        }
        assert_eq!(
            entry_lane(0),
            0,
            "padding (index 0) must read the empty subset"
        );
    }
}
