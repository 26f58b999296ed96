//! `twobit compress`: quantize every float tensor of 2+ dimensions of a safetensors model into
//! a packed 2-bit `.twobit` file.
use crate::util::{self, shape_str};
use anyhow::{anyhow, bail, Context};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use regex::Regex;
use serde_json::json;
use std::path::PathBuf;
use twobit_format::{IntDtype, IntTensor, Model, PackedTensor, Tensor};
use twobit_quant::{Granularity, Scheme};

/// Arguments.
#[derive(clap::Args)]
pub struct Args {
    /// Input model: .safetensors (f16, bf16, f32 or f64 tensors) or an ONNX model (.onnx).
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
    /// With a network (ONNX input): quantize the first and last weight layers and depthwise
    /// convolutions too (kept float by default).
    #[arg(long)]
    pub quantize_all: bool,
    /// Input normalisation stored with an ONNX model's network (pixels in [0, 1]).
    #[command(flatten)]
    pub norm: super::network::NormArgs,
    /// Calibrated post-training quantization on this dataset's training images (mnist,
    /// fashion-mnist, cifar10, folder): codes and levels minimise each layer's output error
    /// instead of its weight error (docs/calibrate.md). Needs a network (ONNX, or a float
    /// .twobit file).
    #[arg(long, value_name = "DATASET")]
    pub calibrate: Option<String>,
    /// Dataset directory for --calibrate (default: the dataset's usual place).
    #[arg(long, value_name = "DIR", requires = "calibrate")]
    pub data_dir: Option<PathBuf>,
    /// Calibration images: the first N of the training split.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub calib_images: usize,
    /// Calibrate every layer on the float network's inputs (default: sequential, each layer
    /// on the inputs of the network whose earlier layers are already quantized).
    #[arg(long, requires = "calibrate")]
    pub independent: bool,
    /// Entropy-code each quantized tensor's codes (static rANS, or an exact enumerative code up
    /// to 4,096 weights; decoded at load) where that is smaller than the fixed packing (base 3
    /// for ternary codes, base 2 otherwise).
    #[arg(long)]
    pub entropy: bool,
    /// Level/threshold table dtype: f32 (exact), or f16 (half the table bytes; each line's
    /// note reports the relative error the rounding adds).
    #[arg(long, default_value = "f32", value_parser = ["f32", "f16"])]
    pub tables: String,
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
    /// Code packing as stored ("base2", "base3", "rans", "enum").
    packing: Option<&'static str>,
    /// Zero-order empirical entropy of the codes, bits per weight.
    code_entropy: Option<f64>,
    /// Relative error added by f16 tables.
    table_error: Option<f64>,
    /// A choice made for the user (per-tensor fallback, kept float, f16 error).
    note: Option<String>,
    /// Relative output error before and after calibration (`--calibrate`).
    output_error: Option<(f64, f64)>,
}

impl Row {
    /// The row of a non-float tensor, stored as it came.
    fn int(name: &str, t: &IntTensor) -> Row {
        Row {
            name: name.to_string(),
            shape: t.shape.clone(),
            dtype: t.dtype.name().into(),
            scheme: None,
            bits_per_weight: 8.0 * t.dtype.size() as f64,
            rel_error: None,
            sparsity: None,
            packing: None,
            code_entropy: None,
            table_error: None,
            note: Some("integer, kept as is".into()),
            output_error: None,
        }
    }

    /// "packed", "float" or "int" (one word for the manifest's kinds).
    fn kind(&self) -> &'static str {
        if self.scheme.is_some() {
            "packed"
        } else if IntDtype::from_name(&self.dtype).is_some() {
            "int"
        } else {
            "float"
        }
    }

    /// The row of a tensor stored in float, with an optional note saying why.
    fn float(name: &str, float: &twobit_format::FloatTensor, note: Option<String>) -> Row {
        Row {
            name: name.to_string(),
            shape: float.shape.clone(),
            dtype: float.dtype.name().into(),
            scheme: None,
            bits_per_weight: 8.0 * float.dtype.size() as f64,
            rel_error: None,
            sparsity: None,
            packing: None,
            code_entropy: None,
            table_error: None,
            note,
            output_error: None,
        }
    }
}

