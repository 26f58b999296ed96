//! `tern`: exact least-squares adaptive asymmetric ternary.
//!
//! Levels `{-a_n, 0, +a_p}` minimising `sum (w - q(w))^2` over all such level sets. The signs
//! are independent: a positive weight is always better at 0 than at `-a_n`, so
//! `a_p = S_k / k` for the `k` maximising `S_k^2 / k`, where `S_k` is the sum of the `k`
//! largest positive weights (the negative side likewise on magnitudes). The optimum is a
//! nearest-level assignment, so the thresholds are the midpoints `-a_n/2`, `+a_p/2`; a
//! weight exactly on a midpoint has the same error either way, so ties cannot change the
//! error.
//!
//! | code | level |
//! |------|-------|
//! | 0    | -a_n  |
//! | 1    | 0     |
//! | 2    | +a_p  |
//!
//! 2 bits per weight (3 codes used) plus one level table per group.
use super::ternary_nearest;
use crate::solve::Sides;
use crate::Levels;

/// Fits the exact asymmetric ternary levels.
pub(crate) fn fit(w: &[f32]) -> Levels {
    let s = Sides::new(w, 1);
    let a_p = s.pos[0].means[0].unwrap_or(0.0) as f32;
    let a_n = s.neg[0].means[0].unwrap_or(0.0) as f32;
    ternary_nearest(a_n, a_p)
}
