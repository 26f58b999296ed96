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
    // Pass 1: per-sign counts and magnitude sums.
    let (mut np, mut sp, mut nn, mut sn) = (0usize, 0.0f64, 0usize, 0.0f64);
    for &x in w {
        if x > 0.0 {
            np += 1;
            sp += x as f64;
        } else if x < 0.0 {
            nn += 1;
            sn -= x as f64;
        }
    }
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
    let (mut kp, mut ap, mut kn, mut an) = (0usize, 0.0f64, 0usize, 0.0f64);
    for &x in w {
        if x > dp {
            kp += 1;
            ap += x as f64;
        } else if x < -dn {
            kn += 1;
            an -= x as f64;
        }
    }
    let a_p = if kp > 0 { (ap / kp as f64) as f32 } else { 0.0 };
    let a_n = if kn > 0 { (an / kn as f64) as f32 } else { 0.0 };
    ternary(-a_n, a_p, -dn, dp)
}
