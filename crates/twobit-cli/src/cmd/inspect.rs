//! `twobit inspect`: the per-tensor table of a `.twobit` file, from the file alone.
use crate::util::{self, shape_str};
use anyhow::Context;
use serde_json::json;
use std::path::PathBuf;
use twobit_format::{Arch, Model, PackedTensor, Tensor};
use twobit_quant::Granularity;

/// Arguments.
#[derive(clap::Args)]
pub struct Args {
    /// The .twobit file.
    pub file: PathBuf,
    /// Print one JSON object on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also draw each weight layer's histogram with its levels and thresholds into DIR
    /// (PNG and SVG).
    #[arg(long, value_name = "DIR")]
    pub plot: Option<PathBuf>,
    /// Float shadow weights for the histograms [default: FILE.latent.safetensors if present,
    /// written by `twobit train --save-latent`].
    #[arg(long, requires = "plot")]
    pub latent: Option<PathBuf>,
    /// For float weight tensors: mark the levels this scheme would choose.
    #[arg(long, requires = "plot")]
    pub scheme: Option<String>,
}

/// Per-position `[min, max]` over the groups (a single group gives min == max).
fn ranges<const N: usize>(rows: impl Iterator<Item = [f32; N]>) -> [[f32; 2]; N] {
    let mut out = [[f32::INFINITY, f32::NEG_INFINITY]; N];
    for r in rows {
        for (o, v) in out.iter_mut().zip(r) {
            o[0] = o[0].min(v);
            o[1] = o[1].max(v);
        }
    }
    out
}

fn fmt_ranges<const N: usize>(r: &[[f32; 2]; N]) -> String {
    let parts: Vec<String> = r
        .iter()
        .map(|[lo, hi]| {
            if lo == hi {
                format!("{lo:.4}")
            } else {
                format!("{lo:.4}..{hi:.4}")
            }
        })
        .collect();
    format!("[{}]", parts.join(", "))
}

fn level_ranges(p: &PackedTensor) -> ([[f32; 2]; 4], [[f32; 2]; 3]) {
    (
        ranges(p.levels.iter().map(|l| l.values)),
        ranges(p.levels.iter().map(|l| l.thresholds)),
    )
}

fn arch_summary(a: &Arch) -> String {
    format!(
        "{} input {}x{}x{}, {} classes, {} nodes ({} weight layers)",
        a.name,
        a.input[0],
        a.input[1],
        a.input[2],
        a.classes,
        a.nodes.len(),
        a.weight_nodes().count()
    )
}

