//! Int8-activation kernels on the same bit-planes.
//!
//! Activations are quantized on the fly, symmetric per row (one scale per image or sample):
//! `x ≈ s·q` with `q` in `[-127, 127]`. A weight is `levels[code]`, so with the planes a dot
//! product is
//!
//! `s·(c_T·Σq + c_p·Σq[plus] + c_n·Σq[minus] + c_b·Σq[plus&minus])`,
//!
//! where the four sums are exact integers: the levels are used exactly as stored (ternary,
//! quaternary, 4 free levels, per tensor or per channel), and the only rounding is the
//! activations' quantization and the final float combination (one multiply per sum).
//!
//! * GEMV ([`PackedMatrix::gemv_i8`]): per 64 columns, the plane word is a byte mask that
//!   selects activations (`vmovdqu8 {k}{z}`), summed with `vpdpbusd` against ones
//!   (AVX512-VNNI) or `vpmaddubsw`+`vpmaddwd` (AVX512-BW): 64 weights per 2-3 instructions
//!   per plane instead of 16 with fp32 masked adds, and a quarter of the activation bytes.
//! * Tile ([`PackedMatrix::tile_i8`], convolutions and batched linear layers): the fp32
//!   kernels' activation-stationary LUT with int16 tables. A table entry (sum of up to 4
//!   int8 values, |v| <= 508) holds all 32 lanes of a tile in one 512-bit register, and
//!   64 groups (|sum| <= 32512) accumulate in int16 before each row's sums are widened and
//!   scaled by its coefficients: one `vpaddw` per plane per 4 weights for 32 outputs,
//!   against two fp32 FMAs (the AVX-512 lookups are inline assembly, `tile_x86.rs`).
//! * GEMM ([`Int8Gemm`], convolutions where it measures faster): 0/1 int8 planes and
//!   `vpdpbusd` (`gemm.rs`).
//! * Perm ([`Int8Perm`], convolutions where it measures faster): output channels in the
//!   lanes, each position's 32-entry tables in registers, looked up with `vpermw`
//!   (`perm.rs`).
pub(crate) mod gemm;
#[cfg(target_arch = "x86_64")]
mod gemm_x86;
#[cfg(target_arch = "x86_64")]
mod gemv_avx2;
#[cfg(target_arch = "x86_64")]
mod gemv_x86;
pub(crate) mod perm;
#[cfg(target_arch = "x86_64")]
mod perm_x86;
mod portable;
#[cfg(target_arch = "x86_64")]
mod tile_x86;

pub use gemm::{GemmIsa, Int8Gemm, TW};
pub use perm::Int8Perm;

use super::{Kernel, PackedMatrix, TileInput, TILE};

/// Plane bytes per block of the tile kernels: 16 bytes = 32 groups of 4 columns, so the
/// int16 row sums cannot overflow (32 · 4 · 127 < 2^15) and the tables fill 32 KiB.
pub(crate) const BLOCK: usize = 16;
/// Groups per block.
pub(crate) const GROUPS: usize = BLOCK * 2;
/// `i16` values of one block's tables: 16 entries of `TILE` lanes per group.
pub(crate) const TABLE_LEN: usize = GROUPS * 16 * TILE;

/// Which activation type the 2-bit layers compute with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Activations {
    /// fp32 activations (the default; bit-exact with the stored network up to float
    /// summation order).
    #[default]
    F32,
    /// Activations quantized to int8 per image (or per sample) on the fly; integer sums.
    Int8,
    /// Int8 with one scale per layer, `range / 127` from the network's calibrated input
    /// ranges (`Arch::input_ranges`, written by `twobit calibrate`); values beyond the range
    /// saturate. A layer without a range quantizes per image as [`Activations::Int8`].
    Int8Calibrated,
}

impl Activations {
    /// A short name for reports (`f32`, `int8`, `int8-calibrated`).
    pub fn name(self) -> &'static str {
        match self {
            Activations::F32 => "f32",
            Activations::Int8 => "int8",
            Activations::Int8Calibrated => "int8-calibrated",
        }
    }

    /// Whether the 2-bit layers quantize their inputs to int8.
    pub fn is_int8(self) -> bool {
        self != Activations::F32
    }
}

