//! `quat`: exact least-squares adaptive asymmetric quaternary with a zero level.
//!
//! Levels: 0 plus three non-zero levels split 2+1 between the signs, minimising
//! `sum (w - q(w))^2`. A weight never prefers a level of the other sign to 0, so each sign
//! is solved on its magnitudes independently: the one-level side as in `tern`, the two-level
//! side as an optimal 3-level quantizer with one level pinned at 0 (contiguous partition
//! `[0,t1) -> 0`, `[t1,t2) -> p1`, `[t2,inf) -> p2`). Thresholds are the midpoints of
//! adjacent levels.
//!
//! **Which sign gets two levels.** Both assignments are solved exactly. Without a previous
//! fit (`compress`, the first training batch) the one with the smaller error is kept. When
//! training refits the layer every batch, the previous fit's side is kept unless the other
//! side reduces the error from all-zero by more than [`SIDE_MARGIN`] more. The two options
//! are often within 1 % of each other, so the plain argmin switched sides many times per
//! epoch, reshaping the layer each time, and trained worse (`docs/train.md`). Given the
//! side, the levels are exact.
//!
//! | code | positive side gets two | negative side gets two |
//! |------|------------------------|------------------------|
//! | 0    | -a_n                   | -n2                    |
//! | 1    | 0                      | -n1                    |
//! | 2    | p1                     | 0                      |
//! | 3    | p2                     | +a_p                   |
//!
//! The zero level's code (1 or 2) therefore tells the side of a level table
//! ([`Side::of`]). 2 bits per weight (all 4 codes used) plus one level table per group.
use super::{fill, nearest};
use crate::solve::Sides;
use crate::Levels;

/// How much larger (relatively) the other side's error reduction must be before a refit
/// switches sides: 10 %. The near-ties seen in training are within about 1 %; a small
/// margin (2 %) still let layers switch a few times per run late in training.
pub const SIDE_MARGIN: f64 = 0.10;

/// The sign that holds a `quat` level table's two non-zero levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Levels `{-a_n, 0, p1, p2}`.
    Positive,
    /// Levels `{-n2, -n1, 0, a_p}`.
    Negative,
}

impl Side {
    /// The side of a `quat` level table: where its zero level sits (code 1: positive,
    /// code 2: negative). `None` when that is ambiguous (zero at both codes, as when one
    /// sign has no weights) or there is no zero at code 1 or 2.
    pub fn of(l: &Levels) -> Option<Side> {
        let v = l.values;
        if v[1] == 0.0 && v[2] != 0.0 {
            Some(Side::Positive)
        } else if v[2] == 0.0 && v[1] != 0.0 {
            Some(Side::Negative)
        } else {
            None
        }
    }
}

/// Fits the quaternary levels; `prev` is this group's previous fit, if any (see the module
/// docs for how it picks the side).
pub(crate) fn fit(w: &[f32], prev: Option<&Levels>) -> Levels {
    let s = Sides::new(w, 2);
    let (p1, p2) = (&s.pos[0], &s.pos[1]);
    let (n1, n2) = (&s.neg[0], &s.neg[1]);
    // Gain = error reduction from all-zero; larger is better.
    let (gain_pos, gain_neg) = (p2.gain + n1.gain, p1.gain + n2.gain);
    let side = match prev.and_then(Side::of) {
        // Ties go to the positive side so the result is deterministic.
        None if gain_pos >= gain_neg => Side::Positive,
        None => Side::Negative,
        Some(Side::Positive) if gain_neg > gain_pos * (1.0 + SIDE_MARGIN) => Side::Negative,
        Some(Side::Negative) if gain_pos > gain_neg * (1.0 + SIDE_MARGIN) => Side::Positive,
        Some(kept) => kept,
    };
    match side {
        Side::Positive => {
            let a_n = n1.means[0].unwrap_or(0.0) as f32;
            let p = fill(&p2.means, 0.0);
            nearest([-a_n, 0.0, p[0], p[1]])
        }
        Side::Negative => {
            let a_p = p1.means[0].unwrap_or(0.0) as f32;
            let n = fill(&n2.means, 0.0);
            nearest([-n[1], -n[0], 0.0, a_p])
        }
    }
}
