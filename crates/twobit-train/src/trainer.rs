//! The training loop: QAT forward, backward, optimizer step, per-epoch evaluation,
//! checkpoints and export.
use crate::checkpoint::{self, Checkpoint, CheckpointMeta};
use crate::config::{ModelKind, OptimizerKind, TrainConfig};
use crate::data::{epoch_order, epoch_rng, Batcher};
use crate::export::{latent_weights, to_file_model};
use crate::graph_net::GraphNet;
use crate::models::QatModel;
use crate::qat::{EvalWeights, ForwardWeights, QatPlan, QatState};
use crate::schedule::learning_rate;
use crate::TrainError;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;
use twobit_data::{Dataset, DatasetKind, Splits};

/// One line of the per-epoch log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochLog {
    /// Epoch number, 1-based.
    pub epoch: usize,
    /// Learning rate at the epoch's first step.
    pub lr: f64,
    /// Mean training loss over the epoch.
    pub train_loss: f64,
    /// Training accuracy (fraction) over the epoch, with the quantized forward.
    pub train_accuracy: f64,
    /// Test accuracy (fraction) of the quantized model after the epoch.
    pub test_accuracy: f64,
    /// Training throughput (images per second, excluding evaluation).
    pub images_per_second: f64,
    /// Training seconds of this epoch (excluding evaluation).
    pub seconds: f64,
    /// Of `seconds`, the quantizer's: weights to the host, the fit, the quantized weights
    /// back to the device. On a GPU this includes waiting for the previous step's work
    /// unless `TWOBIT_PROFILE=1` (which syncs the device between phases). 0 in logs written
    /// before it was recorded.
    #[serde(default)]
    pub quantize_seconds: f64,
}

/// Progress callbacks (the CLI draws a progress bar).
pub trait Progress {
    /// An epoch starts with `batches` steps.
    fn epoch_start(&mut self, _epoch: usize, _batches: usize) {}
    /// A step finished; running means over the epoch so far.
    fn step(&mut self, _done: usize, _loss: f64, _accuracy: f64, _images_per_second: f64) {}
    /// An epoch finished.
    fn epoch_end(&mut self, _log: &EpochLog) {}
}

/// Progress that reports nothing.
pub struct NoProgress;
impl Progress for NoProgress {}

/// Where a run writes besides the model file.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Checkpoint written after every epoch (atomically).
    pub checkpoint: Option<PathBuf>,
    /// Continue from `checkpoint`.
    pub resume: bool,
    /// JSON-lines log, one line per epoch.
    pub log: Option<PathBuf>,
    /// Provenance entries added to the file (command line, ...).
    pub provenance: BTreeMap<String, String>,
    /// Stop after this many epochs in this invocation (the checkpoint lets a later
    /// `resume` continue); `None` runs to the configured number of epochs.
    pub stop_after: Option<usize>,
}

/// The result of a run.
#[derive(Clone, Debug)]
pub struct TrainOutcome {
    /// Final test accuracy (fraction) of exactly the exported weights.
    pub test_accuracy: f64,
    /// Epochs trained in total (including those before a resume).
    pub epochs: usize,
    /// Training seconds (excluding evaluation), over all epochs.
    pub train_seconds: f64,
    /// Training images per second over all epochs.
    pub images_per_second: f64,
    /// The per-epoch logs.
    pub logs: Vec<EpochLog>,
    /// The trained network, ready to save.
    pub file: twobit_format::Model,
    /// The float shadow weights of the quantized layers (empty for `fp`), see
    /// [`crate::export::latent_weights`].
    pub latent: twobit_format::Model,
}

/// A finished run with its model (evaluation form) and the weights the last evaluation used.
pub struct Trained<M> {
    /// The model on the inference device.
    pub model: M,
    /// Its quantized forward weights and codes.
    pub eval: EvalWeights,
    /// Summary and file.
    pub outcome: TrainOutcome,
}

/// The training data and what describes it.
pub struct TrainData {
    /// Which dataset.
    pub kind: DatasetKind,
    /// Train and test splits.
    pub splits: Splits,
    /// Number of classes (the network's outputs); [`DatasetKind::classes`] for the built-in
    /// datasets, the class directories of a folder dataset.
    pub classes: usize,
}

impl TrainData {
    /// A built-in dataset's splits, with its class count.
    pub fn new(kind: DatasetKind, splits: Splits) -> Self {
        TrainData {
            kind,
            splits,
            classes: kind.classes(),
        }
    }
}

