//! Quality figures the CLI prints.
use crate::{dequantize, Quantized};

/// Relative error `||w - q|| / ||w||` (0 when both are zero, +inf when only `w` is zero,
/// NaN when the lengths differ).
pub fn rel_error(w: &[f32], q: &Quantized) -> f64 {
    if w.len() != q.codes.len() {
        return f64::NAN;
    }
    let d = dequantize(q);
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (&x, &y) in w.iter().zip(&d) {
        let e = x as f64 - y as f64;
        num += e * e;
        den += x as f64 * x as f64;
    }
    if den == 0.0 {
        return if num == 0.0 { 0.0 } else { f64::INFINITY };
    }
    (num / den).sqrt()
}

/// Fraction of weights that decode to exactly 0 (0 for an empty tensor).
pub fn sparsity(q: &Quantized) -> f64 {
    if q.codes.is_empty() {
        return 0.0;
    }
    let zeros = dequantize(q).iter().filter(|&&v| v == 0.0).count();
    zeros as f64 / q.codes.len() as f64
}
