//! `twobit train`: quantization-aware training; writes a `.twobit` file, a per-epoch JSON-lines
//! log (`FILE.log.jsonl`) and a checkpoint (`FILE.ckpt`) next to it.
use crate::util::with_suffix;
use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::path::PathBuf;
use twobit_data::DatasetKind;
use twobit_train::{
    EpochLog, ModelKind, OptimizerKind, Progress, RunOptions, ScheduleKind, TrainConfig, TrainData,
    WeightScheme,
};

/// Arguments.
#[derive(clap::Args)]
pub struct Args {
    /// Network: mlp, lenet5, vgg7, resnet20.
    #[arg(long)]
    model: String,
    /// Dataset: mnist, fashion-mnist, cifar10.
    #[arg(long)]
    dataset: String,
    /// Weights: fp (float baseline), twn, atn, ttq, tern, quat, quat-free.
    #[arg(long)]
    scheme: String,
    /// One level table per tensor or per output channel.
    #[arg(long, default_value = "tensor")]
    granularity: String,
    /// Quantize the first and last weight layers too (kept float by default).
    #[arg(long)]
    quantize_all: bool,
    /// Number of epochs.
    #[arg(long, default_value_t = 15)]
    epochs: usize,
    /// Mini-batch size.
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    /// Initial learning rate [default: 0.05 for sgd, 0.001 for adam].
    #[arg(long)]
    lr: Option<f64>,
    /// L2 weight decay.
    #[arg(long, default_value_t = 5e-4)]
    weight_decay: f64,
    /// Optimizer: sgd (momentum 0.9) or adam.
    #[arg(long, default_value = "sgd")]
    optimizer: String,
    /// Learning-rate schedule: cosine (per iteration) or step (/10 at 50% and 75% of epochs).
    #[arg(long, default_value = "cosine")]
    schedule: String,
    /// Seed for initialisation, data order and augmentation.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Directory holding the dataset files [default: the dataset's standard location].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Train on the first N training images only.
    #[arg(long)]
    train_limit: Option<usize>,
    /// Evaluate on the first N test images only.
    #[arg(long)]
    test_limit: Option<usize>,
    /// Output file (.twobit).
    #[arg(long)]
    out: PathBuf,
    /// Continue from the checkpoint next to the output file.
    #[arg(long)]
    resume: bool,
    /// Stop after N epochs in this invocation (the file holds the model so far; `--resume`
    /// continues the run).
    #[arg(long, value_name = "N")]
    stop_after: Option<usize>,
    /// Also write the float shadow weights of the quantized layers to
    /// `OUT.latent.safetensors` (for `twobit inspect --plot`, or to continue training elsewhere).
    #[arg(long)]
    save_latent: bool,
    /// Print one JSON object with the results on stdout.
    #[arg(long)]
    json: bool,
}

/// Progress bar per epoch on stderr.
struct Bar {
    bar: Option<ProgressBar>,
    epochs: usize,
}

