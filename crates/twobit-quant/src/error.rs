use thiserror::Error;

/// Why a tensor could not be quantized.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum QuantError {
    /// A weight is NaN or infinite.
    #[error("weight {index} is not finite ({value})")]
    NonFinite {
        /// Flat index of the first bad weight.
        index: usize,
        /// Its value.
        value: f32,
    },
    /// The shape does not describe the data.
    #[error("shape {shape:?} holds {expected} values but {actual} were given")]
    ShapeMismatch {
        /// The shape given.
        shape: Vec<usize>,
        /// Its element count.
        expected: usize,
        /// The data length.
        actual: usize,
    },
    /// Quantization needs at least one dimension and one element.
    #[error("cannot quantize an empty tensor (shape {0:?})")]
    Empty(Vec<usize>),
    /// An unknown scheme or granularity name.
    #[error("unknown {kind} '{name}' (expected one of: {expected})")]
    UnknownName {
        /// "scheme" or "granularity".
        kind: &'static str,
        /// The name given.
        name: String,
        /// The accepted names.
        expected: String,
    },
    /// `fake_quantize`'s output buffer has the wrong length.
    #[error("output buffer holds {actual} values but the tensor has {expected}")]
    OutputLength {
        /// The tensor's element count.
        expected: usize,
        /// The buffer's length.
        actual: usize,
    },
    /// `quantize_with_levels`, `quantize_after` or `fake_quantize` got a level table count
    /// that differs from the group count.
    #[error("{actual} level tables given for {expected} groups")]
    LevelCount {
        /// Number of groups.
        expected: usize,
        /// Number of level tables given.
        actual: usize,
    },
    /// A level table has non-finite or unsorted values, or unsorted thresholds.
    #[error("level table {group} is not finite and ascending")]
    BadLevels {
        /// Index of the bad group.
        group: usize,
    },
}
