//! `twobit eval`: test accuracy of a `.twobit` file, computed from the file alone by the 2-bit
//! runtime (no training framework involved).
use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use twobit_runtime::Runtime;

use super::dataset;
use super::network::{self, NormArgs};

/// Arguments.
#[derive(clap::Args)]
pub struct Args {
    /// The network: a .twobit file with an architecture, or a float .onnx model.
    pub file: PathBuf,
    /// Dataset whose test split is used: mnist, fashion-mnist, cifar10, or folder (an
    /// ImageFolder directory given by --data-dir) [default: the dataset the file was trained
    /// on, from its provenance].
    #[arg(long)]
    pub dataset: Option<String>,
    /// Directory holding the dataset files (default: the dataset's standard location).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Images per forward pass.
    #[arg(long = "batch-size", visible_alias = "batch", default_value_t = 256)]
    pub batch: usize,
    /// Evaluate only the first N test images.
    #[arg(long = "test-limit", visible_alias = "limit")]
    pub limit: Option<usize>,
    /// Input normalisation (default: the file's own).
    #[command(flatten)]
    pub norm: NormArgs,
    /// Run the same network with weights expanded to fp32 instead of the 2-bit kernels.
    #[arg(long)]
    pub fp32: bool,
    /// Activations of the 2-bit layers: `f32`, `int8` (quantized per image on the fly,
    /// integer sums; see docs/runtime.md), or `int8-calibrated` (one scale per layer from
    /// the ranges `twobit calibrate` stores).
    #[arg(long, default_value = "f32", value_parser = crate::util::ACT_VALUES)]
    pub act: String,
    /// Write each test image's predicted class to this file, one per line (to compare with
    /// another runtime).
    #[arg(long, value_name = "FILE")]
    pub predictions: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<()> {
    if args.batch == 0 {
        bail!("--batch-size must be at least 1");
    }
    if args.limit == Some(0) {
        bail!("--test-limit must be at least 1");
    }
    if let Some(p) = &args.predictions {
        crate::util::check_output(p)?;
    }
    crate::util::check_input(&args.file)?;
    let model = network::load(&args.file, &args.norm)?;
    crate::util::check_batch_memory(&model, args.batch)?;
    // The file says what it was trained on: the default, and a check on --dataset.
    let kind = dataset::for_file(args.dataset.as_deref(), &model, &args.file)?;
    let packed = Runtime::from_model(&model)
        .with_context(|| format!("cannot run {}", args.file.display()))?;
    let act = crate::util::activations(&args.act, &model, &args.file)?;
    let int8 = act.is_int8();
    if int8 && args.fp32 {
        bail!(
            "--act {} runs the 2-bit layers; it cannot be combined with --fp32",
            args.act
        );
    }
    let mut rt = if args.fp32 {
        packed.dequantized()
    } else {
        packed
    };
    if int8 {
        rt.set_activations(act);
    }
    let arch = rt.arch().clone();
    let (mut test, classes) = dataset::load_test(kind, args.data_dir.as_deref(), arch.input)
        .context("cannot load the test data")?;
    if classes > arch.classes {
        bail!(
            "{} has {} classes but the network outputs {}",
            args.data_dir
                .as_deref()
                .map_or_else(|| kind.name().to_string(), |d| d.display().to_string()),
            classes,
            arch.classes
        );
    }
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
    let mut ticker = crate::util::Ticker::new();
    let (mut correct, mut infer) = (0usize, Duration::ZERO);
    let mut predicted = Vec::with_capacity(n);
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
            let p = argmax(row);
            predicted.push(p);
            if p == test.labels[i] as usize {
                correct += 1;
            }
        }
        bar.inc(idx.len() as u64);
        if ticker.due() {
            eprintln!("eval: {}/{n} images", first + idx.len());
        }
    }
    bar.finish_and_clear();
    if let Some(p) = &args.predictions {
        let text: String = predicted.iter().map(|c| format!("{c}\n")).collect();
        crate::util::write_output(p, text.as_bytes())?;
    }
    let wall = start.elapsed().as_secs_f64();
    let accuracy = correct as f64 / n as f64;
    let ips = n as f64 / infer.as_secs_f64().max(1e-9);
    let path = if args.fp32 {
        "fp32 (dequantized)".to_string()
    } else if rt.weight_bytes() == rt.fp32_weight_bytes() {
        // Nothing packed (an `fp` run): no 2-bit kernel is involved.
        "fp32 (float file)".to_string()
    } else {
        format!(
            "2-bit ({}{})",
            rt.kernel().name(),
            match act {
                twobit_runtime::Activations::Int8 => ", int8 activations",
                twobit_runtime::Activations::Int8Calibrated => ", int8 activations (calibrated)",
                twobit_runtime::Activations::F32 => "",
            }
        )
    };
    if args.json {
        let v = serde_json::json!({
            "input": args.file.display().to_string(),
            "file": args.file.display().to_string(),
            "dataset": kind.name(),
            "split": "test",
            "model": arch.name,
            "path": path,
            "activations": rt.activations().name(),
            "test_accuracy": accuracy,
            "accuracy": accuracy,
            "correct": correct,
            "images": n,
            "batch_size": args.batch,
            "batch": args.batch,
            "images_per_second": ips,
            "inference_seconds": infer.as_secs_f64(),
            "wall_seconds": wall,
            "threads": rayon::current_num_threads(),
        });
        println!("{v}");
    } else {
        println!(
            "{}: {} on {} test: accuracy {:.2}% ({correct}/{n}), {path}, {:.0} images/s ({} threads, batch size {})",
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