/// Where an int8 layer's activation scale comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum ActScale {
    /// `max|x| / 127` of each image (convolution) or sample (linear layer), measured per call.
    #[default]
    PerRow,
    /// One calibrated scale for every image; values beyond `127·s` saturate.
    Fixed(f32),
}

impl ActScale {
    /// The scale of one row `x`.
    pub fn of(self, x: &[f32]) -> f32 {
        match self {
            ActScale::PerRow => row_scale(x),
            ActScale::Fixed(s) => s,
        }
    }

    /// Quantizes one row; returns its scale (see [`quantize_with`]).
    pub fn quantize(self, x: &[f32], q: &mut [i8]) -> f32 {
        let s = self.of(x);
        quantize_with(x, s, q);
        s
    }
}

/// Which int8 instructions a kernel choice runs on this CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Isa {
    Portable,
    /// AVX512-BW and VL (byte masks, int16 adds), without VNNI.
    Avx512Bw,
    /// AVX512-BW plus VNNI (`vpdpbusd`).
    Avx512Vnni,
    /// AVX2 (the GEMV; the tile runs the portable code).
    Avx2,
    /// AVX2 with AVX-VNNI (`vpdpbusd` on 256 bits).
    AvxVnni,
}

impl Isa {
    /// The int8 instructions behind `kernel`: the AVX-512 kernel uses BW (and VNNI when
    /// present); the AVX2 kernel (or AVX-512 without BW) AVX2, with AVX-VNNI when present;
    /// portable the portable int8 code.
    pub(crate) fn of(kernel: Kernel) -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if kernel == Kernel::Avx512
                && kernel.available()
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vl")
            {
                return if is_x86_feature_detected!("avx512vnni") {
                    Isa::Avx512Vnni
                } else {
                    Isa::Avx512Bw
                };
            }
            if kernel != Kernel::Portable && is_x86_feature_detected!("avx2") {
                return if is_x86_feature_detected!("avxvnni") {
                    Isa::AvxVnni
                } else {
                    Isa::Avx2
                };
            }
        }
        let _ = kernel;
        Isa::Portable
    }

    /// A short name for reports.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx512Bw => "avx512bw",
            Isa::Avx512Vnni => "avx512vnni",
            Isa::Avx2 => "avx2",
            Isa::AvxVnni => "avx-vnni",
        }
    }
}

/// The int8 implementation `kernel` selects on this CPU (`portable`, `avx512bw`,
/// `avx512vnni`), for reports.
pub fn int8_isa_name(kernel: Kernel) -> &'static str {
    Isa::of(kernel).name()
}

/// Rounds to the nearest integer (ties to even) for `|v| < 2^22` with a float add and an
/// integer subtract: `f32::round` is a libm call on the baseline x86-64 target, and this
/// loop vectorises. (`wrapping_sub`: the release profile keeps overflow checks, whose
/// branch stopped the vectorisation; the difference never wraps for `|v| < 2^22`.)
#[inline(always)]
fn round_i32(v: f32) -> i32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 · 2^23: the sum's low mantissa bits are v.
    ((v + MAGIC).to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32)
}

/// The scale `s` that maps `x` to int8 (`x ≈ s·q`, `|q| <= 127`): `max|x| / 127`, or 0 for
/// an all-zero (or non-finite-only) row.
pub fn row_scale(x: &[f32]) -> f32 {
    let m = wide(x, absmax, |x| {
        // SAFETY: `wide` calls this only where AVX-512F and BW were detected.
        unsafe { absmax_avx512(x) }
    });
    if m.is_finite() {
        m / 127.0
    } else {
        f32::MAX / 127.0
    }
}

/// `f(x)`, or `f512(x)` (the same body compiled for AVX-512) where the CPU has it and `x`
/// is long enough to pay for it: these loops run over whole activations, and the baseline
/// x86-64 target vectorises them only 4 wide.
#[inline(always)]
fn wide<T, R>(x: T, f: impl FnOnce(T) -> R, _f512: impl FnOnce(T) -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512bw") {
        return _f512(x);
    }
    f(x)
}

/// [`absmax`] compiled for AVX-512.
///
/// # Safety
/// AVX-512F and BW.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn absmax_avx512(x: &[f32]) -> f32 {
    absmax(x)
}