/// Encoding choices from the command line.
struct Enc {
    write: twobit_format::WriteOptions,
    f16: bool,
}

impl Enc {
    fn new(args: &Args) -> Enc {
        Enc {
            write: twobit_format::WriteOptions {
                entropy: args.entropy,
                ..Default::default()
            },
            f16: args.tables == "f16",
        }
    }
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<()> {
    let scheme: Scheme = args.scheme.parse()?;
    let granularity: Granularity = args.granularity.parse()?;
    let enc = Enc::new(&args);
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
    util::check_input(&args.input)?;
    if !args.dry_run {
        util::check_output(&args.output)?;
    }
    if args.calibrate.is_some() && args.calib_images == 0 {
        bail!("--calib-images must be at least 1");
    }
    // Calibration runs the network: a float .twobit file goes the ONNX way too.
    if super::network::is_onnx(&args.input) || args.calibrate.is_some() {
        return compress_network(&args, scheme, granularity, &keep);
    }
    let bytes = util::read_file(&args.input)?;
    let st = util::parse_safetensors(&bytes, &args.input)?;
    let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
    names.sort();
    // A .twobit file is a safetensors file too: its packed codes and level tables are not
    // weights to quantize again. A float one (an `fp` training run) is fine, and its network
    // is kept so the result still runs.
    let mut file_arch = None;
    if st_metadata(&bytes).contains_key(twobit_format::KEY_FORMAT) {
        let m = Model::load(&args.input)
            .with_context(|| format!("cannot read {}", args.input.display()))?;
        if m.tensors.values().any(|t| matches!(t, Tensor::Packed(_))) {
            bail!(
                "{} is already a .twobit file with packed 2-bit tensors: decompress it first (`twobit decompress {} OUT.safetensors`)",
                args.input.display(),
                args.input.display()
            );
        }
        file_arch = m.arch;
    }
    util::warn_unmatched_keep(&args.keep, &keep, names.iter().map(String::as_str));

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
            // Integer tensors (e.g. BatchNorm's num_batches_tracked) carry no weights but
            // belong to the user's file: kept exactly as they are.
            if let Some(dtype) = IntDtype::from_safetensors(view.dtype()) {
                let t = IntTensor {
                    dtype,
                    shape: view.shape().to_vec(),
                    data: view.data().to_vec(),
                };
                rows.push(Row::int(name, &t));
                model.tensors.insert(name.clone(), Tensor::Int(t));
                continue;
            }
            // What is left (8-bit floats, complex) has no meaning here.
            if !args.json {
                eprintln!(
                    "warning: skipping '{name}' ({}): float8 tensors are not stored",
                    view.dtype()
                );
            }
            skipped.push(json!({"name": name, "dtype": view.dtype().to_string()}));
            continue;
        };
        let float = util::float_tensor(dtype, &view);
        if !quantize_this(name, view.shape()) {
            rows.push(Row::float(name, &float, None));
            model.tensors.insert(name.clone(), Tensor::Float(float));
            continue;
        }
        bar.set_message(name.clone());
        let (t, row) = quantize(name, &float, scheme, granularity, &enc, None)?;
        rows.push(row);
        bar.inc(float.numel() as u64);
        model.tensors.insert(name.clone(), t);
    }
    bar.finish_and_clear();
    if !model.tensors.values().any(|t| !matches!(t, Tensor::Int(_))) {
        bail!(
            "{} holds no float tensor: nothing to compress",
            args.input.display()
        );
    }
    model.arch = file_arch;

    // A file from `twobit decompress` carries its network: keep it, so the result runs.
    // Validation (in `to_bytes`) checks it against the tensors written.
    if let Some(json) = st_metadata(&bytes).get(super::decompress::ARCH_KEY) {
        let shape = |n: &str| model.tensors.get(n).map(|t| t.shape().to_vec());
        let arch = twobit_format::Arch::from_json(json, &shape).map_err(|e| {
            anyhow!(
                "{}: bad {} metadata: {e}",
                args.input.display(),
                super::decompress::ARCH_KEY
            )
        })?;
        model.arch = Some(arch);
    }
    let out = finish(&args, &mut model, scheme, granularity, &enc)?;
    report(&args, &rows, &skipped, bytes.len() as u64, out.len() as u64)
}

