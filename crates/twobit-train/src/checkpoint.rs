//! Per-epoch checkpoints: float weights (burn module record, incl. batch-norm running
//! statistics and TTQ scales), optimizer state, and the run's progress.
//!
//! Layout: `TWOBITCK` magic, then three length-prefixed (u64 little-endian) sections:
//! JSON [`CheckpointMeta`], the module record, the optimizer record (both burnpack bytes).
//! No RNG state is stored: every epoch's data order and augmentation RNG is derived from
//! `(seed, epoch)` (see [`crate::data::epoch_rng`]).
use crate::config::TrainConfig;
use crate::trainer::EpochLog;
use crate::TrainError;
use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::store::ModuleRecord;
use burn::tensor::Bytes;
use serde::{Deserialize, Serialize};
use std::path::Path;
use twobit_data::DatasetKind;

const MAGIC: &[u8; 8] = b"TWOBITCK";

/// What a checkpoint records about its run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// Settings that must match to resume (model, dataset, scheme, ...), as `key=value`.
    pub settings: Vec<String>,
    /// Epochs completed.
    pub epochs_done: usize,
    /// Logs of the completed epochs.
    pub logs: Vec<EpochLog>,
    /// Training seconds so far.
    pub train_seconds: f64,
    /// The QAT state after the last step ([`crate::qat::QatState::to_bits`]); empty in
    /// checkpoints written before it existed.
    #[serde(default)]
    pub qat_state: Vec<Option<Vec<[u32; 7]>>>,
}

impl CheckpointMeta {
    /// The metadata of a fresh run.
    pub fn of(cfg: &TrainConfig, dataset: DatasetKind) -> Self {
        let settings = vec![
            format!("model={}", cfg.model.name()),
            format!("dataset={}", dataset.name()),
            format!("scheme={}", cfg.scheme.name()),
            format!("granularity={}", cfg.granularity.name()),
            format!("quantize_all={}", cfg.quantize_all),
            format!("epochs={}", cfg.epochs),
            format!("batch_size={}", cfg.batch_size),
            format!("lr={}", cfg.learning_rate()),
            format!("weight_decay={}", cfg.weight_decay),
            format!("optimizer={}", cfg.optimizer.name()),
            format!("schedule={}", cfg.schedule.name()),
            format!("seed={}", cfg.seed),
            format!("train_limit={:?}", cfg.train_limit),
        ];
        // Added only when set, so checkpoints of runs without them still resume.
        let mut settings = settings;
        if !cfg.keep.is_empty() {
            settings.push(format!("keep={:?}", cfg.keep));
        }
        if let Some(n) = &cfg.normalize {
            settings.push(format!("normalize={:?}/{:?}", n.mean, n.std));
        }
        if let Some(a) = &cfg.augment {
            settings.push(format!("augment=crop:{},flip:{}", a.crop, a.flip));
        }
        CheckpointMeta {
            settings,
            epochs_done: 0,
            logs: Vec::new(),
            train_seconds: 0.0,
            qat_state: Vec::new(),
        }
    }

    /// Errors unless `self` (read) was written by a run with the same settings as `now`.
    pub fn check_compatible(&self, now: &CheckpointMeta, path: &Path) -> Result<(), TrainError> {
        // Every network now trains as a graph, with its fingerprint in the settings. Only the
        // built-in models' former modules wrote none, and their records name those modules'
        // fields (`conv1`, `blocks.0.bn1`, ...), not a graph's layer lists: they cannot load.
        let graph = |m: &CheckpointMeta| m.settings.iter().any(|s| s.starts_with("arch="));
        if graph(now) && !graph(self) {
            return Err(TrainError::Checkpoint {
                path: path.display().to_string(),
                reason: "written by the built-in model modules of an earlier version, whose \
                         weights do not load into the built-in graphs this version trains: \
                         start the run again without --resume"
                    .into(),
            });
        }
        for (a, b) in self.settings.iter().zip(&now.settings) {
            if a != b {
                return Err(TrainError::Checkpoint {
                    path: path.display().to_string(),
                    reason: format!("written with {a}, this run has {b}"),
                });
            }
        }
        if self.settings.len() != now.settings.len() {
            return Err(TrainError::Checkpoint {
                path: path.display().to_string(),
                reason: "written by a different version".into(),
            });
        }
        Ok(())
    }
}

