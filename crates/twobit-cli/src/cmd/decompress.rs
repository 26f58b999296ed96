//! `twobit decompress`: every tensor back as safetensors; packed ones dequantized to f32,
//! float and integer tensors as they are.
use crate::util;
use anyhow::Context;
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::PathBuf;
use twobit_format::{FloatTensor, Model, Tensor};

/// Metadata key holding the architecture (JSON) in a decompressed file.
pub const ARCH_KEY: &str = "twobit.arch";

/// Arguments.
#[derive(clap::Args)]
pub struct Args {
    /// Input file (.twobit).
    pub input: PathBuf,
    /// Output file (.safetensors).
    pub output: PathBuf,
    /// Print one JSON object on stdout instead of a line of text.
    #[arg(long)]
    pub json: bool,
}

/// A tensor to write: name, dtype, shape, little-endian bytes.
type Out<'a> = (String, Dtype, Vec<usize>, Cow<'a, [u8]>);

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<()> {
    util::check_input(&args.input)?;
    util::check_output(&args.output)?;
    let model = Model::load(&args.input)
        .with_context(|| format!("cannot read {}", args.input.display()))?;
    // Packed tensors become f32; float and integer tensors go back as they came.
    let floats: Vec<Out<'_>> = model
        .tensors
        .iter()
        .map(|(name, t)| match t {
            Tensor::Packed(p) => {
                let f = FloatTensor::from_f32(p.shape.clone(), &p.dequantize());
                (name.clone(), Dtype::F32, f.shape, Cow::Owned(f.data))
            }
            Tensor::Float(f) => (
                name.clone(),
                util::st_dtype(f.dtype),
                f.shape.clone(),
                Cow::Borrowed(f.data.as_slice()),
            ),
            Tensor::Int(t) => (
                name.clone(),
                t.dtype.safetensors(),
                t.shape.clone(),
                Cow::Borrowed(t.data.as_slice()),
            ),
        })
        .collect();
    let views = floats
        .iter()
        .map(|(name, dtype, shape, data)| {
            TensorView::new(*dtype, shape.clone(), data)
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
    util::write_output(&args.output, &bytes)?;
    let packed = model
        .tensors
        .values()
        .filter(|t| matches!(t, Tensor::Packed(_)))
        .count();
    if args.json {
        let v = serde_json::json!({
            "input": args.input.display().to_string(),
            "output": args.output.display().to_string(),
            "tensor_count": floats.len(),
            "dequantized_tensors": packed,
            "output_bytes": bytes.len(),
            "arch": model.arch.as_ref().map(|a| a.name.clone()),
        });
        println!("{v}");
        return Ok(());
    }
    println!(
        "wrote {} ({packed} dequantized to F32) to {} ({})",
        util::plural(floats.len(), "tensor"),
        args.output.display(),
        util::human_bytes(bytes.len() as u64)
    );
    Ok(())
}
