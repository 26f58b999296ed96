//! [`FormatError`]: one variant per way a file can be wrong.

/// Why a file could not be read or written. One variant per failure.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// An output path that must not be written: not a regular file, or its directory is
    /// missing (see [`crate::output_target`]).
    #[error("cannot write {path}: {reason}")]
    BadOutput {
        /// The path as given.
        path: String,
        /// Why not.
        reason: String,
    },
    /// I/O failure, with the path.
    #[error("{path}: {}", io_text(source))]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The file ends before its 8-byte header length, or before the end of the header.
    #[error(
        "truncated, or not a safetensors or .twobit file: needs at least {needed} bytes, has {len}"
    )]
    Truncated {
        /// Bytes the header says the file must have.
        needed: u64,
        /// Actual length.
        len: u64,
    },
    /// The header length field exceeds [`crate::MAX_HEADER_BYTES`].
    #[error("not a safetensors or .twobit file (its first 8 bytes give a header length of {len} bytes; the limit is {max})")]
    HeaderTooLarge {
        /// Declared header length.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// The bytes are not a valid safetensors container (bad UTF-8, offsets, sizes, ...).
    #[error("not a valid safetensors file: {0}")]
    NotSafetensors(String),
    /// The header or the manifest is not the JSON this format expects.
    #[error("bad JSON in {what}: {detail}")]
    BadJson {
        /// "header" or "manifest".
        what: &'static str,
        /// The parser's message.
        detail: String,
    },
    /// A required `__metadata__` key is absent (the file is plain safetensors, not twobit).
    #[error("missing metadata key '{0}' (not a .twobit file?)")]
    MissingMetadata(&'static str),
    /// `twobit.format` is not "twobit".
    #[error("metadata 'twobit.format' is '{0}', expected 'twobit'")]
    WrongMagic(String),
    /// `twobit.version` is not a version this reader understands.
    #[error("unsupported format version '{found}' (this reader supports {supported})")]
    UnsupportedVersion {
        /// The version in the file.
        found: String,
        /// The version this code reads.
        supported: u32,
    },
    /// A scheme name not in [`twobit_quant::Scheme::ALL`].
    #[error("tensor '{tensor}': unknown scheme '{scheme}'")]
    UnknownScheme {
        /// Tensor name.
        tensor: String,
        /// The bad name.
        scheme: String,
    },
    /// A granularity other than "tensor" or "channel".
    #[error("tensor '{tensor}': unknown granularity '{granularity}'")]
    UnknownGranularity {
        /// Tensor name.
        tensor: String,
        /// The bad name.
        granularity: String,
    },
    /// A dtype this format cannot hold (floats are F16, BF16, F32, F64).
    #[error("tensor '{tensor}': unsupported dtype '{dtype}'")]
    UnsupportedDtype {
        /// Tensor name.
        tensor: String,
        /// The dtype as written.
        dtype: String,
    },
    /// More dimensions than [`crate::MAX_DIMS`], or none where one is needed.
    #[error("tensor '{tensor}': {dims} dimensions (allowed 1..={max})")]
    BadRank {
        /// Tensor name.
        tensor: String,
        /// Number of dimensions.
        dims: usize,
        /// The limit.
        max: usize,
    },
    /// The product of the shape overflows `usize` or exceeds [`crate::MAX_ELEMENTS`].
    #[error("tensor '{tensor}': shape {shape:?} is too large (limit {max} elements)")]
    ShapeOverflow {
        /// Tensor name.
        tensor: String,
        /// The shape.
        shape: Vec<usize>,
        /// The limit.
        max: u64,
    },
    /// More tensors than [`crate::MAX_TENSORS`].
    #[error("{count} tensors exceed the limit of {max}")]
    TooManyTensors {
        /// Number of tensors.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The packed codes do not hold exactly `ceil(n/4)` bytes (base 2) or `ceil(n/5)` bytes
    /// (base 3).
    #[error("tensor '{tensor}': {actual} code bytes, expected {expected} for {n} weights")]
    CodesLengthMismatch {
        /// Tensor name.
        tensor: String,
        /// Number of weights.
        n: usize,
        /// `ceil(n/4)`.
        expected: usize,
        /// Actual byte count.
        actual: usize,
    },
    /// A base-3 code byte is 243 or more (5 base-3 digits never exceed 242).
    #[error("tensor '{tensor}': base-3 code byte {index} is {byte} (at most 242)")]
    Base3ByteRange {
        /// Tensor name.
        tensor: String,
        /// Byte index.
        index: usize,
        /// Its value.
        byte: u8,
    },
    /// A manifest encoding field (`packing`, `table_dtype`, `table_layout`) has an unknown
    /// value.
    #[error("tensor '{tensor}': unknown {field} '{value}'")]
    UnknownEncoding {
        /// Tensor name.
        tensor: String,
        /// The manifest field.
        field: &'static str,
        /// The value found.
        value: String,
    },
    /// A version-1 file declares an encoding other than base 2 with full f32 tables.
    #[error("tensor '{tensor}': encoding '{encoding}' needs format version 2")]
    EncodingNeedsVersion2 {
        /// Tensor name.
        tensor: String,
        /// The encoding named.
        encoding: String,
    },
    /// An encoding introduced in version 3 (the `enum` packing) in an older file.
    #[error("tensor '{tensor}': the {encoding} packing needs format version 3")]
    EncodingNeedsVersion3 {
        /// Tensor name.
        tensor: String,
        /// The packing named.
        encoding: &'static str,
    },
    /// An enumerative code does not decode (see [`crate::enumerative`]).
    #[error("tensor '{tensor}': corrupt enumerative code: {detail}")]
    EnumCorrupt {
        /// Tensor name.
        tensor: String,
        /// What is wrong.
        detail: &'static str,
    },
    /// The writer was asked for an encoding this tensor cannot take.
    #[error("tensor '{tensor}': cannot store as {encoding}: {reason}")]
    EncodingUnsupported {
        /// Tensor name.
        tensor: String,
        /// The encoding asked for.
        encoding: String,
        /// Why not.
        reason: &'static str,
    },
    /// A rANS stream declares more codes than [`crate::rans::MAX_CODES_PER_BYTE`] times its
    /// length (decoding it would allocate out of proportion to the file).
    #[error(
        "tensor '{tensor}': a {bytes}-byte rANS stream cannot hold {n} codes (at most {} per byte)",
        crate::rans::MAX_CODES_PER_BYTE
    )]
    RansTooDense {
        /// Tensor name.
        tensor: String,
        /// Number of weights.
        n: usize,
        /// Stream length.
        bytes: usize,
    },
    /// A rANS stream's header is malformed.
    #[error("tensor '{tensor}': corrupt rANS stream: {detail}")]
    RansHeader {
        /// Tensor name.
        tensor: String,
        /// What is wrong.
        detail: &'static str,
    },
    /// A rANS stream's stored state is out of range.
    #[error("tensor '{tensor}': corrupt rANS stream: initial state out of range")]
    RansState {
        /// Tensor name.
        tensor: String,
    },
    /// A rANS stream does not decode to exactly the declared codes (bytes left over, or the
    /// state does not return to 0).
    #[error("tensor '{tensor}': corrupt rANS stream: it does not decode to {n} codes")]
    RansCorrupt {
        /// Tensor name.
        tensor: String,
        /// Number of weights.
        n: usize,
    },
    /// Bits (base 2) or base-3 digits past the last weight in the final code byte are not
    /// zero.
    #[error("tensor '{tensor}': padding bits of the last code byte are not zero")]
    CodesPadding {
        /// Tensor name.
        tensor: String,
    },
    /// A level or threshold table has the wrong shape (expected `[groups, 4]` / `[groups, 3]`).
    #[error("tensor '{tensor}': {table} table has shape {actual:?}, expected {expected:?}")]
    LevelTableShape {
        /// Tensor name.
        tensor: String,
        /// "levels" or "thresholds".
        table: &'static str,
        /// Expected shape.
        expected: Vec<usize>,
        /// Shape found.
        actual: Vec<usize>,
    },
    /// A level is NaN/infinite, or a threshold is NaN.
    #[error("tensor '{tensor}', group {group}: non-finite {table}")]
    NonFiniteLevels {
        /// Tensor name.
        tensor: String,
        /// Group index.
        group: usize,
        /// "levels" or "thresholds".
        table: &'static str,
    },
    /// Levels or thresholds of a group are not in ascending order.
    #[error("tensor '{tensor}', group {group}: {table} are not ascending")]
    NonAscendingLevels {
        /// Tensor name.
        tensor: String,
        /// Group index.
        group: usize,
        /// "levels" or "thresholds".
        table: &'static str,
    },
    /// The manifest names a tensor the container lacks (e.g. `NAME.codes`).
    #[error("missing tensor '{0}'")]
    MissingTensor(String),
    /// The container holds a tensor the manifest does not account for.
    #[error("tensor '{0}' is in the file but not in the manifest")]
    UnexpectedTensor(String),
    /// Two model tensors map onto the same stored name (e.g. `w` packed and `w.codes` float).
    #[error("stored tensor name '{0}' is used twice (or is the reserved '__metadata__')")]
    NameCollision(String),
    /// A stored tensor's dtype differs from what the manifest implies.
    #[error("tensor '{tensor}': dtype {actual}, expected {expected}")]
    DtypeMismatch {
        /// Stored tensor name.
        tensor: String,
        /// Expected dtype.
        expected: String,
        /// Dtype found.
        actual: String,
    },
    /// A stored tensor's shape differs from the manifest's.
    #[error("tensor '{tensor}': shape {actual:?}, manifest says {expected:?}")]
    ShapeMismatch {
        /// Tensor name.
        tensor: String,
        /// Manifest shape.
        expected: Vec<usize>,
        /// Stored shape.
        actual: Vec<usize>,
    },
    /// A float tensor's byte count does not match its shape and dtype.
    #[error("tensor '{tensor}': {actual} data bytes, expected {expected}")]
    DataLength {
        /// Tensor name.
        tensor: String,
        /// Bytes implied by shape and dtype.
        expected: usize,
        /// Bytes present.
        actual: usize,
    },
    /// The architecture names a tensor the model does not have.
    #[error("arch layer {layer} references missing tensor '{tensor}'")]
    ArchMissingTensor {
        /// Layer path, e.g. "3" or "5.body.0".
        layer: String,
        /// The tensor name.
        tensor: String,
    },
    /// The architecture uses a non-float tensor as weights.
    #[error("arch layer {layer} uses '{tensor}', a {dtype} tensor, as weights")]
    ArchIntTensor {
        /// Node name.
        layer: String,
        /// Tensor name.
        tensor: String,
        /// Its dtype.
        dtype: String,
    },
    /// A non-float tensor in a file older than the version that introduced them.
    #[error("tensor '{tensor}': non-float tensors need format version 3, the file says {version}")]
    IntTensorVersion {
        /// Tensor name.
        tensor: String,
        /// The file's version.
        version: u32,
    },
    /// A BOOL tensor holds a byte other than 0 or 1.
    #[error("tensor '{tensor}': BOOL element {index} is {value}, not 0 or 1")]
    BadBool {
        /// Tensor name.
        tensor: String,
        /// Element index.
        index: usize,
        /// The byte.
        value: u8,
    },
    /// The architecture is not a well-formed graph over the model's tensors (a node's
    /// input, shape, parameter or output is wrong); the message names the node.
    #[error("invalid arch: {0}")]
    ArchInvalid(String),
    /// The safetensors encoder refused the tensors.
    #[error("cannot encode safetensors: {0}")]
    Encode(String),
}

/// An I/O error in words. Mapping a directory or a device fails with ENODEV, whose text ("No
/// such device") misleads: say what it means for a model file.
fn io_text(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(19) => "it is a directory or a device, not a regular file".into(),
        _ => e.to_string(),
    }
}
