//! Direct convolution for stride 1 with padding (ResNet-20's 3x3 layers and their input
//! gradients), without im2col: on a zero-padded copy of each image, output position
//! `oy*wp + ox` of the padded grid (row width `wp = W + 2*pad`) reads input
//! `oy*wp + ox + ky*wp + kx` for every kernel offset, so a run of consecutive grid positions
//! reads a run of consecutive inputs, whatever the image width. The grid's `k - 1` extra
//! columns per row are computed and dropped.
//!
//! Why: im2col wrote a `[C*k*k, P]` column matrix per image (590 KB for 16 channels at 32x32)
//! that the GEMM then packed again; on ResNet-20's small layers copying took as long as the
//! arithmetic (`examples/conv_bench.rs`). Here the inner loop keeps an 8-channel x 48-position
//! block of outputs in 24 AVX-512 registers and reads each input vector once per kernel
//! offset for 8 output channels.
//!
//! The weight gradient of the 16-channel layers works the same way ([`Direct::weight_gradient`]):
//! the output gradient on the grid (zero in the dropped columns) times the input shifted by
//! each kernel offset, summed over positions in 16 vector lanes per weight, across a chunk's
//! images, then across lanes once (1.7x the GEMM's speed there; at 32 channels slower).
//!
//! The sums run in a fixed order (input channel, then kernel row and column; positions and
//! images in order per lane, then the lanes pairwise), so the result does not depend on the
//! thread count.

use super::{copy_line, ConvShape};
use std::arch::x86_64::*;
use std::mem::MaybeUninit;

/// Output channels per register block.
const OB: usize = 8;
/// Vectors of 16 positions per register block.
const NV: usize = 3;
/// Grid positions per register block.
const BLOCK: usize = 16 * NV;

/// Whether the direct kernel runs `s` on this CPU: stride 1, some padding (not LeNet-5's
/// unpadded layers, which im2col serves well), output channels a multiple of [`OB`], at most
/// [`MAX_CHANNELS`] input channels, images wide enough, and a CPU with AVX-512F and FMA.
pub(super) fn applies(s: &ConvShape) -> bool {
    s.stride == 1
        && s.pad > 0
        && s.o > 0
        && s.o.is_multiple_of(OB)
        && (1..=MAX_CHANNELS).contains(&s.c)
        && s.p() > 0
        // At most 1/8 of the grid's columns computed and dropped: 8x8 images (10 columns
        // for 8) ran slower than im2col + GEMM.
        && 8 * (s.ow() + s.k - 1) <= 9 * s.ow()
        && std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("fma")
}

/// The sum of 16 lanes, pairwise (the order fixed).
fn row_sum16(v: &[f32]) -> f32 {
    let mut a = [0.0f32; 8];
    for (i, a) in a.iter_mut().enumerate() {
        *a = v[i] + v[i + 8];
    }
    ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]))
}

/// Whether [`Direct::weight_gradient`] runs `s`: as [`applies`], a 3x3 kernel, and at most
/// 256 weights per kernel offset (`C*O`; ResNet-20's 16-channel layers): the sums in vector
/// lanes are 16 times the weights, and at 32x32 channels (590 KB) the weight gradient ran
/// at two thirds of the GEMM's speed, at 16x16 at 1.7x (`examples/conv_bench.rs`).
pub(super) fn applies_dw(s: &ConvShape) -> bool {
    s.k == 3 && s.c * s.o <= 256 && applies(s)
}

/// Input channels up to which the direct kernel is used: beyond, im2col + GEMM is as fast
/// (VGG-7's 128-512 channels run at 210-240 GFLOP/s that way).
const MAX_CHANNELS: usize = 64;

/// Per-chunk buffers and the layout of the padded grid.
pub(super) struct Direct {
    hp: usize,
    wp: usize,
    /// Grid positions computed per image (a multiple of [`BLOCK`]).
    ly: usize,
    /// Padded input planes, borders and tail zero (`c * hp * wp` plus slack for the last
    /// block's reads).
    xp: Vec<f32>,
    /// The grid's outputs, `[O, ly]`.
    yg: Vec<f32>,
    /// An output gradient on the grid, `[O, ly]`; only the valid positions are ever
    /// written, the dropped columns and the tail stay zero.
    dyg: Vec<f32>,
    /// The weight gradient's running sums, one vector of 16 lanes per weight.
    dw_sums: Vec<f32>,
}

impl Direct {
    pub(super) fn new(s: &ConvShape) -> Self {
        let (hp, wp) = (s.h + 2 * s.pad, s.w + 2 * s.pad);
        let ly = (s.oh() * wp).div_ceil(BLOCK) * BLOCK;
        // The last block reads up to `ly - 1 + (k-1)*wp + (k-1)` past its plane's start.
        let len = (s.c - 1) * hp * wp + ly + (s.k - 1) * (wp + 1);
        Direct {
            hp,
            wp,
            ly,
            xp: vec![0.0; len.max(s.c * hp * wp)],
            yg: vec![0.0; s.o * ly],
            dyg: Vec::new(),
            dw_sums: Vec::new(),
        }
    }

