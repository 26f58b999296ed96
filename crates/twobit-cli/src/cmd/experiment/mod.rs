//! `twobit experiment PRESET`: every scheme, several seeds, equal epochs; then a report
//! (`results/PRESET.md`, CSVs, PNG/SVG plots). Resumable: finished runs are not repeated.
mod presets;
mod report;
mod runner;
mod stats;
mod synth;

use crate::util::with_suffix;
use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use presets::{preset, Preset, NAMES};
use report::{Run, TorchRun};
use runner::{load_record, plan};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Arguments.
#[derive(clap::Args)]
pub struct Args {
    /// Preset: fmnist (about 2 h on 2 cores), fmnist-smoke (minutes), cifar10-resnet20,
    /// cifar10-vgg7 (GPU-sized), cifar10-smoke (generated CIFAR-format data, minutes).
    pub preset: String,
    /// Directory for the report and the runs (runs go under DIR/runs/PRESET).
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
    /// Directory holding the dataset files [default: the dataset's standard location].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Number of seeds (1..=N) for every scheme, instead of the preset's.
    #[arg(long)]
    pub seeds: Option<u64>,
    /// Only the settings whose id matches this regular expression.
    #[arg(long)]
    pub only: Option<String>,
    /// List the runs, finished or not, with their commands; run nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Run nothing; rewrite the report from the finished runs.
    #[arg(long)]
    pub report_only: bool,
    /// Skip the plots.
    #[arg(long)]
    pub no_plots: bool,
    /// Python interpreter with PyTorch: also run reference/lenet5_fmnist.py (fp and TWN) for
    /// the cross-check section.
    #[arg(long)]
    pub pytorch: Option<PathBuf>,
    /// The PyTorch reference script [default: reference/lenet5_fmnist.py of the repository
    /// the twobit binary was built in].
    #[arg(long)]
    pub reference: Option<PathBuf>,
    /// Print one JSON object (report paths, runs done) on stdout at the end.
    #[arg(long)]
    pub json: bool,
}

fn select(mut p: Preset, only: Option<&str>) -> anyhow::Result<Preset> {
    if let Some(re) = only {
        let re = regex::Regex::new(re).with_context(|| format!("--only: bad regex '{re}'"))?;
        p.settings.retain(|s| re.is_match(s.id));
        if p.settings.is_empty() {
            bail!("--only: no setting of preset {} matches", p.name);
        }
    }
    Ok(p)
}

/// PyTorch reference runs for the preset's lenet5 default setting (fp and TWN).
fn torch_plan(p: &Preset, seeds: u64, root: &Path) -> Vec<(String, u64, usize, PathBuf)> {
    let Some(s) = p.torch_setting() else {
        return Vec::new();
    };
    let mut v = Vec::new();
    for seed in 1..=seeds {
        for scheme in ["fp", "twn"] {
            let stem = root.join(format!("pytorch-lenet5-e{}-{scheme}-s{seed}", s.epochs));
            v.push((scheme.to_string(), seed, s.epochs, stem));
        }
    }
    v
}

