//! Shared exact solvers for the least-squares schemes: pick the sort-based path for small
//! inputs and the histogram path ([`crate::fast`]) for large ones; both are exact.
use crate::exact::{best_partition, distinct_items, Prefix};

/// Optimal levels of one partition problem.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Fit {
    /// `sum_seg s^2/n` over the free segments (squared error = `sum w^2 - gain`).
    pub gain: f64,
    /// Means of the free segments, ascending; `None` for an empty segment.
    pub means: Vec<Option<f64>>,
}

/// Exact fit on sorted values: `free` free segments, after a pinned zero segment when
/// `pinned`.
pub(crate) fn fit_sorted(sorted: &[f32], free: usize, pinned: bool) -> Fit {
    let p = Prefix::new(distinct_items(sorted));
    fit_prefix(&p, free, pinned)
}

/// Exact fit on weighted items.
pub(crate) fn fit_prefix(p: &Prefix, free: usize, pinned: bool) -> Fit {
    let segs = free + pinned as usize;
    let part = best_partition(p, segs, pinned);
    let first = pinned as usize;
    let means = (first..segs)
        .map(|k| p.mean(part.bounds[k], part.bounds[k + 1]))
        .collect();
    Fit {
        gain: part.gain,
        means,
    }
}

/// Sorts a copy ascending.
pub(crate) fn sorted(mut v: Vec<f32>) -> Vec<f32> {
    v.sort_unstable_by(f32::total_cmp);
    v
}

/// Per-sign fits on magnitudes: `pos[k-1]` / `neg[k-1]` use a pinned zero plus `k` free
/// levels, for `k` in `1..=max_free`.
pub(crate) struct Sides {
    pub pos: Vec<Fit>,
    pub neg: Vec<Fit>,
}

/// Groups smaller than this are solved by sorting.
pub(crate) const SMALL: usize = 2048;

impl Sides {
    /// Solves both signs exactly.
    pub fn new(w: &[f32], max_free: usize) -> Self {
        if w.len() >= SMALL {
            return crate::fast::sides(w, max_free);
        }
        Self::by_sorting(w, max_free)
    }

    /// The sort-based reference path.
    pub fn by_sorting(w: &[f32], max_free: usize) -> Self {
        let side = |positive| {
            let v = sorted(crate::schemes::side_magnitudes(w, positive));
            let p = Prefix::new(distinct_items(&v));
            (1..=max_free).map(|k| fit_prefix(&p, k, true)).collect()
        };
        Sides {
            pos: side(true),
            neg: side(false),
        }
    }
}

/// Exact 4-means of a group.
pub(crate) fn free4(w: &[f32]) -> Fit {
    if w.len() >= SMALL {
        return crate::fast::free4(w);
    }
    free4_by_sorting(w)
}

/// The sort-based reference path of [`free4`].
pub(crate) fn free4_by_sorting(w: &[f32]) -> Fit {
    fit_sorted(&sorted(w.to_vec()), 4, false)
}
