//! 2-bit matrix kernels working on the packed codes.
//!
//! A `[rows, cols]` matrix of 2-bit codes is repacked at load into two bit-planes per row:
//! `plus` (code 2 or 3) and `minus` (code 0 or 3). With levels `l0..l3` every weight is
//!
//! `w = l1 + (l2-l1)·plus + (l0-l1)·minus + (l3-l2-l0+l1)·plus·minus`,
//!
//! so a dot product is four masked sums of activations scaled per row. For the usual ternary
//! case (`l1 = 0`, no code 3) this is exactly `a_p·Σx[pos] - a_n·Σx[neg]`: additions only,
//! zeros skipped. Memory stays at 2 bits per weight plus 16 bytes of coefficients per row.
mod avx2;
mod avx512;
mod input;
pub mod int8;
mod portable;
mod reference;
mod tile;

pub use input::{RowOffsets, TileInput};
pub use reference::{reference_matmul, reference_matmul_i8};
pub use tile::BlockWords;
pub(crate) use tile::{aligned, Affine};

use crate::RuntimeError;
use twobit_quant::Levels;

/// Per-thread buffers reused across tasks and calls. Allocating them per rayon split (as
/// `for_each_init` does) made glibc map and unmap them on every call, and the page faults
/// cost a 2-bit convolution a fifth of its time.
#[derive(Default)]
pub(crate) struct Scratch {
    /// Whole-image im2col (fp32 path; the 2-bit path reads its input in place).
    pub(crate) cols: Vec<f32>,
    /// LUT tables of the tile kernels.
    pub(crate) tables: Vec<f32>,
    /// Tile output.
    pub(crate) acc: Vec<f32>,
    /// int16 LUT tables of the int8 tile kernels.
    pub(crate) tables_i16: Vec<i16>,
    /// Activation tile of the int8 GEMM (`kernels::int8::gemm`).
    pub(crate) tile_u8: Vec<u8>,
    /// Partial sums of the int8 GEMM between k chunks.
    pub(crate) part: Vec<i32>,
}

thread_local! {
    pub(crate) static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// A raw output pointer shared by parallel tasks. Users must give every task a disjoint
/// set of indices (conv: its (image, tile); batched linear: its (samples, rows)).
#[derive(Clone, Copy)]
pub(crate) struct SendPtr(pub(crate) *mut f32);
// SAFETY: the pointer is only written through at indices that no other task writes.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    /// A method (not field access) so closures capture the whole `Sync` wrapper.
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}

/// Weights under which a GEMV runs on the calling thread (LeNet-5's 400x120 fc1 at batch
/// 1: 14 µs through the pool, about 1 µs without).
pub(crate) const SMALL_GEMV: usize = 1 << 18;

/// Column width of one tile of the batched kernel (4 AVX2 registers).
pub const TILE: usize = 32;

/// Which implementation runs the packed kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// Plain Rust, any target.
    Portable,
    /// AVX2 + FMA intrinsics / codegen (x86-64 only, chosen at run time).
    Avx2,
    /// AVX-512F masked adds and 512-bit LUT tiles (x86-64 only, chosen at run time).
    Avx512,
}

impl Kernel {
    /// The best kernel this CPU supports, detected at run time.
    pub fn detect() -> Kernel {
        [Kernel::Avx512, Kernel::Avx2]
            .into_iter()
            .find(|k| k.available())
            .unwrap_or(Kernel::Portable)
    }

    /// Every kernel this CPU can run, portable first.
    pub fn all_available() -> Vec<Kernel> {
        [Kernel::Portable, Kernel::Avx2, Kernel::Avx512]
            .into_iter()
            .filter(|k| k.available())
            .collect()
    }

    /// True when this kernel can run on this CPU.
    pub fn available(self) -> bool {
        match self {
            Kernel::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => {
                is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma")
            }
            #[cfg(not(target_arch = "x86_64"))]
            Kernel::Avx2 | Kernel::Avx512 => false,
        }
    }

    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Portable => "portable",
            Kernel::Avx2 => "avx2+fma",
            Kernel::Avx512 => "avx512f",
        }
    }
}

/// A 2-bit weight matrix `[rows, cols]` repacked into bit-planes for fast kernels.
#[derive(Clone, Debug)]
pub struct PackedMatrix {
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    /// Bytes per row per plane: `ceil(cols / 8)`; bit `k % 8` of byte `k / 8` is column `k`.
    pub(crate) stride: usize,
    pub(crate) plus: Vec<u8>,
    pub(crate) minus: Vec<u8>,
    /// Per row: coefficients of (total, plus, minus, plus&minus) sums.
    pub(crate) coef: Vec<[f32; 4]>,
    /// Per row: whether code 3 occurs (otherwise the plus&minus sum is skipped).
    pub(crate) has3: Vec<bool>,
}