    fn load_input(&mut self, s: &ConvShape, x: &[f32]) {
        let (hp, wp) = (self.hp, self.wp);
        for (c, src) in x.chunks_exact(s.h * s.w).enumerate() {
            let dst = &mut self.xp[c * hp * wp..][..hp * wp];
            for (line, row) in src.chunks_exact(s.w).zip(dst[s.pad * wp..].chunks_mut(wp)) {
                copy_line(&mut row[s.pad..s.pad + s.w], line);
            }
        }
    }

    /// Adds one image's weight-gradient products to the chunk's running sums (kept in
    /// vector lanes until [`Direct::weight_gradient_into`]): `dw[o][c][ky][kx] = sum over
    /// positions of dy[o] * x[c]` shifted by (ky, kx). 3x3 kernels only ([`applies_dw`]).
    pub(super) fn weight_gradient(&mut self, s: &ConvShape, x: &[f32], dy: &[f32]) {
        self.load_input(s, x);
        if self.dyg.is_empty() {
            self.dyg = vec![0.0; s.o * self.ly];
            self.dw_sums = vec![0.0; s.o * s.c * 9 * 16];
        }
        let (wp, ow) = (self.wp, s.ow());
        for (src, dst) in dy
            .chunks_exact(s.p())
            .zip(self.dyg.chunks_exact_mut(self.ly))
        {
            for (line, row) in src.chunks_exact(ow).zip(dst.chunks_mut(wp)) {
                copy_line(&mut row[..ow], line);
            }
        }
        assert_eq!(s.k, 3);
        let plane = self.hp * wp;
        assert!(self.xp.len() >= (s.c - 1) * plane + self.ly + 2 * (wp + 1));
        assert_eq!(self.dw_sums.len(), s.o * s.c * 9 * 16);
        // SAFETY: `applies_dw` checked AVX-512F and FMA; the accesses stay inside `xp`,
        // `dyg` (`[O, ly]`) and `dw_sums` (asserted just above).
        unsafe {
            dw_kernel(
                s,
                &self.xp,
                plane,
                wp,
                &self.dyg,
                self.ly,
                &mut self.dw_sums,
            )
        };
    }

    /// Adds the weight gradient summed by [`Direct::weight_gradient`] to `dwt` (`[C*9, O]`,
    /// the transposed layout of [`super::conv_backward`]'s partial sums): each sum's 16 lanes
    /// in a fixed order.
    pub(super) fn weight_gradient_into(&self, s: &ConvShape, dwt: &mut [f32]) {
        assert_eq!(dwt.len(), s.kdim() * s.o);
        // Layout of the sums: [O/8][C][3 (ky)][8 (o)][3 (kx)][16].
        for (blk, lanes) in self.dw_sums.chunks_exact(16).enumerate() {
            let kx = blk % 3;
            let i = blk / 3 % OB;
            let ky = blk / (3 * OB) % 3;
            let c = blk / (9 * OB) % s.c;
            let ob = blk / (9 * OB * s.c) * OB;
            dwt[((c * 3 + ky) * 3 + kx) * s.o + ob + i] += row_sum16(lanes);
        }
    }

    /// One image: `y` (`[O, OH*OW]`, all written) from `x` (`[C, H, W]`), the weight as
    /// `wt[(c*k + ky)*k + kx][o]`, and the bias.
    pub(super) fn image(
        &mut self,
        s: &ConvShape,
        x: &[f32],
        wt: &[f32],
        bias: Option<&[f32]>,
        y: &mut [MaybeUninit<f32>],
    ) {
        self.load_input(s, x);
        let (wp, plane) = (self.wp, self.hp * self.wp);
        assert_eq!(wt.len(), s.kdim() * s.o);
        assert!(self.xp.len() >= (s.c - 1) * plane + self.ly + (s.k - 1) * (wp + 1));
        // SAFETY: `applies` checked AVX-512F and FMA; the reads stay inside `xp` and `wt`
        // (asserted just above) and the writes inside `yg` (`[O, ly]`).
        unsafe { kernel(s, &self.xp, plane, wp, wt, &mut self.yg, self.ly) };
        let (ow, p) = (s.ow(), s.p());
        for (o, yo) in y.chunks_exact_mut(p).enumerate() {
            let b = bias.map_or(0.0, |b| b[o]);
            let grid = &self.yg[o * self.ly..];
            for (line, g) in yo.chunks_exact_mut(ow).zip(grid.chunks(wp)) {
                for (d, v) in line.iter_mut().zip(g) {
                    d.write(v + b);
                }
            }
        }
    }
}

