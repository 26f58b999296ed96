//! `twobit compress`: quantize every float tensor of 2+ dimensions of a safetensors model into
//! a packed 2-bit `.twobit` file.
use crate::util::{self, shape_str};
use anyhow::{anyhow, Context};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use regex::Regex;
use serde_json::json;
use std::path::PathBuf;
use twobit_format::{write_atomic, Model, PackedTensor, Tensor};
use twobit_quant::{Granularity, Scheme};

/// Arguments.
#[derive(clap::Args)]
pub struct Args {
    /// Input model (.safetensors; f16, bf16, f32 or f64 tensors).
    pub input: PathBuf,
    /// Output file (.twobit).
    pub output: PathBuf,
    /// Quantization scheme: twn, atn, ttq, tern, quat, quat-free.
    pub scheme: String,
    /// One level table per tensor or per output channel.
    #[arg(long, default_value = "tensor")]
    pub granularity: String,
    /// Keep tensors whose name matches this regex in float (repeatable).
    #[arg(long)]
    pub keep: Vec<String>,
    /// Report what would be written, write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print one JSON object on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Models at least this many weights get a progress bar.
const PROGRESS_MIN_WEIGHTS: usize = 1 << 21;

/// One row of the report.
struct Row {
    name: String,
    shape: Vec<usize>,
    dtype: String,
    scheme: Option<Scheme>,
    bits_per_weight: f64,
    rel_error: Option<f64>,
    sparsity: Option<f64>,
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<()> {
    let scheme: Scheme = args.scheme.parse()?;
    let granularity: Granularity = args.granularity.parse()?;
    let keep = args
        .keep
        .iter()
        .map(|k| {
            // regex's syntax errors span several lines (pattern, caret, message): keep the
            // message so the error stays on one line.
            Regex::new(k).map_err(|e| {
                let msg = e.to_string();
                let last = msg
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("");
                anyhow!(
                    "bad --keep regex '{k}': {}",
                    last.trim_start_matches("error: ")
                )
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if !args.dry_run {
        util::check_output_dir(&args.output)?;
    }
    let bytes = util::read_file(&args.input)?;
    let st = util::parse_safetensors(&bytes, &args.input)?;
    let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
    names.sort();

    let quantize_this = |name: &str, shape: &[usize]| {
        shape.len() >= 2 && !shape.contains(&0) && !keep.iter().any(|r| r.is_match(name))
    };
    let total_weights: usize = st
        .iter()
        .filter(|(n, v)| util::float_dtype(v.dtype()).is_some() && quantize_this(n, v.shape()))
        .map(|(_, v)| v.shape().iter().product::<usize>())
        .sum();
    let bar = if total_weights >= PROGRESS_MIN_WEIGHTS && !args.json {
        ProgressBar::with_draw_target(Some(total_weights as u64), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} weights {msg}")
            .expect("static template"),
    );

    let mut model = Model::default();
    let mut rows = Vec::new();
    let mut skipped = Vec::new();
    for name in &names {
        let view = st.tensor(name)?;
        let Some(dtype) = util::float_dtype(view.dtype()) else {
            // Integer tensors (e.g. BatchNorm's num_batches_tracked) carry no weights.
            if !args.json {
                eprintln!(
                    "warning: skipping '{name}' ({}): only float tensors are stored",
                    view.dtype()
                );
            }
            skipped.push(json!({"name": name, "dtype": view.dtype().to_string()}));
            continue;
        };
        let float = util::float_tensor(dtype, &view);
        if !quantize_this(name, view.shape()) {
            rows.push(Row {
                name: name.clone(),
                shape: float.shape.clone(),
                dtype: dtype.name().into(),
                scheme: None,
                bits_per_weight: 8.0 * dtype.size() as f64,
                rel_error: None,
                sparsity: None,
            });
            model.tensors.insert(name.clone(), Tensor::Float(float));
            continue;
        }
        bar.set_message(name.clone());
        let w = float.to_f32();
        let q = twobit_quant::quantize(&w, &float.shape, scheme, granularity)
            .with_context(|| format!("cannot quantize tensor '{name}'"))?;
        let mut p = PackedTensor::from_quantized(&q);
        p.origin_dtype = dtype;
        rows.push(Row {
            name: name.clone(),
            shape: float.shape.clone(),
            dtype: dtype.name().into(),
            scheme: Some(scheme),
            bits_per_weight: p.bits_per_weight(),
            rel_error: Some(twobit_quant::rel_error(&w, &q)),
            sparsity: Some(twobit_quant::sparsity(&q)),
        });
        bar.inc(w.len() as u64);
        model.tensors.insert(name.clone(), Tensor::Packed(p));
    }
    bar.finish_and_clear();

    // A file from `twobit decompress` carries its network: keep it, so the result runs.
    // Validation (in `to_bytes`) checks it against the tensors written.
    if let Some(json) = st_metadata(&bytes).get(super::decompress::ARCH_KEY) {
        let arch: twobit_format::Arch = serde_json::from_str(json).with_context(|| {
            format!(
                "{}: bad {} metadata",
                args.input.display(),
                super::decompress::ARCH_KEY
            )
        })?;
        model.arch = Some(arch);
    }
    let p = &mut model.provenance;
    p.insert("producer".into(), "twobit compress".into());
    p.insert("version".into(), env!("CARGO_PKG_VERSION").into());
    p.insert("scheme".into(), scheme.name().into());
    p.insert("granularity".into(), granularity.name().into());
    p.insert("keep".into(), serde_json::to_string(&args.keep)?);
    let source = args
        .input
        .file_name()
        .map_or_else(String::new, |f| f.to_string_lossy().into_owned());
    p.insert("source".into(), source);

    let out = model
        .to_bytes()
        .context("cannot encode the compressed model")?;
    if !args.dry_run {
        write_atomic(&args.output, &out)?;
    }
    report(&args, &rows, &skipped, bytes.len() as u64, out.len() as u64)
}

/// The safetensors header's `__metadata__` (empty when absent; the file was validated).
fn st_metadata(bytes: &[u8]) -> std::collections::HashMap<String, String> {
    safetensors::SafeTensors::read_metadata(bytes)
        .ok()
        .and_then(|(_, m)| m.metadata().clone())
        .unwrap_or_default()
}

fn report(
    args: &Args,
    rows: &[Row],
    skipped: &[serde_json::Value],
    in_bytes: u64,
    out_bytes: u64,
) -> anyhow::Result<()> {
    let ratio = in_bytes as f64 / out_bytes.max(1) as f64;
    let packed: Vec<&Row> = rows.iter().filter(|r| r.scheme.is_some()).collect();
    let packed_weights: usize = packed
        .iter()
        .map(|r| r.shape.iter().product::<usize>())
        .sum();
    if args.json {
        let tensors: Vec<_> = rows
            .iter()
            .map(|r| {
                json!({
                    "name": r.name,
                    "shape": r.shape,
                    "dtype": r.dtype,
                    "kind": if r.scheme.is_some() { "packed" } else { "float" },
                    "scheme": r.scheme.map(Scheme::name),
                    "bits_per_weight": r.bits_per_weight,
                    "rel_error": r.rel_error,
                    "sparsity": r.sparsity,
                })
            })
            .collect();
        let obj = json!({
            "input": args.input.display().to_string(),
            "output": (!args.dry_run).then(|| args.output.display().to_string()),
            "dry_run": args.dry_run,
            "scheme": args.scheme,
            "granularity": args.granularity,
            "keep": args.keep,
            "tensors": tensors,
            "skipped": skipped,
            "total": {
                "input_bytes": in_bytes,
                "output_bytes": out_bytes,
                "ratio": ratio,
                "packed_tensors": packed.len(),
                "packed_weights": packed_weights,
            },
        });
        println!("{obj}");
        return Ok(());
    }
    let w = rows.iter().map(|r| r.name.len()).max().unwrap_or(4).max(6);
    println!(
        "{:<w$}  {:<14} {:<5} {:<9} {:>9} {:>9} {:>8}",
        "tensor", "shape", "dtype", "scheme", "bits/w", "rel.err", "sparsity"
    );
    for r in rows {
        let opt = |v: Option<f64>, p: usize| v.map_or("-".into(), |x| format!("{x:.p$}"));
        println!(
            "{:<w$}  {:<14} {:<5} {:<9} {:>9.3} {:>9} {:>8}",
            r.name,
            shape_str(&r.shape),
            r.dtype,
            r.scheme.map_or("float", Scheme::name),
            r.bits_per_weight,
            opt(r.rel_error, 4),
            opt(r.sparsity, 3),
        );
    }
    let verb = if args.dry_run { "would write" } else { "wrote" };
    println!(
        "total: {} packed tensors ({packed_weights} weights), {} -> {} bytes ({} -> {}), ratio {ratio:.2}x; {verb} {}",
        packed.len(),
        in_bytes,
        out_bytes,
        util::human_bytes(in_bytes),
        util::human_bytes(out_bytes),
        args.output.display()
    );
    Ok(())
}
