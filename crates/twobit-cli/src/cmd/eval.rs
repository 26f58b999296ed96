//! `twobit eval`: test accuracy of a `.twobit` file, computed from the file alone by the 2-bit
//! runtime (no training framework involved).
use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use twobit_data::DatasetKind;
use twobit_runtime::Runtime;

/// Arguments.
#[derive(clap::Args)]
pub struct Args {
    /// The .twobit file (must contain an architecture manifest).
    pub file: PathBuf,
    /// Dataset whose test split is used: mnist, fashion-mnist, cifar10.
    #[arg(long)]
    pub dataset: String,
    /// Directory holding the dataset files (default: the dataset's standard location).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Images per forward pass.
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    /// Evaluate only the first N test images.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Run the same network with weights expanded to fp32 instead of the 2-bit kernels.
    #[arg(long)]
    pub fp32: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<()> {
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let kind = DatasetKind::from_name(&args.dataset).with_context(|| {
        format!(
            "unknown dataset `{}`: expected one of mnist, fashion-mnist, cifar10",
            args.dataset
        )
    })?;
    let packed =
        Runtime::load(&args.file).with_context(|| format!("cannot run {}", args.file.display()))?;
    let rt = if args.fp32 {
        packed.dequantized()
    } else {
        packed
    };
    let arch = rt.arch().clone();
    if arch.input != kind.shape() {
        bail!(
            "{} expects input {:?} but {} images are {:?}",
            args.file.display(),
            arch.input,
            kind.name(),
            kind.shape()
        );
    }
    let mut test = kind
        .load(args.data_dir.as_deref())
        .context("cannot load the test data")?
        .test;
    if let Some(n) = args.limit {
        test.truncate(n);
    }
    if test.is_empty() {
        bail!("the test split is empty");
    }
    let n = test.len();
    let per_image = rt.input_len();
    let bar = ProgressBar::new(n as u64).with_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} images ({per_sec}, eta {eta})")
            .expect("static template")
            .progress_chars("=> "),
    );
    bar.set_message("eval");
    let (mut correct, mut infer) = (0usize, Duration::ZERO);
    let mut input = Vec::new();
    let start = Instant::now();
    for first in (0..n).step_by(args.batch) {
        let idx: Vec<usize> = (first..n.min(first + args.batch)).collect();
        input.resize(idx.len() * per_image, 0.0);
        // Normalise with the file's own constants, so the result depends on the file alone.
        test.try_fill_batch(&idx, &arch.normalize, None, &mut input)
            .context("cannot build a batch")?;
        let t0 = Instant::now();
        let logits = rt.try_forward(&input, idx.len())?;
        infer += t0.elapsed();
        for (row, &i) in logits.chunks_exact(arch.classes).zip(&idx) {
            if argmax(row) == test.labels[i] as usize {
                correct += 1;
            }
        }
        bar.inc(idx.len() as u64);
    }
    bar.finish_and_clear();
    let wall = start.elapsed().as_secs_f64();
    let accuracy = correct as f64 / n as f64;
    let ips = n as f64 / infer.as_secs_f64().max(1e-9);
    let path = if args.fp32 {
        "fp32 (dequantized)".to_string()
    } else if rt.weight_bytes() == rt.fp32_weight_bytes() {
        // Nothing packed (an `fp` run): no 2-bit kernel is involved.
        "fp32 (float file)".to_string()
    } else {
        format!("2-bit ({})", rt.kernel().name())
    };
    if args.json {
        let v = serde_json::json!({
            "file": args.file.display().to_string(),
            "dataset": kind.name(),
            "split": "test",
            "model": arch.name,
            "path": path,
            "accuracy": accuracy,
            "correct": correct,
            "images": n,
            "batch": args.batch,
            "images_per_second": ips,
            "inference_seconds": infer.as_secs_f64(),
            "wall_seconds": wall,
            "threads": rayon::current_num_threads(),
        });
        println!("{v}");
    } else {
        println!(
            "{}: {} on {} test: accuracy {:.2}% ({correct}/{n}), {path}, {:.0} images/s ({} threads, batch {})",
            args.file.display(),
            arch.name,
            kind.name(),
            accuracy * 100.0,
            ips,
            rayon::current_num_threads(),
            args.batch
        );
    }
    Ok(())
}

/// Index of the largest logit (first on ties; NaN never wins).
pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] || row[best].is_nan() {
            best = i;
        }
    }
    best
}
