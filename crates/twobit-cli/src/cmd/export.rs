//! `twobit export`: a `.twobit` network as a standard ONNX model (opset 13; 14 when it uses
//! HardSwish) with the
//! dequantized weights, for onnxruntime and other ONNX runtimes.
use super::network::{self, NormArgs};
use crate::util;
use anyhow::Context;
use std::path::PathBuf;
use twobit_format::Tensor;

/// Arguments.
#[derive(clap::Args)]
pub struct Args {
    /// Input network (.twobit with an architecture, or .onnx).
    pub input: PathBuf,
    /// Output file (.onnx).
    pub output: PathBuf,
    #[command(flatten)]
    norm: NormArgs,
    /// Print one JSON object on stdout instead of a line of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<()> {
    util::check_output(&args.output)?;
    let model = network::load(&args.input, &args.norm)?;
    let bytes = twobit_onnx::export(&model, &twobit_onnx::ExportOptions::default())
        .with_context(|| format!("cannot export {}", args.input.display()))?;
    util::write_output(&args.output, &bytes)?;
    let packed = model
        .tensors
        .values()
        .filter(|t| matches!(t, Tensor::Packed(_)))
        .count();
    let arch = model.arch.as_ref().expect("network::load checks the arch");
    if args.json {
        let v = serde_json::json!({
            "input": args.input.display().to_string(),
            "output": args.output.display().to_string(),
            "model": arch.name,
            "nodes": arch.nodes.len(),
            "dequantized_tensors": packed,
            "output_bytes": bytes.len(),
            "mean": arch.normalize.mean,
            "std": arch.normalize.std,
        });
        println!("{v}");
    } else {
        println!(
            "wrote {} ({}, ONNX): {} nodes, {packed} 2-bit tensors dequantized to f32; \
             it expects inputs normalised with mean {:?} std {:?}",
            args.output.display(),
            util::human_bytes(bytes.len() as u64),
            arch.nodes.len(),
            arch.normalize.mean,
            arch.normalize.std
        );
    }
    Ok(())
}
