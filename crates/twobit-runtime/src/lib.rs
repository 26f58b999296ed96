//! Runs `.twobit` models directly on their packed 2-bit weights, without the training
//! framework.
//!
//! [`Runtime::load`] compiles the network graph stored in the file's architecture manifest,
//! repacking each quantized weight into bit-planes ([`kernels::PackedMatrix`], still ~2 bits
//! per weight) and folding batch norm (and a following ReLU/Clip) into a per-output-channel
//! affine and clamp applied after the packed dot product. [`Runtime::forward`] computes logits; [`Runtime::dequantized`] gives the
//! same network with weights expanded to f32 and run through an fp32 GEMM, for comparison.
#![deny(missing_docs)]

pub mod capture;
mod exec;
pub mod fp32;
pub mod kernels;
mod model;
pub mod ops;
mod plan;
mod tensors;

pub use kernels::int8::Activations;
pub use kernels::{BlockWords, Kernel, PackedMatrix};
pub use model::{LayerTime, Runtime};

/// Why a model could not be loaded or run. One variant per failure.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The file could not be read or parsed. (Not a `source`: the format error's message
    /// already includes its cause, and a one-line error chain would repeat it.)
    #[error("{0}")]
    Format(twobit_format::FormatError),
    /// The file has no architecture manifest, so the network cannot be rebuilt.
    #[error("the file has no architecture manifest (was it written by `twobit train`?); only files with an architecture can be run")]
    MissingArch,
    /// A layer references a tensor the file does not contain.
    #[error("layer {layer}: tensor `{name}` is not in the file")]
    MissingTensor {
        /// The layer's description.
        layer: String,
        /// The missing tensor.
        name: String,
    },
    /// Shapes in the architecture and tensors disagree, or a size is out of range.
    #[error("shape error: {0}")]
    Shape(String),
    /// A tensor holds NaN or infinity.
    #[error("non-finite values in {0}")]
    NonFinite(String),
    /// A layer the runtime cannot execute in this position.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The input passed to `forward` has the wrong length.
    #[error("input has {got} values, a batch of {batch} needs {expected}")]
    Input {
        /// Values given.
        got: usize,
        /// Batch size asked for.
        batch: usize,
        /// Values needed.
        expected: usize,
    },
}

impl From<twobit_format::FormatError> for RuntimeError {
    fn from(e: twobit_format::FormatError) -> Self {
        RuntimeError::Format(e)
    }
}