/// Quantizes one float tensor; the stored tensor and its report row. Per-channel granularity
/// falls back to per tensor when a channel's tables would cost more bits than its codes
/// ([`twobit_format::channel_rule`]), and a tensor whose packed form would not be smaller than
/// its float form stays float; the row's note says so.
fn quantize(
    name: &str,
    float: &twobit_format::FloatTensor,
    scheme: Scheme,
    granularity: Granularity,
    enc: &Enc,
    calibrated: Option<super::calibrate::Calibrated>,
) -> anyhow::Result<(Tensor, Row)> {
    let w = float.to_f32();
    let (gran, note) = granularity_for(&float.shape, scheme, granularity, enc);
    let mut notes: Vec<String> = note.into_iter().collect();
    let (q, output_error) = match calibrated {
        Some(c) => {
            if !c.bias_corrected {
                notes.push("mean output shift not corrected (no bias, no batch norm)".into());
            }
            (c.q, Some((c.report.before, c.report.after)))
        }
        None => (
            twobit_quant::quantize(&w, &float.shape, scheme, gran)
                .with_context(|| format!("cannot quantize tensor '{name}'"))?,
            None,
        ),
    };
    let mut p = PackedTensor::from_quantized(&q);
    p.origin_dtype = float.dtype;
    let mut rel_error = twobit_quant::rel_error(&w, &q);
    let mut table_error = None;
    if enc.f16 {
        match p.with_f16_tables() {
            Some(h) => {
                let e = twobit_quant::rel_error(&w, &h.to_quantized());
                table_error = Some(e - rel_error);
                notes.push(format!("f16 tables add {:+.1e} to rel.err", e - rel_error));
                rel_error = e;
                p = h;
            }
            None => notes.push("f32 tables: a level overflows f16".into()),
        }
    }
    let size = p
        .stored_size(&enc.write)
        .with_context(|| format!("cannot encode tensor '{name}'"))?;
    let float_bytes = float.data.len();
    if size.total() >= float_bytes {
        notes.push(format!(
            "kept float: packed would take {} bytes, float {float_bytes}",
            size.total()
        ));
        let row = Row::float(name, float, Some(notes.join("; ")));
        return Ok((Tensor::Float(float.clone()), row));
    }
    let n = p.numel().max(1);
    let row = Row {
        name: name.to_string(),
        shape: float.shape.clone(),
        dtype: float.dtype.name().into(),
        scheme: Some(scheme),
        bits_per_weight: 8.0 * size.total() as f64 / n as f64,
        rel_error: Some(rel_error),
        sparsity: Some(twobit_quant::sparsity(&q)),
        packing: Some(size.encoding.packing.name()),
        code_entropy: Some(p.code_entropy()),
        table_error,
        note: (!notes.is_empty()).then(|| notes.join("; ")),
        output_error,
    };
    Ok((Tensor::Packed(p), row))
}

/// The granularity a tensor gets: per channel falls back to per tensor when a channel's
/// tables would cost more bits than its codes; the note says so.
fn granularity_for(
    shape: &[usize],
    scheme: Scheme,
    granularity: Granularity,
    enc: &Enc,
) -> (Granularity, Option<String>) {
    let tables = if enc.f16 {
        twobit_format::TableDtype::F16
    } else {
        twobit_format::TableDtype::F32
    };
    if granularity == Granularity::Channel {
        let r = twobit_format::channel_rule(shape, scheme.num_codes(), tables);
        if !r.keep_channel {
            return (Granularity::Tensor, Some(format!(
                "per tensor: tables of {}-weight channels would cost {:.2} bits/weight, more than the codes' {}",
                r.per_channel, r.channel_table_bits, r.code_bits
            )));
        }
    }
    (granularity, None)
}

