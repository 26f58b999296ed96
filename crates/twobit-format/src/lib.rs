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
//!     "twobit.version":  "2" | "3",            3 only with an "int" tensor (1 is still read)
//!     "twobit.producer": "twobit-format 0.1.0",
//!     "twobit.manifest": "{\"tensors\":{...},\"arch\":...}",
//!     "twobit.provenance.<key>": "<value>", ...
//!   },
//!   "<W>.codes":      {"dtype":"U8", "shape":[bytes], ...}       bytes: see packing below
//!   "<W>.levels":     {"dtype":"F32"|"F16", "shape":[groups,4 or 3], ...},
//!   "<W>.thresholds": {"dtype":"F32"|"F16", "shape":[groups,3 or 2], ...},
//!   "<F>":            {"dtype":"F16"|"BF16"|"F32"|"F64", "shape":[...], ...}
//!   "<I>":            {"dtype":"BOOL"|"U8"|"I8"|...|"I64", "shape":[...], ...}  (version 3)
//! }
//!
//! manifest entry of F: {"kind":"float", "dtype", "shape"}; of I: {"kind":"int", "dtype", "shape"}
//! manifest entry of W: {"kind":"packed", ..., "packing":"base2"|"base3"|"rans",
//!                       "table_dtype":"F32"|"F16", "table_layout":"full"|"ternary"}
//!                      (absent fields, as in version 1: base2, F32, full)
//!
//! packing base2, ceil(n/4) bytes:  byte k = bits 7 6 | 5 4 | 3 2 | 1 0
//!                                            w[4k+3]|w[4k+2]|w[4k+1]|w[4k]
//! packing base3, ceil(n/5) bytes:  byte k = w[5k] + 3 w[5k+1] + 9 w[5k+2] + 27 w[5k+3]
//!                                           + 81 w[5k+4]   (< 243; codes 0..=2 only)
//! packing rans, any length:        [mask|state len][12-bit freqs][state][bytes...]
//!                                  (static rANS, see [`rans`])
//! table_layout ternary:            levels [g,3] = levels[..3], thresholds [g,2];
//!                                  levels[3] = levels[2], thresholds[2] = +inf implied
//! (row-major weight order; padding bits / base-3 digits after the last weight are zero)
//! ```
//!
//! A quantized tensor `W` of `n` weights is stored as three safetensors tensors; a tensor
//! kept in float is stored under its own name with its own dtype. Weight `i` of group `g`
//! (`g = 0` per tensor, `g = i / (n / shape[0])` per channel) decodes to
//! `levels[g][code_i]`; codes are "number of thresholds exceeded", so levels ascend with the
//! code. Ternary schemes never emit code 3 (`levels[g][3] == levels[g][2]`,
//! `thresholds[g][2] == +inf`); a code pointing at such an unused level is still valid.
//!
//! In memory a [`PackedTensor`] always holds the base-2 codes and f32 tables (what the
//! runtime computes on); the stored encoding is chosen when writing ([`WriteOptions`]: by
//! default base 3 when no code is 3, f16 tables when every value is exactly an f16, the
//! ternary table layout when it applies; rANS on request) and decoded when reading. Every
//! encoding is lossless; [`Model::from_bytes_with_layout`] reports which one a file uses.
//!
//! # Limits and validation
//!
//! Reading checks everything before trusting it: header length ([`MAX_HEADER_BYTES`]),
//! tensor count ([`MAX_TENSORS`]), rank ([`MAX_DIMS`]), element count ([`MAX_ELEMENTS`],
//! with checked multiplication), that every byte of the file belongs to exactly one tensor,
//! that codes hold exactly `ceil(n/4)` (base 2) or `ceil(n/5)` (base 3, every byte below
//! 243) bytes with zero padding, that a rANS stream has a well-formed header, declares at
//! most [`rans::MAX_CODES_PER_BYTE`] codes per byte and decodes to exactly `n` codes, that
//! the encoding fields are known (and, in a version-1 file, absent or the version-1 layout),
//! that level tables have `groups` rows of the declared dtype and layout, finite ascending
//! levels and ascending (non-NaN) thresholds, that the manifest and the stored tensors agree,
//! and that every tensor the architecture names exists with a plausible shape. Each failure
//! has its own [`FormatError`] variant. Memory use of [`Model::load`] is bounded by a fixed
//! multiple of the file size (at most 64 bytes of 2-bit codes per rANS byte).
//!
//! See `docs/format.md` for the metadata keys, bits/weight arithmetic and a numpy decoder.
#![deny(missing_docs)]

pub mod arch;
pub mod base3;
pub mod encoding;
pub mod enumerative;
mod error;
pub mod graph;
mod manifest;
pub mod pack;
pub mod rans;
mod read;
mod validate;
mod write;

pub use arch::{Arch, Builder, Layer, Normalize, GRAPH_VERSION};
pub use encoding::{
    channel_rule, ChannelRule, Encoding, Packing, StoredSize, TableDtype, TableLayout, WriteOptions,
};
pub use error::FormatError;
pub use graph::{Node, Op};
pub use read::check_container;
pub use write::{output_target, write_atomic};