/// Trains the built-in network `config.model` on `data` (its graph, see
/// [`crate::models::builtin`], as a [`GraphNet`]); see [`Trainer::run`].
pub fn train(
    config: &TrainConfig,
    data: &TrainData,
    opts: &RunOptions,
    progress: &mut dyn Progress,
) -> Result<TrainOutcome, TrainError> {
    let t = Trainer::new(config, data)?;
    if config.model == ModelKind::Graph {
        return Err(TrainError::InvalidConfig(
            "model graph trains a network from a file: use train_graph".into(),
        ));
    }
    // The built-in network's graph (input shape and classes from the data), trained as any
    // graph is.
    let input = data.splits.train.shape;
    let net = GraphNet::builtin(config.model, input, data.classes, config.seed, &t.device)?;
    Ok(t.run(net, opts, progress)?.outcome)
}

/// Runs training for one configuration and dataset.
pub struct Trainer<'a> {
    config: &'a TrainConfig,
    data: &'a TrainData,
    /// The autodiff device parameters live on.
    pub device: Device,
}

impl<'a> Trainer<'a> {
    /// Checks the configuration; the device is [`crate::default_device`] with autodiff.
    pub fn new(config: &'a TrainConfig, data: &'a TrainData) -> Result<Self, TrainError> {
        config.validate()?;
        if data.splits.train.is_empty() || data.splits.test.is_empty() {
            return Err(TrainError::InvalidConfig("the dataset is empty".into()));
        }
        Ok(Trainer {
            config,
            data,
            device: crate::default_device().autodiff(),
        })
    }

    fn optimizer(&self) -> ModuleOptimizer {
        let decay = (self.config.weight_decay > 0.0).then_some(WeightDecayConfig {
            penalty: self.config.weight_decay as f32,
        });
        match self.config.optimizer {
            OptimizerKind::Sgd => SgdConfig::new()
                .with_weight_decay(decay)
                // burn's default dampening is 0.1; PyTorch's (and ours) is 0.
                .with_momentum(Some(MomentumConfig {
                    momentum: 0.9,
                    dampening: 0.0,
                    nesterov: false,
                }))
                .init(),
            OptimizerKind::Adam => AdamConfig::new()
                .with_epsilon(1e-8)
                .with_weight_decay(decay)
                .init(),
        }
    }

    fn meta<M: QatModel>(&self, model: &M) -> CheckpointMeta {
        let mut meta = CheckpointMeta::of(self.config, self.data.kind);
        if let Some(f) = model.fingerprint() {
            meta.settings.push(format!("arch={f}"));
        }
        meta
    }

    /// The input normalisation: the configured override, else the dataset's.
    pub fn normalize(&self) -> twobit_format::Normalize {
        self.config
            .normalize
            .clone()
            .unwrap_or_else(|| self.data.kind.normalize())
    }