/// Post-training quantization of a network (an ONNX model): the weights of its Conv and
/// Linear nodes are quantized, except the first and last weight layers and depthwise
/// convolutions unless `--quantize-all`, and `--keep` matches. The graph and the
/// normalisation go into the file, so `twobit eval` runs it.
fn compress_network(
    args: &Args,
    scheme: Scheme,
    granularity: Granularity,
    keep: &[Regex],
) -> anyhow::Result<()> {
    let in_bytes = std::fs::metadata(&args.input)
        .with_context(|| format!("cannot read {}", args.input.display()))?
        .len();
    let enc = Enc::new(args);
    let mut model = super::network::load(&args.input, &args.norm)?;
    let arch = model.arch.clone().expect("network::load checks the arch");
    let shapes = arch
        .shapes(|t| model.tensors.get(t).map(Tensor::shape))
        .map_err(|e| anyhow!("{}: {e}", args.input.display()))?;
    let weights: Vec<&twobit_format::Node> = arch.weight_nodes().collect();
    util::warn_unmatched_keep(&args.keep, keep, model.tensors.keys().map(String::as_str));
    let mut quantized = std::collections::BTreeSet::new();
    for (i, node) in weights.iter().enumerate() {
        let name = node.op.weight().expect("weight node");
        let depthwise = match &node.op {
            twobit_format::Op::Conv { group, .. } => {
                let c = node
                    .inputs
                    .first()
                    .and_then(|v| shapes.get(v))
                    .map(|s| s[0]);
                *group > 1 && Some(*group) == c
            }
            _ => false,
        };
        let edge = i == 0 || i + 1 == weights.len();
        if (args.quantize_all || !(edge || depthwise)) && !keep.iter().any(|r| r.is_match(name)) {
            quantized.insert(name.to_string());
        }
    }
    let started = std::time::Instant::now();
    let mut calibrated = match &args.calibrate {
        Some(dataset) => {
            let settings = super::calibrate::Settings {
                dataset: dataset.clone(),
                data_dir: args.data_dir.clone(),
                images: args.calib_images,
                independent: args.independent,
                bias_correction: true,
                act_order: true,
            };
            let gran = |shape: &[usize]| granularity_for(shape, scheme, granularity, &enc).0;
            super::calibrate::calibrate(&mut model, &quantized, scheme, &gran, &settings)?
        }
        None => Default::default(),
    };
    let calib_seconds = started.elapsed().as_secs_f64();
    let mut rows = Vec::new();
    for (name, t) in model.tensors.iter_mut() {
        let Tensor::Float(float) = t else {
            anyhow::bail!(
                "{}: tensor '{name}' is already packed",
                args.input.display()
            );
        };
        if quantized.contains(name) {
            let c = calibrated.remove(name);
            let (q, row) = quantize(name, float, scheme, granularity, &enc, c)?;
            rows.push(row);
            *t = q;
        } else {
            rows.push(Row::float(name, float, None));
        }
    }
    let p = &mut model.provenance;
    p.insert("quantize_all".into(), args.quantize_all.to_string());
    if let Some(d) = &args.calibrate {
        p.insert("calibrate".into(), d.clone());
        p.insert("calib_images".into(), args.calib_images.to_string());
        let mode = if args.independent {
            "independent"
        } else {
            "sequential"
        };
        p.insert("calib_mode".into(), mode.into());
        if !args.json {
            eprintln!(
                "calibrated on {} {d} training images ({mode}) in {calib_seconds:.1} s",
                args.calib_images
            );
        }
    }
    let out = finish(args, &mut model, scheme, granularity, &enc)?;
    report(args, &rows, &[], in_bytes, out.len() as u64)
}

