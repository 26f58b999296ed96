//! TWN, Ternary Weight Networks (Li et al. 2016), symmetric baseline.
//!
//! `delta = 0.7 * mean|w|`, `a = mean(|w| : |w| > delta)` (0 when none);
//! levels `{-a, 0, +a}`, thresholds `-delta`, `+delta`.
//!
//! | code | level |
//! |------|-------|
//! | 0    | -a    |
//! | 1    | 0     |
//! | 2    | +a    |
//!
//! 2 bits per weight (3 codes used) plus one level table per group.
use super::ternary;
use crate::Levels;

/// Fits TWN's levels.
pub(crate) fn fit(w: &[f32]) -> Levels {
    let mean_abs = sum_abs(w) / w.len().max(1) as f64;
    let delta = (0.7 * mean_abs) as f32;
    let (n, s) = sum_above(w, delta);
    let a = if n > 0 { (s / n as f64) as f32 } else { 0.0 };
    ternary(-a, a, -delta, delta)
}

/// `sum |w|` with independent accumulators (keeps the pass memory-bound).
fn sum_abs(w: &[f32]) -> f64 {
    let mut acc = [0.0f64; 4];
    let chunks = w.chunks_exact(4);
    let rest = chunks.remainder();
    for c in chunks {
        for k in 0..4 {
            acc[k] += c[k].abs() as f64;
        }
    }
    let tail: f64 = rest.iter().map(|x| x.abs() as f64).sum();
    acc.iter().sum::<f64>() + tail
}

/// Count and sum of `|w|` over `|w| > delta`.
fn sum_above(w: &[f32], delta: f32) -> (usize, f64) {
    let mut acc = [0.0f64; 4];
    let mut cnt = [0usize; 4];
    let chunks = w.chunks_exact(4);
    let rest = chunks.remainder();
    for c in chunks {
        for k in 0..4 {
            let a = c[k].abs();
            let hit = a > delta;
            cnt[k] = cnt[k].wrapping_add(hit as usize);
            acc[k] += if hit { a as f64 } else { 0.0 };
        }
    }
    let (mut n, mut s) = (cnt.iter().sum::<usize>(), acc.iter().sum::<f64>());
    for &x in rest {
        if x.abs() > delta {
            n += 1;
            s += x.abs() as f64;
        }
    }
    (n, s)
}
