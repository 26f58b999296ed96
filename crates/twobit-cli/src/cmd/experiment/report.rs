//! The report of a preset: `results/NAME.md`, `NAME.csv` (mean ± std per setting and scheme),
//! `NAME-runs.csv` (one line per run) and the plots under `results/NAME/`.
use super::presets::{Preset, Setting};
use super::runner::{RunRecord, RunSpec};
use super::stats::{diff, mean_std, verdict};
use crate::cmd::plots;
use crate::util::with_suffix;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use twobit_format::{Model, Tensor};

/// A run and, if finished, what it produced.
pub struct Run {
    /// What was (to be) run.
    pub spec: RunSpec,
    /// Its record once finished.
    pub record: Option<RunRecord>,
}

/// A PyTorch reference run (`reference/lenet5_fmnist.py`), stored as its JSON line.
pub struct TorchRun {
    /// fp or twn.
    pub scheme: String,
    /// The script's JSON answer.
    pub json: serde_json::Value,
    /// The command line.
    pub command: String,
}

/// Numbers of one finished run.
struct Row<'a> {
    run: &'a Run,
    acc: f64,
    eval_acc: f64,
    eval_match: bool,
    file_bytes: f64,
    fp32_bytes: f64,
    bpw: f64,
    ips: f64,
}

/// `eval --json`'s accuracy: `test_accuracy`, or `accuracy` in records written before the
/// key was renamed.
pub fn eval_accuracy(v: &serde_json::Value) -> f64 {
    let a = num(v, "test_accuracy");
    if a.is_nan() {
        num(v, "accuracy")
    } else {
        a
    }
}

fn num(v: &serde_json::Value, key: &str) -> f64 {
    v.get(key).and_then(|x| x.as_f64()).unwrap_or(f64::NAN)
}

/// Bits per weight of the quantized layers as stored (codes + level tables); 32 for a
/// float-only file.
fn packed_bits_per_weight(file: &Path) -> f64 {
    let Ok(m) = Model::load(file) else {
        return f64::NAN;
    };
    let (mut w, mut b) = (0usize, 0usize);
    for t in m.tensors.values() {
        if let Tensor::Packed(p) = t {
            w += p.numel();
            b += p.stored_bytes();
        }
    }
    if w == 0 {
        32.0
    } else {
        b as f64 * 8.0 / w as f64
    }
}

fn row(run: &Run) -> Option<Row<'_>> {
    let r = run.record.as_ref()?;
    let acc = num(&r.train, "test_accuracy");
    let eval_acc = eval_accuracy(&r.eval);
    let images = num(&r.eval, "images");
    Some(Row {
        run,
        acc,
        eval_acc,
        eval_match: (acc * images).round() == (eval_acc * images).round(),
        file_bytes: num(&r.train, "file_bytes"),
        fp32_bytes: num(&r.train, "fp32_bytes"),
        bpw: packed_bits_per_weight(&with_suffix(&run.spec.stem, ".twobit")),
        ips: num(&r.train, "images_per_second"),
    })
}

fn pct(x: f64) -> String {
    format!("{:.2}", x * 100.0)
}

/// Mean ± std in percent.
fn pm(v: &[f64]) -> String {
    let (m, s) = mean_std(v);
    if v.len() > 1 {
        format!("{} ± {}", pct(m), pct(s))
    } else {
        pct(m)
    }
}

fn signed_pts(v: f64) -> String {
    format!("{:+.2}", v * 100.0)
}

/// The rows of one setting, by scheme in preset order.
fn by_scheme<'a>(
    preset: &Preset,
    s: &Setting,
    rows: &'a [Row<'a>],
) -> Vec<(&'static str, Vec<&'a Row<'a>>)> {
    preset
        .schemes
        .iter()
        .map(|&scheme| {
            let rs = rows
                .iter()
                .filter(|r| r.run.spec.setting == s.id && r.run.spec.scheme == scheme)
                .collect();
            (scheme, rs)
        })
        .collect()
}