fn load_torch(plan: &[(String, u64, usize, PathBuf)]) -> Vec<TorchRun> {
    plan.iter()
        .filter_map(|(scheme, _, _, stem)| {
            let text = std::fs::read_to_string(with_suffix(stem, ".json")).ok()?;
            let v: serde_json::Value = serde_json::from_str(&text).ok()?;
            Some(TorchRun {
                scheme: scheme.clone(),
                json: v.get("result")?.clone(),
                command: v.get("command")?.as_str()?.to_string(),
            })
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn run_torch(
    python: &Path,
    script: &Path,
    p: &Preset,
    scheme: &str,
    seed: u64,
    epochs: usize,
    stem: &Path,
    data_dir: Option<&Path>,
) -> anyhow::Result<()> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut args: Vec<String> = vec![
        script.display().to_string(),
        "--scheme".into(),
        scheme.into(),
        "--epochs".into(),
        epochs.to_string(),
        "--seed".into(),
        seed.to_string(),
        "--threads".into(),
        threads.to_string(),
        "--batch-size".into(),
        p.batch_size.to_string(),
    ];
    if let Some(n) = p.train_limit {
        args.extend(["--train-limit".into(), n.to_string()]);
    }
    if let Some(d) = data_dir {
        args.extend(["--data-dir".into(), d.display().to_string()]);
    }
    let command = format!("{} {}", python.display(), args.join(" "));
    let out = Command::new(python)
        .args(&args)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot start {}", python.display()))?;
    if !out.status.success() {
        bail!("`{command}` failed ({})", out.status);
    }
    let result = runner::last_json(&out.stdout, &command)?;
    let rec = serde_json::json!({ "command": command, "result": result });
    crate::util::write_output(
        &with_suffix(stem, ".json"),
        serde_json::to_string_pretty(&rec)?.as_bytes(),
    )?;
    Ok(())
}

/// The reference script: `--reference`, or the repository's copy, found from the binary
/// (`target/*/twobit` lies two levels under the repository) or from where it was built — never
/// from the current directory, which may be anywhere.
fn reference_script(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    const REL: &str = "reference/lenet5_fmnist.py";
    if let Some(p) = given {
        if !p.is_file() {
            bail!("--reference {}: no such file", p.display());
        }
        return Ok(p.to_path_buf());
    }
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        candidates.extend(exe.ancestors().skip(1).take(4).map(|d| d.join(REL)));
    }
    candidates.push(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(REL),
    );
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .with_context(|| format!("cannot find the PyTorch reference script {REL} next to the twobit binary or its sources: pass --reference FILE"))
}

/// Checks that `python` runs and imports torch: minutes before the first PyTorch run, not
/// hours after the twobit runs.
fn check_python(python: &Path) -> anyhow::Result<()> {
    let out = Command::new(python)
        .args(["-c", "import torch"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| anyhow::anyhow!("--pytorch {}: cannot run it: {e}", python.display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        bail!(
            "--pytorch {}: `import torch` failed: {}",
            python.display(),
            last.trim()
        );
    }
    Ok(())
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<()> {
    let p = preset(&args.preset).with_context(|| {
        format!(
            "unknown preset '{}' (expected one of: {})",
            args.preset,
            NAMES.join(", ")
        )
    })?;
    let p = select(p, args.only.as_deref())?;
    if args.seeds == Some(0) {
        bail!("--seeds must be at least 1");
    }
    // Every input and output is checked before the first (hours-long) run.
    let torch = match &args.pytorch {
        Some(python) => {
            let script = reference_script(args.reference.as_deref())?;
            check_python(python)?;
            Some((python.clone(), script))
        }
        None => None,
    };
    if let Some(d) = &args.data_dir {
        if !d.is_dir() {
            bail!("--data-dir {}: no such directory", d.display());
        }
    }
    if !args.dry_run {
        crate::util::output_dir(&args.results)?;
    }
    let root = args.results.join("runs").join(p.name);
    let data_dir: Option<PathBuf> = if p.synthetic_cifar {
        let dir = root.join("data");
        if !args.dry_run && !args.report_only {
            synth::write_cifar(&dir)?;
        }
        Some(dir)
    } else {
        args.data_dir.clone()
    };
    let specs = plan(&p, &args.results, data_dir.as_deref(), args.seeds);
    let mut runs: Vec<Run> = specs
        .into_iter()
        .map(|spec| {
            let record = load_record(&spec);
            Run { spec, record }
        })
        .collect();
    let tplan = torch_plan(&p, args.seeds.unwrap_or(p.seeds), &root);

    if args.dry_run {
        let done = runs.iter().filter(|r| r.record.is_some()).count();
        for r in &runs {
            println!(
                "{} {} {} seed {}: {}",
                if r.record.is_some() {
                    "done   "
                } else {
                    "pending"
                },
                r.spec.setting,
                r.spec.scheme,
                r.spec.seed,
                runner::command_line(&r.spec.train_args)
            );
        }
        if let Some((python, script)) = &torch {
            for (scheme, seed, epochs, stem) in &tplan {
                let state = if with_suffix(stem, ".json").exists() {
                    "done   "
                } else {
                    "pending"
                };
                println!(
                    "{state} PyTorch reference {scheme} seed {seed}: {} {} --scheme {scheme} --epochs {epochs} --seed {seed}",
                    python.display(),
                    script.display()
                );
            }
        } else if !tplan.is_empty() {
            println!(
                "PyTorch reference: {} runs with --pytorch PYTHON",
                tplan.len()
            );
        }
        println!(
            "{done} of {} runs finished; report: {}",
            runs.len(),
            args.results.join(format!("{}.md", p.name)).display()
        );
        return Ok(());
    }

    std::fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    if !args.report_only {
        let exe = std::env::current_exe().context("cannot find the twobit executable")?;
        let pending: Vec<usize> = (0..runs.len())
            .filter(|&i| runs[i].record.is_none())
            .collect();
        eprintln!(
            "experiment {}: {} runs, {} finished, {} to run (runs in {})",
            p.name,
            runs.len(),
            runs.len() - pending.len(),
            pending.len(),
            root.display()
        );
        let bar = ProgressBar::new(pending.len() as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "[{bar:30}] {pos}/{len} runs {msg} ({elapsed}, eta {eta})",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        for (k, &i) in pending.iter().enumerate() {
            let spec = runs[i].spec.clone();
            // Settings of one model share the float baseline: it may have finished meanwhile.
            if let Some(rec) = load_record(&spec) {
                runs[i].record = Some(rec);
                bar.inc(1);
                continue;
            }
            bar.set_message(format!(
                "{} {} seed {}",
                spec.setting, spec.scheme, spec.seed
            ));
            let rec = runner::execute(&exe, &spec)?;
            let acc = rec
                .train
                .get("test_accuracy")
                .and_then(|v| v.as_f64())
                .unwrap_or(f64::NAN);
            let ev = report::eval_accuracy(&rec.eval);
            bar.suspend(|| {
                eprintln!(
                    "[{}/{}] {} {} seed {}: test {:.2}%, from the file {:.2}%, {:.0} s",
                    k + 1,
                    pending.len(),
                    spec.setting,
                    spec.scheme,
                    spec.seed,
                    acc * 100.0,
                    ev * 100.0,
                    rec.wall_seconds
                )
            });
            runs[i].record = Some(rec);
            bar.inc(1);
            // Keep the report current so an interrupted experiment still shows what finished.
            report::write(&p, &runs, &load_torch(&tplan), &args.results, false)?;
        }
        bar.finish_and_clear();
        if let Some((python, script)) = &torch {
            for (scheme, seed, epochs, stem) in &tplan {
                if with_suffix(stem, ".json").exists() {
                    continue;
                }
                eprintln!("PyTorch reference: {scheme} seed {seed}, {epochs} epochs");
                run_torch(
                    python,
                    script,
                    &p,
                    scheme,
                    *seed,
                    *epochs,
                    stem,
                    args.data_dir.as_deref(),
                )?;
            }
        }
    }
    let w = report::write(
        &p,
        &runs,
        &load_torch(&tplan),
        &args.results,
        !args.no_plots,
    )?;
    let done = runs.iter().filter(|r| r.record.is_some()).count();
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "preset": p.name,
                "runs": runs.len(),
                "finished": done,
                "output": w.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
                "report": w.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
                "plots": w.plots.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
                "plot_error": w.plot_error,
            })
        );
    } else {
        for f in w.files.iter().chain(&w.plots) {
            println!("wrote {}", f.display());
        }
        println!("{done} of {} runs finished", runs.len());
    }
    if let Some(e) = w.plot_error {
        bail!("plots were not drawn: {e}");
    }
    Ok(())
}
