//! Running one preset's trainings and evaluations as child `twobit` processes, resumably.
//!
//! Each run is a plain `twobit train ... --json` followed by `twobit eval ... --json`, so every
//! number in the report comes from commands a user can rerun by hand (the report lists them).
//! A run is finished when both JSON answers are stored next to its file; an interrupted run
//! continues from its checkpoint.
use super::presets::{scheme_args, Preset, Setting};
use crate::util::with_suffix;
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// One training run: a setting, a scheme and a seed.
#[derive(Clone, Debug)]
pub struct RunSpec {
    /// The setting's id.
    pub setting: &'static str,
    /// The scheme.
    pub scheme: &'static str,
    /// The seed.
    pub seed: u64,
    /// `STEM.twobit`, `STEM.json`, ... all live at this stem.
    pub stem: PathBuf,
    /// Arguments after `twobit`.
    pub train_args: Vec<String>,
    /// Arguments after `twobit` for the evaluation from the file.
    pub eval_args: Vec<String>,
}

/// What a finished run stored (`STEM.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunRecord {
    /// `twobit train --json`'s answer.
    pub train: serde_json::Value,
    /// `twobit eval --json`'s answer.
    pub eval: serde_json::Value,
    /// Wall seconds of train + eval (process start to exit).
    pub wall_seconds: f64,
    /// The two commands, as typed.
    pub commands: [String; 2],
}

/// The runs of `preset`, in order: settings first to last, then seeds, then schemes. Each
/// scheme runs `Preset::seeds_for` seeds, or `seeds` when given (`--seeds`).
/// The float baseline ignores `--quantize-all` and `--granularity`, so settings of one model
/// with equal epochs share its runs.
pub fn plan(
    preset: &Preset,
    results: &Path,
    data_dir: Option<&Path>,
    seeds: Option<u64>,
) -> Vec<RunSpec> {
    let root = results.join("runs").join(preset.name);
    let count = |scheme: &str| seeds.unwrap_or_else(|| preset.seeds_for(scheme));
    let most = preset.schemes.iter().map(|s| count(s)).max().unwrap_or(0);
    let mut runs = Vec::new();
    for s in &preset.settings {
        for seed in 1..=most {
            for &scheme in preset.schemes {
                if seed <= count(scheme) {
                    runs.push(spec(preset, s, scheme, seed, &root, data_dir));
                }
            }
        }
    }
    runs
}

fn spec(
    preset: &Preset,
    s: &Setting,
    scheme: &'static str,
    seed: u64,
    root: &Path,
    data_dir: Option<&Path>,
) -> RunSpec {
    let tag = if scheme == "fp" {
        format!("{}-e{}-fp", s.model, s.epochs)
    } else {
        format!(
            "{}-e{}-{}-{}-{scheme}",
            s.model,
            s.epochs,
            if s.quantize_all { "all" } else { "default" },
            s.granularity
        )
    };
    let stem = root.join(format!("{tag}-s{seed}"));
    let file = with_suffix(&stem, ".twobit");
    let mut train: Vec<String> = vec![
        "train".into(),
        "--model".into(),
        s.model.into(),
        "--dataset".into(),
        preset.dataset.into(),
        "--scheme".into(),
        scheme.into(),
        "--epochs".into(),
        s.epochs.to_string(),
        "--batch-size".into(),
        preset.batch_size.to_string(),
        "--seed".into(),
        seed.to_string(),
    ];
    if scheme != "fp" {
        train.extend(["--granularity".into(), s.granularity.into()]);
        if s.quantize_all {
            train.push("--quantize-all".into());
        }
    }
    train.extend(scheme_args(scheme).iter().map(|a| a.to_string()));
    if let Some(n) = preset.train_limit {
        train.extend(["--train-limit".into(), n.to_string()]);
    }
    if let Some(n) = preset.test_limit {
        train.extend(["--test-limit".into(), n.to_string()]);
    }
    let mut eval: Vec<String> = vec![
        "eval".into(),
        file.display().to_string(),
        "--dataset".into(),
        preset.dataset.into(),
    ];
    if let Some(n) = preset.test_limit {
        eval.extend(["--test-limit".into(), n.to_string()]);
    }
    if let Some(d) = data_dir {
        for a in [&mut train, &mut eval] {
            a.extend(["--data-dir".into(), d.display().to_string()]);
        }
    }
    train.extend(["--out".into(), file.display().to_string(), "--json".into()]);
    // Seed 1 keeps its float shadow weights for the histograms and error plots.
    if seed == 1 && scheme != "fp" {
        train.push("--save-latent".into());
    }
    eval.push("--json".into());
    RunSpec {
        setting: s.id,
        scheme,
        seed,
        stem,
        train_args: train,
        eval_args: eval,
    }
}

