//! The `.twobit` file: packed 2-bit codes plus level tables, inside a valid safetensors file.
//!
//! (Layout diagram, limits and the numpy decoder: written in the format work; see docs/format.md.)
#![deny(missing_docs)]

pub mod arch;
pub mod pack;

pub use arch::{Arch, Layer, Normalize};

use std::collections::BTreeMap;
use std::path::Path;
use twobit_quant::{Granularity, Levels, Quantized, Scheme};

/// Format version written into every file.
pub const FORMAT_VERSION: u32 = 1;

/// Element type of a tensor kept in float.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FloatDtype {
    /// IEEE half.
    F16,
    /// bfloat16.
    BF16,
    /// f32.
    F32,
    /// f64.
    F64,
}

/// A tensor stored in float, with its original dtype and little-endian bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct FloatTensor {
    /// Element type as stored.
    pub dtype: FloatDtype,
    /// Shape.
    pub shape: Vec<usize>,
    /// Raw little-endian bytes.
    pub data: Vec<u8>,
}

impl FloatTensor {
    /// An f32 tensor.
    pub fn from_f32(shape: Vec<usize>, values: &[f32]) -> Self {
        let _ = (shape, values);
        todo!("format work")
    }
    /// The values converted to f32.
    pub fn to_f32(&self) -> Vec<f32> {
        todo!("format work")
    }
}

/// A quantized tensor as stored: packed codes (4 per byte) and level/threshold tables.
#[derive(Clone, Debug, PartialEq)]
pub struct PackedTensor {
    /// Scheme that produced it.
    pub scheme: Scheme,
    /// Per tensor or per channel.
    pub granularity: Granularity,
    /// Original shape.
    pub shape: Vec<usize>,
    /// `ceil(n/4)` bytes; weight `i` is in byte `i/4`, bits `2*(i%4)..2*(i%4)+2`.
    pub codes: Vec<u8>,
    /// One row per group.
    pub levels: Vec<Levels>,
}

impl PackedTensor {
    /// Packs a [`Quantized`] tensor.
    pub fn from_quantized(q: &Quantized) -> Self {
        let _ = q;
        todo!("format work")
    }
    /// Unpacks into a [`Quantized`] tensor (one code per weight).
    pub fn to_quantized(&self) -> Quantized {
        todo!("format work")
    }
    /// Number of weights.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    /// Decoded f32 values (bit-identical to `twobit_quant::dequantize`).
    pub fn dequantize(&self) -> Vec<f32> {
        todo!("format work")
    }
}

/// One named tensor of a model.
#[derive(Clone, Debug, PartialEq)]
pub enum Tensor {
    /// Quantized to 2 bits.
    Packed(PackedTensor),
    /// Kept in float.
    Float(FloatTensor),
}

/// A whole model: tensors by name, optional architecture, provenance metadata.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Model {
    /// Tensors by name (sorted).
    pub tensors: BTreeMap<String, Tensor>,
    /// The network, when the file came from training.
    pub arch: Option<Arch>,
    /// Free-form provenance (producer, command line, source file, ...), written as strings.
    pub provenance: BTreeMap<String, String>,
}

/// Why a file could not be read or written. One variant per failure.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// I/O failure, with the path.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Anything else (variants filled in by the format work).
    #[error("{0}")]
    Invalid(String),
}

impl Model {
    /// Serialises to bytes (a valid safetensors file).
    pub fn to_bytes(&self) -> Result<Vec<u8>, FormatError> {
        todo!("format work")
    }
    /// Parses and validates bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Model, FormatError> {
        let _ = bytes;
        todo!("format work")
    }
    /// Writes atomically (temporary file in the same directory, then rename).
    pub fn save(&self, path: &Path) -> Result<(), FormatError> {
        let _ = path;
        todo!("format work")
    }
    /// Memory-maps, validates and parses a file.
    pub fn load(path: &Path) -> Result<Model, FormatError> {
        let _ = path;
        todo!("format work")
    }
}
