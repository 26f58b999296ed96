//! Adaptive asymmetric 2-bit weight quantizers.
//!
//! Pure math on `&[f32]`, no ML framework. Every scheme maps a *group* of weights (a whole
//! tensor, or one output channel = one index of axis 0) to a [`Levels`] row: four ascending
//! level values and three ascending thresholds. A weight's 2-bit code is the number of
//! thresholds it exceeds, so code 0 is always the smallest level; decoding is
//! `levels.values[code]`. Training (fake quantization) and export both go through
//! [`quantize_after`] / [`fake_quantize`], so a trained model and its file agree bit for bit.
//!
//! Training refits every batch. The `*_after` functions and [`fake_quantize`] take the
//! previous fit's level rows so a scheme can keep a discrete choice stable across refits;
//! only `quat` uses them (which sign gets two levels, see [`quat`]). Without them
//! ([`quantize`], [`fit_group`]) every scheme is the plain fit of the weights alone.
//!
//! | scheme      | levels                         | rule                                   |
//! |-------------|--------------------------------|----------------------------------------|
//! | `twn`       | `{-a, 0, a}`                   | Li et al. 2016, `delta = 0.7 mean|w|`  |
//! | `atn`       | `{-a_n, 0, a_p}`               | TWN's rule per sign (heuristic)        |
//! | `ttq`       | `{-w_n, 0, w_p}`               | Zhu et al. 2017, `t = 0.05 max|w|`     |
//! | `tern`      | `{-a_n, 0, a_p}`               | exact least squares                    |
//! | `quat`      | 0 + 3 levels split 2+1 by sign | exact least squares                    |
//! | `quat-free` | 4 free levels                  | exact least squares (1-D 4-means)      |
//!
//! The exact schemes are optimal up to floating-point summation order: small groups are
//! sorted and solved by dynamic programming; groups of 2048+ weights use a histogram with
//! provable bounds and refine only where an optimal split can lie (see `fast.rs`), which
//! keeps them within a small factor of TWN's cost (`cargo run --release -p twobit-quant
//! --example ratios`).
//!
//! [`calibrate`] fits codes and levels to a layer's *output* error instead, given the Gram
//! matrix of its inputs from calibration data (GPTQ-style codes, exactly refitted levels).
#![deny(missing_docs)]

pub mod calibrate;
mod error;
mod exact;
mod fast;
mod levels;
mod metrics;
mod scheme;
mod schemes;
mod solve;

pub use calibrate::{quantize_calibrated, CalibOptions, CalibReport, Gram};
pub use error::QuantError;
pub use levels::Levels;
pub use metrics::{rel_error, sparsity};
pub use scheme::{Granularity, Scheme};
pub use schemes::{quat, ttq};

use rayon::prelude::*;

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
    fit_group_after(scheme, w, None)
}

/// [`fit_group`] given this group's previous fit (`quat` keeps its side, see [`quat`]).
pub fn fit_group_after(scheme: Scheme, w: &[f32], prev: Option<&Levels>) -> Levels {
    debug_assert!(
        w.iter().all(|x| x.is_finite()),
        "fit_group needs finite weights"
    );
    match scheme {
        Scheme::Twn => schemes::twn::fit(w),
        Scheme::Atn => schemes::atn::fit(w),
        Scheme::Ttq => schemes::ttq::fit(w),
        Scheme::Tern => schemes::tern::fit(w),
        Scheme::Quat => schemes::quat::fit(w, prev),
        Scheme::QuatFree => schemes::quat_free::fit(w),
    }
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
    quantize_after(w, shape, scheme, granularity, None)
}

/// [`quantize`] given the tensor's previous fit, one level row per group (training's
/// evaluation and export, so they agree with the batches before them).
///
/// Errors as [`quantize`], and when `prev` has the wrong number of rows.
pub fn quantize_after(
    w: &[f32],
    shape: &[usize],
    scheme: Scheme,
    granularity: Granularity,
    prev: Option<&[Levels]>,
) -> Result<Quantized, QuantError> {
    let group = validate(w, shape, granularity)?;
    let levels = fit_all(w, group, scheme, prev)?;
    Ok(encode(w, shape, scheme, granularity, group, levels))
}