use std::collections::BTreeMap;
use std::path::Path;

/// How each packed tensor of a file is stored, by tensor name (see
/// [`Model::from_bytes_with_layout`]).
pub type Layout = BTreeMap<String, StoredSize>;
use twobit_quant::{Granularity, Levels, Quantized, Scheme};

/// Newest format version written and read. Version 2 stores the network as a graph of
/// nodes ([`graph`]); version 3 adds non-float tensors ([`IntTensor`]) and is written only
/// by a model that holds one, so every other file stays readable by version-2 readers.
/// Version-1 files (a layer list) are still read.
pub const FORMAT_VERSION: u32 = 3;
/// Format version of a file without non-float tensors.
pub const GRAPH_FORMAT_VERSION: u32 = 2;
/// Oldest format version still read.
pub const MIN_FORMAT_VERSION: u32 = 1;
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

/// Element type of a non-float tensor carried through unchanged (for example PyTorch's
/// `num_batches_tracked`, an I64): twobit never computes with it, but a file converted from
/// safetensors keeps every tensor of its input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntDtype {
    /// bool, one byte per element, 0 or 1.
    Bool,
    /// u8.
    U8,
    /// i8.
    I8,
    /// u16.
    U16,
    /// i16.
    I16,
    /// u32.
    U32,
    /// i32.
    I32,
    /// u64.
    U64,
    /// i64.
    I64,
}

impl IntDtype {
    /// Every dtype.
    pub const ALL: [IntDtype; 9] = [
        IntDtype::Bool,
        IntDtype::U8,
        IntDtype::I8,
        IntDtype::U16,
        IntDtype::I16,
        IntDtype::U32,
        IntDtype::I32,
        IntDtype::U64,
        IntDtype::I64,
    ];

    /// The safetensors name ("BOOL", "U8", ..., "I64").
    pub fn name(self) -> &'static str {
        match self {
            IntDtype::Bool => "BOOL",
            IntDtype::U8 => "U8",
            IntDtype::I8 => "I8",
            IntDtype::U16 => "U16",
            IntDtype::I16 => "I16",
            IntDtype::U32 => "U32",
            IntDtype::I32 => "I32",
            IntDtype::U64 => "U64",
            IntDtype::I64 => "I64",
        }
    }

    /// Parses a safetensors name.
    pub fn from_name(s: &str) -> Option<IntDtype> {
        IntDtype::ALL.into_iter().find(|d| d.name() == s)
    }

    /// The safetensors dtype.
    pub fn safetensors(self) -> safetensors::Dtype {
        use safetensors::Dtype as D;
        match self {
            IntDtype::Bool => D::BOOL,
            IntDtype::U8 => D::U8,
            IntDtype::I8 => D::I8,
            IntDtype::U16 => D::U16,
            IntDtype::I16 => D::I16,
            IntDtype::U32 => D::U32,
            IntDtype::I32 => D::I32,
            IntDtype::U64 => D::U64,
            IntDtype::I64 => D::I64,
        }
    }

    /// The non-float dtype of a safetensors dtype (`None` for floats and others).
    pub fn from_safetensors(d: safetensors::Dtype) -> Option<IntDtype> {
        IntDtype::ALL.into_iter().find(|i| i.safetensors() == d)
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            IntDtype::Bool | IntDtype::U8 | IntDtype::I8 => 1,
            IntDtype::U16 | IntDtype::I16 => 2,
            IntDtype::U32 | IntDtype::I32 => 4,
            IntDtype::U64 | IntDtype::I64 => 8,
        }
    }
}

impl std::fmt::Display for IntDtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A non-float tensor stored exactly as it came: its dtype, shape and little-endian bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct IntTensor {
    /// Element type as stored.
    pub dtype: IntDtype,
    /// Shape.
    pub shape: Vec<usize>,
    /// Raw little-endian bytes.
    pub data: Vec<u8>,
}