    /// Trains `model` (freshly initialised on [`Trainer::device`]): QAT steps, an evaluation
    /// after every epoch, checkpoints, and the file model of the final evaluation's weights.
    pub fn run<M: QatModel>(
        &self,
        mut model: M,
        opts: &RunOptions,
        progress: &mut dyn Progress,
    ) -> Result<Trained<M>, TrainError> {
        let cfg = self.config;
        // Forward weights are looked up by slot: a model whose slots do not run 0..n (built
        // from an `Init` that already built another model) would silently train in float.
        for (i, (name, layer)) in model.weight_layers().iter().enumerate() {
            if layer.slot() != i {
                return Err(TrainError::InvalidConfig(format!(
                    "layer {name} has slot {} instead of {i}: build each model with a fresh Init",
                    layer.slot()
                )));
            }
        }
        let splits = &self.data.splits;
        let train = &splits.train;
        let test = &splits.test;
        let norm = self.normalize();
        if norm.mean.len() != train.shape[0] {
            return Err(TrainError::InvalidConfig(format!(
                "normalisation has {} channels, the images {}",
                norm.mean.len(),
                train.shape[0]
            )));
        }
        let keep = cfg.keep_regexes()?;
        let plan = QatPlan::for_model(cfg.scheme, cfg.granularity, cfg.quantize_all, &keep, &model);
        plan.init_ttq(&mut model, &self.device);
        let mut optim = self.optimizer();
        let mut logs: Vec<EpochLog> = Vec::new();
        let mut train_seconds = 0.0;
        let mut start_epoch = 0;
        let mut qat_state = QatState::default();

        if opts.resume {
            let path = opts.checkpoint.as_ref().ok_or_else(|| {
                TrainError::InvalidConfig("--resume needs a checkpoint path".into())
            })?;
            let ck = checkpoint::read(path)?;
            ck.meta.check_compatible(&self.meta(&model), path)?;
            model = ck.load_model(model, path)?;
            optim = ck.load_optimizer(optim, path)?;
            start_epoch = ck.meta.epochs_done;
            logs = ck.meta.logs.clone();
            train_seconds = ck.meta.train_seconds;
            qat_state = QatState::from_bits(&ck.meta.qat_state);
        }

        let n_train = cfg.train_limit.map_or(train.len(), |l| l.min(train.len()));
        let batches = n_train.div_ceil(cfg.batch_size);
        let augment = cfg
            .augment
            .unwrap_or(if self.data.kind == DatasetKind::Cifar10 {
                twobit_data::Augment::CROP_FLIP
            } else {
                twobit_data::Augment::NONE
            });
        let mut batcher = Batcher::new(norm.clone());
        let mut last_eval: Option<(M, EvalWeights, f64)> = None;

        let end_epoch = opts
            .stop_after
            .map_or(cfg.epochs, |n| (start_epoch + n).min(cfg.epochs));
        for epoch in start_epoch..end_epoch {
            progress.epoch_start(epoch + 1, batches);
            let order = epoch_order(cfg.seed, epoch, n_train);
            let mut aug_rng = epoch_rng(cfg.seed, epoch, 2);
            let started = Instant::now();
            let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
            // Time per phase (TWOBIT_PROFILE=1), to find where an epoch goes.
            let profile = std::env::var_os("TWOBIT_PROFILE").is_some();
            // A GPU runs asynchronously: profiling waits for each phase's work to finish, so
            // that it is counted in that phase.
            let sync = || {
                if profile {
                    let _ = self.device.sync();
                }
            };
            let mut prof = [0f64; 5];
            let mut quantize_seconds = 0.0;
            let mut first_lr = 0.0;
            for (step, idx) in order.chunks(cfg.batch_size).enumerate() {
                let lr = learning_rate(
                    cfg.schedule,
                    cfg.learning_rate(),
                    epoch,
                    step,
                    batches,
                    cfg.epochs,
                );
                if step == 0 {
                    first_lr = lr;
                }
                sync();
                let t0 = Instant::now();
                let (x, y, labels) =
                    batcher.batch_with(train, idx, augment, &mut aug_rng, &self.device);
                sync();
                let t1 = Instant::now();
                let fw = plan.train_weights(&model, &mut qat_state)?;
                sync();
                let t2 = Instant::now();
                quantize_seconds += (t2 - t1).as_secs_f64();
                let logits = model.forward(x, &fw);
                let loss = cross_entropy(logits.clone(), y);
                let loss_value: f32 = loss.clone().into_scalar();
                let t3 = Instant::now();
                if !loss_value.is_finite() {
                    return Err(TrainError::Diverged {
                        epoch: epoch + 1,
                        step,
                        loss: loss_value,
                    });
                }
                correct += count_correct(logits.detach(), &labels);
                seen += idx.len();
                loss_sum += loss_value as f64 * idx.len() as f64;
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                sync();
                let t4 = Instant::now();
                model = optim.step(lr, model, grads);
                plan.project_ttq(&mut model);
                sync();
                let t5 = Instant::now();
                if profile {
                    for (acc, (a, b)) in
                        prof.iter_mut()
                            .zip([(t0, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5)])
                    {
                        *acc += (b - a).as_secs_f64();
                    }
                }
                let secs = started.elapsed().as_secs_f64();
                progress.step(
                    step + 1,
                    loss_sum / seen as f64,
                    correct as f64 / seen as f64,
                    seen as f64 / secs.max(1e-9),
                );
            }
            let seconds = started.elapsed().as_secs_f64();
            train_seconds += seconds;
            if profile {
                eprintln!(
                    "profile epoch {}: data {:.2}s quantize {:.2}s forward {:.2}s backward {:.2}s step {:.2}s",
                    epoch + 1,
                    prof[0],
                    prof[1],
                    prof[2],
                    prof[3],
                    prof[4]
                );
            }

            let valid = model.valid();
            let eval = plan.eval_weights(&valid, &qat_state)?;
            let test_accuracy = evaluate(&valid, &eval.forward, test, cfg.test_limit, &norm)?;
            let log = EpochLog {
                epoch: epoch + 1,
                lr: first_lr,
                train_loss: loss_sum / seen.max(1) as f64,
                train_accuracy: correct as f64 / seen.max(1) as f64,
                test_accuracy,
                images_per_second: seen as f64 / seconds.max(1e-9),
                seconds,
                quantize_seconds,
            };
            progress.epoch_end(&log);
            if let Some(path) = &opts.log {
                append_log(path, &log, epoch == 0 && !opts.resume)?;
            }
            logs.push(log);
            if let Some(path) = &opts.checkpoint {
                let mut meta = self.meta(&model);
                meta.epochs_done = epoch + 1;
                meta.logs = logs.clone();
                meta.train_seconds = train_seconds;
                meta.qat_state = qat_state.to_bits();
                Checkpoint::write(path, &meta, &model, &optim)?;
            }
            last_eval = Some((valid, eval, test_accuracy));
        }

        // A resumed run that had already finished: evaluate the restored weights.
        let (valid, eval, test_accuracy) = match last_eval {
            Some(v) => v,
            None => {
                let valid = model.valid();
                let eval = plan.eval_weights(&valid, &qat_state)?;
                let acc = evaluate(&valid, &eval.forward, test, cfg.test_limit, &norm)?;
                (valid, eval, acc)
            }
        };
        let images: f64 = logs.iter().map(|l| l.images_per_second * l.seconds).sum();
        let mut provenance = opts.provenance.clone();
        provenance.insert(
            "producer".into(),
            format!("twobit-train {}", env!("CARGO_PKG_VERSION")),
        );
        provenance.insert("model".into(), cfg.model.name().into());
        provenance.insert("dataset".into(), self.data.kind.name().into());
        provenance.insert("scheme".into(), cfg.scheme.name().into());
        provenance.insert("granularity".into(), cfg.granularity.name().into());
        provenance.insert("quantize_all".into(), cfg.quantize_all.to_string());
        provenance.insert("epochs".into(), cfg.epochs.to_string());
        provenance.insert("batch_size".into(), cfg.batch_size.to_string());
        provenance.insert("lr".into(), cfg.learning_rate().to_string());
        provenance.insert("optimizer".into(), cfg.optimizer.name().into());
        provenance.insert("schedule".into(), cfg.schedule.name().into());
        provenance.insert("seed".into(), cfg.seed.to_string());
        provenance.insert("test_accuracy".into(), format!("{test_accuracy:.6}"));
        let latent = latent_weights(&valid, &eval);
        let file = to_file_model(&valid, &eval, self.data.classes, norm, provenance);
        Ok(Trained {
            model: valid,
            eval,
            outcome: TrainOutcome {
                test_accuracy,
                epochs: logs.len(),
                train_seconds,
                images_per_second: images / train_seconds.max(1e-9),
                logs,
                file,
                latent,
            },
        })
    }
}

