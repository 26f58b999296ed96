//! The `.twobit` file: packed 2-bit codes plus level tables, inside a valid safetensors file.
//!
//! Any safetensors reader opens a `.twobit` file and lists its tensors; this crate adds the
//! meaning (which tensors are packed codes, how to decode them) and strict validation.
//!
//! # Layout
//!
//! ```text
//! offset 0        8                      8+N                                    end
//!        +--------+-----------------------+--------------------------------------+
//!        | N: u64 | JSON header (N bytes, | tensor data, back to back, in the    |
//!        | LE     | space-padded to 8)    | order of the header's data_offsets   |
//!        +--------+-----------------------+--------------------------------------+
//!
//! JSON header = {
//!   "__metadata__": {                          (all values are strings)
//!     "twobit.format":   "twobit",             magic
//!     "twobit.version":  "1",                  FORMAT_VERSION
//!     "twobit.producer": "twobit-format 0.1.0",
//!     "twobit.manifest": "{\"tensors\":{...},\"arch\":...}",
//!     "twobit.provenance.<key>": "<value>", ...
//!   },
//!   "<W>.codes":      {"dtype":"U8",  "shape":[ceil(n/4)], "data_offsets":[a,b]},
//!   "<W>.levels":     {"dtype":"F32", "shape":[groups,4],  ...},
//!   "<W>.thresholds": {"dtype":"F32", "shape":[groups,3],  ...},
//!   "<F>":            {"dtype":"F16"|"BF16"|"F32"|"F64", "shape":[...], ...}
//! }
//!
//! codes byte k:  bit 7 6 | 5 4 | 3 2 | 1 0
//!                 w[4k+3]|w[4k+2]|w[4k+1]|w[4k]      (row-major weight order)
//! ```
//!
//! A quantized tensor `W` of `n` weights is stored as three safetensors tensors; a tensor
//! kept in float is stored under its own name with its own dtype. Weight `i` of group `g`
//! (`g = 0` per tensor, `g = i / (n / shape[0])` per channel) decodes to
//! `levels[g][code_i]`; codes are "number of thresholds exceeded", so levels ascend with the
//! code. Ternary schemes never emit code 3 (`levels[g][3] == levels[g][2]`,
//! `thresholds[g][2] == +inf`); a code pointing at such an unused level is still valid.
//!
//! # Limits and validation
//!
//! Reading checks everything before trusting it: header length ([`MAX_HEADER_BYTES`]),
//! tensor count ([`MAX_TENSORS`]), rank ([`MAX_DIMS`]), element count ([`MAX_ELEMENTS`],
//! with checked multiplication), that every byte of the file belongs to exactly one tensor,
//! that codes hold exactly `ceil(n/4)` bytes with zero padding bits, that level tables have
//! `groups` rows of finite ascending levels and ascending (non-NaN) thresholds, that the
//! manifest and the stored tensors agree, and that every tensor the architecture names exists
//! with a plausible shape. Each failure has its own [`FormatError`] variant. Memory use of
//! [`Model::load`] is bounded by a small multiple of the file size.
//!
//! See `docs/format.md` for the metadata keys, bits/weight arithmetic and a numpy decoder.
#![deny(missing_docs)]

pub mod arch;
mod error;
mod manifest;
pub mod pack;
mod read;
mod validate;
mod write;

pub use arch::{Arch, Layer, Normalize};
pub use error::FormatError;
pub use read::check_container;
pub use write::write_atomic;

use std::collections::BTreeMap;
use std::path::Path;
use twobit_quant::{Granularity, Levels, Quantized, Scheme};

/// Format version written into every file.
pub const FORMAT_VERSION: u32 = 1;
/// Value of the `twobit.format` metadata key.
pub const MAGIC: &str = "twobit";
/// Largest JSON header accepted (and written), in bytes.
pub const MAX_HEADER_BYTES: usize = 16 << 20;
/// Largest number of stored (safetensors) tensors accepted.
pub const MAX_TENSORS: usize = 100_000;
/// Largest rank of a tensor.
pub const MAX_DIMS: usize = 8;
/// Largest number of elements in one tensor.
pub const MAX_ELEMENTS: u64 = 1 << 40;