impl Progress for Bar {
    fn epoch_start(&mut self, epoch: usize, batches: usize) {
        let bar = ProgressBar::new(batches as u64);
        bar.set_style(
            ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed})")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("{epoch}/{}", self.epochs));
        self.bar = Some(bar);
    }
    fn step(&mut self, done: usize, loss: f64, accuracy: f64, ips: f64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done as u64);
            bar.set_message(format!(
                "loss {loss:.4} acc {:.2}% {ips:.0} img/s",
                accuracy * 100.0
            ));
        }
    }
    fn epoch_end(&mut self, log: &EpochLog) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        eprintln!(
            "epoch {}/{}: lr {:.4} loss {:.4} train {:.2}% test {:.2}% {:.0} img/s {:.1}s",
            log.epoch,
            self.epochs,
            log.lr,
            log.train_loss,
            log.train_accuracy * 100.0,
            log.test_accuracy * 100.0,
            log.images_per_second,
            log.seconds
        );
    }
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<()> {
    let model: ModelKind = args.model.parse()?;
    let scheme: WeightScheme = args.scheme.parse()?;
    let granularity = args.granularity.parse()?;
    let optimizer: OptimizerKind = args.optimizer.parse()?;
    let schedule: ScheduleKind = args.schedule.parse()?;
    let kind = DatasetKind::from_name(&args.dataset).with_context(|| {
        format!(
            "unknown dataset '{}' (expected mnist, fashion-mnist or cifar10)",
            args.dataset
        )
    })?;
    let mut cfg = TrainConfig::new(model, scheme);
    cfg.granularity = granularity;
    cfg.quantize_all = args.quantize_all;
    cfg.epochs = args.epochs;
    cfg.batch_size = args.batch_size;
    cfg.lr = args.lr;
    cfg.weight_decay = args.weight_decay;
    cfg.optimizer = optimizer;
    cfg.schedule = schedule;
    cfg.seed = args.seed;
    cfg.train_limit = args.train_limit;
    cfg.test_limit = args.test_limit;
    cfg.validate()?;

    // Fail on an unwritable output before spending time on training.
    let dir = match args.out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        anyhow::bail!("output directory {} does not exist", dir.display());
    }
    let checkpoint = with_suffix(&args.out, ".ckpt");
    let log = with_suffix(&args.out, ".log.jsonl");
    if args.resume && !checkpoint.exists() {
        anyhow::bail!("--resume: no checkpoint at {}", checkpoint.display());
    }
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&log)
        .with_context(|| format!("cannot write next to the output: {}", log.display()))?;

    let splits = kind.load(args.data_dir.as_deref())?;
    let data = TrainData { kind, splits };
    let mut provenance = BTreeMap::new();
    provenance.insert(
        "command".to_string(),
        std::env::args().collect::<Vec<_>>().join(" "),
    );
    let opts = RunOptions {
        checkpoint: Some(checkpoint),
        resume: args.resume,
        log: Some(log),
        provenance,
        stop_after: args.stop_after,
    };
    let mut bar = Bar {
        bar: None,
        epochs: cfg.epochs,
    };
    let outcome = twobit_train::train(&cfg, &data, &opts, &mut bar)?;
    outcome
        .file
        .save(&args.out)
        .with_context(|| format!("writing {}", args.out.display()))?;
    if args.save_latent {
        let path = with_suffix(&args.out, ".latent.safetensors");
        outcome
            .latent
            .save(&path)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let file_bytes = std::fs::metadata(&args.out)
        .with_context(|| format!("reading {}", args.out.display()))?
        .len();
    let fp32_bytes = twobit_train::export::fp32_bytes(&outcome.file);
    if args.json {
        let obj = serde_json::json!({
            "model": model.name(),
            "dataset": kind.name(),
            "scheme": scheme.name(),
            "granularity": cfg.granularity.name(),
            "quantize_all": cfg.quantize_all,
            "optimizer": optimizer.name(),
            "schedule": schedule.name(),
            "lr": cfg.learning_rate(),
            "batch_size": cfg.batch_size,
            "seed": cfg.seed,
            "epochs": outcome.epochs,
            "test_accuracy": outcome.test_accuracy,
            "train_seconds": outcome.train_seconds,
            "images_per_second": outcome.images_per_second,
            "file_bytes": file_bytes,
            "fp32_bytes": fp32_bytes,
            "out": args.out.display().to_string(),
        });
        println!("{obj}");
    } else {
        println!(
            "{} {} on {}: test accuracy {:.2}% after {} epochs ({:.0} s, {:.0} img/s); wrote {} ({} bytes, fp32 {} bytes, {:.1}x smaller)",
            model.name(),
            scheme.name(),
            kind.name(),
            outcome.test_accuracy * 100.0,
            outcome.epochs,
            outcome.train_seconds,
            outcome.images_per_second,
            args.out.display(),
            file_bytes,
            fp32_bytes,
            fp32_bytes as f64 / file_bytes.max(1) as f64
        );
    }
    Ok(())
}
