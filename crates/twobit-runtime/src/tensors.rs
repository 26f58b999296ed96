//! Reading the file's tensors into runtime form, with every size checked.
use crate::{PackedMatrix, RuntimeError};
use twobit_format::{FloatDtype, FloatTensor, Model, PackedTensor, Tensor};

/// Looks a tensor up by name.
pub(crate) fn get<'a>(m: &'a Model, layer: &str, name: &str) -> Result<&'a Tensor, RuntimeError> {
    m.tensors
        .get(name)
        .ok_or_else(|| RuntimeError::MissingTensor {
            layer: layer.to_string(),
            name: name.to_string(),
        })
}

/// Decodes a float tensor's bytes to f32, checking the byte count and finiteness.
pub(crate) fn float_values(t: &FloatTensor, name: &str) -> Result<Vec<f32>, RuntimeError> {
    let numel = t
        .shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| RuntimeError::Shape(format!("`{name}`: shape overflows")))?;
    let size = match t.dtype {
        FloatDtype::F16 | FloatDtype::BF16 => 2,
        FloatDtype::F32 => 4,
        FloatDtype::F64 => 8,
    };
    if numel.checked_mul(size) != Some(t.data.len()) {
        return Err(RuntimeError::Shape(format!(
            "`{name}`: {} bytes for shape {:?} of {:?}",
            t.data.len(),
            t.shape,
            t.dtype
        )));
    }
    let v: Vec<f32> = match t.dtype {
        FloatDtype::F16 => t
            .data
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        FloatDtype::BF16 => t
            .data
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        FloatDtype::F32 => t
            .data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        FloatDtype::F64 => t
            .data
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
            .collect(),
    };
    if v.iter().any(|x| !x.is_finite()) {
        return Err(RuntimeError::NonFinite(format!("`{name}`")));
    }
    Ok(v)
}

/// A float vector of exactly `len` values (bias, batch-norm parameters).
pub(crate) fn float_vec(
    m: &Model,
    layer: &str,
    name: &str,
    len: usize,
) -> Result<Vec<f32>, RuntimeError> {
    match get(m, layer, name)? {
        Tensor::Float(t) => {
            let v = float_values(t, name)?;
            if v.len() != len {
                return Err(RuntimeError::Shape(format!(
                    "{layer}: `{name}` has {} values, expected {len}",
                    v.len()
                )));
            }
            Ok(v)
        }
        Tensor::Packed(_) => Err(RuntimeError::Unsupported(format!(
            "{layer}: `{name}` is 2-bit packed; only weights may be packed"
        ))),
        Tensor::Int(_) => Err(not_float(layer, name)),
    }
}

/// An integer tensor where a layer needs numbers to compute with (the file reader refuses
/// such an architecture; this keeps a hand-built model from reaching a kernel).
pub(crate) fn not_float(layer: &str, name: &str) -> RuntimeError {
    RuntimeError::Unsupported(format!("{layer}: `{name}` is an integer tensor"))
}

/// A layer's weights: packed 2-bit (one matrix per group, `rows/group` rows each), or
/// float `[rows, cols]` (groups' rows consecutive).
#[derive(Clone)]
pub(crate) enum Weights {
    Packed(Vec<PackedMatrix>),
    Float(Vec<f32>),
}

impl Weights {
    /// The weights expanded to f32, `[rows, cols]`.
    pub(crate) fn to_f32(&self) -> Vec<f32> {
        match self {
            Weights::Packed(ms) => ms.iter().flat_map(|m| m.dequantize()).collect(),
            Weights::Float(v) => v.clone(),
        }
    }

    /// Bytes held in memory (packed planes and coefficients, or 4 per float).
    pub(crate) fn bytes(&self) -> usize {
        match self {
            Weights::Packed(ms) => ms.iter().map(|m| m.weight_bytes()).sum(),
            Weights::Float(v) => v.len() * 4,
        }
    }
}

/// Reads a weight tensor with its shape as `groups` matrices of `shape[0]/groups` rows
/// (the caller checked that `groups` divides `shape[0]`).
pub(crate) fn weights(
    m: &Model,
    layer: &str,
    name: &str,
    groups: usize,
) -> Result<(Vec<usize>, Weights), RuntimeError> {
    match get(m, layer, name)? {
        Tensor::Packed(p) => Ok((
            p.shape.clone(),
            Weights::Packed(packed_matrices(p, name, groups)?),
        )),
        Tensor::Float(t) => Ok((t.shape.clone(), Weights::Float(float_values(t, name)?))),
        Tensor::Int(_) => Err(not_float(layer, name)),
    }
}

fn packed_matrices(
    p: &PackedTensor,
    name: &str,
    groups: usize,
) -> Result<Vec<PackedMatrix>, RuntimeError> {
    let rows = *p
        .shape
        .first()
        .ok_or_else(|| RuntimeError::Shape(format!("`{name}`: empty shape")))?;
    let numel = p
        .shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| RuntimeError::Shape(format!("`{name}`: shape overflows")))?;
    if rows == 0 || numel == 0 || groups == 0 || rows % groups != 0 {
        return Err(RuntimeError::Shape(format!(
            "`{name}`: shape {:?} is empty or not {groups} groups",
            p.shape
        )));
    }
    let nlevels = p.granularity.groups(&p.shape);
    if p.levels.len() != nlevels {
        return Err(RuntimeError::Shape(format!(
            "`{name}`: {} level tables, {} granularity needs {nlevels}",
            p.levels.len(),
            p.granularity
        )));
    }
    let err = |e: RuntimeError| RuntimeError::Shape(format!("`{name}`: {e}"));
    let cols = numel / rows;
    if groups == 1 {
        return Ok(vec![PackedMatrix::from_codes(
            rows, cols, &p.codes, &p.levels,
        )
        .map_err(err)?]);
    }
    if p.codes.len() != numel.div_ceil(4) {
        return Err(RuntimeError::Shape(format!(
            "`{name}`: {} code bytes for {numel} weights",
            p.codes.len()
        )));
    }
    // One matrix per group: its rows' codes, re-aligned to start at bit 0.
    let rg = rows / groups;
    (0..groups)
        .map(|g| {
            let (first, n) = (g * rg * cols, rg * cols);
            let mut codes = vec![0u8; n.div_ceil(4)];
            for i in 0..n {
                let j = first + i;
                let c = (p.codes[j / 4] >> (2 * (j % 4))) & 3;
                codes[i / 4] |= c << (2 * (i % 4));
            }
            let levels = if p.levels.len() == 1 {
                &p.levels[..]
            } else {
                &p.levels[g * rg..(g + 1) * rg]
            };
            PackedMatrix::from_codes(rg, cols, &codes, levels).map_err(err)
        })
        .collect()
}
