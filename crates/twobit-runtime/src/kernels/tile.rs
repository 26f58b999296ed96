//! The tile GEMM entry points (convolutions, and linear layers at batch >= 8): the plane
//! bits regrouped per kernel ([`BlockWords`]), one tile of output rows
//! ([`PackedMatrix::tile_matmul`]), a conv tile written through the per-channel affine, and
//! the batched linear layer ([`PackedMatrix::matmul`]). The kernels themselves are in the
//! `portable`, `avx2` and `avx512` modules.
use super::*;

/// A matrix's plane bits block-major, for one kernel: entry `b * rows + o` holds row `o`'s
/// plus and minus bits for plane bytes `bytes·b..bytes·(b+1)` (zero past the row end), where
/// `bytes` is the kernel's block size (8 for the AVX2 and portable kernels, 5 for AVX-512's
/// 5-column groups). The tile kernels visit every row once per block; row-major planes put
/// each row's bytes on another cache line, this layout streams 16 bytes per row. Transient
/// (built per layer call), so resident weight memory stays at the row-major planes.
#[derive(Clone, Debug)]
pub struct BlockWords {
    bytes: usize,
    words: Vec<[portable::Word; 2]>,
}

/// `n <= 8` plane bytes from `at` as a little-endian word, zero-extended.
#[inline(always)]
fn le_word(plane: &[u8], at: usize, n: usize) -> portable::Word {
    match plane.get(at..at + 8) {
        // A whole-word load, masked to `n` bytes (most blocks).
        Some(b) => {
            let w = portable::Word::from_le_bytes(b.try_into().unwrap());
            if n == 8 {
                w
            } else {
                w & ((1 << (8 * n)) - 1)
            }
        }
        None => plane[at..at + n]
            .iter()
            .enumerate()
            .fold(0, |w, (i, &b)| w | (b as portable::Word) << (8 * i)),
    }
}

/// `len` floats of `buf` starting on a 64-byte boundary (the buffer grows as needed).
/// Vectors read from a misaligned buffer straddle cache lines on every other load: with
/// `Vec`'s 16-byte alignment vgg7's six convolutions took 341 ms instead of 306 (AVX-512).
pub(crate) fn aligned<T: Copy + Default>(buf: &mut Vec<T>, len: usize) -> &mut [T] {
    let pad = 64 / std::mem::size_of::<T>();
    if buf.len() < len + pad {
        buf.resize(len + pad, T::default());
    }
    let off = buf.as_ptr().align_offset(64).min(pad);
    &mut buf[off..off + len]
}

/// Where a conv tile's result goes: `dst[r·stride + j] = min(max(scale[r]·dot + shift[r],
/// floor), ceil)` for every output row `r` and `j < width` (a fused ReLU / ReLU6 / Clip).
///
/// The memory behind `dst` may be uninitialised (it is only written); for every row `r`,
/// `dst + r·stride` must be valid for `width` writes that no one else accesses, and
/// `width <= TILE`.
pub(crate) struct Affine<'a> {
    pub(crate) scale: &'a [f32],
    pub(crate) shift: &'a [f32],
    pub(crate) floor: f32,
    pub(crate) ceil: f32,
    pub(crate) dst: *mut f32,
    pub(crate) stride: usize,
    pub(crate) width: usize,
}

impl Affine<'_> {
    /// Writes `min(max(scale[r]·acc[r·TILE + j] + shift[r], floor), ceil)` for every row `r` and
    /// `j < width` (the AVX-512 kernel has its own, vectorised, in `avx512`).
    ///
    /// # Safety
    /// The [`Affine`] contract, with `acc.len() >= scale.len()·TILE`.
    unsafe fn store(&self, acc: &[f32]) {
        debug_assert!(acc.len() >= self.scale.len() * TILE);
        for (r, (&sc, &sh)) in self.scale.iter().zip(self.shift).enumerate() {
            let d = self.dst.add(r * self.stride) as *mut std::mem::MaybeUninit<f32>;
            let d = std::slice::from_raw_parts_mut(d, self.width);
            for (d, a) in d.iter_mut().zip(&acc[r * TILE..r * TILE + self.width]) {
                let v = sc * a + sh;
                // `f32::max` without its NaN branch (same result: a NaN `v` gives `floor`),
                // so the loop vectorises.
                let v = if v > self.floor { v } else { self.floor };
                d.write(if v < self.ceil { v } else { self.ceil });
            }
        }
    }
}