impl IntTensor {
    /// Number of elements according to the shape.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The values as i128 (every supported dtype fits), for display and tests.
    pub fn values(&self) -> Vec<i128> {
        let w = self.dtype.size();
        self.data
            .chunks_exact(w)
            .map(|b| {
                let mut a = [0u8; 8];
                a[..w].copy_from_slice(b);
                let u = u64::from_le_bytes(a);
                match self.dtype {
                    IntDtype::I8 => i128::from(b[0] as i8),
                    IntDtype::I16 => i128::from(u as u16 as i16),
                    IntDtype::I32 => i128::from(u as u32 as i32),
                    IntDtype::I64 => i128::from(u as i64),
                    _ => i128::from(u),
                }
            })
            .collect()
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

    /// Bytes this tensor occupies in a file written with the default [`WriteOptions`]
    /// (base 3 when no code is 3, f16 tables when exact): codes plus both tables.
    pub fn stored_bytes(&self) -> usize {
        self.stored_size(&WriteOptions::default())
            .map_or(self.codes.len() + self.levels.len() * 28, |s| s.total())
    }

    /// Stored bits per weight with the default [`WriteOptions`]:
    /// `8 * (code bytes + table bytes) / n`.
    pub fn bits_per_weight(&self) -> f64 {
        let n = self.numel();
        if n == 0 {
            return 0.0;
        }
        self.stored_bytes() as f64 * 8.0 / n as f64
    }

    /// The encoding and sizes the writer uses for this tensor under `opts` (encodes the rANS
    /// stream when `opts` asks for entropy coding). Errors as [`Model::to_bytes_with`] would.
    pub fn stored_size(&self, opts: &WriteOptions) -> Result<StoredSize, FormatError> {
        let (encoding, codes) = encoding::choose("", self, opts)?;
        Ok(StoredSize {
            encoding,
            code_bytes: codes.len(),
            table_bytes: encoding::table_bytes(
                self.levels.len(),
                encoding.table_dtype,
                encoding.table_layout,
            ),
        })
    }

    /// How many weights have each code.
    pub fn code_counts(&self) -> [u64; 4] {
        rans::counts(&self.codes, self.numel())
    }

    /// Zero-order empirical entropy of the codes, in bits per weight: the floor for any coder
    /// that codes weights independently (before tables).
    pub fn code_entropy(&self) -> f64 {
        rans::entropy(&self.code_counts())
    }

    /// The same tensor with every level and threshold rounded to the nearest f16, so the
    /// writer stores f16 tables; `None` if a finite value would overflow f16. Rounding is
    /// monotone, so the tables stay ascending; codes are unchanged. Compare
    /// [`Self::dequantize`] before and after for the error this adds.
    pub fn with_f16_tables(&self) -> Option<PackedTensor> {
        let round = |v: f32| half::f16::from_f32(v).to_f32();
        let mut out = self.clone();
        for l in &mut out.levels {
            for v in l.values.iter_mut().chain(l.thresholds.iter_mut()) {
                let r = round(*v);
                if v.is_finite() && !r.is_finite() {
                    return None;
                }
                *v = r;
            }
        }
        Some(out)
    }
}

/// One named tensor of a model.
#[derive(Clone, Debug, PartialEq)]
pub enum Tensor {
    /// Quantized to 2 bits.
    Packed(PackedTensor),
    /// Kept in float.
    Float(FloatTensor),
    /// A non-float tensor carried through unchanged (never computed with).
    Int(IntTensor),
}

impl Tensor {
    /// The tensor's shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            Tensor::Packed(p) => &p.shape,
            Tensor::Float(f) => &f.shape,
            Tensor::Int(t) => &t.shape,
        }
    }

    /// The values as f32 (packed tensors dequantized, integers converted).
    pub fn to_f32(&self) -> Vec<f32> {
        match self {
            Tensor::Packed(p) => p.dequantize(),
            Tensor::Float(f) => f.to_f32(),
            Tensor::Int(t) => t.values().into_iter().map(|v| v as f32).collect(),
        }
    }

    /// Bytes of tensor data this tensor occupies in the file.
    pub fn stored_bytes(&self) -> usize {
        match self {
            Tensor::Packed(p) => p.stored_bytes(),
            Tensor::Float(f) => f.data.len(),
            Tensor::Int(t) => t.data.len(),
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
    /// Serialises to bytes (a valid safetensors file) with the default [`WriteOptions`].
    /// Validates first, so nothing this crate would refuse to read is ever produced.
    pub fn to_bytes(&self) -> Result<Vec<u8>, FormatError> {
        write::to_bytes(self, &WriteOptions::default())
    }

    /// Serialises with explicit encoding choices.
    pub fn to_bytes_with(&self, opts: &WriteOptions) -> Result<Vec<u8>, FormatError> {
        write::to_bytes(self, opts)
    }

    /// Parses and validates bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Model, FormatError> {
        read::from_bytes(bytes)
    }

    /// Parses and validates bytes; also says how each packed tensor was stored.
    pub fn from_bytes_with_layout(bytes: &[u8]) -> Result<(Model, Layout), FormatError> {
        read::from_bytes_with_layout(bytes)
    }

    /// Writes atomically (temporary file in the same directory, then rename) with the default
    /// [`WriteOptions`].
    pub fn save(&self, path: &Path) -> Result<(), FormatError> {
        write::save(self, path, &WriteOptions::default())
    }

    /// Writes atomically with explicit encoding choices.
    pub fn save_with(&self, path: &Path, opts: &WriteOptions) -> Result<(), FormatError> {
        write::save(self, path, opts)
    }

    /// Memory-maps, validates and parses a file.
    pub fn load(path: &Path) -> Result<Model, FormatError> {
        read::load(path).map(|(m, _)| m)
    }

    /// Like [`Self::load`], also saying how each packed tensor was stored.
    pub fn load_with_layout(path: &Path) -> Result<(Model, Layout), FormatError> {
        read::load(path)
    }

    /// Checks every invariant the reader checks (shapes, codes, level tables, arch).
    pub fn validate(&self) -> Result<(), FormatError> {
        validate::model(self)
    }
}
