//! Decoding `TensorProto`s (initializers, Constant values) into dense constants.
use crate::proto::{dtype, TensorProto};
use crate::OnnxError;

/// Largest number of elements accepted in one tensor (the data must also be in the file).
pub(crate) const MAX_ELEMENTS: usize = 1 << 31;

/// A constant value: shape (full ONNX shape, batch axis included) and values.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Const {
    /// ONNX dims.
    pub dims: Vec<usize>,
    /// Values, row-major (integers and floats alike; f64 holds both exactly here).
    pub vals: Vec<f64>,
}

impl Const {
    /// A float constant.
    pub fn new(dims: Vec<usize>, vals: Vec<f64>) -> Const {
        Const { dims, vals }
    }

    /// The values as f32.
    pub fn f32s(&self) -> Vec<f32> {
        self.vals.iter().map(|&v| v as f32).collect()
    }

    /// The values as integers (rounded toward zero; used for shapes and pads).
    pub fn ints(&self) -> Vec<i64> {
        self.vals.iter().map(|&v| v as i64).collect()
    }

    /// The single value of a one-element constant.
    pub fn scalar(&self) -> Option<f64> {
        match self.vals.as_slice() {
            [v] => Some(*v),
            _ => None,
        }
    }
}

/// Checked element count of ONNX dims.
pub(crate) fn dims_numel(name: &str, dims: &[i64]) -> Result<(Vec<usize>, usize), OnnxError> {
    let bad = |detail: String| OnnxError::BadTensor {
        name: name.to_string(),
        detail,
    };
    let mut out = Vec::with_capacity(dims.len().min(16));
    let mut n = 1usize;
    if dims.len() > 16 {
        return Err(bad(format!("rank {} is too large", dims.len())));
    }
    for &d in dims {
        let d = usize::try_from(d).map_err(|_| bad(format!("negative dimension in {dims:?}")))?;
        n = n
            .checked_mul(d)
            .filter(|&n| n <= MAX_ELEMENTS)
            .ok_or_else(|| bad(format!("shape {dims:?} is too large")))?;
        out.push(d);
    }
    Ok((out, n))
}

/// Decodes a tensor held inside the file.
pub(crate) fn decode(t: &TensorProto) -> Result<Const, OnnxError> {
    let name = t.name.as_str();
    if t.data_location == 1 || !t.external_data.is_empty() {
        return Err(OnnxError::ExternalData(name.to_string()));
    }
    let (dims, n) = dims_numel(name, &t.dims)?;
    let bad = |detail: String| OnnxError::BadTensor {
        name: name.to_string(),
        detail,
    };
    let raw = &t.raw_data;
    let count = |len: usize, what: &str| {
        if len == n {
            Ok(())
        } else {
            Err(bad(format!(
                "{what} holds {len} values, the shape {dims:?} needs {n}"
            )))
        }
    };
    let vals: Vec<f64> = match t.data_type {
        dtype::FLOAT if !raw.is_empty() => {
            count(raw.len() / 4, "raw_data")?;
            if !raw.len().is_multiple_of(4) {
                return Err(bad("raw_data length is not a multiple of 4".into()));
            }
            raw.chunks_exact(4)
                .map(|b| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
                .collect()
        }
        dtype::FLOAT => {
            count(t.float_data.len(), "float_data")?;
            t.float_data.iter().map(|&v| f64::from(v)).collect()
        }
        dtype::DOUBLE if !raw.is_empty() => {
            count(raw.len() / 8, "raw_data")?;
            if !raw.len().is_multiple_of(8) {
                return Err(bad("raw_data length is not a multiple of 8".into()));
            }
            raw.chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
                .collect()
        }
        dtype::DOUBLE => {
            count(t.double_data.len(), "double_data")?;
            t.double_data.clone()
        }
        dtype::FLOAT16 if !raw.is_empty() => {
            count(raw.len() / 2, "raw_data")?;
            if !raw.len().is_multiple_of(2) {
                return Err(bad("raw_data length is not a multiple of 2".into()));
            }
            raw.chunks_exact(2)
                .map(|b| f64::from(half::f16::from_le_bytes([b[0], b[1]]).to_f32()))
                .collect()
        }
        dtype::FLOAT16 => {
            count(t.int32_data.len(), "int32_data")?;
            t.int32_data
                .iter()
                .map(|&v| f64::from(half::f16::from_bits(v as u16).to_f32()))
                .collect()
        }
        dtype::INT64 if !raw.is_empty() => {
            count(raw.len() / 8, "raw_data")?;
            if !raw.len().is_multiple_of(8) {
                return Err(bad("raw_data length is not a multiple of 8".into()));
            }
            raw.chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f64)
                .collect()
        }
        dtype::INT64 => {
            count(t.int64_data.len(), "int64_data")?;
            t.int64_data.iter().map(|&v| v as f64).collect()
        }
        dtype::INT32 if !raw.is_empty() => {
            count(raw.len() / 4, "raw_data")?;
            if !raw.len().is_multiple_of(4) {
                return Err(bad("raw_data length is not a multiple of 4".into()));
            }
            raw.chunks_exact(4)
                .map(|b| f64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])))
                .collect()
        }
        dtype::INT32 => {
            count(t.int32_data.len(), "int32_data")?;
            t.int32_data.iter().map(|&v| f64::from(v)).collect()
        }
        other => {
            return Err(bad(format!(
                "element type {other} is not supported (float, double, float16, int32, int64)"
            )))
        }
    };
    Ok(Const { dims, vals })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_and_typed_data_decode_alike() {
        let mut t = TensorProto {
            name: "w".into(),
            dims: vec![2],
            data_type: dtype::FLOAT,
            float_data: vec![1.5, -2.0],
            ..Default::default()
        };
        let typed = decode(&t).unwrap();
        t.float_data.clear();
        t.raw_data = [1.5f32, -2.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(decode(&t).unwrap(), typed);
        t.raw_data.pop();
        assert!(matches!(decode(&t), Err(OnnxError::BadTensor { .. })));
    }

    #[test]
    fn external_data_and_bad_shapes_are_refused() {
        let t = TensorProto {
            name: "w".into(),
            data_location: 1,
            ..Default::default()
        };
        assert!(matches!(decode(&t), Err(OnnxError::ExternalData(n)) if n == "w"));
        let t = TensorProto {
            name: "w".into(),
            dims: vec![1 << 40, 1 << 40],
            data_type: dtype::FLOAT,
            ..Default::default()
        };
        assert!(matches!(decode(&t), Err(OnnxError::BadTensor { .. })));
        let t = TensorProto {
            dims: vec![-1],
            data_type: dtype::INT64,
            ..Default::default()
        };
        assert!(decode(&t).is_err());
    }

    #[test]
    fn integer_tensors() {
        let t = TensorProto {
            dims: vec![2],
            data_type: dtype::INT64,
            int64_data: vec![-1, 10],
            ..Default::default()
        };
        assert_eq!(decode(&t).unwrap().ints(), vec![-1, 10]);
    }
}