/// Writes `levels[code(w)]` for every weight into `out` (QAT's forward weights) and returns
/// the per-group levels. The values are bit-identical to
/// `dequantize(quantize_after(.., prev))`; pass the returned levels as `prev` next batch.
pub fn fake_quantize(
    w: &[f32],
    shape: &[usize],
    scheme: Scheme,
    granularity: Granularity,
    prev: Option<&[Levels]>,
    out: &mut [f32],
) -> Result<Vec<Levels>, QuantError> {
    let group = validate(w, shape, granularity)?;
    if out.len() != w.len() {
        return Err(QuantError::OutputLength {
            expected: w.len(),
            actual: out.len(),
        });
    }
    let levels = fit_all(w, group, scheme, prev)?;
    w.par_chunks(group)
        .zip(out.par_chunks_mut(group))
        .zip(levels.par_iter())
        .for_each(|((w, o), l)| {
            for (o, &x) in o.iter_mut().zip(w) {
                *o = l.value(l.code(x));
            }
        });
    Ok(levels)
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
    let group = validate(w, shape, granularity)?;
    let groups = w.len() / group;
    if levels.len() != groups {
        return Err(QuantError::LevelCount {
            expected: groups,
            actual: levels.len(),
        });
    }
    if let Some(i) = levels.iter().position(|l| !valid_levels(l)) {
        return Err(QuantError::BadLevels { group: i });
    }
    Ok(encode(w, shape, scheme, granularity, group, levels))
}

/// Expands codes back to floats: `levels[group(i)].values[codes[i]]`.
pub fn dequantize(q: &Quantized) -> Vec<f32> {
    let groups = q.levels.len().max(1);
    let group = q.codes.len().div_ceil(groups).max(1);
    let mut out = vec![0.0f32; q.codes.len()];
    out.par_chunks_mut(group)
        .zip(q.codes.par_chunks(group))
        .zip(q.levels.par_iter())
        .for_each(|((o, c), l)| {
            for (o, &c) in o.iter_mut().zip(c) {
                *o = l.value(c);
            }
        });
    out
}

/// Checks data and shape; returns the group length.
fn validate(w: &[f32], shape: &[usize], granularity: Granularity) -> Result<usize, QuantError> {
    let expected: usize = shape.iter().product();
    if shape.is_empty() || expected == 0 {
        return Err(QuantError::Empty(shape.to_vec()));
    }
    if expected != w.len() {
        return Err(QuantError::ShapeMismatch {
            shape: shape.to_vec(),
            expected,
            actual: w.len(),
        });
    }
    if let Some(index) = w.iter().position(|x| !x.is_finite()) {
        return Err(QuantError::NonFinite {
            index,
            value: w[index],
        });
    }
    Ok(w.len() / granularity.groups(shape))
}

/// Levels must be finite (thresholds may be +inf) and ascending to encode by counting.
fn valid_levels(l: &Levels) -> bool {
    l.values.iter().all(|v| v.is_finite())
        && l.thresholds.iter().all(|t| !t.is_nan())
        && l.values.windows(2).all(|p| p[0] <= p[1])
        && l.thresholds.windows(2).all(|p| p[0] <= p[1])
}

/// Fits every group (in parallel for per-channel), each after its previous row if given.
fn fit_all(
    w: &[f32],
    group: usize,
    scheme: Scheme,
    prev: Option<&[Levels]>,
) -> Result<Vec<Levels>, QuantError> {
    let groups = w.len() / group;
    if let Some(p) = prev.filter(|p| p.len() != groups) {
        return Err(QuantError::LevelCount {
            expected: groups,
            actual: p.len(),
        });
    }
    Ok(w.par_chunks(group)
        .enumerate()
        .map(|(i, g)| fit_group_after(scheme, g, prev.map(|p| &p[i])))
        .collect())
}

/// Encodes every weight with its group's levels.
fn encode(
    w: &[f32],
    shape: &[usize],
    scheme: Scheme,
    granularity: Granularity,
    group: usize,
    levels: Vec<Levels>,
) -> Quantized {
    let mut codes = vec![0u8; w.len()];
    codes
        .par_chunks_mut(group)
        .zip(w.par_chunks(group))
        .zip(levels.par_iter())
        .for_each(|((c, w), l)| encode_group(w, l, c));
    Quantized {
        scheme,
        granularity,
        shape: shape.to_vec(),
        codes,
        levels,
    }
}

/// `codes[i] = l.code(w[i])`, written branch-free so it vectorises.
#[inline]
fn encode_group(w: &[f32], l: &Levels, codes: &mut [u8]) {
    let [t0, t1, t2] = l.thresholds;
    for (c, &x) in codes.iter_mut().zip(w) {
        // wrapping_add: release builds keep overflow checks, which would block SIMD here.
        *c = ((x > t0) as u8)
            .wrapping_add((x > t1) as u8)
            .wrapping_add((x > t2) as u8);
    }
}