fn accs(rs: &[&Row<'_>]) -> Vec<f64> {
    rs.iter().map(|r| r.acc).collect()
}

fn mean_of(rs: &[&Row<'_>], f: impl Fn(&Row<'_>) -> f64) -> f64 {
    mean_std(&rs.iter().map(|r| f(r)).collect::<Vec<_>>()).0
}

/// Mean test accuracy per epoch over seeds, from each run's `.log.jsonl`.
fn curve(rs: &[&Row<'_>]) -> Vec<(f64, f64)> {
    let mut per_epoch: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    for r in rs {
        let log = with_suffix(&r.run.spec.stem, ".twobit.log.jsonl");
        let Ok(text) = std::fs::read_to_string(&log) else {
            continue;
        };
        for line in text.lines() {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
                let e = v.get("epoch").and_then(|e| e.as_u64()).unwrap_or(0) as usize;
                per_epoch
                    .entry(e)
                    .or_default()
                    .push(num(&v, "test_accuracy"));
            }
        }
    }
    per_epoch
        .into_iter()
        .map(|(e, v)| (e as f64, mean_std(&v).0))
        .collect()
}

/// Per packed layer, `||w - q|| / ||w||` between the float shadow weights (seed 1's
/// `.latent.safetensors`) and the stored quantized weights.
pub fn layer_errors(stem: &Path) -> Option<Vec<(String, f64)>> {
    let file = Model::load(&with_suffix(stem, ".twobit")).ok()?;
    let latent = Model::load(&with_suffix(stem, ".twobit.latent.safetensors")).ok()?;
    let mut out = Vec::new();
    for (name, t) in &file.tensors {
        let (Tensor::Packed(p), Some(Tensor::Float(f))) = (t, latent.tensors.get(name)) else {
            continue;
        };
        let w = f.to_f32();
        out.push((
            name.trim_end_matches(".weight").to_string(),
            twobit_quant::rel_error(&w, &p.to_quantized()),
        ));
    }
    Some(out)
}

/// Per scheme, seed 1's `(layer, error)` list.
type LayerErrors = Vec<(&'static str, Vec<(String, f64)>)>;

/// Seed 1's per-layer errors for each scheme of a setting that has them (see [`NO_ERROR`]).
fn setting_errors(groups: &[(&'static str, Vec<&Row<'_>>)]) -> LayerErrors {
    groups
        .iter()
        .filter(|(n, _)| !NO_ERROR.contains(n))
        .filter_map(|(n, rs)| {
            let r = rs.iter().find(|r| r.run.spec.seed == 1)?;
            Some((*n, layer_errors(&r.run.spec.stem)?))
        })
        .collect()
}

/// Machine facts for the report: CPU model, cores, memory.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<f64>().ok())
        })
        .map_or_else(String::new, |kb| {
            format!(", {:.0} GiB memory", kb / 1024.0 / 1024.0)
        });
    format!("{cpu}, {cores} cores{mem}, {}", std::env::consts::OS)
}

/// UTC date and time now, `YYYY-MM-DD HH:MM UTC`.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// What the report wrote.
pub struct Written {
    /// Report files (md, CSVs).
    pub files: Vec<PathBuf>,
    /// Plot files.
    pub plots: Vec<PathBuf>,
    /// Why plots are missing, if they are.
    pub plot_error: Option<String>,
}