/// `max|x|`, NaN skipped.
#[inline(always)]
fn absmax(x: &[f32]) -> f32 {
    // `max` of absolute values, NaN skipped (it compares false), in 16 independent lanes so
    // the loop vectorises: one running maximum was a serial chain, 6 % of a vgg7 conv.
    let mut lanes = [0f32; 16];
    let mut chunks = x.chunks_exact(16);
    for c in &mut chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l = if v.abs() > *l { v.abs() } else { *l };
        }
    }
    chunks
        .remainder()
        .iter()
        .chain(&lanes)
        .fold(0f32, |m, &v| if v.abs() > m { v.abs() } else { m })
}

/// Writes `q[i] = round(x[i] / s)` clamped to `[-127, 127]` (0 when `s == 0`).
pub fn quantize_with(x: &[f32], s: f32, q: &mut [i8]) {
    assert_eq!(x.len(), q.len(), "quantize lengths");
    let inv = if s > 0.0 { 1.0 / s } else { 0.0 };
    wide((x, inv, q), quantize_inv, |a| {
        // SAFETY: `wide` calls this only where AVX-512F and BW were detected.
        unsafe { quantize_inv_avx512(a) }
    })
}

/// One image plane (`h` rows of `w` values in `src`) quantized with scale `s` into a
/// zero-padded plane `dst` of rows `wp` wide: `pt` zero rows above, `pl` zero columns on
/// the left, the rest of `dst` zero. One dispatch per plane: per row was most of the cost
/// on 8-wide planes.
pub(crate) fn quantize_padded(
    src: &[f32],
    w: usize,
    s: f32,
    dst: &mut [i8],
    wp: usize,
    [pt, pl]: [usize; 2],
) {
    assert!(
        w > 0 && pl + w <= wp && (pt + src.len() / w) * wp <= dst.len(),
        "padded plane"
    );
    let inv = if s > 0.0 { 1.0 / s } else { 0.0 };
    wide((src, w, inv, dst, wp, pt, pl), pad_plane, |a| {
        // SAFETY: `wide` calls this only where AVX-512F and BW were detected.
        unsafe { pad_plane_avx512(a) }
    })
}

type PadArgs<'a> = (&'a [f32], usize, f32, &'a mut [i8], usize, usize, usize);

/// [`pad_plane`] compiled for AVX-512.
///
/// # Safety
/// AVX-512F and BW.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn pad_plane_avx512(a: PadArgs) {
    pad_plane(a)
}

#[inline(always)]
fn pad_plane((src, w, inv, dst, wp, pt, pl): PadArgs) {
    let h = src.len() / w;
    dst[..pt * wp].fill(0);
    dst[(pt + h) * wp..].fill(0);
    for (y, row) in src.chunks_exact(w).enumerate() {
        let d = &mut dst[(y + pt) * wp..(y + pt + 1) * wp];
        zero_few(&mut d[..pl]);
        quantize_inv((row, inv, &mut d[pl..pl + w]));
        zero_few(&mut d[pl + w..]);
    }
}

/// Zeroes a row's pad: up to 4 bytes (every 3x3 and 5x5 convolution's) without a `memset`
/// call, which for 1-byte pads was 2-3 % of a vgg7 convolution.
#[inline(always)]
fn zero_few(s: &mut [i8]) {
    if s.len() > 4 {
        s.fill(0);
        return;
    }
    for i in 0..4 {
        if i < s.len() {
            s[i] = 0;
        }
    }
}

/// [`quantize_inv`] compiled for AVX-512.
///
/// # Safety
/// AVX-512F and BW.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn quantize_inv_avx512(a: (&[f32], f32, &mut [i8])) {
    quantize_inv(a)
}

/// `q = round(x·inv)` clamped to `[-127, 127]`.
#[inline(always)]
fn quantize_inv((x, inv, q): (&[f32], f32, &mut [i8])) {
    for (d, &v) in q.iter_mut().zip(x) {
        // The clamp in float first: it also maps NaN (compares false) to -127's side and
        // keeps the magic rounding in range.
        let v = v * inv;
        let v = if v > -127.0 { v } else { -127.0 };
        let v = if v < 127.0 { v } else { 127.0 };
        *d = round_i32(v) as i8;
    }
}