/// Metadata key of the magic string.
pub const KEY_FORMAT: &str = "twobit.format";
/// Metadata key of the version.
pub const KEY_VERSION: &str = "twobit.version";
/// Metadata key of the producer.
pub const KEY_PRODUCER: &str = "twobit.producer";
/// Metadata key of the JSON manifest.
pub const KEY_MANIFEST: &str = "twobit.manifest";
/// Prefix of the provenance metadata keys.
pub const PROVENANCE_PREFIX: &str = "twobit.provenance.";

/// Suffix of a packed tensor's code bytes.
pub const CODES_SUFFIX: &str = ".codes";
/// Suffix of a packed tensor's level table.
pub const LEVELS_SUFFIX: &str = ".levels";
/// Suffix of a packed tensor's threshold table.
pub const THRESHOLDS_SUFFIX: &str = ".thresholds";

/// Element type of a tensor kept in float.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FloatDtype {
    /// IEEE half.
    F16,
    /// bfloat16.
    BF16,
    /// f32.
    #[default]
    F32,
    /// f64.
    F64,
}

impl FloatDtype {
    /// Every dtype.
    pub const ALL: [FloatDtype; 4] = [
        FloatDtype::F16,
        FloatDtype::BF16,
        FloatDtype::F32,
        FloatDtype::F64,
    ];

    /// The safetensors name ("F16", "BF16", "F32", "F64").
    pub fn name(self) -> &'static str {
        match self {
            FloatDtype::F16 => "F16",
            FloatDtype::BF16 => "BF16",
            FloatDtype::F32 => "F32",
            FloatDtype::F64 => "F64",
        }
    }

    /// Parses a safetensors name.
    pub fn from_name(s: &str) -> Option<FloatDtype> {
        FloatDtype::ALL.into_iter().find(|d| d.name() == s)
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            FloatDtype::F16 | FloatDtype::BF16 => 2,
            FloatDtype::F32 => 4,
            FloatDtype::F64 => 8,
        }
    }
}

impl std::fmt::Display for FloatDtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
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
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        FloatTensor {
            dtype: FloatDtype::F32,
            shape,
            data,
        }
    }

    /// A tensor of `dtype` holding `values` converted from f32 (rounded to nearest for
    /// f16/bf16).
    pub fn from_f32_as(dtype: FloatDtype, shape: Vec<usize>, values: &[f32]) -> Self {
        let data = match dtype {
            FloatDtype::F16 => values
                .iter()
                .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                .collect(),
            FloatDtype::BF16 => values
                .iter()
                .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
                .collect(),
            FloatDtype::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            FloatDtype::F64 => values
                .iter()
                .flat_map(|&v| f64::from(v).to_le_bytes())
                .collect(),
        };
        FloatTensor { dtype, shape, data }
    }

    /// Number of elements according to the shape.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The values converted to f32 (f64 rounds; a trailing partial element is ignored).
    pub fn to_f32(&self) -> Vec<f32> {
        let d = &self.data;
        match self.dtype {
            FloatDtype::F16 => d
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            FloatDtype::BF16 => d
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            FloatDtype::F32 => d
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            FloatDtype::F64 => d
                .chunks_exact(8)
                .map(|b| {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    f64::from_le_bytes(a) as f32
                })
                .collect(),
        }
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
    /// The dtype of the float tensor it was quantized from (informational; F32 by default).
    pub origin_dtype: FloatDtype,
}