/// Writes the report files; plots too when `with_plots`.
pub fn write(
    preset: &Preset,
    runs: &[Run],
    torch: &[TorchRun],
    results: &Path,
    with_plots: bool,
) -> anyhow::Result<Written> {
    let rows: Vec<Row<'_>> = runs.iter().filter_map(row).collect();
    let plot_dir = results.join(preset.name);
    let mut plots_out = Vec::new();
    let mut plot_error = None;
    // One pass over the seed-1 files and their shadow weights serves the tables and the plots.
    let errors: Vec<LayerErrors> = preset
        .settings
        .iter()
        .map(|s| setting_errors(&by_scheme(preset, s, &rows)))
        .collect();
    if with_plots && !rows.is_empty() {
        match draw_plots(preset, &rows, &errors, &plot_dir) {
            Ok(p) => plots_out = p,
            Err(e) => plot_error = Some(format!("{e:#}")),
        }
    }
    let md = markdown(
        preset,
        runs,
        &rows,
        &errors,
        torch,
        &plot_dir,
        results,
        &plot_error,
    );
    let md_path = results.join(format!("{}.md", preset.name));
    let csv_path = results.join(format!("{}.csv", preset.name));
    let runs_path = results.join(format!("{}-runs.csv", preset.name));
    crate::util::write_output(&md_path, md.as_bytes())?;
    crate::util::write_output(&csv_path, summary_csv(preset, &rows).as_bytes())?;
    crate::util::write_output(&runs_path, runs_csv(&rows).as_bytes())?;
    Ok(Written {
        files: vec![md_path, csv_path, runs_path],
        plots: plots_out,
        plot_error,
    })
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn summary_csv(preset: &Preset, rows: &[Row<'_>]) -> String {
    let mut out = String::from(
        "setting,model,quantize_all,granularity,epochs,scheme,seeds,test_accuracy_mean,test_accuracy_std,eval_accuracy_mean,eval_matches_train,bits_per_weight,file_bytes,fp32_bytes,compression,images_per_second_mean,images_per_second_std\n",
    );
    for s in &preset.settings {
        for (scheme, rs) in by_scheme(preset, s, rows) {
            if rs.is_empty() {
                continue;
            }
            let (m, sd) = mean_std(&accs(&rs));
            let (ips, ips_sd) = mean_std(&rs.iter().map(|r| r.ips).collect::<Vec<_>>());
            let fb = mean_of(&rs, |r| r.file_bytes);
            let fp = mean_of(&rs, |r| r.fp32_bytes);
            let _ = writeln!(
                out,
                "{},{},{},{},{},{scheme},{},{m:.6},{sd:.6},{:.6},{},{:.4},{fb:.0},{fp:.0},{:.3},{ips:.1},{ips_sd:.1}",
                s.id,
                s.model,
                s.quantize_all && scheme != "fp",
                if scheme == "fp" { "-" } else { s.granularity },
                s.epochs,
                rs.len(),
                mean_of(&rs, |r| r.eval_acc),
                rs.iter().filter(|r| r.eval_match).count() == rs.len(),
                mean_of(&rs, |r| r.bpw),
                fp / fb,
            );
        }
    }
    out
}

fn runs_csv(rows: &[Row<'_>]) -> String {
    let mut out = String::from(
        "setting,scheme,seed,test_accuracy,eval_accuracy,file_bytes,fp32_bytes,bits_per_weight,images_per_second,wall_seconds,train_command,eval_command\n",
    );
    for r in rows {
        let rec = r.run.record.as_ref().expect("rows are finished runs");
        let _ = writeln!(
            out,
            "{},{},{},{:.6},{:.6},{:.0},{:.0},{:.4},{:.1},{:.1},{},{}",
            r.run.spec.setting,
            r.run.spec.scheme,
            r.run.spec.seed,
            r.acc,
            r.eval_acc,
            r.file_bytes,
            r.fp32_bytes,
            r.bpw,
            r.ips,
            rec.wall_seconds,
            csv_field(&rec.commands[0]),
            csv_field(&rec.commands[1]),
        );
    }
    out
}

/// Schemes without a meaningful weight-approximation error: the float baseline, and TTQ whose
/// levels are learned scales rather than a fit to the shadow weights.
const NO_ERROR: &[&str] = &["fp", "ttq"];

/// The schemes whose accuracy the report compares with TWN's.
const ADAPTIVE: &[&str] = &["atn", "tern", "quat", "quat-free", "ttq"];

fn rel(path: &Path, base: &Path) -> String {
    path.strip_prefix(base)
        .unwrap_or(path)
        .display()
        .to_string()
}

#[allow(clippy::too_many_arguments)]
fn markdown(
    preset: &Preset,
    runs: &[Run],
    rows: &[Row<'_>],
    errors: &[LayerErrors],
    torch: &[TorchRun],
    plot_dir: &Path,
    results: &Path,
    plot_error: &Option<String>,
) -> String {
    let mut md = String::new();
    // Settings share the float baseline's runs: count each run once.
    let mut seen = std::collections::BTreeSet::new();
    let wall: f64 = rows
        .iter()
        .filter(|r| seen.insert(r.run.spec.stem.clone()))
        .filter_map(|r| r.run.record.as_ref())
        .map(|r| r.wall_seconds)
        .sum();
    let unique = runs
        .iter()
        .map(|r| &r.spec.stem)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let _ = writeln!(md, "# `twobit experiment {}`\n", preset.name);
    let _ = writeln!(
        md,
        "Written by `twobit experiment {}` on {}. Every number below comes from the runs listed in `{}-runs.csv` (their exact `twobit train` and `twobit eval` commands are there). Rerunning the command skips finished runs.\n",
        preset.name,
        utc_now(),
        preset.name
    );
    let _ = writeln!(md, "- Machine: {}", machine());
    let _ = writeln!(
        md,
        "- Runs finished: {} of {unique}; compute time {:.1} min (sum of the runs' wall times, training + evaluation from the file); training images/s are as measured during the experiment, on whatever else the machine was doing",
        seen.len(),
        wall / 60.0
    );
    let _ = writeln!(md, "- Setup: {}\n", preset.about);
    if seen.len() < unique {
        let _ = writeln!(
            md,
            "**Incomplete: {} of {unique} runs are missing. The tables show what has finished.**\n",
            unique - seen.len()
        );
    }
    if let Some(e) = plot_error {
        let _ = writeln!(md, "**Plots were not drawn: {e}**\n");
    }

    // Where the adaptive schemes stand against TWN, setting by setting.
    let _ = writeln!(md, "## Adaptive schemes against TWN\n");
    let _ = writeln!(
        md,
        "Difference of mean test accuracy to `twn` in points, ± its standard error over seeds. \"better\"/\"worse\" means more than two standard errors apart; \"tie\" means within the seed noise.\n"
    );
    let present: Vec<&str> = ADAPTIVE
        .iter()
        .copied()
        .filter(|a| preset.schemes.contains(a))
        .collect();
    let _ = write!(md, "| setting |");
    for a in &present {
        let _ = write!(md, " {a} |");
    }
    let _ = writeln!(md);
    let _ = writeln!(md, "|---|{}", "---|".repeat(present.len()));
    for s in &preset.settings {
        let groups = by_scheme(preset, s, rows);
        let get = |name: &str| {
            groups
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, r)| accs(r))
                .unwrap_or_default()
        };
        let twn = get("twn");
        let _ = write!(md, "| {} |", s.id);
        for a in &present {
            let v = get(a);
            if v.is_empty() || twn.is_empty() {
                let _ = write!(md, " – |");
            } else if v.len() < 2 || twn.len() < 2 {
                // One seed has no spread to compare against.
                let _ = write!(
                    md,
                    " {} (1 seed, no verdict) |",
                    signed_pts(diff(&v, &twn).0)
                );
            } else {
                let (d, se) = diff(&v, &twn);
                let _ = write!(
                    md,
                    " {} ± {:.2} ({}) |",
                    signed_pts(d),
                    se * 100.0,
                    verdict(&v, &twn)
                );
            }
        }
        let _ = writeln!(md);
    }
    let _ = writeln!(md);
    if present.contains(&"ttq") {
        let _ = writeln!(
            md,
            "`ttq` trains with Adam (its learned scales diverge under the shared SGD recipe), all other schemes with SGD: its column mixes the optimizer's effect with the quantizer's.\n"
        );
    }

    for (s, errs) in preset.settings.iter().zip(errors) {
        let groups = by_scheme(preset, s, rows);
        let _ = writeln!(md, "## {}: {}\n", s.id, s.title);
        let _ = writeln!(
            md,
            "`--model {} --dataset {} --epochs {}{}{}`\n",
            s.model,
            preset.dataset,
            s.epochs,
            if s.quantize_all {
                " --quantize-all"
            } else {
                ""
            },
            format_args!(" --granularity {}", s.granularity),
        );
        let fp = groups
            .iter()
            .find(|(n, _)| *n == "fp")
            .map(|(_, r)| accs(r))
            .unwrap_or_default();
        let _ = writeln!(md, "| scheme | seeds | test accuracy % (mean ± std) | vs fp (pts) | eval from file % | file = train | bits/weight | file bytes | compression | train img/s |");
        let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|");
        for (scheme, rs) in &groups {
            if rs.is_empty() {
                let _ = writeln!(md, "| {scheme} | 0 | – | – | – | – | – | – | – | – |");
                continue;
            }
            let a = accs(rs);
            let vs = if *scheme == "fp" || fp.is_empty() {
                "–".to_string()
            } else {
                signed_pts(diff(&a, &fp).0)
            };
            let matches = rs.iter().filter(|r| r.eval_match).count();
            let fb = mean_of(rs, |r| r.file_bytes);
            let _ = writeln!(
                md,
                "| {scheme} | {} | {} | {vs} | {} | {matches}/{} | {:.3} | {:.0} | {:.1}x | {:.0} |",
                rs.len(),
                pm(&a),
                pm(&rs.iter().map(|r| r.eval_acc).collect::<Vec<_>>()),
                rs.len(),
                mean_of(rs, |r| r.bpw),
                fb,
                mean_of(rs, |r| r.fp32_bytes) / fb,
                mean_of(rs, |r| r.ips),
            );
        }
        let _ = writeln!(md);
        let acc_png = plot_dir.join(format!("{}-accuracy.png", s.id));
        if acc_png.exists() {
            let _ = writeln!(
                md,
                "![test accuracy per epoch, {}]({})\n",
                s.id,
                rel(&acc_png, results)
            );
        }
        // Per-layer quantization error of seed 1.
        if let Some((_, first)) = errs.first() {
            let _ = writeln!(
                md,
                "Relative quantization error `||w - q(w)|| / ||w||` of each quantized layer at the end of training (seed 1, float shadow weights against the stored codes; `ttq` is left out because its levels are learned scales that do not try to approximate the shadow weights):\n"
            );
            let _ = write!(md, "| scheme |");
            for (l, _) in first {
                let _ = write!(md, " {l} |");
            }
            let _ = writeln!(md);
            let _ = writeln!(md, "|---|{}", "---|".repeat(first.len()));
            for (n, e) in errs {
                let _ = write!(md, "| {n} |");
                for (_, v) in e {
                    let _ = write!(md, " {v:.3} |");
                }
                let _ = writeln!(md);
            }
            let _ = writeln!(md);
            let err_png = plot_dir.join(format!("{}-qerror.png", s.id));
            if err_png.exists() {
                let _ = writeln!(
                    md,
                    "![quantization error per layer, {}]({})\n",
                    s.id,
                    rel(&err_png, results)
                );
            }
        }
    }

    let hist: Vec<PathBuf> = std::fs::read_dir(plot_dir)
        .map(|d| {
            let mut v: Vec<PathBuf> = d
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.extension().is_some_and(|e| e == "png")
                        && p.file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with("hist-"))
                })
                .collect();
            v.sort();
            v
        })
        .unwrap_or_default();
    if !hist.is_empty() {
        let _ = writeln!(md, "## Weight histograms with levels and thresholds\n");
        let _ = writeln!(
            md,
            "Seed 1 of the first setting, drawn by `twobit inspect FILE --plot DIR` from the file and its float shadow weights (`--save-latent`). Levels solid, thresholds dashed; per-channel files draw channel 0's weights under its levels.\n"
        );
        for p in hist {
            let _ = writeln!(md, "- [{}]({})", rel(&p, plot_dir), rel(&p, results));
        }
        let _ = writeln!(md);
    }

    let _ = writeln!(md, "## PyTorch cross-check\n");
    if preset.torch_setting().is_none() {
        let _ = writeln!(
            md,
            "This preset has no Fashion-MNIST LeNet-5 setting with first and last layers float, which is what `reference/lenet5_fmnist.py` trains; see the `fmnist` preset.\n"
        );
    } else if torch.is_empty() {
        let _ = writeln!(
            md,
            "Not run. `twobit experiment {} --pytorch PYTHON` runs `reference/lenet5_fmnist.py` (fp and TWN, LeNet-5, first and last layers float) with the lenet5 setting's epochs and seeds on this machine, and puts the numbers here.\n",
            preset.name
        );
    } else {
        torch_section(&mut md, preset, rows, torch);
    }
    md
}

