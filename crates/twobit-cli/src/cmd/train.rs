//! `twobit train`: quantization-aware training; writes a `.twobit` file, a per-epoch JSON-lines
//! log (`FILE.log.jsonl`) and a checkpoint (`FILE.ckpt`) next to it.
use crate::signals;
use crate::util::{self, plural, with_suffix};
use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use twobit_data::{Augment, DatasetKind};
use twobit_train::{
    DeviceKind, EpochLog, GraphInit, ModelKind, OptimizerKind, Progress, RunOptions, ScheduleKind,
    TrainConfig, TrainData, WeightScheme,
};

use super::dataset;
use super::network::{self, NormArgs};

/// Arguments.
#[derive(clap::Args)]
pub struct Args {
    /// Network: a built-in one (mlp, lenet5, vgg7, resnet20), or your own as an ONNX model
    /// (PATH.onnx) or a .twobit file; a file's network starts from its weights.
    #[arg(long)]
    model: String,
    /// With a network file: start from its weights (`pretrained`, QAT fine-tuning) or from a
    /// fresh initialisation of the same graph (`random`).
    #[arg(long, default_value = "pretrained", value_name = "pretrained|random")]
    init: String,
    /// Dataset: mnist, fashion-mnist, cifar10, or folder (an ImageFolder directory given by
    /// --data-dir: DIR/train/<class>/*.png|jpg, DIR/test/<class>/*).
    #[arg(long)]
    dataset: String,
    /// Image shape CxHxW a built-in network is built for on a folder dataset (a network file
    /// has its own) [default: 3x32x32].
    #[arg(long, value_name = "CxHxW")]
    input_shape: Option<String>,
    /// Random augmentation of training images: crop (4-pixel padding), flip (horizontal),
    /// or both (comma-separated) [default: crop,flip for cifar10, none otherwise].
    #[arg(long, value_delimiter = ',', value_name = "crop,flip")]
    augment: Option<Vec<String>>,
    /// Keep weight tensors whose name matches this regex in float (repeatable).
    #[arg(long)]
    keep: Vec<String>,
    /// Input normalisation (default: the dataset's standard one for built-in networks, the
    /// file's own for a network file; identity for a folder).
    #[command(flatten)]
    norm: NormArgs,
    /// Weights: fp (float baseline), twn, atn, ttq, tern, quat, quat-free.
    #[arg(long)]
    scheme: String,
    /// One level table per tensor or per output channel.
    #[arg(long, default_value = "tensor")]
    granularity: String,
    /// Quantize the first and last weight layers (and depthwise convolutions) too (kept
    /// float by default).
    #[arg(long)]
    quantize_all: bool,
    /// Number of epochs.
    #[arg(long, default_value_t = 15)]
    epochs: usize,
    /// Mini-batch size.
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    /// Initial learning rate [default: 0.05 for sgd, 0.001 for adam].
    // Negative numbers parse as values, so `--lr -1` is refused by validation with a clear
    // line instead of clap's "unexpected argument '-1'".
    #[arg(long, allow_negative_numbers = true)]
    lr: Option<f64>,
    /// L2 weight decay.
    #[arg(long, default_value_t = 5e-4, allow_negative_numbers = true)]
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
    /// Keep the checkpoint (`OUT.ckpt`) when the run completes (it is removed by default; a
    /// run stopped by `--stop-after` or Ctrl-C always keeps it, for `--resume`).
    #[arg(long)]
    keep_checkpoint: bool,
    /// Also write the float shadow weights of the quantized layers to
    /// `OUT.latent.safetensors` (for `twobit inspect --plot`, or to continue training elsewhere).
    #[arg(long)]
    save_latent: bool,
    /// Print one JSON object with the results on stdout.
    #[arg(long)]
    json: bool,
    /// Device to train on: cpu, cuda or wgpu (the last two need a build with `--features
    /// cuda|wgpu`) [default: cuda in a build with it, else wgpu in a build with it, else cpu].
    #[arg(long, value_name = "cpu|cuda|wgpu")]
    device: Option<String>,
}

