//! ATN, heuristic asymmetric ternary baseline: TWN's rule applied to each sign separately.
//!
//! `delta_p = 0.7 * mean(w : w > 0)`, `a_p = mean(w : w > delta_p)`;
//! `delta_n = 0.7 * mean(|w| : w < 0)`, `a_n = mean(|w| : w < -delta_n)`; an empty side gives
//! level 0. Levels `{-a_n, 0, +a_p}`, thresholds `-delta_n`, `+delta_p`.
//!
//! | code | level |
//! |------|-------|
//! | 0    | -a_n  |
//! | 1    | 0     |
//! | 2    | +a_p  |
//!
//! 2 bits per weight (3 codes used) plus one level table per group.
use super::ternary;
use crate::Levels;

/// Fits ATN's levels.
pub(crate) fn fit(w: &[f32]) -> Levels {
    // Pass 1: per-sign counts and magnitude sums (zeros belong to neither sign).
    let (np, sp, nn, sn) = super::tails(w, 0.0, 0.0);
    let dp = if np > 0 {
        (0.7 * sp / np as f64) as f32
    } else {
        0.0
    };
    let dn = if nn > 0 {
        (0.7 * sn / nn as f64) as f32
    } else {
        0.0
    };
    // Pass 2: means beyond each threshold.
    let (kp, ap, kn, an) = super::tails(w, dp, -dn);
    let a_p = if kp > 0 { (ap / kp as f64) as f32 } else { 0.0 };
    let a_n = if kn > 0 { (an / kn as f64) as f32 } else { 0.0 };
    ternary(-a_n, a_p, -dn, dp)
}