/// Quantizes one row: returns its scale and writes `q` (see [`row_scale`]).
pub fn quantize(x: &[f32], q: &mut [i8]) -> f32 {
    ActScale::PerRow.quantize(x, q)
}

/// Per block and row, the table entry each plane nibble selects, as a byte `8·nibble`
/// (the kernel scales it by 8 in the address: entries are 64 bytes); a third plane,
/// plus&minus, when code 3 occurs. Group `g`'s byte is at `g` of its plane's 32, so the
/// AVX-512 row loop is a shift and one `vpaddw` per lookup, with one 64-bit load per 8
/// lookups. 2 bits per weight per plane: built per layer call by the free functions, or
/// once when a [`crate::Runtime`] switches to int8 (`Runtime::set_activations`).
#[derive(Clone, Debug)]
pub struct Int8Offsets {
    pub(crate) planes: usize,
    rows: usize,
    data: Vec<u8>,
}

impl Int8Offsets {
    /// Row `o`'s bytes for block `b`: `planes` runs of `GROUPS`.
    ///
    /// # Safety
    /// `b` and `o` in range (checked by `tile_i8` against the matrix).
    #[inline(always)]
    pub(crate) unsafe fn row(&self, b: usize, o: usize) -> *const u8 {
        self.data
            .as_ptr()
            .add((b * self.rows + o) * self.planes * GROUPS)
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.data.len()
    }
}

impl PackedMatrix {
    /// Row `o`'s plus and minus bits at column `k` (the int8 GEMM's and the perm kernel's
    /// weight layouts are built from them).
    #[inline]
    pub(crate) fn plane_bits(&self, o: usize, k: usize) -> [u8; 2] {
        let at = o * self.stride + k / 8;
        [self.plus[at], self.minus[at]].map(|b| (b >> (k % 8)) & 1)
    }

    /// Row `o`'s levels of codes 0-3, back from its (total, plus, minus, both) plane
    /// coefficients in f64: the per-code epilogues multiply these, which do not cancel.
    pub(crate) fn code_levels(&self, o: usize) -> [f32; 4] {
        let [ct, cp, cn, cb] = self.coef[o].map(f64::from);
        [cn + ct, ct, cp + ct, cb + cp + cn + ct].map(|v| v as f32)
    }

    /// The [`Int8Offsets`] of this matrix, built in parallel over blocks.
    pub fn int8_offsets(&self) -> Int8Offsets {
        use rayon::prelude::*;
        let planes = if self.has3.iter().any(|&h| h) { 3 } else { 2 };
        let blocks = self.stride.div_ceil(BLOCK);
        let per_block = self.rows * planes * GROUPS;
        let mut data = vec![0u8; blocks * per_block];
        let build = |(b, db): (usize, &mut [u8])| {
            let b0 = b * BLOCK;
            let nbytes = BLOCK.min(self.stride - b0);
            for (o, dr) in db.chunks_exact_mut(planes * GROUPS).enumerate() {
                let at = o * self.stride + b0;
                let (p, n) = (&self.plus[at..at + nbytes], &self.minus[at..at + nbytes]);
                // Bytes past `nbytes` stay 0: entry 0 (zero) of the block's last groups.
                for i in 0..nbytes {
                    [dr[2 * i], dr[2 * i + 1]] = [(p[i] & 15) << 3, (p[i] >> 4) << 3];
                    [dr[GROUPS + 2 * i], dr[GROUPS + 2 * i + 1]] =
                        [(n[i] & 15) << 3, (n[i] >> 4) << 3];
                    if planes == 3 {
                        let b = p[i] & n[i];
                        [dr[2 * GROUPS + 2 * i], dr[2 * GROUPS + 2 * i + 1]] =
                            [(b & 15) << 3, (b >> 4) << 3];
                    }
                }
            }
        };
        // Small matrices (batch-1 networks): not worth a parallel split.
        if data.len() < 1 << 16 {
            data.chunks_mut(per_block).enumerate().for_each(build);
        } else {
            data.par_chunks_mut(per_block).enumerate().for_each(build);
        }
        Int8Offsets {
            planes,
            rows: self.rows,
            data,
        }
    }

