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
    }
}

/// A layer's weights as stored: packed 2-bit or float.
pub(crate) enum Weights {
    Packed(PackedMatrix),
    Float(Vec<f32>),
}

/// Reads a weight tensor with its shape; returns the weights as a `[shape[0], rest]` matrix.
pub(crate) fn weights(
    m: &Model,
    layer: &str,
    name: &str,
) -> Result<(Vec<usize>, Weights), RuntimeError> {
    match get(m, layer, name)? {
        Tensor::Packed(p) => Ok((p.shape.clone(), Weights::Packed(packed_matrix(p, name)?))),
        Tensor::Float(t) => Ok((t.shape.clone(), Weights::Float(float_values(t, name)?))),
    }
}

fn packed_matrix(p: &PackedTensor, name: &str) -> Result<PackedMatrix, RuntimeError> {
    let rows = *p
        .shape
        .first()
        .ok_or_else(|| RuntimeError::Shape(format!("`{name}`: empty shape")))?;
    let numel = p
        .shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| RuntimeError::Shape(format!("`{name}`: shape overflows")))?;
    if rows == 0 || numel == 0 {
        return Err(RuntimeError::Shape(format!(
            "`{name}`: empty shape {:?}",
            p.shape
        )));
    }
    let groups = p.granularity.groups(&p.shape);
    if p.levels.len() != groups {
        return Err(RuntimeError::Shape(format!(
            "`{name}`: {} level tables, {} granularity needs {groups}",
            p.levels.len(),
            p.granularity
        )));
    }
    PackedMatrix::from_codes(rows, numel / rows, &p.codes, &p.levels)
        .map_err(|e| RuntimeError::Shape(format!("`{name}`: {e}")))
}