impl PackedTensor {
    /// Packs a [`Quantized`] tensor (origin dtype F32; set `origin_dtype` afterwards if the
    /// source was another float type).
    pub fn from_quantized(q: &Quantized) -> Self {
        PackedTensor {
            scheme: q.scheme,
            granularity: q.granularity,
            shape: q.shape.clone(),
            codes: pack::pack(&q.codes),
            levels: q.levels.clone(),
            origin_dtype: FloatDtype::F32,
        }
    }

    /// Unpacks into a [`Quantized`] tensor (one code per weight).
    pub fn to_quantized(&self) -> Quantized {
        Quantized {
            scheme: self.scheme,
            granularity: self.granularity,
            shape: self.shape.clone(),
            codes: pack::unpack(&self.codes, self.numel()),
            levels: self.levels.clone(),
        }
    }

    /// Number of weights.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Number of level-table rows the shape and granularity call for.
    pub fn groups(&self) -> usize {
        self.granularity.groups(&self.shape)
    }

    /// Decoded f32 values (bit-identical to `twobit_quant::dequantize`): weight `i` of group
    /// `g` is `levels[g].values[code_i]`.
    pub fn dequantize(&self) -> Vec<f32> {
        let n = self.numel();
        let groups = self.levels.len().max(1);
        let per_group = if self.granularity == Granularity::Channel {
            (n / groups).max(1)
        } else {
            n.max(1)
        };
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let byte = self.codes.get(i / 4).copied().unwrap_or(0);
            let code = (byte >> (2 * (i % 4))) & 3;
            let g = (i / per_group).min(self.levels.len().saturating_sub(1));
            out.push(self.levels.get(g).map_or(0.0, |l| l.value(code)));
        }
        out
    }

    /// Fraction of weights whose code decodes to exactly 0.0.
    pub fn sparsity(&self) -> f64 {
        let n = self.numel();
        if n == 0 {
            return 0.0;
        }
        let zeros = self.dequantize().iter().filter(|v| **v == 0.0).count();
        zeros as f64 / n as f64
    }

    /// Bytes this tensor occupies in the file: codes plus both tables.
    pub fn stored_bytes(&self) -> usize {
        self.codes.len() + self.levels.len() * (4 + 3) * 4
    }

    /// Stored bits per weight: `2 + 8*(levels+thresholds bytes)/n` (plus padding).
    pub fn bits_per_weight(&self) -> f64 {
        let n = self.numel();
        if n == 0 {
            return 0.0;
        }
        self.stored_bytes() as f64 * 8.0 / n as f64
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

impl Tensor {
    /// The tensor's shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            Tensor::Packed(p) => &p.shape,
            Tensor::Float(f) => &f.shape,
        }
    }

    /// The values as f32 (packed tensors dequantized).
    pub fn to_f32(&self) -> Vec<f32> {
        match self {
            Tensor::Packed(p) => p.dequantize(),
            Tensor::Float(f) => f.to_f32(),
        }
    }

    /// Bytes of tensor data this tensor occupies in the file.
    pub fn stored_bytes(&self) -> usize {
        match self {
            Tensor::Packed(p) => p.stored_bytes(),
            Tensor::Float(f) => f.data.len(),
        }
    }
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

impl Model {
    /// Serialises to bytes (a valid safetensors file). Validates first, so nothing this
    /// crate would refuse to read is ever produced.
    pub fn to_bytes(&self) -> Result<Vec<u8>, FormatError> {
        write::to_bytes(self)
    }

    /// Parses and validates bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Model, FormatError> {
        read::from_bytes(bytes)
    }

    /// Writes atomically (temporary file in the same directory, then rename).
    pub fn save(&self, path: &Path) -> Result<(), FormatError> {
        write::save(self, path)
    }

    /// Memory-maps, validates and parses a file.
    pub fn load(path: &Path) -> Result<Model, FormatError> {
        read::load(path)
    }

    /// Checks every invariant the reader checks (shapes, codes, level tables, arch).
    pub fn validate(&self) -> Result<(), FormatError> {
        validate::model(self)
    }
}
