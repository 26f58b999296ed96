//! `twobit decompress`: every tensor back as float; packed ones dequantized to f32.
use crate::util;
use anyhow::Context;
use safetensors::tensor::TensorView;
use std::collections::HashMap;
use std::path::PathBuf;
use twobit_format::{write_atomic, FloatTensor, Model, Tensor};

/// Metadata key holding the architecture (JSON) in a decompressed file.
pub const ARCH_KEY: &str = "twobit.arch";

/// Arguments.
#[derive(clap::Args)]
pub struct Args {
    /// Input file (.twobit).
    pub input: PathBuf,
    /// Output file (.safetensors).
    pub output: PathBuf,
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<()> {
    util::check_output_dir(&args.output)?;
    let model = Model::load(&args.input)
        .with_context(|| format!("cannot read {}", args.input.display()))?;
    let floats: Vec<(String, FloatTensor)> = model
        .tensors
        .iter()
        .map(|(name, t)| {
            let f = match t {
                Tensor::Packed(p) => FloatTensor::from_f32(p.shape.clone(), &p.dequantize()),
                Tensor::Float(f) => f.clone(),
            };
            (name.clone(), f)
        })
        .collect();
    let views = floats
        .iter()
        .map(|(name, f)| {
            TensorView::new(util::st_dtype(f.dtype), f.shape.clone(), &f.data)
                .map(|v| (name.as_str(), v))
                .with_context(|| format!("tensor '{name}'"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut meta = HashMap::new();
    meta.insert(
        "twobit.decompressed_from".to_string(),
        args.input
            .file_name()
            .map_or_else(String::new, |f| f.to_string_lossy().into_owned()),
    );
    // The network travels along, so `twobit compress` of this file can write it back and the
    // recompressed file still runs (`eval`, `bench`).
    if let Some(arch) = &model.arch {
        meta.insert(ARCH_KEY.to_string(), serde_json::to_string(arch)?);
    }
    let bytes = safetensors::serialize(views, Some(meta)).context("cannot encode safetensors")?;
    write_atomic(&args.output, &bytes)?;
    let packed = model
        .tensors
        .values()
        .filter(|t| matches!(t, Tensor::Packed(_)))
        .count();
    println!(
        "wrote {} tensors ({packed} dequantized to F32) to {} ({})",
        floats.len(),
        args.output.display(),
        util::human_bytes(bytes.len() as u64)
    );
    Ok(())
}
