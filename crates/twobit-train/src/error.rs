use thiserror::Error;

/// Why training, checkpointing or export failed. One variant per failure.
#[derive(Debug, Error)]
pub enum TrainError {
    /// An unknown model name.
    #[error("unknown model '{0}' (expected one of: mlp, lenet5, vgg7, resnet20, graph)")]
    UnknownModel(String),
    /// An unknown scheme name.
    #[error("unknown scheme '{0}' (expected one of: fp, twn, atn, ttq, tern, quat, quat-free)")]
    UnknownScheme(String),
    /// An unknown optimizer name.
    #[error("unknown optimizer '{0}' (expected sgd or adam)")]
    UnknownOptimizer(String),
    /// An unknown schedule name.
    #[error("unknown schedule '{0}' (expected cosine or step)")]
    UnknownSchedule(String),
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The model does not accept the dataset's input shape.
    #[error("model {model} does not accept input {input:?}")]
    InputShape {
        /// The model name.
        model: String,
        /// The dataset's (channels, height, width).
        input: [usize; 3],
    },
    /// The dataset could not be loaded.
    #[error(transparent)]
    Data(#[from] twobit_data::DataError),
    /// The quantizer rejected a weight tensor (e.g. NaN after a diverged step).
    #[error("quantizing layer {layer}: {source}")]
    Quant {
        /// The tensor name.
        layer: String,
        /// The cause.
        source: twobit_quant::QuantError,
    },
    /// The loss became NaN or infinite.
    #[error("training diverged at epoch {epoch}, step {step}: loss is {loss} (try a lower --lr)")]
    Diverged {
        /// Epoch (1-based).
        epoch: usize,
        /// Step within the epoch.
        step: usize,
        /// The loss value.
        loss: f32,
    },
    /// Writing the `.twobit` file failed.
    #[error("writing the model file: {0}")]
    Format(#[from] twobit_format::FormatError),
    /// Reading or writing a checkpoint or log failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A checkpoint is corrupt or belongs to another configuration.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}
