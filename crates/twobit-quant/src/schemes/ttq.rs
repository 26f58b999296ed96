//! TTQ, Trained Ternary Quantization (Zhu et al. 2017).
//!
//! Threshold `t = 0.05 * max|w|`; levels `{-w_n, 0, +w_p}`. In training `w_p`, `w_n` are
//! learned per layer ([`levels`] builds the table from them); [`crate::fit_group`] uses the
//! least-squares scales for that threshold, `w_p = mean(w : w > t)`,
//! `w_n = mean(|w| : w < -t)` (0 when a side is empty), which is TTQ's initialisation.
//!
//! | code | level |
//! |------|-------|
//! | 0    | -w_n  |
//! | 1    | 0     |
//! | 2    | +w_p  |
//!
//! 2 bits per weight (3 codes used) plus one level table per group.
use super::ternary;
use crate::Levels;

/// TTQ's threshold `0.05 * max|w|` (0 for an empty slice).
pub fn threshold(w: &[f32]) -> f32 {
    0.05 * w.iter().fold(0.0f32, |m, x| m.max(x.abs()))
}

/// The level table for learned scales: values `{-wn, 0, wp}` (`wn` is the positive
/// magnitude of the negative level), thresholds `±threshold(w)`.
pub fn levels(w: &[f32], wp: f32, wn: f32) -> Levels {
    let t = threshold(w);
    ternary(-wn, wp, -t, t)
}

/// Least-squares scales for TTQ's threshold.
pub(crate) fn fit(w: &[f32]) -> Levels {
    let t = threshold(w);
    let (mut kp, mut ap, mut kn, mut an) = (0usize, 0.0f64, 0usize, 0.0f64);
    for &x in w {
        if x > t {
            kp += 1;
            ap += x as f64;
        } else if x < -t {
            kn += 1;
            an -= x as f64;
        }
    }
    let wp = if kp > 0 { (ap / kp as f64) as f32 } else { 0.0 };
    let wn = if kn > 0 { (an / kn as f64) as f32 } else { 0.0 };
    ternary(-wn, wp, -t, t)
}
