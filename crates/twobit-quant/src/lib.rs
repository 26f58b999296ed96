//! Adaptive asymmetric 2-bit weight quantizers.
//!
//! Pure math on `&[f32]`, no ML framework. Every scheme maps a *group* of weights (a whole
//! tensor, or one output channel = one index of axis 0) to a [`Levels`] row: four ascending
//! level values and three ascending thresholds. A weight's 2-bit code is the number of
//! thresholds it exceeds, so code 0 is always the smallest level; decoding is
//! `levels.values[code]`. Training (fake quantization) and export both go through
//! [`quantize`] / [`fake_quantize`], so a trained model and its file agree bit for bit.
#![deny(missing_docs)]

mod error;
mod levels;
mod scheme;

pub use error::QuantError;
pub use levels::Levels;
pub use scheme::{Granularity, Scheme};

/// A quantized tensor: one unpacked 2-bit code per weight (values 0..=3) and one [`Levels`]
/// row per group.
#[derive(Clone, Debug, PartialEq)]
pub struct Quantized {
    /// The scheme that produced the levels.
    pub scheme: Scheme,
    /// Per tensor or per output channel.
    pub granularity: Granularity,
    /// Tensor shape (row-major); axis 0 is the output channel.
    pub shape: Vec<usize>,
    /// One code per weight, row-major, each in `0..=3`.
    pub codes: Vec<u8>,
    /// One row per group (`1` for per-tensor, `shape[0]` for per-channel).
    pub levels: Vec<Levels>,
}

/// Fits the scheme's levels to one group of weights. The weights must be finite
/// (checked by [`quantize`]; here a debug assertion only).
pub fn fit_group(scheme: Scheme, w: &[f32]) -> Levels {
    let _ = (scheme, w);
    todo!("implemented in the quantizer work")
}

/// Quantizes a tensor: fits levels per group and encodes every weight.
///
/// Errors on NaN/Inf weights, an empty shape, or a shape whose product differs from `w.len()`.
pub fn quantize(
    w: &[f32],
    shape: &[usize],
    scheme: Scheme,
    granularity: Granularity,
) -> Result<Quantized, QuantError> {
    let _ = (w, shape, scheme, granularity);
    todo!("implemented in the quantizer work")
}

/// Writes `levels[code(w)]` for every weight into `out` (QAT's forward weights) and returns
/// the per-group levels. The values are bit-identical to `dequantize(quantize(..))`.
pub fn fake_quantize(
    w: &[f32],
    shape: &[usize],
    scheme: Scheme,
    granularity: Granularity,
    out: &mut [f32],
) -> Result<Vec<Levels>, QuantError> {
    let _ = (w, shape, scheme, granularity, out);
    todo!("implemented in the quantizer work")
}

/// Encodes a tensor with levels chosen elsewhere (TTQ's learned scales at export), one row
/// per group. The result records `scheme` as given.
pub fn quantize_with_levels(
    w: &[f32],
    shape: &[usize],
    scheme: Scheme,
    granularity: Granularity,
    levels: Vec<Levels>,
) -> Result<Quantized, QuantError> {
    let _ = (w, shape, scheme, granularity, levels);
    todo!("implemented in the quantizer work")
}

/// Expands codes back to floats: `levels[group(i)].values[codes[i]]`.
pub fn dequantize(q: &Quantized) -> Vec<f32> {
    let _ = q;
    todo!("implemented in the quantizer work")
}