/// Progress bar per epoch on stderr (a line every few seconds when stderr is not a
/// terminal); stops the run at the next step after Ctrl-C.
struct Bar {
    bar: Option<ProgressBar>,
    epochs: usize,
    epoch: usize,
    batches: usize,
    ticker: util::Ticker,
    /// Epochs finished by this invocation.
    finished: usize,
    resume: bool,
    checkpoint: PathBuf,
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
        (self.epoch, self.batches) = (epoch, batches);
    }
    fn step(&mut self, done: usize, loss: f64, accuracy: f64, ips: f64) {
        if signals::interrupted() {
            self.stop();
        }
        if self.ticker.due() {
            eprintln!(
                "epoch {}/{}: step {done}/{} loss {loss:.4} acc {:.2}% {ips:.0} img/s",
                self.epoch,
                self.epochs,
                self.batches,
                accuracy * 100.0
            );
        }
        if let Some(bar) = &self.bar {
            bar.set_position(done as u64);
            bar.set_message(format!(
                "loss {loss:.4} acc {:.2}% {ips:.0} img/s",
                accuracy * 100.0
            ));
        }
    }
    fn epoch_end(&mut self, log: &EpochLog) {
        self.finished += 1;
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

impl Bar {
    /// Ctrl-C: between two steps nothing is being written (the log line and the checkpoint
    /// of an epoch are written whole at its end), so stopping here leaves only complete files.
    fn stop(&mut self) -> ! {
        if let Some(bar) = self.bar.take() {
            bar.abandon();
        }
        if self.finished > 0 || (self.resume && self.checkpoint.exists()) {
            eprintln!(
                "interrupted: the checkpoint {} holds the finished epochs; continue with --resume",
                self.checkpoint.display()
            );
        } else {
            eprintln!("interrupted before the first epoch finished: nothing written");
        }
        signals::exit_interrupted()
    }
}

/// The `--keep` expressions, or one line naming the bad one.
fn cfg_keep_regexes(keep: &[String]) -> anyhow::Result<Vec<regex::Regex>> {
    keep.iter()
        .map(|k| {
            regex::Regex::new(k).map_err(|e| {
                let last = e.to_string().lines().last().unwrap_or("").to_string();
                anyhow::anyhow!(
                    "bad --keep regex '{k}': {}",
                    last.trim_start_matches("error: ")
                )
            })
        })
        .collect()
}

/// The network to train: a built-in one, or a graph read from a file.
enum Net {
    BuiltIn(ModelKind),
    File(Box<twobit_format::Model>, GraphInit),
}

/// Parses `3x32x32`.
fn parse_shape(s: &str) -> anyhow::Result<[usize; 3]> {
    let v: Vec<usize> = s
        .split('x')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|_| anyhow::anyhow!("--input-shape {s}: expected CxHxW, e.g. 3x32x32"))?;
    match v.as_slice() {
        &[c, h, w] if c > 0 && h > 0 && w > 0 => Ok([c, h, w]),
        _ => anyhow::bail!("--input-shape {s}: expected CxHxW, e.g. 3x32x32"),
    }
}

