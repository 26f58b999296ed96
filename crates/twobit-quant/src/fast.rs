//! Histogram path for large groups (temporary: delegates to the sort path).
use crate::solve::{Fit, Sides};

pub(crate) fn sides(w: &[f32], max_free: usize) -> Sides {
    Sides::by_sorting(w, max_free)
}

pub(crate) fn free4(w: &[f32]) -> Fit {
    crate::solve::free4_by_sorting(w)
}