/// What both inputs end with: the provenance every compressed file records, the encoded
/// file, and writing it unless `--dry-run`. Returns the encoded bytes (for the size line).
fn finish(
    args: &Args,
    model: &mut Model,
    scheme: Scheme,
    granularity: Granularity,
    enc: &Enc,
) -> anyhow::Result<Vec<u8>> {
    // Activation ranges calibrated for other weights do not describe these.
    if let Some(a) = &mut model.arch {
        a.input_ranges.clear();
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
        .to_bytes_with(&enc.write)
        .context("cannot encode the compressed model")?;
    if !args.dry_run {
        util::write_output(&args.output, &out)?;
    }
    Ok(out)
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
    let ints = rows.iter().filter(|r| r.kind() == "int").count();
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
                    "kind": r.kind(),
                    "scheme": r.scheme.map(Scheme::name),
                    "bits_per_weight": r.bits_per_weight,
                    "rel_error": r.rel_error,
                    "sparsity": r.sparsity,
                    "packing": r.packing,
                    "code_entropy": r.code_entropy,
                    "table_error": r.table_error,
                    "note": r.note,
                    "output_error_before": r.output_error.map(|e| e.0),
                    "output_error_after": r.output_error.map(|e| e.1),
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
                "skipped_tensors": skipped.len(),
                "int_tensors": ints,
                "packed_weights": packed_weights,
            },
        });
        println!("{obj}");
        return Ok(());
    }
    let w = rows.iter().map(|r| r.name.len()).max().unwrap_or(4).max(6);
    // With --calibrate: the relative output error before -> after, next to the weight error.
    let cal = rows.iter().any(|r| r.output_error.is_some());
    let out_err = |e: Option<(f64, f64)>| match (cal, e) {
        (false, _) => String::new(),
        (true, None) => format!(" {:>13}", "-"),
        (true, Some((b, a))) => format!(" {:>13}", format!("{b:.4}->{a:.4}")),
    };
    println!(
        "{:<w$}  {:<14} {:<5} {:<9} {:>9} {:>9}{} {:>8} {:<7} {:>7}  note",
        "tensor",
        "shape",
        "dtype",
        "scheme",
        "bits/w",
        "rel.err",
        if cal {
            format!(" {:>13}", "out.err")
        } else {
            String::new()
        },
        "sparsity",
        "packing",
        "entropy"
    );
    for r in rows {
        let opt = |v: Option<f64>, p: usize| v.map_or("-".into(), |x| format!("{x:.p$}"));
        println!(
            "{:<w$}  {:<14} {:<5} {:<9} {:>9.3} {:>9}{} {:>8} {:<7} {:>7}  {}",
            r.name,
            shape_str(&r.shape),
            r.dtype,
            r.scheme.map_or(r.kind(), Scheme::name),
            r.bits_per_weight,
            opt(r.rel_error, 4),
            out_err(r.output_error),
            opt(r.sparsity, 3),
            r.packing.unwrap_or("-"),
            opt(r.code_entropy, 3),
            r.note.as_deref().unwrap_or(""),
        );
    }
    let verb = if args.dry_run { "would write" } else { "wrote" };
    println!(
        "total: {} ({}), {} -> {} bytes ({} -> {}), ratio {ratio:.2}x; {verb} {}{}{}",
        util::plural(packed.len(), "packed tensor"),
        util::plural(packed_weights, "weight"),
        in_bytes,
        out_bytes,
        util::human_bytes(in_bytes),
        util::human_bytes(out_bytes),
        args.output.display(),
        if ints == 0 {
            String::new()
        } else {
            format!("; {} kept as is", util::plural(ints, "integer tensor"))
        },
        if skipped.is_empty() {
            String::new()
        } else {
            format!(
                "; {} not stored",
                util::plural(skipped.len(), "float8 tensor")
            )
        }
    );
    Ok(())
}