    /// Int8 bytes a GEMV reads: whole 64-column steps, zero padded.
    pub fn gemv_i8_len(&self) -> usize {
        self.stride.div_ceil(8) * 64
    }

    /// `y[o] = s·Σ_k w[o,k]·q[k]` for one quantized vector (`q.len() >= gemv_i8_len()`,
    /// zeros past `cols`), parallel over rows.
    pub fn gemv_i8(&self, kernel: Kernel, q: &[i8], s: f32, y: &mut [f32]) {
        use rayon::prelude::*;
        assert!(q.len() >= self.gemv_i8_len(), "gemv_i8 input length");
        assert!(q[self.cols..].iter().all(|&v| v == 0), "gemv_i8 padding");
        assert_eq!(y.len(), self.rows, "gemv_i8 output length");
        let total: i32 = q[..self.cols].iter().map(|&v| v as i32).sum();
        let isa = Isa::of(kernel);
        let chunk = (self.rows / (rayon::current_num_threads() * 4)).clamp(4, 256);
        let run = |(ci, ys): (usize, &mut [f32])| {
            let r0 = ci * chunk;
            match isa {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: AVX-512F/BW/VNNI detected by `Isa::of`; length checked above.
                Isa::Avx512Vnni => unsafe {
                    gemv_x86::gemv_rows::<true>(self, q, total, s, r0, ys)
                },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: AVX-512F/BW detected by `Isa::of`; length checked above.
                Isa::Avx512Bw => unsafe { gemv_x86::gemv_rows::<false>(self, q, total, s, r0, ys) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: AVX2 and AVX-VNNI detected by `Isa::of`; length checked above.
                Isa::AvxVnni => unsafe { gemv_avx2::gemv_rows::<true>(self, q, total, s, r0, ys) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: AVX2 detected by `Isa::of`; length checked above.
                Isa::Avx2 => unsafe { gemv_avx2::gemv_rows::<false>(self, q, total, s, r0, ys) },
                _ => portable::gemv_rows(self, q, total, s, r0, ys),
            }
        };
        // A small matrix (LeNet's 400x120) on the calling thread: waking the pool took 10x
        // longer than the GEMV.
        if self.rows * self.cols < super::SMALL_GEMV {
            y.chunks_mut(chunk).enumerate().for_each(run);
        } else {
            y.par_chunks_mut(chunk).enumerate().for_each(run);
        }
    }

    /// One column tile of int8 activations for output rows `rows`:
    /// `out[(o - rows.start)·TILE + j] = c_p·Σq[plus] + c_n·Σq[minus] + c_b·Σq[both]` over
    /// the row's columns, and `total[j] = Σ_{k<cols} q(k, j)` (the caller adds `c_T·total`
    /// and applies the scale). `x` addresses `stride·8` rows (rows past `cols` are read,
    /// never used); `offs` is [`PackedMatrix::int8_offsets`] of this matrix; `tables` is
    /// scratch reused between calls. Values must lie in `[-127, 127]`, as [`quantize`]
    /// writes them (the AVX-512 kernel's int16 sums are sized for that; -128 could wrap).
    #[allow(clippy::too_many_arguments)]
    pub fn tile_i8(
        &self,
        kernel: Kernel,
        rows: std::ops::Range<usize>,
        offs: &Int8Offsets,
        x: &TileInput<i8>,
        tables: &mut Vec<i16>,
        out: &mut [f32],
        total: &mut [i32; TILE],
    ) {
        // SAFETY: without an affine nothing is written outside `out`.
        unsafe { self.run_tile_i8(kernel, rows, offs, x, tables, out, total, None) }
    }

    /// A conv tile over all rows, written through `aff` (the AVX-512 kernel applies it in
    /// its last block, saving a pass over the tile); `out` is `rows·TILE` scratch.
    ///
    /// # Safety
    /// `aff` must satisfy [`Affine8`]'s contract.
    #[allow(clippy::too_many_arguments)]
    pub(crate) unsafe fn tile_i8_affine(
        &self,
        kernel: Kernel,
        offs: &Int8Offsets,
        x: &TileInput<i8>,
        tables: &mut Vec<i16>,
        out: &mut [f32],
        aff: &Affine8,
    ) {
        let mut total = [0; TILE];
        self.run_tile_i8(
            kernel,
            0..self.rows,
            offs,
            x,
            tables,
            out,
            &mut total,
            Some(aff),
        )
    }

    /// Checks the sizes and runs the int8 tile kernel, then `aff` when given (the AVX-512
    /// kernel applies it itself).
    ///
    /// # Safety
    /// `aff`, when given, must satisfy [`Affine8`]'s contract.
    #[allow(clippy::too_many_arguments)]
    unsafe fn run_tile_i8(
        &self,
        kernel: Kernel,
        rows: std::ops::Range<usize>,
        offs: &Int8Offsets,
        x: &TileInput<i8>,
        tables: &mut Vec<i16>,
        out: &mut [f32],
        total: &mut [i32; TILE],
        aff: Option<&Affine8>,
    ) {
        assert!(
            rows.start <= rows.end && rows.end <= self.rows,
            "tile rows {rows:?}"
        );
        assert_eq!(x.koff.len(), self.stride * 8, "tile input rows");
        assert_eq!(out.len(), rows.len() * TILE, "tile output size");
        assert!(
            offs.rows == self.rows
                && offs.data.len()
                    == self.stride.div_ceil(BLOCK) * offs.planes * GROUPS * self.rows,
            "int8 offsets of another matrix"
        );
        if let Some(f) = aff {
            assert!(f.scale.len() == rows.len() && f.shift.len() == rows.len());
            assert!(f.width <= TILE);
        }
        // The tables, then (from a 64-byte boundary: TABLE_LEN is a multiple of 32) the
        // AVX-512 kernel's int16 row sums.
        let scratch = super::aligned(tables, TABLE_LEN + rows.len() * 3 * TILE);
        let (tables, acc16) = scratch.split_at_mut(TABLE_LEN);
        match Isa::of(kernel) {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: AVX-512F/BW/VL detected by `Isa::of`; sizes checked above, and
            // `TileInput::new` checked that every read lies inside its buffer; the affine
            // is the caller's contract.
            Isa::Avx512Bw | Isa::Avx512Vnni => {
                return tile_x86::tile(self, rows, offs, x, tables, acc16, out, total, aff)
            }
            _ => portable::tile(self, rows.clone(), x, tables, out, total),
        }
        if let Some(f) = aff {
            f.store(self, rows, out, total);
        }
    }

    /// `y[n, o] = Σ_k w[o,k]·x[n,k]` with each sample quantized to int8 (`x` is
    /// `[batch, cols]`, `y` is `[batch, rows]`), the layout of a linear layer: GEMV per
    /// sample under [`GEMV_BELOW`] samples, else 32-sample tiles.
    pub fn matmul_i8(&self, kernel: Kernel, x: &[f32], batch: usize, y: &mut [f32]) {
        portable::matmul_i8(
            self,
            None,
            GEMV_BELOW,
            kernel,
            ActScale::PerRow,
            x,
            batch,
            y,
        )
    }

    /// [`PackedMatrix::matmul_i8`] with this matrix's [`Int8Offsets`] given (built here
    /// when `None` and the batch needs them), and one GEMV per sample under `gemv_below`
    /// samples (see [`PackedMatrix::measure_gemv_below`]).
    pub fn matmul_i8_with(
        &self,
        offs: Option<&Int8Offsets>,
        gemv_below: usize,
        kernel: Kernel,
        x: &[f32],
        batch: usize,
        y: &mut [f32],
    ) {
        portable::matmul_i8(
            self,
            offs,
            gemv_below,
            kernel,
            ActScale::PerRow,
            x,
            batch,
            y,
        )
    }

    /// [`PackedMatrix::matmul_i8_with`] with the activation scale from `scale`.
    #[allow(clippy::too_many_arguments)]
    pub fn matmul_i8_scaled(
        &self,
        offs: Option<&Int8Offsets>,
        gemv_below: usize,
        kernel: Kernel,
        scale: ActScale,
        x: &[f32],
        batch: usize,
        y: &mut [f32],
    ) {
        portable::matmul_i8(self, offs, gemv_below, kernel, scale, x, batch, y)
    }

    /// Below how many samples one int8 GEMV per sample beats a 32-sample tile pass for this
    /// matrix on this machine, measured (best of 3 each, synthetic input): the tile's
    /// table building pays off only over enough rows and samples, and where that lies
    /// depends on the layer's shape (vgg7's 8192x1024 fc1: about 16; a 400x120 layer: more).
    /// In `1..=TILE`.
    pub fn measure_gemv_below(&self, kernel: Kernel, offs: &Int8Offsets) -> usize {
        let x: Vec<f32> = (0..TILE * self.cols)
            .map(|i| ((i * 7919) % 255) as f32 / 127.0 - 1.0)
            .collect();
        let (mut y, mut y1) = (vec![0f32; TILE * self.rows], vec![0f32; self.rows]);
        let x1 = &x[..self.cols];
        let [tile, gemv] = time_in_turns(
            [
                &mut || self.matmul_i8_with(Some(offs), 1, kernel, &x, TILE, &mut y),
                &mut || self.matmul_i8_with(Some(offs), 2, kernel, x1, 1, &mut y1),
            ],
            3,
        );
        ((tile / gemv.max(1e-9)).ceil() as usize).clamp(1, TILE)
    }

    /// [`TILE`] when fp32 activations (the 2-bit fp32 kernels) beat int8 on this machine at
    /// `TILE` samples with the crossover `gemv_below` (best of 3 each, synthetic input),
    /// else `usize::MAX`: under the AVX2 kernel the int8 tile is portable code and one
    /// GEMV per sample lost to the AVX2 fp32 tile (vgg7's fc1 at 64 samples: 18 ms
    /// against 6.4 ms).
    pub fn measure_f32_from(&self, kernel: Kernel, offs: &Int8Offsets, gemv_below: usize) -> usize {
        let x: Vec<f32> = (0..TILE * self.cols)
            .map(|i| ((i * 7919) % 255) as f32 / 127.0 - 1.0)
            .collect();
        let (mut y, mut yf) = (vec![0f32; TILE * self.rows], vec![0f32; TILE * self.rows]);
        let [int8, f32] = time_in_turns(
            [
                &mut || self.matmul_i8_with(Some(offs), gemv_below, kernel, &x, TILE, &mut y),
                &mut || self.matmul(kernel, &x, TILE, &mut yf),
            ],
            3,
        );
        if f32 < int8 {
            TILE
        } else {
            usize::MAX
        }
    }
}

/// Where an int8 conv tile's result goes: for every row `r` and `j < width`,
/// `dst[r·stride + j] = min(max(scale[r]·s·(acc[r, j] + c_T[r]·total[j]) + shift[r], floor),
/// ceil)` (`s` the image's activation scale, `c_T` the row's level coefficient).
///
/// The memory behind `dst` may be uninitialised (it is only written); for every row `r`,
/// `dst + r·stride` must be valid for `width` writes that no one else accesses.
pub(crate) struct Affine8<'a> {
    pub(crate) scale: &'a [f32],
    pub(crate) s: f32,
    pub(crate) shift: &'a [f32],
    pub(crate) floor: f32,
    pub(crate) ceil: f32,
    pub(crate) dst: *mut f32,
    pub(crate) stride: usize,
    pub(crate) width: usize,
    /// Whole aligned rows may bypass the cache (streaming stores): set for outputs too
    /// large to stay in it, where a normal store first reads each line.
    pub(crate) stream: bool,
}

impl Affine8<'_> {
    /// The plain form, after a kernel that does not apply it itself.
    ///
    /// # Safety
    /// [`Affine8`]'s contract; `acc` holds `rows.len()·TILE` values.
    unsafe fn store(
        &self,
        m: &PackedMatrix,
        rows: std::ops::Range<usize>,
        acc: &[f32],
        total: &[i32; TILE],
    ) {
        for (r, o) in rows.enumerate() {
            let (sc, sf, ct) = (self.scale[r] * self.s, self.shift[r], m.coef[o][0]);
            let d = self.dst.add(r * self.stride) as *mut std::mem::MaybeUninit<f32>;
            let d = std::slice::from_raw_parts_mut(d, self.width);
            for (j, d) in d.iter_mut().enumerate() {
                let v = sc * (acc[r * TILE + j] + ct * total[j] as f32) + sf;
                d.write(crate::ops::clamp(v, self.floor, self.ceil));
            }
        }
    }
}