/// A checkpoint read from disk.
pub struct Checkpoint {
    /// Progress and settings.
    pub meta: CheckpointMeta,
    model: Vec<u8>,
    optim: Vec<u8>,
}

fn corrupt(path: &Path, reason: impl Into<String>) -> TrainError {
    TrainError::Checkpoint {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// Reads and splits a checkpoint file.
pub fn read(path: &Path) -> Result<Checkpoint, TrainError> {
    let bytes = std::fs::read(path).map_err(|source| TrainError::Io {
        path: path.display().to_string(),
        source,
    })?;
    if bytes.len() < 8 || &bytes[..8] != MAGIC {
        return Err(corrupt(path, "not a twobit checkpoint"));
    }
    let mut pos = 8;
    let mut sections = Vec::new();
    for _ in 0..3 {
        let len_bytes: [u8; 8] = bytes
            .get(pos..pos + 8)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| corrupt(path, "truncated"))?;
        let len = u64::from_le_bytes(len_bytes) as usize;
        pos += 8;
        let end = pos
            .checked_add(len)
            .filter(|&e| e <= bytes.len())
            .ok_or_else(|| corrupt(path, "truncated"))?;
        sections.push(bytes[pos..end].to_vec());
        pos = end;
    }
    let optim = sections.pop().unwrap_or_default();
    let model = sections.pop().unwrap_or_default();
    let meta: CheckpointMeta = serde_json::from_slice(&sections[0])
        .map_err(|e| corrupt(path, format!("bad metadata: {e}")))?;
    Ok(Checkpoint { meta, model, optim })
}

impl Checkpoint {
    /// Writes a checkpoint atomically (temporary file in the target's directory, then rename).
    pub fn write<M: Module>(
        path: &Path,
        meta: &CheckpointMeta,
        model: &M,
        optim: &ModuleOptimizer,
    ) -> Result<(), TrainError> {
        let model_bytes = model
            .clone()
            .into_record()
            .into_bytes()
            .map_err(|e| corrupt(path, format!("serialising the model: {e}")))?;
        let optim_bytes = optim
            .into_bytes()
            .map_err(|e| corrupt(path, format!("serialising the optimizer: {e}")))?;
        let meta_bytes = serde_json::to_vec(meta).expect("metadata serialises");
        let mut out = Vec::with_capacity(40 + model_bytes.len() + optim_bytes.len());
        out.extend_from_slice(MAGIC);
        for s in [&meta_bytes[..], &model_bytes[..], &optim_bytes[..]] {
            out.extend_from_slice(&(s.len() as u64).to_le_bytes());
            out.extend_from_slice(s);
        }
        let io = |source| TrainError::Io {
            path: path.display().to_string(),
            source,
        };
        // The output policy every twobit writer shares (a symlink's target is written, a
        // non-regular file refused); its temporary file is removed on any failure, where a
        // full disk used to leave `FILE.ckpt.tmp` behind.
        twobit_format::write_atomic(path, &out).map_err(|e| match e {
            twobit_format::FormatError::Io { source, .. } => io(source),
            other => corrupt(path, other.to_string()),
        })
    }

    /// Restores the float weights (and parameter ids, which the optimizer state refers to).
    pub fn load_model<M: Module>(&self, model: M, path: &Path) -> Result<M, TrainError> {
        let rec = ModuleRecord::from_bytes(Bytes::from_bytes_vec(self.model.clone()))
            .map_err(|e| corrupt(path, format!("model record: {e}")))?;
        model
            .try_load_record(rec)
            .map_err(|e| corrupt(path, format!("model record: {e}")))
    }

    /// Restores the optimizer state.
    pub fn load_optimizer(
        &self,
        optim: ModuleOptimizer,
        path: &Path,
    ) -> Result<ModuleOptimizer, TrainError> {
        optim
            .from_bytes(Bytes::from_bytes_vec(self.optim.clone()))
            .map_err(|e| corrupt(path, format!("optimizer record: {e}")))
    }
}
