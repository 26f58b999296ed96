//! Why an ONNX model could not be imported or exported: one variant per failure, each
//! displayed as one line that names the node and operator where there is one.
use thiserror::Error;

/// An import or export failure.
#[derive(Debug, Error)]
pub enum OnnxError {
    /// Reading the file failed.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The bytes are not an ONNX protobuf (or are truncated).
    #[error("not an ONNX model (protobuf decoding failed, truncated or corrupt file?): {0}")]
    NotProtobuf(String),
    /// The model has no graph, or a graph-level feature that is not supported.
    #[error("unsupported ONNX model: {0}")]
    UnsupportedModel(String),
    /// An operator outside the supported set.
    #[error("unsupported ONNX operator '{op}' (node '{node}')")]
    UnsupportedOperator {
        /// Operator type (with its domain when not the default one).
        op: String,
        /// Node name.
        node: String,
    },
    /// A supported operator with an attribute value (or input form) that is not supported.
    #[error("unsupported attribute of ONNX operator '{op}' (node '{node}'): {detail}")]
    UnsupportedAttribute {
        /// Operator type.
        op: String,
        /// Node name.
        node: String,
        /// What is wrong.
        detail: String,
    },
    /// A node reads a weight/constant input that is neither an initializer nor a Constant.
    #[error("missing initializer '{name}' for ONNX operator '{op}' (node '{node}')")]
    MissingInitializer {
        /// The missing value.
        name: String,
        /// Operator type.
        op: String,
        /// Node name.
        node: String,
    },
    /// A node reads a value that nothing produces.
    #[error("undefined input '{name}' of ONNX operator '{op}' (node '{node}')")]
    UndefinedValue {
        /// The missing value.
        name: String,
        /// Operator type.
        op: String,
        /// Node name.
        node: String,
    },
    /// The input shape has a symbolic (or unknown) dimension other than the batch.
    #[error("dynamic shape of input '{input}' {shape} cannot be resolved: dimension {axis} is '{dim}' (give ImportOptions::input_shape)")]
    DynamicShape {
        /// Input name.
        input: String,
        /// The shape as written.
        shape: String,
        /// The axis.
        axis: usize,
        /// The symbolic name (or `?`).
        dim: String,
    },
    /// The input is not `[N, C, H, W]` of floats.
    #[error("input '{input}' is not a float [N, C, H, W] tensor: {detail}")]
    BadInput {
        /// Input name.
        input: String,
        /// What is wrong.
        detail: String,
    },
    /// Not exactly one (non-initializer) input.
    #[error("the graph has {0} inputs (besides initializers); exactly one is supported")]
    InputCount(usize),
    /// Not exactly one output.
    #[error("the graph has {0} outputs; exactly one is supported")]
    OutputCount(usize),
    /// A tensor keeps its data in an external file.
    #[error("tensor '{0}' uses external data, which is not supported (save the model with all tensors inside the .onnx file)")]
    ExternalData(String),
    /// A tensor with an element type or data layout that cannot be read.
    #[error("tensor '{name}': {detail}")]
    BadTensor {
        /// Tensor name.
        name: String,
        /// What is wrong.
        detail: String,
    },
    /// A weight holds NaN or infinity.
    #[error("tensor '{0}' holds NaN or infinite values")]
    NonFinite(String),
    /// The imported graph does not validate (shapes do not fit, ...).
    #[error("the imported graph is invalid: {0}")]
    GraphInvalid(String),
    /// Export: the model has no architecture, or one that ONNX cannot express.
    #[error("cannot export: {0}")]
    Export(String),
}
