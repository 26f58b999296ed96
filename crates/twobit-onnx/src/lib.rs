//! ONNX in, ONNX out: bring your own network to twobit.
//!
//! [`import`] turns an ONNX model (as written by PyTorch, Keras2onnx, ...) into a
//! [`twobit_format::Model`] whose `arch` is a [`twobit_format::graph`] and whose tensors are
//! f32 weights named after the ONNX initializers; the model can then be quantized, saved as
//! `.twobit` and run by the twobit runtime. [`export`] writes any twobit model (2-bit
//! weights dequantized) back as a standard ONNX model, so compressed networks can be checked
//! in onnxruntime or deployed elsewhere.
//!
//! The protobuf messages are hand-written ([`proto`]); no `protoc` is needed to build.
//!
//! # Supported operators (import)
//!
//! | ONNX operator | twobit op | notes |
//! |---|---|---|
//! | Conv | `Conv` | 2-D; strides, pads, dilations, group; `auto_pad` NOTSET/VALID/SAME_UPPER/SAME_LOWER resolved to explicit pads |
//! | Gemm | `Linear` | `transA = 0`, `transB` 0 or 1 (weight stored `[out, in]`); alpha/beta folded |
//! | MatMul | `Linear` | constant `[in, out]` weight; a following Add of a constant `[out]` becomes the bias |
//! | BatchNormalization | `BatchNorm` | inference form only |
//! | Relu, LeakyRelu, Sigmoid, HardSigmoid, HardSwish | same | |
//! | Clip | `Clip` | bounds as attributes (opset < 11) or constant inputs (opset >= 11, ReLU6) |
//! | MaxPool | `MaxPool` | pads, strides, dilations, ceil_mode, auto_pad; `storage_order = 0`; no indices output |
//! | AveragePool | `AvgPool` | pads, strides, ceil_mode, count_include_pad, auto_pad |
//! | GlobalAveragePool | `GlobalAvgPool` | output `[N, C, 1, 1]` |
//! | Add, Mul | `Add`, `Mul` | broadcasting; a constant operand becomes a tensor; constants fold |
//! | Sub, Div | `Add`, `Mul` | by a constant only (stored as `-c`, `1/c`), e.g. in-graph normalisation |
//! | Concat | `Concat` | axis 1 of NCHW |
//! | Flatten | `Flatten` | axis 1 |
//! | Reshape | `Flatten` | constant shape `[N, -1]`, `[N, F]` or `[-1, F]` (N: 0 or 1) |
//! | Pad | `PadChannels` | zeros on the channel axis only |
//! | Softmax | `Softmax` | last axis of `[N, F]` |
//! | Dropout, Identity | (removed) | inference form |
//! | Constant | (folded) | |
//! | Shape, Gather, Unsqueeze, Cast, Concat of constants | (folded) | shape arithmetic, e.g. PyTorch's `x.view(x.size(0), -1)`; the symbolic batch size folds to 0 ("keep" in Reshape) |
//! | Squeeze | `Flatten` | unit axes after the batch, down to `[N, F]` |
//!
//! Anything else is an [`OnnxError`] naming the operator and node; nothing is
//! half-imported. The graph must have exactly one float input `[N, C, H, W]` (N symbolic or
//! fixed; other symbolic dimensions need [`ImportOptions::input_shape`]) and one output;
//! `classes` is the product of the output's per-sample shape.
//!
//! # Normalisation
//!
//! An ONNX model takes its input already normalised (like a PyTorch model). The imported
//! `arch.normalize` is the identity unless [`ImportOptions::normalize`] gives the mean/std
//! the network was trained with (then the twobit tools can feed raw `[0, 1]` pixels).
//!
//! # Export conventions
//!
//! [`export`] writes IR version 8, opset 13 (14 when the graph has a HardSwish, which
//! opset 13 lacks): input `input` `[N, C, H, W]` (symbolic `N`),
//! output `[N, classes]` (a Flatten is appended when the graph's output is not flat),
//! Linear as `Gemm(transB = 1)`, PadChannels as `Pad` with a pads initializer, Clip with
//! min/max initializer inputs, Softmax with `axis = -1`. The exported model, too, expects
//! **normalised** input; the normalisation is recorded in `metadata_props`
//! (`twobit.normalize.mean`, `twobit.normalize.std`, comma-separated) and the producer is
//! `twobit`. Packed 2-bit weights are written as their dequantized f32 values.
//!
//! # Example
//!
//! ```no_run
//! use std::path::Path;
//! use twobit_onnx::{export, load, ExportOptions, ImportOptions};
//!
//! let model = load(Path::new("resnet.onnx"), &ImportOptions::default())?;
//! model.save(Path::new("resnet.twobit"))?; // f32 weights; quantize with the twobit tools
//! std::fs::write("roundtrip.onnx", export(&model, &ExportOptions::default())?)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod error;
mod export;
mod import;
pub mod proto;

pub use error::OnnxError;
pub use export::{export, ExportOptions, META_MEAN, META_STD};
pub use import::{import, load, ImportOptions};