/// How an int8 runtime runs one convolution, chosen by measurement when it switches to
/// int8 ([`crate::ops::int8_conv_layer`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvPath {
    /// The int16-LUT tile kernel ([`PackedMatrix::tile_i8`]).
    Tile,
    /// The int8 GEMM ([`Int8Gemm`], `vpdpbusd`).
    Gemm,
    /// fp32 activations (the 2-bit fp32 tile kernel): for layers where quantizing costs
    /// more than it saves, such as a first layer with few input channels.
    F32,
    /// The `vpermw` kernel ([`Int8Perm`]: output channels in the lanes, tables in
    /// registers).
    Perm,
}

impl ConvPath {
    /// A short name for reports (`tile`, `gemm`, `f32`, `perm`).
    pub fn name(self) -> &'static str {
        match self {
            ConvPath::Tile => "tile",
            ConvPath::Gemm => "gemm",
            ConvPath::F32 => "f32",
            ConvPath::Perm => "perm",
        }
    }
}

/// A runtime layer's int8 set-up, made once when it switches to int8: for a linear layer,
/// each weight matrix's [`Int8Offsets`] (rebuilt per call, they were a sixth of a batch-1
/// pass) and the measured GEMV/tile crossover; for a convolution, the measured
/// [`ConvPath`] and what it needs (offsets for the tile, [`Int8Gemm`] planes for the GEMM,
/// nothing for fp32 activations).
#[derive(Clone, Debug)]
pub struct Int8Layer {
    /// One per weight matrix (conv group) for the tile kernel; empty otherwise.
    pub offsets: Vec<Int8Offsets>,
    /// One per conv group for the GEMM path; empty otherwise.
    pub gemm: Vec<Int8Gemm>,
    /// The `vpermw` path's weights (one group); empty otherwise.
    pub perm: Vec<Int8Perm>,
    /// A convolution's path (linear layers: [`ConvPath::Tile`], unused).
    pub conv: ConvPath,
    /// See [`PackedMatrix::measure_gemv_below`].
    pub gemv_below: usize,
    /// A linear layer runs with fp32 activations from this many samples on (see
    /// [`PackedMatrix::measure_f32_from`]; `usize::MAX`: never).
    pub f32_from: usize,
    /// Where the input's int8 scale comes from.
    pub act_scale: ActScale,
}