impl Kernel {
    /// Plane bytes per block of this kernel's [`BlockWords`] for tile calls covering
    /// `rows_per_pass` output rows.
    pub(crate) fn block_bytes(self, rows_per_pass: usize) -> usize {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 if self.available() => {
                if rows_per_pass >= avx512::QUINT_MIN_ROWS {
                    avx512::QUINT_BLOCK
                } else {
                    avx512::NIBBLE_BLOCK
                }
            }
            _ => portable::BLOCK_BYTES,
        }
    }

    /// True when `bytes` is one of this kernel's block layouts.
    fn reads_blocks_of(self, bytes: usize) -> bool {
        bytes == self.block_bytes(1) || bytes == self.block_bytes(usize::MAX)
    }
}

impl PackedMatrix {
    /// The plane bits regrouped for `kernel`'s tile kernel, built once per layer call (see
    /// [`BlockWords`]). `rows_per_pass` is how many output rows each `tile_matmul` call
    /// covers: from 256 the AVX-512 kernel uses 5-column groups.
    pub fn block_words(&self, kernel: Kernel, rows_per_pass: usize) -> BlockWords {
        use rayon::prelude::*;
        let bytes = kernel.block_bytes(rows_per_pass);
        let blocks = self.stride.div_ceil(bytes);
        let mut w = vec![[0; 2]; blocks * self.rows];
        // Parallel over blocks (each block's rows are contiguous in `w`). Built per layer
        // call: single-threaded, with a `memmove` per 4-byte chunk, it took a quarter of a
        // batch-64 vgg7 fc1.
        w.par_chunks_mut(self.rows).enumerate().for_each(|(b, wb)| {
            let lo = b * bytes;
            let n = bytes.min(self.stride - lo);
            for (o, e) in wb.iter_mut().enumerate() {
                let at = o * self.stride + lo;
                *e = [le_word(&self.plus, at, n), le_word(&self.minus, at, n)];
            }
        });
        BlockWords { bytes, words: w }
    }

    /// One column tile for output rows `rows`: `out[(o - rows.start)*TILE + j] =
    /// Σ_k w[o,k]·x(k, j)`, where `x` addresses `stride*8` rows of `TILE` activations (rows
    /// past `cols` are read but never used, so any values do) and `out` holds
    /// `rows.len()*TILE` values (overwritten). `words` is [`PackedMatrix::block_words`] for
    /// the same kernel; `tables` is scratch reused between calls.
    pub fn tile_matmul(
        &self,
        kernel: Kernel,
        rows: std::ops::Range<usize>,
        words: &BlockWords,
        x: &TileInput,
        tables: &mut Vec<f32>,
        out: &mut [f32],
    ) {
        // SAFETY: without an affine nothing is written outside `out`.
        unsafe { self.run_tile(kernel, rows, words, x, tables, out, None) }
    }

    /// A conv tile over all rows, written through `affine` (see [`Affine`]); `acc` is
    /// `rows·TILE` scratch.
    ///
    /// # Safety
    /// `affine` must satisfy [`Affine`]'s contract.
    pub(crate) unsafe fn tile_affine(
        &self,
        kernel: Kernel,
        words: &BlockWords,
        x: &TileInput,
        tables: &mut Vec<f32>,
        acc: &mut [f32],
        affine: &Affine,
    ) {
        self.run_tile(kernel, 0..self.rows, words, x, tables, acc, Some(affine))
    }