/// The stored record of a finished run, if any (a damaged record counts as not finished).
pub fn load_record(run: &RunSpec) -> Option<RunRecord> {
    let text = std::fs::read_to_string(with_suffix(&run.stem, ".json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// A command line for the report, with the binary called `twobit`.
pub fn command_line(args: &[String]) -> String {
    let quoted: Vec<String> = args
        .iter()
        .map(|a| {
            if a.is_empty() || a.contains([' ', '\'', '"']) {
                format!("'{}'", a.replace('\'', "'\\''"))
            } else {
                a.clone()
            }
        })
        .collect();
    format!("twobit {}", quoted.join(" "))
}

/// Runs `exe args`, stdout captured, stderr appended to `log`; the last stdout line parsed as
/// JSON.
fn child_json(exe: &Path, args: &[String], log: &Path) -> anyhow::Result<serde_json::Value> {
    let err = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("cannot write {}", log.display()))?;
    let out = Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::from(err))
        .output()
        .with_context(|| format!("cannot start {}", exe.display()))?;
    if !out.status.success() {
        let tail = std::fs::read_to_string(log).unwrap_or_default();
        let last = tail
            .lines()
            .rev()
            .find(|l| l.starts_with("error:"))
            .unwrap_or("(no error line; see the log)")
            .to_string();
        bail!(
            "`{}` failed ({}): {last} [log: {}]",
            command_line(args),
            out.status,
            log.display()
        );
    }
    last_json(&out.stdout, &command_line(args))
}

/// The last line of `stdout` that is a JSON object (the `--json` answer; progress and report
/// lines may come before it).
pub fn last_json(stdout: &[u8], command: &str) -> anyhow::Result<serde_json::Value> {
    let stdout = String::from_utf8_lossy(stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .with_context(|| format!("`{command}` printed no JSON line"))?;
    serde_json::from_str(line).with_context(|| format!("`{command}`: bad JSON"))
}

/// Trains (resuming from a checkpoint if one is there), evaluates from the file, stores the
/// record atomically, and removes the checkpoint.
pub fn execute(exe: &Path, run: &RunSpec) -> anyhow::Result<RunRecord> {
    if let Some(dir) = run.stem.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let start = Instant::now();
    let ckpt = with_suffix(&run.stem, ".twobit.ckpt");
    let mut train = run.train_args.clone();
    if ckpt.exists() {
        train.push("--resume".into());
    }
    // Kept until the record is stored (a failed eval then resumes instead of retraining);
    // removed below.
    train.push("--keep-checkpoint".into());
    let log = with_suffix(&run.stem, ".stderr");
    let t = child_json(exe, &train, &log)?;
    let e = child_json(exe, &run.eval_args, &log)?;
    let record = RunRecord {
        train: t,
        eval: e,
        wall_seconds: start.elapsed().as_secs_f64(),
        commands: [command_line(&run.train_args), command_line(&run.eval_args)],
    };
    let json = serde_json::to_string_pretty(&record)?;
    crate::util::write_output(&with_suffix(&run.stem, ".json"), json.as_bytes())?;
    // The checkpoint (optimizer state) is only needed to resume; the run is done.
    let _ = std::fs::remove_file(&ckpt);
    Ok(record)
}