/// `--device`: the named backend, which this build must have; the build's default without it.
fn device_kind(name: Option<&str>) -> anyhow::Result<DeviceKind> {
    let Some(name) = name else {
        return Ok(DeviceKind::default_for_build());
    };
    let kind: DeviceKind = name.parse().with_context(|| format!("--device {name}"))?;
    if !kind.compiled() {
        return Err(twobit_train::DeviceError::NotCompiled(kind))
            .with_context(|| format!("--device {kind}"));
    }
    Ok(kind)
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<()> {
    let scheme: WeightScheme = args.scheme.parse()?;
    let granularity = args.granularity.parse()?;
    let optimizer: OptimizerKind = args.optimizer.parse()?;
    let schedule: ScheduleKind = args.schedule.parse()?;
    let kind = dataset::kind(&args.dataset)?;
    let device = device_kind(args.device.as_deref())?;
    // Every output, and the flags that would waste a run, are checked before any work.
    let checkpoint = with_suffix(&args.out, ".ckpt");
    let log = with_suffix(&args.out, ".log.jsonl");
    let latent = with_suffix(&args.out, ".latent.safetensors");
    for p in [&args.out, &checkpoint, &log]
        .into_iter()
        .chain(args.save_latent.then_some(&latent))
    {
        util::check_output(p)?;
    }
    if args.resume && !checkpoint.exists() {
        bail!("--resume: no checkpoint at {}", checkpoint.display());
    }
    if args.test_limit == Some(0) {
        bail!("--test-limit must be at least 1 (0 would record 0 % test accuracy)");
    }
    if args.train_limit == Some(0) {
        bail!("--train-limit must be at least 1");
    }
    if args.stop_after == Some(0) && !args.resume {
        bail!("--stop-after 0 on a fresh run would write an untrained model: give at least 1");
    }
    if scheme.name() == "fp" && (args.granularity != "tensor" || args.quantize_all) {
        eprintln!(
            "warning: --scheme fp trains float weights: --granularity and --quantize-all are ignored"
        );
    }
    if scheme.name() == "ttq" && optimizer.name() == "sgd" {
        eprintln!(
            "warning: ttq with --optimizer sgd: its layer-wide scale gradients diverge under SGD (docs/ttq.md); use --optimizer adam"
        );
    }
    let init = match args.init.as_str() {
        "pretrained" => GraphInit::Pretrained,
        "random" => GraphInit::Random,
        other => anyhow::bail!("--init {other}: expected pretrained or random"),
    };
    let is_file = network::is_onnx(Path::new(&args.model))
        || args.model.ends_with(".twobit")
        || Path::new(&args.model).is_file();
    let net = if is_file {
        // `--mean/--std` are applied below, after the dataset's defaults are known.
        let model = network::load(Path::new(&args.model), &NormArgs::default())?;
        Net::File(Box::new(model), init)
    } else {
        if args.init != "pretrained" {
            anyhow::bail!("--init applies to a network file (PATH.onnx or .twobit)");
        }
        Net::BuiltIn(args.model.parse().with_context(|| {
            format!(
                "unknown model `{}`: expected mlp, lenet5, vgg7, resnet20, or a PATH.onnx / .twobit file",
                args.model
            )
        })?)
    };
    let shape = match (&net, &args.input_shape) {
        (Net::File(m, _), Some(_)) => {
            anyhow::bail!(
                "--input-shape: {} has its own input shape {:?}",
                args.model,
                m.arch.as_ref().map(|a| a.input)
            )
        }
        (Net::File(m, _), None) => m.arch.as_ref().expect("checked by network::load").input,
        (Net::BuiltIn(_), Some(s)) if kind == DatasetKind::Folder => parse_shape(s)?,
        (Net::BuiltIn(_), Some(_)) => {
            anyhow::bail!(
                "--input-shape applies to a folder dataset; {} has a fixed shape",
                kind
            )
        }
        (Net::BuiltIn(_), None) if kind == DatasetKind::Folder => [3, 32, 32],
        (Net::BuiltIn(_), None) => kind.shape(),
    };
    let model_kind = match &net {
        Net::BuiltIn(k) => *k,
        Net::File(..) => ModelKind::Graph,
    };
    // A --keep that matches no weight would silently quantize the layer it meant to keep.
    let keep = cfg_keep_regexes(&args.keep)?;
    if !keep.is_empty() {
        let names: Vec<String> = match &net {
            Net::File(m, _) => m.tensors.keys().cloned().collect(),
            Net::BuiltIn(k) => twobit_train::models::builtin(*k, shape, 10, 0)?
                .tensors
                .into_keys()
                .collect(),
        };
        util::warn_unmatched_keep(&args.keep, &keep, names.iter().map(String::as_str));
    }
    let mut cfg = TrainConfig::new(model_kind, scheme);
    cfg.granularity = granularity;
    cfg.quantize_all = args.quantize_all;
    cfg.keep = args.keep.clone();
    // The normalisation: the file's own (what its weights were trained with) or the
    // dataset's standard one, overridden by --mean/--std.
    let base = match &net {
        Net::File(m, _) => m.arch.as_ref().expect("checked").normalize.clone(),
        Net::BuiltIn(_) => kind.normalize_for(shape[0]),
    };
    if args.norm.given() || kind == DatasetKind::Folder || is_file {
        cfg.normalize = Some(args.norm.resolve(shape[0], &base)?);
    }
    cfg.augment = match &args.augment {
        None => None,
        Some(v) => Some(Augment::parse(&v.join(",")).with_context(|| {
            format!(
                "--augment {}: expected crop, flip, crop,flip or none",
                v.join(",")
            )
        })?),
    };
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
    // A lower bound on a step's memory (the batch as built, and as the backend's tensor): a
    // batch above it would be killed by the kernel without a message.
    let image = shape.iter().product::<usize>() as u64;
    util::check_batch_bytes(
        cfg.batch_size,
        (image * 4 * 2).saturating_mul(cfg.batch_size as u64),
    )?;

    // The device works (a GPU backend finds its device) before the data is loaded.
    twobit_train::device::select(device).with_context(|| format!("--device {device}"))?;
    let loaded = dataset::load(kind, args.data_dir.as_deref(), shape)?;
    let data = TrainData {
        kind,
        splits: loaded.splits,
        classes: loaded.classes,
    };
    // Everything needed to reproduce the run (the trainer adds the configuration it knows).
    let limit = |n: Option<usize>| n.map_or_else(|| "all".to_string(), |n| n.to_string());
    let mut provenance = BTreeMap::new();
    provenance.insert(
        "command".to_string(),
        std::env::args().collect::<Vec<_>>().join(" "),
    );
    provenance.insert("weight_decay".into(), cfg.weight_decay.to_string());
    provenance.insert("train_limit".into(), limit(cfg.train_limit));
    provenance.insert("test_limit".into(), limit(cfg.test_limit));
    provenance.insert("device".into(), device.name().into());
    let opts = RunOptions {
        checkpoint: Some(checkpoint.clone()),
        resume: args.resume,
        log: Some(log.clone()),
        provenance,
        stop_after: args.stop_after,
    };
    let mut bar = Bar {
        bar: None,
        epochs: cfg.epochs,
        epoch: 0,
        batches: 0,
        ticker: util::Ticker::new(),
        finished: 0,
        resume: args.resume,
        checkpoint: checkpoint.clone(),
    };
    // Ctrl-C from here on stops the run between steps (or after a file being written is
    // complete), never in the middle of a write.
    let _deferred = signals::Deferred::new();
    let mut outcome = match net {
        Net::BuiltIn(_) => twobit_train::train(&cfg, &data, &opts, &mut bar)?,
        Net::File(start, init) => {
            twobit_train::train_graph(&cfg, &data, &start, init, &opts, &mut bar)?
        }
    };
    let model_name = outcome
        .file
        .arch
        .as_ref()
        .map_or_else(|| args.model.clone(), |a| a.name.clone());
    outcome
        .file
        .provenance
        .insert("epochs_completed".into(), outcome.epochs.to_string());
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
    // The checkpoint only serves --resume: a complete run removes it unless asked to keep it.
    let complete = outcome.epochs >= cfg.epochs;
    let kept = if complete && !args.keep_checkpoint {
        match std::fs::remove_file(&checkpoint) {
            Ok(()) => eprintln!(
                "removed the checkpoint {} (the run is complete; --keep-checkpoint keeps it)",
                checkpoint.display()
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => eprintln!(
                "warning: cannot remove the checkpoint {}: {e}",
                checkpoint.display()
            ),
        }
        None
    } else {
        if complete {
            eprintln!(
                "checkpoint kept: {} (only needed to train further; delete it when done)",
                checkpoint.display()
            );
        } else {
            eprintln!(
                "checkpoint {}: {} of {} done; continue with --resume",
                checkpoint.display(),
                plural(outcome.epochs, "epoch"),
                cfg.epochs
            );
        }
        Some(checkpoint.display().to_string())
    };
    let float = scheme.name() == "fp";
    if args.json {
        let obj = serde_json::json!({
            "model": model_name,
            "dataset": kind.name(),
            "scheme": scheme.name(),
            "granularity": cfg.granularity.name(),
            "quantize_all": cfg.quantize_all,
            "optimizer": optimizer.name(),
            "schedule": schedule.name(),
            "lr": cfg.learning_rate(),
            "weight_decay": cfg.weight_decay,
            "batch_size": cfg.batch_size,
            "seed": cfg.seed,
            "epochs": outcome.epochs,
            "epochs_planned": cfg.epochs,
            "test_accuracy": outcome.test_accuracy,
            "train_seconds": outcome.train_seconds,
            "images_per_second": outcome.images_per_second,
            "file_bytes": file_bytes,
            "fp32_bytes": fp32_bytes,
            "output": args.out.display().to_string(),
            "out": args.out.display().to_string(),
            "checkpoint": kept,
            "log": log.display().to_string(),
            "device": device.name(),
            "quantize_seconds": outcome.logs.iter().map(|l| l.quantize_seconds).sum::<f64>(),
        });
        println!("{obj}");
    } else {
        println!(
            "{} {} on {}: test accuracy {:.2}% after {} ({:.0} s, {:.0} img/s); wrote {} ({}{file_bytes} bytes, fp32 {fp32_bytes} bytes, {})",
            model_name,
            scheme.name(),
            kind.name(),
            outcome.test_accuracy * 100.0,
            plural(outcome.epochs, "epoch"),
            outcome.train_seconds,
            outcome.images_per_second,
            args.out.display(),
            if float { "float weights, " } else { "" },
            util::size_ratio(file_bytes, fp32_bytes)
        );
    }
    Ok(())
}