impl PackedMatrix {
    /// Repacks file-layout codes (weight `i` in bits `2*(i%4)` of byte `i/4`, row-major) with
    /// one level table (`levels.len() == 1`) or one per row (`levels.len() == rows`).
    pub fn from_codes(
        rows: usize,
        cols: usize,
        codes: &[u8],
        levels: &[Levels],
    ) -> Result<PackedMatrix, RuntimeError> {
        let n = rows
            .checked_mul(cols)
            .ok_or_else(|| RuntimeError::Shape("weight matrix size overflows".into()))?;
        if rows == 0 || cols == 0 {
            return Err(RuntimeError::Shape(format!(
                "empty weight matrix [{rows}, {cols}]"
            )));
        }
        if codes.len() != n.div_ceil(4) {
            return Err(RuntimeError::Shape(format!(
                "packed codes hold {} bytes, [{rows}, {cols}] needs {}",
                codes.len(),
                n.div_ceil(4)
            )));
        }
        if levels.len() != 1 && levels.len() != rows {
            return Err(RuntimeError::Shape(format!(
                "{} level tables for {rows} rows (need 1 or {rows})",
                levels.len()
            )));
        }
        for l in levels {
            if l.values.iter().any(|v| !v.is_finite()) {
                return Err(RuntimeError::NonFinite("level table".into()));
            }
        }
        let stride = cols.div_ceil(8);
        let mut plus = vec![0u8; rows * stride];
        let mut minus = vec![0u8; rows * stride];
        let mut coef = Vec::with_capacity(rows);
        let mut has3 = vec![false; rows];
        for r in 0..rows {
            let l = levels[if levels.len() == 1 { 0 } else { r }].values;
            coef.push([l[1], l[2] - l[1], l[0] - l[1], l[3] - l[2] - l[0] + l[1]]);
            let (p, m) = (
                &mut plus[r * stride..(r + 1) * stride],
                &mut minus[r * stride..(r + 1) * stride],
            );
            let base = r * cols;
            for k in 0..cols {
                let i = base + k;
                let c = (codes[i >> 2] >> ((i & 3) * 2)) & 3;
                let bit = 1u8 << (k & 7);
                if c >= 2 {
                    p[k >> 3] |= bit;
                }
                if c == 0 || c == 3 {
                    m[k >> 3] |= bit;
                }
                has3[r] |= c == 3;
            }
        }
        Ok(PackedMatrix {
            rows,
            cols,
            stride,
            plus,
            minus,
            coef,
            has3,
        })
    }

    /// Number of rows (outputs).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns (inputs).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes this matrix occupies in memory: bit-planes, per-row coefficients and flags.
    pub fn weight_bytes(&self) -> usize {
        self.plus.len() + self.minus.len() + self.coef.len() * 16 + self.has3.len()
    }

    /// The weights expanded to f32, row-major (for the fp32 comparison path).
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.rows * self.cols);
        for r in 0..self.rows {
            let [t, cp, cn, cb] = self.coef[r];
            for k in 0..self.cols {
                let i = r * self.stride + (k >> 3);
                let bit = 1u8 << (k & 7);
                let p = (self.plus[i] & bit != 0) as u8 as f32;
                let m = (self.minus[i] & bit != 0) as u8 as f32;
                out.push(t + cp * p + cn * m + cb * p * m);
            }
        }
        out
    }

    /// `y[o] = Σ_k w[o,k]·x[k]` for one input vector (`x.len() == cols`, `y.len() == rows`),
    /// parallel over rows.
    pub fn gemv(&self, kernel: Kernel, x: &[f32], y: &mut [f32]) {
        use rayon::prelude::*;
        assert_eq!(x.len(), self.cols, "gemv input length");
        assert_eq!(y.len(), self.rows, "gemv output length");
        // Zero-pad so kernels read whole steps (8 activations per plane byte, or 64 for
        // AVX-512's 64-bit plane words).
        let mut xp = vec![0f32; avx512::gemv_padded_len(self.stride)];
        xp[..self.cols].copy_from_slice(x);
        let total: f32 = x.iter().sum();
        // Chunks big enough to amortise scheduling, small enough to spread over cores.
        let chunk = (self.rows / (rayon::current_num_threads() * 4)).clamp(4, 256);
        let run =
            |(ci, ys): (usize, &mut [f32])| self.gemv_rows(kernel, &xp, total, ci * chunk, ys);
        // A small matrix on the calling thread: waking the pool cost more than the GEMV.
        if self.rows * self.cols < SMALL_GEMV {
            y.chunks_mut(chunk).enumerate().for_each(run);
        } else {
            y.par_chunks_mut(chunk).enumerate().for_each(run);
        }
    }

    /// Sequential GEMV over rows `r0..r0+y.len()`; `xp` is zero-padded to
    /// `avx512::gemv_padded_len(stride)`.
    pub(crate) fn gemv_rows(
        &self,
        kernel: Kernel,
        xp: &[f32],
        total: f32,
        r0: usize,
        y: &mut [f32],
    ) {
        match kernel {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 if Kernel::Avx512.available() => {
                assert!(xp.len() >= avx512::gemv_padded_len(self.stride));
                // SAFETY: AVX-512F was detected at run time; the padding was checked.
                unsafe { avx512::gemv_rows(self, xp, total, r0, y) }
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 if Kernel::Avx2.available() => {
                // SAFETY: AVX2 and FMA were detected at run time.
                unsafe { avx2::gemv_rows(self, xp, total, r0, y) }
            }
            _ => portable::gemv_rows(self, xp, total, r0, y),
        }
    }
}