/// Mean cross-entropy of logits `[N, C]` against class indices `[N]`.
pub fn cross_entropy(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    let [n] = targets.dims();
    log_softmax(logits, 1)
        .gather(1, targets.reshape([n, 1]))
        .mean()
        .neg()
}

/// Number of rows whose arg-max equals the label.
pub fn count_correct(logits: Tensor<2>, labels: &[u8]) -> usize {
    let pred = logits.argmax(1).into_data();
    pred.iter::<i64>()
        .zip(labels)
        .filter(|(p, &l)| *p == l as i64)
        .count()
}

/// Accuracy of `model` with forward weights `fw` on (the first `limit` images of) `data`.
pub fn evaluate<M: QatModel>(
    model: &M,
    fw: &ForwardWeights,
    data: &Dataset,
    limit: Option<usize>,
    norm: &twobit_format::Normalize,
) -> Result<f64, TrainError> {
    let n = limit.map_or(data.len(), |l| l.min(data.len()));
    let device = model
        .weight_layers()
        .first()
        .map(|(_, l)| match l {
            crate::layers::WeightLayer::Linear(l) => l.weight.val().device(),
            crate::layers::WeightLayer::Conv(c) => c.weight.val().device(),
        })
        .ok_or_else(|| TrainError::InvalidConfig("model has no layers".into()))?;
    let idx: Vec<usize> = (0..n).collect();
    let mut batcher = Batcher::new(norm.clone());
    let mut correct = 0;
    for chunk in idx.chunks(500) {
        let (x, _, labels) = batcher.batch(data, chunk, None, &device);
        correct += count_correct(model.forward(x, fw), &labels);
    }
    Ok(correct as f64 / n.max(1) as f64)
}

fn append_log(path: &PathBuf, log: &EpochLog, truncate: bool) -> Result<(), TrainError> {
    let io = |source| TrainError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(!truncate)
        .truncate(truncate)
        .open(path)
        .map_err(io)?;
    let line = serde_json::to_string(log).expect("log serialises");
    writeln!(f, "{line}").map_err(io)
}