impl Int8Layer {
    /// Bytes held (offsets and int8 planes).
    pub fn bytes(&self) -> usize {
        self.offsets.iter().map(Int8Offsets::bytes).sum::<usize>()
            + self.gemm.iter().map(Int8Gemm::bytes).sum::<usize>()
            + self.perm.iter().map(Int8Perm::bytes).sum::<usize>()
    }
}

/// The best time in seconds of each of `fs` over `rounds` rounds, after one untimed run
/// each (it warms the buffers up). The functions take turns, so a burst of other load on
/// the machine slows them alike: timed one after the other, such a burst once made the
/// set-up choose a path 17 % slower for four of vgg7's convolutions.
pub(crate) fn time_in_turns<const N: usize>(
    mut fs: [&mut dyn FnMut(); N],
    rounds: usize,
) -> [f64; N] {
    for f in fs.iter_mut() {
        f();
    }
    let mut best = [f64::MAX; N];
    for _ in 0..rounds {
        for (b, f) in best.iter_mut().zip(fs.iter_mut()) {
            let t = std::time::Instant::now();
            f();
            *b = b.min(t.elapsed().as_secs_f64());
        }
    }
    best
}

/// Below this many samples [`PackedMatrix::matmul_i8`] runs one GEMV per sample (as the
/// fp32-activation `matmul`); a runtime measures it per layer instead.
pub const GEMV_BELOW: usize = 8;

#[cfg(test)]
#[path = "gemv_tests.rs"]
mod tests;

#[cfg(all(test, target_arch = "x86_64"))]
#[path = "tile_tests.rs"]
mod tile_tests;
