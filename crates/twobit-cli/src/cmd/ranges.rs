//! `twobit calibrate IN OUT --dataset D`: measures the input range of every conv/linear
//! layer over training images and stores it in the file (`Arch::input_ranges`), so int8
//! activations can use one calibrated scale per layer (`--act int8-calibrated`) instead of
//! one measured per image at run time.
use anyhow::{bail, Context};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;
use twobit_format::Model;
use twobit_runtime::Runtime;

use super::dataset;

/// Arguments.
#[derive(clap::Args)]
pub struct Args {
    /// The network (.twobit file with an architecture).
    pub input: PathBuf,
    /// Where to write the calibrated file (may be the input: it is replaced atomically).
    pub output: PathBuf,
    /// Dataset whose training split is measured [default: the one the file was trained on].
    #[arg(long)]
    pub dataset: Option<String>,
    /// Directory holding the dataset files (default: the dataset's standard location).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Training images measured (the first N).
    #[arg(long, default_value_t = 512)]
    pub calib_images: usize,
    /// Images per forward pass.
    #[arg(long = "batch-size", visible_alias = "batch", default_value_t = 64)]
    pub batch: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<()> {
    if args.calib_images == 0 {
        bail!("--calib-images must be at least 1");
    }
    if args.batch == 0 {
        bail!("--batch-size must be at least 1");
    }
    crate::util::check_input(&args.input)?;
    crate::util::check_output(&args.output)?;
    let mut model = Model::load(&args.input)
        .with_context(|| format!("cannot read {}", args.input.display()))?;
    if model.arch.is_none() {
        bail!(
            "{} has no network to run (a file from `twobit compress` of bare tensors): nothing to calibrate",
            args.input.display()
        );
    }
    crate::util::check_batch_memory(&model, args.batch)?;
    let kind = dataset::for_file(args.dataset.as_deref(), &model, &args.input)?;
    let rt = Runtime::from_model(&model)
        .with_context(|| format!("cannot run {}", args.input.display()))?;
    let arch = rt.arch().clone();
    let train = dataset::load(kind, args.data_dir.as_deref(), arch.input)
        .context("cannot load the calibration images")?
        .splits
        .train;
    let n = args.calib_images.min(train.len());
    if n == 0 {
        bail!("the training split is empty");
    }
    // Node of each weight tensor (a tensor feeds one layer).
    let node_of: BTreeMap<&str, &str> = arch
        .weight_nodes()
        .filter_map(|n| Some((n.op.weight()?, n.name.as_str())))
        .collect();
    let mut ranges: BTreeMap<String, f32> = BTreeMap::new();
    let mut input = Vec::new();
    for first in (0..n).step_by(args.batch) {
        let idx: Vec<usize> = (first..n.min(first + args.batch)).collect();
        input.resize(idx.len() * rt.input_len(), 0.0);
        train
            .try_fill_batch(&idx, &arch.normalize, None, &mut input)
            .context("cannot build a batch")?;
        rt.layer_inputs(&input, idx.len(), None, |l| {
            let m = l.x.iter().fold(0f32, |m, v| m.max(v.abs()));
            if let Some(node) = node_of.get(l.weight) {
                let r = ranges.entry((*node).to_string()).or_insert(0.0);
                *r = r.max(m);
            }
        })?;
    }
    // A layer whose input was 0 on every image has no range to store (any scale works).
    ranges.retain(|_, r| *r > 0.0 && r.is_finite());
    let a = model.arch.as_mut().expect("checked above");
    a.input_ranges = ranges.clone();
    let p = &mut model.provenance;
    p.insert("calibration.dataset".into(), kind.name().into());
    p.insert("calibration.images".into(), n.to_string());
    let bytes = model.to_bytes().context("cannot encode the file")?;
    crate::util::write_output(&args.output, &bytes)?;
    if args.json {
        let v = json!({
            "input": args.input.display().to_string(),
            "output": args.output.display().to_string(),
            "dataset": kind.name(),
            "images": n,
            "input_ranges": ranges,
        });
        println!("{v}");
    } else {
        let w = ranges.keys().map(String::len).max().unwrap_or(4).max(4);
        println!(
            "{:<w$}  {:<24} input range (max |x| over {n} {} training images)",
            "node",
            "weight",
            kind.name()
        );
        for node in arch.weight_nodes() {
            if let Some(r) = ranges.get(&node.name) {
                let weight = node.op.weight().unwrap_or("-");
                println!("{:<w$}  {weight:<24} {r:.4}", node.name);
            }
        }
        println!(
            "wrote {} ({} calibrated)",
            args.output.display(),
            crate::util::plural(ranges.len(), "layer")
        );
    }
    Ok(())
}