    /// Checks the sizes and runs `kernel`'s tile kernel into `out`, then through `affine`
    /// when given (the AVX-512 kernel applies it itself, from its last block).
    ///
    /// # Safety
    /// `affine`, when given, must satisfy [`Affine`]'s contract.
    #[allow(clippy::too_many_arguments)]
    unsafe fn run_tile(
        &self,
        kernel: Kernel,
        rows: std::ops::Range<usize>,
        words: &BlockWords,
        x: &TileInput,
        tables: &mut Vec<f32>,
        out: &mut [f32],
        affine: Option<&Affine>,
    ) {
        assert!(
            rows.start <= rows.end && rows.end <= self.rows,
            "tile rows {rows:?}"
        );
        assert_eq!(x.koff.len(), self.stride * 8, "tile input rows");
        assert_eq!(out.len(), rows.len() * TILE, "tile output size");
        assert!(
            kernel.reads_blocks_of(words.bytes),
            "block words of another kernel"
        );
        assert_eq!(
            words.words.len(),
            self.stride.div_ceil(words.bytes) * self.rows,
            "block words of another matrix"
        );
        if let Some(f) = affine {
            assert!(f.scale.len() == rows.len() && f.shift.len() == rows.len());
            assert!(f.width <= TILE);
        }
        let tables = aligned(tables, portable::TABLE_LEN);
        match kernel {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 if Kernel::Avx512.available() => {
                // SAFETY: AVX-512F and FMA were detected at run time; sizes checked above;
                // `TileInput::new` checked that every read lies in its buffer; the affine is
                // the caller's contract.
                let (b, w) = (words.bytes, &words.words);
                return avx512::tile(self, rows, b, w, x, tables, out, affine);
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 if Kernel::Avx2.available() => {
                // SAFETY: as above, for AVX2 and FMA.
                avx2::tile(self, rows, &words.words, x, tables, out)
            }
            _ => portable::tile(self, rows, x, tables, out),
        }
        if let Some(f) = affine {
            f.store(out);
        }
    }

    /// `y[n, o] = Σ_k w[o,k]·x[n,k]` for a batch (`x` is `[batch, cols]`, `y` is
    /// `[batch, rows]`), the layout of a linear layer.
    pub fn matmul(&self, kernel: Kernel, x: &[f32], batch: usize, y: &mut [f32]) {
        use rayon::prelude::*;
        assert_eq!(x.len(), batch * self.cols, "matmul input size");
        assert_eq!(y.len(), batch * self.rows, "matmul output size");
        // A few samples: one GEMV each beats padding a 32-wide tile.
        if batch < 8 {
            for (xs, ys) in x.chunks(self.cols).zip(y.chunks_mut(self.rows)) {
                self.gemv(kernel, xs, ys);
            }
            return;
        }
        let kpad = self.stride * 8;
        let rows = self.rows;
        let tiles = batch.div_ceil(TILE);
        // Few tiles (a batch of 64 is two): split the rows as well, so every core gets work
        // and rayon can balance it (two tasks for two cores sometimes ran on one). Each chunk
        // rebuilds its tile's tables; chunks of at least 64 rows keep that cheap.
        let want = (rayon::current_num_threads() * 4).div_ceil(tiles);
        let chunks = want.clamp(1, rows.div_ceil(64).max(1));
        let chunk = rows.div_ceil(chunks);
        let words = self.block_words(kernel, chunk);
        // Each tile's samples transposed once (`kpad` rows of TILE), shared by its row chunks.
        let tile_len = kpad * TILE;
        let mut xbuf = Vec::new();
        let xts = aligned(&mut xbuf, tiles * tile_len);
        xts.par_chunks_mut(tile_len)
            .enumerate()
            .for_each(|(t, xt)| {
                let n0 = t * TILE;
                for j in 0..TILE.min(batch - n0) {
                    let xs = &x[(n0 + j) * self.cols..(n0 + j + 1) * self.cols];
                    for (k, &v) in xs.iter().enumerate() {
                        xt[k * TILE + j] = v;
                    }
                }
            });
        let xts: &[f32] = xts;
        let out = SendPtr(y.as_mut_ptr());
        let koff = RowOffsets::dense(kpad);
        (0..tiles * chunks).into_par_iter().for_each(|task| {
            let (t, c) = (task / chunks, task % chunks);
            let r = c * chunk..((c + 1) * chunk).min(rows);
            if r.is_empty() {
                return;
            }
            let xt = TileInput::dense(&xts[t * tile_len..(t + 1) * tile_len], &koff);
            SCRATCH.with(|cell| {
                // No nested parallelism below, so this thread cannot re-enter the borrow.
                let Scratch { tables, acc, .. } = &mut *cell.borrow_mut();
                let acc = aligned(acc, r.len() * TILE);
                let n0 = t * TILE;
                let w = TILE.min(batch - n0);
                self.tile_matmul(kernel, r.clone(), &words, &xt, tables, acc);
                for j in 0..w {
                    // SAFETY: (tile, row chunk) is unique to this task: samples n0..n0+w,
                    // rows r, all inside `y`.
                    let dst = unsafe {
                        std::slice::from_raw_parts_mut(
                            out.get().add((n0 + j) * rows + r.start),
                            r.len(),
                        )
                    };
                    for (i, d) in dst.iter_mut().enumerate() {
                        *d = acc[i * TILE + j];
                    }
                }
            })
        });
    }
}
