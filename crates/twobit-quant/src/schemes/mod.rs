//! One file per scheme; each states its math, code table and bits per weight.

pub(crate) mod atn;
pub mod quat;
pub(crate) mod quat_free;
pub(crate) mod tern;
pub mod ttq;
pub(crate) mod twn;

use crate::Levels;

/// Ternary levels `{lo, 0, hi}` (lo <= 0 <= hi) with explicit thresholds; code 3 unused.
pub(crate) fn ternary(lo: f32, hi: f32, t_lo: f32, t_hi: f32) -> Levels {
    Levels {
        values: [clean(lo), 0.0, clean(hi), clean(hi)],
        thresholds: [t_lo, t_hi, f32::INFINITY],
    }
}

/// Four ascending levels with nearest-level (midpoint) thresholds.
pub(crate) fn nearest(values: [f32; 4]) -> Levels {
    let values = values.map(clean);
    Levels {
        values,
        thresholds: [
            mid(values[0], values[1]),
            mid(values[1], values[2]),
            mid(values[2], values[3]),
        ],
    }
}

/// Ternary levels `{-a_n, 0, a_p}` with midpoint thresholds.
pub(crate) fn ternary_nearest(a_n: f32, a_p: f32) -> Levels {
    let (lo, hi) = (clean(-a_n), clean(a_p));
    ternary(lo, hi, mid(lo, 0.0), mid(0.0, hi))
}

/// Midpoint, computed in f64 so it is monotone and lies in `[a, b]`.
#[inline]
pub(crate) fn mid(a: f32, b: f32) -> f32 {
    ((a as f64 + b as f64) * 0.5) as f32
}

/// Maps -0.0 to 0.0 so a zero level is one bit pattern.
#[inline]
fn clean(v: f32) -> f32 {
    if v == 0.0 {
        0.0
    } else {
        v
    }
}

/// Replaces empty segments (`None`) by the nearest non-empty neighbour (left first), so the
/// levels stay ascending; all empty gives `empty`.
pub(crate) fn fill(levels: &[Option<f64>], empty: f32) -> Vec<f32> {
    let mut out: Vec<Option<f32>> = levels.iter().map(|l| l.map(|v| v as f32)).collect();
    for i in 1..out.len() {
        if out[i].is_none() {
            out[i] = out[i - 1];
        }
    }
    for i in (0..out.len().saturating_sub(1)).rev() {
        if out[i].is_none() {
            out[i] = out[i + 1];
        }
    }
    out.into_iter().map(|v| v.unwrap_or(empty)).collect()
}

/// Magnitudes of the positive (`positive = true`) or negative weights.
pub(crate) fn side_magnitudes(w: &[f32], positive: bool) -> Vec<f32> {
    if positive {
        w.iter().copied().filter(|&x| x > 0.0).collect()
    } else {
        w.iter().filter(|&&x| x < 0.0).map(|&x| -x).collect()
    }
}

/// Count and sum of `w` over `w > lo`, and count and sum of `|w|` over `w < hi_neg`, in one
/// branch-free pass (selects instead of branches keep it memory-bound).
pub(crate) fn tails(w: &[f32], lo: f32, hi_neg: f32) -> (usize, f64, usize, f64) {
    const L: usize = 8;
    let (mut kp, mut sp, mut kn, mut sn) = ([0u32; L], [0.0f64; L], [0u32; L], [0.0f64; L]);
    let mut flush = (0usize, 0.0f64, 0usize, 0.0f64);
    // u32 lane counters are flushed well before they could wrap.
    for block in w.chunks(L << 20) {
        let chunks = block.chunks_exact(L);
        let rest = chunks.remainder();
        for c in chunks {
            for k in 0..L {
                let x = c[k];
                let (p, n) = (x > lo, x < hi_neg);
                kp[k] = kp[k].wrapping_add(p as u32);
                kn[k] = kn[k].wrapping_add(n as u32);
                sp[k] += if p { x as f64 } else { 0.0 };
                sn[k] -= if n { x as f64 } else { 0.0 };
            }
        }
        for &x in rest {
            if x > lo {
                flush.0 += 1;
                flush.1 += x as f64;
            } else if x < hi_neg {
                flush.2 += 1;
                flush.3 -= x as f64;
            }
        }
        for k in 0..L {
            flush.0 += kp[k] as usize;
            flush.2 += kn[k] as usize;
        }
        (kp, kn) = ([0; L], [0; L]);
    }
    (
        flush.0,
        flush.1 + sp.iter().sum::<f64>(),
        flush.2,
        flush.3 + sn.iter().sum::<f64>(),
    )
}