/// `yg[o][j] = sum over (c, ky, kx) of wt[(c*k+ky)*k+kx][o] * xp[c*plane + j + ky*wp + kx]`
/// for every `o < O`, `j < ly`.
///
/// # Safety
/// The CPU has AVX-512F and FMA; `xp` holds `(C-1)*plane + ly + (k-1)*(wp+1)` values, `wt`
/// `C*k*k*O`, `yg` `O*ly`; `ly` is a multiple of [`BLOCK`] and `O` of [`OB`].
#[target_feature(enable = "avx512f,fma")]
unsafe fn kernel(
    s: &ConvShape,
    xp: &[f32],
    plane: usize,
    wp: usize,
    wt: &[f32],
    yg: &mut [f32],
    ly: usize,
) {
    let (k, o_n) = (s.k, s.o);
    let xp = xp.as_ptr();
    let wt = wt.as_ptr();
    let yg = yg.as_mut_ptr();
    for ob in (0..o_n).step_by(OB) {
        for jb in (0..ly).step_by(BLOCK) {
            let mut acc = [[_mm512_setzero_ps(); NV]; OB];
            for c in 0..s.c {
                for ky in 0..k {
                    for kx in 0..k {
                        // SAFETY (all reads): within the bounds the caller guarantees.
                        let base = unsafe { xp.add(c * plane + jb + ky * wp + kx) };
                        let mut xv = [_mm512_setzero_ps(); NV];
                        for (v, xv) in xv.iter_mut().enumerate() {
                            *xv = unsafe { _mm512_loadu_ps(base.add(16 * v)) };
                        }
                        let wrow = unsafe { wt.add(((c * k + ky) * k + kx) * o_n + ob) };
                        for (i, acc) in acc.iter_mut().enumerate() {
                            let wv = _mm512_set1_ps(unsafe { *wrow.add(i) });
                            for (a, &xv) in acc.iter_mut().zip(&xv) {
                                *a = _mm512_fmadd_ps(wv, xv, *a);
                            }
                        }
                    }
                }
            }
            for (i, acc) in acc.iter().enumerate() {
                for (v, a) in acc.iter().enumerate() {
                    // SAFETY: `ob + i < O` and `jb + 16*v + 16 <= ly`: inside `yg`.
                    unsafe { _mm512_storeu_ps(yg.add((ob + i) * ly + jb + 16 * v), *a) };
                }
            }
        }
    }
}

/// Adds to the sums `acc` (per 8 output channels, input channel, kernel row, 8 x 3 vectors
/// of 16 lanes: `[O/8][C][3][8][3][16]`) the products `dyg[o][j] * xp[c*plane + j + ky*wp
/// + kx]` of lane `j % 16`, over the positions `j < ly`.
///
/// # Safety
/// The CPU has AVX-512F and FMA; `xp` holds `(C-1)*plane + ly + 2*(wp+1)` values, `dyg`
/// `O*ly`, `acc` `O*C*9*16`; `ly` is a multiple of 16 and `O` of [`OB`].
#[target_feature(enable = "avx512f,fma")]
unsafe fn dw_kernel(
    s: &ConvShape,
    xp: &[f32],
    plane: usize,
    wp: usize,
    dyg: &[f32],
    ly: usize,
    acc: &mut [f32],
) {
    let (xp, dyg, accp) = (xp.as_ptr(), dyg.as_ptr(), acc.as_mut_ptr());
    // One (8 channels, c, ky) block of sums: 8 x 3 vectors.
    const SUMS: usize = OB * 3 * 16;
    for ob in (0..s.o).step_by(OB) {
        for c in 0..s.c {
            for ky in 0..3 {
                // SAFETY (all accesses): within the bounds the caller guarantees.
                let sums = unsafe { accp.add(((ob / OB * s.c + c) * 3 + ky) * SUMS) };
                let mut a = [[_mm512_setzero_ps(); 3]; OB];
                for (i, a) in a.iter_mut().enumerate() {
                    for (kx, a) in a.iter_mut().enumerate() {
                        *a = unsafe { _mm512_loadu_ps(sums.add((i * 3 + kx) * 16)) };
                    }
                }
                let row = unsafe { xp.add(c * plane + ky * wp) };
                for j in (0..ly).step_by(16) {
                    let xv = [0, 1, 2].map(|kx| unsafe { _mm512_loadu_ps(row.add(j + kx)) });
                    for (i, a) in a.iter_mut().enumerate() {
                        let d = unsafe { _mm512_loadu_ps(dyg.add((ob + i) * ly + j)) };
                        for (a, &xv) in a.iter_mut().zip(&xv) {
                            *a = _mm512_fmadd_ps(d, xv, *a);
                        }
                    }
                }
                for (i, a) in a.iter().enumerate() {
                    for (kx, a) in a.iter().enumerate() {
                        unsafe { _mm512_storeu_ps(sums.add((i * 3 + kx) * 16), *a) };
                    }
                }
            }
        }
    }
}