fn plot(args: &Args, dir: &std::path::Path) -> anyhow::Result<Vec<PathBuf>> {
    let scheme = args
        .scheme
        .as_deref()
        .map(str::parse::<twobit_quant::Scheme>)
        .transpose()?;
    let latent = args.latent.clone().or_else(|| {
        let p = util::with_suffix(&args.file, ".latent.safetensors");
        p.is_file().then_some(p)
    });
    let prefix = args.file.file_stem().map_or_else(
        || "weights".to_string(),
        |s| s.to_string_lossy().into_owned(),
    );
    crate::cmd::plots::histograms(&args.file, latent.as_deref(), scheme, dir, &prefix, None)
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<()> {
    util::check_input(&args.file)?;
    let plotted = match &args.plot {
        Some(dir) => {
            util::output_dir(dir)?;
            plot(&args, dir)?
        }
        None => Vec::new(),
    };
    for p in &plotted {
        eprintln!("wrote {}", p.display());
    }
    let (model, layout) = Model::load_with_layout(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    // Bytes as stored (the file's own encoding), per packed tensor.
    let stored = |name: &str, p: &PackedTensor| {
        layout.get(name).copied().unwrap_or_else(|| {
            p.stored_size(&Default::default())
                .expect("a read tensor encodes")
        })
    };
    let file_bytes = std::fs::metadata(&args.file)
        .with_context(|| format!("cannot stat {}", args.file.display()))?
        .len();
    let mut packed_weights = 0usize;
    let mut packed_bytes = 0usize;
    let mut float_elems = 0usize;
    let mut float_bytes = 0usize;
    // Integer tensors (e.g. num_batches_tracked) are not weights: counted apart.
    let mut int_bytes = 0usize;
    for (name, t) in &model.tensors {
        match t {
            Tensor::Packed(p) => {
                packed_weights += p.numel();
                packed_bytes += stored(name, p).total();
            }
            Tensor::Float(f) => {
                float_elems += f.numel();
                float_bytes += f.data.len();
            }
            Tensor::Int(t) => int_bytes += t.data.len(),
        }
    }
    let packed_bpw = if packed_weights > 0 {
        packed_bytes as f64 * 8.0 / packed_weights as f64
    } else {
        0.0
    };
    let all = packed_weights + float_elems;
    let overall_bpw = if all > 0 {
        file_bytes as f64 * 8.0 / all as f64
    } else {
        0.0
    };

    if args.json {
        // A list in file order, as in `compress --json` (each entry names its tensor).
        let tensors: Vec<serde_json::Value> = model
            .tensors
            .iter()
            .map(|(name, t)| {
                let v = match t {
                    Tensor::Packed(p) => {
                        let (lv, th) = level_ranges(p);
                        json!({
                            "name": name,
                            "kind": "packed",
                            "shape": p.shape,
                            "scheme": p.scheme.name(),
                            "granularity": p.granularity.name(),
                            "origin_dtype": p.origin_dtype.name(),
                            "groups": p.levels.len(),
                            "levels_first_group": p.levels.first().map(|l| l.values),
                            "thresholds_first_group": p.levels.first().map(|l| l.thresholds.map(json_f32)),
                            "levels_min_max": lv,
                            "thresholds_min_max": th.map(|r| r.map(json_f32)),
                            "sparsity": p.sparsity(),
                            "bits_per_weight": 8.0 * stored(name, p).total() as f64 / p.numel().max(1) as f64,
                            "bytes": stored(name, p).total(),
                            "packing": stored(name, p).encoding.packing.name(),
                            "table_dtype": stored(name, p).encoding.table_dtype.name(),
                            "table_layout": stored(name, p).encoding.table_layout.name(),
                            "code_bytes": stored(name, p).code_bytes,
                            "table_bytes": stored(name, p).table_bytes,
                            "code_entropy": p.code_entropy(),
                        })
                    }
                    Tensor::Float(f) => json!({
                        "name": name,
                        "kind": "float",
                        "shape": f.shape,
                        "dtype": f.dtype.name(),
                        "bits_per_weight": 8 * f.dtype.size(),
                        "bytes": f.data.len(),
                    }),
                    Tensor::Int(t) => json!({
                        "name": name,
                        "kind": "int",
                        "shape": t.shape,
                        "dtype": t.dtype.name(),
                        "bytes": t.data.len(),
                    }),
                };
                v
            })
            .collect();
        let obj = json!({
            "input": args.file.display().to_string(),
            "file": args.file.display().to_string(),
            "file_bytes": file_bytes,
            "tensors": tensors,
            "total": {
                "tensor_count": model.tensors.len(),
                "packed_weights": packed_weights,
                "packed_bytes": packed_bytes,
                "packed_bits_per_weight": packed_bpw,
                "float_elements": float_elems,
                "float_bytes": float_bytes,
                "int_bytes": int_bytes,
                "bits_per_parameter": overall_bpw,
            },
            "provenance": model.provenance,
            "arch": model.arch.as_ref().map(|a| json!({
                "name": a.name,
                "input": a.input,
                "classes": a.classes,
                "nodes": a.nodes.len(),
                "weight_layers": a.weight_nodes().count(),
                "input_ranges": a.input_ranges,
            })),
        });
        println!("{obj}");
        return Ok(());
    }

    let w = model
        .tensors
        .keys()
        .map(|n| n.len())
        .max()
        .unwrap_or(6)
        .max(6);
    println!(
        "{:<w$}  {:<14} {:<10} {:<7} {:>6} {:>8} {:>7} {:<9} {:>7}  levels / thresholds",
        "tensor", "shape", "scheme", "gran.", "groups", "sparsity", "bits/w", "packing", "entropy"
    );
    for (name, t) in &model.tensors {
        match t {
            Tensor::Packed(p) => {
                let (lv, th) = level_ranges(p);
                let label = if p.granularity == Granularity::Channel && p.levels.len() > 1 {
                    "min..max"
                } else {
                    ""
                };
                let size = stored(name, p);
                println!(
                    "{:<w$}  {:<14} {:<10} {:<7} {:>6} {:>8.3} {:>7.3} {:<9} {:>7.3}  {} / {} {label}",
                    name,
                    shape_str(&p.shape),
                    p.scheme.name(),
                    p.granularity.name(),
                    p.levels.len(),
                    p.sparsity(),
                    8.0 * size.total() as f64 / p.numel().max(1) as f64,
                    format!("{}/{}", size.encoding.packing.name(), size.encoding.table_dtype.name()),
                    p.code_entropy(),
                    fmt_ranges(&lv),
                    fmt_ranges(&th),
                );
            }
            // Kept as stored: the dtype, and bits per value for float weights.
            Tensor::Float(_) | Tensor::Int(_) => {
                let (kind, bits) = match t {
                    Tensor::Float(f) => (
                        format!("float:{}", f.dtype),
                        (8 * f.dtype.size()).to_string(),
                    ),
                    Tensor::Int(i) => (format!("int:{}", i.dtype), "-".to_string()),
                    Tensor::Packed(_) => unreachable!("matched above"),
                };
                println!(
                    "{:<w$}  {:<14} {:<10} {:<7} {:>6} {:>8} {:>7}",
                    name,
                    shape_str(t.shape()),
                    kind,
                    "-",
                    "-",
                    "-",
                    bits,
                );
            }
        }
    }
    println!(
        "total: {}; packed {} in {} ({packed_bpw:.3} bits/weight); float {} in {}{}; file {} ({overall_bpw:.3} bits/parameter)",
        util::plural(model.tensors.len(), "tensor"),
        util::plural(packed_weights, "weight"),
        util::human_bytes(packed_bytes as u64),
        util::plural(float_elems, "value"),
        util::human_bytes(float_bytes as u64),
        if int_bytes > 0 {
            format!("; integers in {}", util::human_bytes(int_bytes as u64))
        } else {
            String::new()
        },
        util::human_bytes(file_bytes),
    );
    for (k, v) in &model.provenance {
        println!("provenance: {k} = {v}");
    }
    match &model.arch {
        Some(a) => {
            println!("arch: {}", arch_summary(a));
            if !a.input_ranges.is_empty() {
                let r: Vec<String> = a
                    .input_ranges
                    .iter()
                    .map(|(n, r)| format!("{n} {r:.4}"))
                    .collect();
                println!(
                    "calibrated input ranges (twobit calibrate): {}",
                    r.join(", ")
                );
            }
        }
        None => println!("arch: none"),
    }
    Ok(())
}

/// JSON has no infinity: ternary thresholds' +inf is written as the string "inf".
fn json_f32(v: f32) -> serde_json::Value {
    if v.is_finite() {
        json!(v)
    } else if v > 0.0 {
        json!("inf")
    } else {
        json!("-inf")
    }
}
