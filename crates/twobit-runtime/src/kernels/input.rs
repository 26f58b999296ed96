//! Where a tile kernel reads its activations: rows addressed in place, so a convolution
//! needs no im2col copy.
//!
//! A tile kernel consumes `stride·8` activation rows of [`TILE`] lanes. Lane `j` of row `k`
//! is `base[koff[k] + idx[j]]`:
//! * a transposed batch (linear layers): `koff[k] = k·TILE`, `idx[j] = j`;
//! * a convolution over a zero-padded image: `koff[k]` is the offset of row `k`'s
//!   (channel, ky, kx) and `idx[j]` the offset of output position `j`'s window corner.
//!
//! Copying im2col rows cost a 2-bit convolution a quarter to a third of its time; reading
//! each row once, while its group's subset-sum table is built, costs a few loads per group.
use super::TILE;

/// Row offsets `koff` of one layer, with their maximum for bounds checks.
#[derive(Clone, Debug)]
pub struct RowOffsets {
    off: Vec<u32>,
    max: usize,
}

impl RowOffsets {
    /// Offsets as given (one per row the kernel reads, padding rows included).
    pub fn new(off: Vec<u32>) -> RowOffsets {
        let max = off.iter().copied().max().unwrap_or(0) as usize;
        RowOffsets { off, max }
    }

    /// `rows` dense rows of `TILE` lanes (`koff[k] = k·TILE`).
    pub fn dense(rows: usize) -> RowOffsets {
        RowOffsets::new((0..rows).map(|k| (k * TILE) as u32).collect())
    }

    /// The offsets.
    pub(crate) fn offsets(&self) -> &[u32] {
        &self.off
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.off.len()
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.off.is_empty()
    }
}

/// One tile's activations: lane `j` of row `k` is `base[koff[k] + idx[j]]`. `T` is `f32`
/// for the fp32-activation kernels and `i8` for the int8 ones (`kernels::int8`).
#[derive(Clone, Copy, Debug)]
pub struct TileInput<'a, T = f32> {
    pub(crate) base: &'a [T],
    pub(crate) koff: &'a [u32],
    pub(crate) idx: [u32; TILE],
}

impl<'a, T: Copy> TileInput<'a, T> {
    /// Panics unless every read lies inside `base`: that would be a caller bug, not bad
    /// input, and the SIMD kernels read without bounds checks.
    pub fn new(base: &'a [T], rows: &'a RowOffsets, idx: [u32; TILE]) -> TileInput<'a, T> {
        let imax = idx.iter().copied().max().unwrap_or(0) as usize;
        assert!(
            rows.max + imax < base.len(),
            "tile input reads past its buffer"
        );
        // Gathers take signed 32-bit lane offsets.
        assert!(
            base.len() <= i32::MAX as usize,
            "tile input buffer too large"
        );
        TileInput {
            base,
            koff: &rows.off,
            idx,
        }
    }

    /// Dense rows: row `k` is `xt[k·TILE..(k+1)·TILE]`.
    pub fn dense(xt: &'a [T], rows: &'a RowOffsets) -> TileInput<'a, T> {
        TileInput::new(xt, rows, std::array::from_fn(|j| j as u32))
    }

    /// Lane `j` of row `k` (bounds-checked; the portable kernel's access).
    #[inline(always)]
    pub(crate) fn get(&self, k: usize, j: usize) -> T {
        self.base[self.koff[k] as usize + self.idx[j] as usize]
    }

    /// Row `k`'s base pointer; lane `j` is at `+ idx[j]`.
    ///
    /// # Safety
    /// `k < koff.len()` (checked by `tile_matmul` against the matrix's padded columns).
    #[inline(always)]
    pub(crate) unsafe fn row(&self, k: usize) -> *const T {
        self.base.as_ptr().add(*self.koff.get_unchecked(k) as usize)
    }

    /// `Some(idx[l0])` when lanes `l0..l0+n` are consecutive, so one vector load reads them.
    pub(crate) fn run(&self, l0: usize, n: usize) -> Option<usize> {
        let s = self.idx[l0];
        (1..n)
            .all(|i| self.idx[l0 + i] == s + i as u32)
            .then_some(s as usize)
    }
}