fn torch_section(md: &mut String, preset: &Preset, rows: &[Row<'_>], torch: &[TorchRun]) {
    let setting = preset.torch_setting();
    let _ = writeln!(
        md,
        "Same machine, same recipe (LeNet-5, first and last layers float, batch 128, SGD 0.05 cosine, weight decay 5e-4), threads = cores. PyTorch runs by `{}`.\n",
        torch.first().map_or("", |t| t.command.as_str())
    );
    let _ = writeln!(
        md,
        "| scheme | framework | seeds | test accuracy % | train img/s | twobit / PyTorch speed |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    for scheme in ["fp", "twn"] {
        let t: Vec<&TorchRun> = torch.iter().filter(|t| t.scheme == scheme).collect();
        let t_acc: Vec<f64> = t.iter().map(|t| num(&t.json, "test_accuracy")).collect();
        let t_ips = mean_std(
            &t.iter()
                .map(|t| num(&t.json, "images_per_second"))
                .collect::<Vec<_>>(),
        )
        .0;
        let ours: Vec<&Row<'_>> = setting
            .map(|s| {
                rows.iter()
                    .filter(|r| r.run.spec.setting == s.id && r.run.spec.scheme == scheme)
                    .collect()
            })
            .unwrap_or_default();
        let o_ips = mean_of(&ours, |r| r.ips);
        if !t.is_empty() {
            let _ = writeln!(
                md,
                "| {scheme} | PyTorch {} | {} | {} | {t_ips:.0} | |",
                t[0].json
                    .get("torch")
                    .and_then(|v| v.as_str())
                    .unwrap_or("?"),
                t.len(),
                pm(&t_acc)
            );
        }
        if !ours.is_empty() {
            let _ = writeln!(
                md,
                "| {scheme} | twobit (burn-flex) | {} | {} | {o_ips:.0} | {:.2}x |",
                ours.len(),
                pm(&accs(&ours)),
                o_ips / t_ips
            );
        }
    }
    let _ = writeln!(md);
}

/// Accuracy curves and error bars per setting, histograms for seed 1 of the first setting.
/// A scheme's colour: its position in the preset, the same in every chart (the error chart
/// has no `fp` bars, so positions within a chart would shift the colours).
fn scheme_color(preset: &Preset, scheme: &str) -> Option<usize> {
    preset.schemes.iter().position(|s| *s == scheme)
}

fn draw_plots(
    preset: &Preset,
    rows: &[Row<'_>],
    errors: &[LayerErrors],
    dir: &Path,
) -> anyhow::Result<Vec<PathBuf>> {
    crate::util::output_dir(dir)?;
    let mut out = Vec::new();
    for (s, errs) in preset.settings.iter().zip(errors) {
        let groups = by_scheme(preset, s, rows);
        let series: Vec<twobit_plot::Series> = groups
            .iter()
            .filter(|(_, rs)| !rs.is_empty())
            .map(|(n, rs)| twobit_plot::Series {
                name: n.to_string(),
                points: curve(rs).into_iter().map(|(e, a)| (e, a * 100.0)).collect(),
                color: scheme_color(preset, n),
            })
            .filter(|s| !s.points.is_empty())
            .collect();
        if !series.is_empty() {
            out.extend(twobit_plot::line_chart(
                &dir.join(format!("{}-accuracy", s.id)),
                &format!("{} — test accuracy (mean of seeds)", s.id),
                "epoch",
                "test accuracy %",
                &series,
            )?);
        }
        if let Some((_, first)) = errs.first() {
            let cats: Vec<String> = first.iter().map(|(l, _)| l.clone()).collect();
            let series: Vec<twobit_plot::Bars> = errs
                .iter()
                .filter(|(_, e)| e.len() == cats.len())
                .map(|(n, e)| twobit_plot::Bars {
                    name: n.to_string(),
                    values: e.iter().map(|(_, v)| *v).collect(),
                    color: scheme_color(preset, n),
                })
                .collect();
            out.extend(twobit_plot::grouped_bars(
                &dir.join(format!("{}-qerror", s.id)),
                &format!("{} — relative quantization error per layer (seed 1)", s.id),
                "||w - q(w)|| / ||w||",
                &cats,
                &series,
            )?);
        }
    }
    if let Some(s) = preset.settings.first() {
        for scheme in ["twn", "tern", "quat"] {
            let Some(r) = rows.iter().find(|r| {
                r.run.spec.setting == s.id && r.run.spec.scheme == scheme && r.run.spec.seed == 1
            }) else {
                continue;
            };
            let file = with_suffix(&r.run.spec.stem, ".twobit");
            let latent = with_suffix(&r.run.spec.stem, ".twobit.latent.safetensors");
            out.extend(plots::histograms(
                &file,
                Some(&latent),
                None,
                dir,
                &format!("hist-{}-{scheme}", s.id),
                Some(6),
            )?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_now_is_well_formed() {
        let s = super::utc_now();
        assert_eq!(s.len(), "2026-11-28 12:00 UTC".len(), "{s}");
        assert!(s.starts_with("20") && s.ends_with(" UTC"));
    }
}
