//! Invariants shared by the reader and the writer.
use crate::{
    Arch, FloatTensor, FormatError, IntDtype, IntTensor, Model, PackedTensor, Tensor, MAX_DIMS,
    MAX_ELEMENTS,
};
use twobit_quant::Levels;

/// Checked element count of a shape, within [`MAX_DIMS`] and [`MAX_ELEMENTS`].
pub(crate) fn numel(tensor: &str, shape: &[usize], min_dims: usize) -> Result<usize, FormatError> {
    if shape.len() < min_dims || shape.len() > MAX_DIMS {
        return Err(FormatError::BadRank {
            tensor: tensor.to_string(),
            dims: shape.len(),
            max: MAX_DIMS,
        });
    }
    let overflow = || FormatError::ShapeOverflow {
        tensor: tensor.to_string(),
        shape: shape.to_vec(),
        max: MAX_ELEMENTS,
    };
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(overflow)?;
    if n as u64 > MAX_ELEMENTS {
        return Err(overflow());
    }
    Ok(n)
}

/// Codes length, padding bits, level-table rows and ordering.
pub(crate) fn packed(name: &str, p: &PackedTensor) -> Result<(), FormatError> {
    let n = numel(name, &p.shape, 1)?;
    let expected = crate::pack::packed_len(n);
    if p.codes.len() != expected {
        return Err(FormatError::CodesLengthMismatch {
            tensor: name.to_string(),
            n,
            expected,
            actual: p.codes.len(),
        });
    }
    // Zero padding keeps the encoding canonical: one model, one byte string.
    if n % 4 != 0 {
        let last = p.codes[expected - 1];
        if last >> (2 * (n % 4)) != 0 {
            return Err(FormatError::CodesPadding {
                tensor: name.to_string(),
            });
        }
    }
    let groups = p.groups();
    if p.levels.len() != groups {
        return Err(FormatError::LevelTableShape {
            tensor: name.to_string(),
            table: "levels",
            expected: vec![groups, 4],
            actual: vec![p.levels.len(), 4],
        });
    }
    for (g, l) in p.levels.iter().enumerate() {
        levels(name, g, l)?;
    }
    Ok(())
}

/// Levels finite and ascending; thresholds not NaN and ascending (±inf allowed: ternary
/// schemes put +inf in the last threshold).
pub(crate) fn levels(name: &str, group: usize, l: &Levels) -> Result<(), FormatError> {
    let err_finite = |table| FormatError::NonFiniteLevels {
        tensor: name.to_string(),
        group,
        table,
    };
    let err_order = |table| FormatError::NonAscendingLevels {
        tensor: name.to_string(),
        group,
        table,
    };
    if l.values.iter().any(|v| !v.is_finite()) {
        return Err(err_finite("levels"));
    }
    if l.thresholds.iter().any(|v| v.is_nan()) {
        return Err(err_finite("thresholds"));
    }
    if l.values.windows(2).any(|w| w[0] > w[1]) {
        return Err(err_order("levels"));
    }
    if l.thresholds.windows(2).any(|w| w[0] > w[1]) {
        return Err(err_order("thresholds"));
    }
    Ok(())
}

/// Data length matches shape and dtype; BOOL bytes are 0 or 1.
pub(crate) fn int(name: &str, t: &IntTensor) -> Result<(), FormatError> {
    data_length(name, &t.shape, t.dtype.size(), t.data.len())?;
    if t.dtype == IntDtype::Bool {
        if let Some((index, &value)) = t.data.iter().enumerate().find(|(_, b)| **b > 1) {
            return Err(FormatError::BadBool {
                tensor: name.to_string(),
                index,
                value,
            });
        }
    }
    Ok(())
}

/// Data length matches shape and dtype.
pub(crate) fn float(name: &str, f: &FloatTensor) -> Result<(), FormatError> {
    data_length(name, &f.shape, f.dtype.size(), f.data.len())
}

/// `len` bytes are exactly `shape`'s elements of `size` bytes.
fn data_length(name: &str, shape: &[usize], size: usize, len: usize) -> Result<(), FormatError> {
    let expected =
        numel(name, shape, 0)?
            .checked_mul(size)
            .ok_or_else(|| FormatError::ShapeOverflow {
                tensor: name.to_string(),
                shape: shape.to_vec(),
                max: MAX_ELEMENTS,
            })?;
    if len != expected {
        return Err(FormatError::DataLength {
            tensor: name.to_string(),
            expected,
            actual: len,
        });
    }
    Ok(())
}

/// Everything: tensors, then the architecture against them.
pub(crate) fn model(m: &Model) -> Result<(), FormatError> {
    for (name, t) in &m.tensors {
        match t {
            Tensor::Packed(p) => packed(name, p)?,
            Tensor::Float(f) => float(name, f)?,
            Tensor::Int(t) => int(name, t)?,
        }
    }
    if let Some(arch) = &m.arch {
        self::arch(arch, m)?;
    }
    Ok(())
}

/// The architecture's graph is well formed against the model's tensors (every node's
/// inputs, tensors and shapes; see [`crate::graph::infer_shapes`]) and ends in `classes`
/// values per image.
pub(crate) fn arch(a: &Arch, m: &Model) -> Result<(), FormatError> {
    let inv = |s: String| Err(FormatError::ArchInvalid(s));
    if a.input.contains(&0) {
        return inv(format!("input shape {:?} has a zero dimension", a.input));
    }
    if a.classes == 0 {
        return inv("zero classes".into());
    }
    let c = a.input[0];
    if a.normalize.mean.len() != c || a.normalize.std.len() != c {
        return inv(format!(
            "normalize has {} means and {} stds for {c} input channels",
            a.normalize.mean.len(),
            a.normalize.std.len()
        ));
    }
    if a.normalize.mean.iter().any(|v| !v.is_finite())
        || a.normalize.std.iter().any(|v| !v.is_finite() || *v == 0.0)
    {
        return inv("normalize mean/std must be finite, std non-zero".into());
    }
    for (node, range) in &a.input_ranges {
        let weighted = a
            .nodes
            .iter()
            .any(|n| &n.name == node && n.op.weight().is_some());
        if !weighted {
            return inv(format!(
                "input range for `{node}`, which is not a conv or linear node"
            ));
        }
        if !(range.is_finite() && *range > 0.0) {
            return inv(format!(
                "input range of `{node}` is {range}, not finite and positive"
            ));
        }
    }
    let mut names = std::collections::HashSet::new();
    for n in &a.nodes {
        if !names.insert(n.name.as_str()) {
            return inv(format!("node name `{}` is used twice", n.name));
        }
        for t in n.op.tensors() {
            match m.tensors.get(t) {
                None => {
                    return Err(FormatError::ArchMissingTensor {
                        layer: n.name.clone(),
                        tensor: t.to_string(),
                    })
                }
                Some(Tensor::Int(i)) => {
                    return Err(FormatError::ArchIntTensor {
                        layer: n.name.clone(),
                        tensor: t.to_string(),
                        dtype: i.dtype.name().to_string(),
                    })
                }
                Some(_) => {}
            }
        }
    }
    let shapes = a
        .shapes(|t| m.tensors.get(t).map(Tensor::shape))
        .map_err(FormatError::ArchInvalid)?;
    match shapes.get(&a.output) {
        None => inv(format!(
            "output value `{}` is not produced by any node",
            a.output
        )),
        Some(s) if s.iter().product::<usize>() != a.classes => inv(format!(
            "the output `{}` has shape {s:?}, not {} classes",
            a.output, a.classes
        )),
        Some(_) => Ok(()),
    }
}
