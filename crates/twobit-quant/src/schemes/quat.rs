//! `quat`: exact least-squares adaptive asymmetric quaternary with a zero level.
//!
//! Levels: 0 plus three non-zero levels split 2+1 between the signs, minimising
//! `sum (w - q(w))^2`. A weight never prefers a level of the other sign to 0, so each sign
//! is solved on its magnitudes independently: the one-level side as in `tern`, the two-level
//! side as an optimal 3-level quantizer with one level pinned at 0 (contiguous partition
//! `[0,t1) -> 0`, `[t1,t2) -> p1`, `[t2,inf) -> p2`). Both assignments of the two-level side
//! are tried and the smaller error kept. Thresholds are the midpoints of adjacent levels.
//!
//! | code | positive side gets two | negative side gets two |
//! |------|------------------------|------------------------|
//! | 0    | -a_n                   | -n2                    |
//! | 1    | 0                      | -n1                    |
//! | 2    | p1                     | 0                      |
//! | 3    | p2                     | +a_p                   |
//!
//! 2 bits per weight (all 4 codes used) plus one level table per group.
use super::{fill, nearest};
use crate::solve::Sides;
use crate::Levels;

/// Fits the exact quaternary levels.
pub(crate) fn fit(w: &[f32]) -> Levels {
    let s = Sides::new(w, 2);
    let (p1, p2) = (&s.pos[0], &s.pos[1]);
    let (n1, n2) = (&s.neg[0], &s.neg[1]);
    // Gain = error reduction from all-zero; larger is better. Prefer the positive side on
    // ties so the result is deterministic.
    if p2.gain + n1.gain >= p1.gain + n2.gain {
        let a_n = n1.means[0].unwrap_or(0.0) as f32;
        let p = fill(&p2.means, 0.0);
        nearest([-a_n, 0.0, p[0], p[1]])
    } else {
        let a_p = p1.means[0].unwrap_or(0.0) as f32;
        let n = fill(&n2.means, 0.0);
        nearest([-n[1], -n[0], 0.0, a_p])
    }
}
