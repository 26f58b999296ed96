//! `quat-free`: four free levels minimising squared error exactly (1-D 4-means).
//!
//! The optimal 4-level quantizer of a set of reals partitions the sorted values into at
//! most 4 contiguous clusters with the cluster means as levels; the partition maximising
//! `sum_c S_c^2 / n_c` is found exactly (dynamic programming on the sorted values, or on a
//! histogram refined until exact for large groups). Thresholds are the midpoints of adjacent
//! levels. No level is forced to 0, so exact zeros are not kept.
//!
//! | code | level            |
//! |------|------------------|
//! | 0    | q0 (smallest)    |
//! | 1    | q1               |
//! | 2    | q2               |
//! | 3    | q3 (largest)     |
//!
//! 2 bits per weight (all 4 codes used) plus one level table per group. Fewer than four
//! distinct values give repeated levels (an empty cluster copies its neighbour).
use super::{fill, nearest};
use crate::solve::free4;
use crate::Levels;

/// Fits the four free levels.
pub(crate) fn fit(w: &[f32]) -> Levels {
    let f = free4(w);
    let v = fill(&f.means, 0.0);
    nearest([v[0], v[1], v[2], v[3]])
}
