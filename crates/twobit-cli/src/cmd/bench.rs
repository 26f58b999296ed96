//! `twobit bench`: times the 2-bit runtime against the same network with dequantized fp32
//! weights (fp32 GEMM), in the same process, per layer and in total.
use crate::util;
use anyhow::{bail, Context};
use std::path::PathBuf;
use std::time::Duration;
use twobit_format::{Model, Tensor};
use twobit_runtime::{Kernel, LayerTime, Runtime};

/// Arguments.
#[derive(clap::Args)]
pub struct Args {
    /// The .twobit file (must contain an architecture manifest).
    pub file: PathBuf,
    /// Images per forward pass.
    #[arg(long = "batch-size", visible_alias = "batch", default_value_t = 64)]
    pub batch: usize,
    /// Timed forward passes per path.
    #[arg(long, default_value_t = 10)]
    pub iters: usize,
    /// Untimed warm-up passes per path.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Packed kernel: `auto` (the best this CPU runs), `avx512`, `avx2` or `portable`.
    #[arg(long, default_value = "auto")]
    pub kernel: String,
    /// `int8`: also time the 2-bit layers with int8 activations, against fp32 and against
    /// fp32 activations, per layer, with the argmax agreement (`f32`: the 2-bit path only);
    /// `int8-calibrated`: the same with the file's calibrated per-layer scales.
    #[arg(long, default_value = "f32", value_parser = crate::util::ACT_VALUES)]
    pub act: String,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The kernel named on the command line; one this CPU cannot run is an error.
fn parse_kernel(name: &str) -> anyhow::Result<Kernel> {
    let k = match name {
        "auto" => return Ok(Kernel::detect()),
        "avx512" => Kernel::Avx512,
        "avx2" => Kernel::Avx2,
        "portable" => Kernel::Portable,
        other => bail!("unknown kernel '{other}' (expected auto, avx512, avx2 or portable)"),
    };
    if !k.available() {
        bail!("this CPU cannot run the {name} kernel");
    }
    Ok(k)
}

/// Mean time per layer over `iters` passes, and the last logits.
fn time_path(
    rt: &Runtime,
    x: &[f32],
    batch: usize,
    warmup: usize,
    iters: usize,
) -> anyhow::Result<(Vec<LayerTime>, Vec<f32>)> {
    for _ in 0..warmup {
        rt.try_forward(x, batch)?;
    }
    let mut sum: Vec<LayerTime> = Vec::new();
    let mut logits = Vec::new();
    for _ in 0..iters {
        let (y, times) = rt.forward_profiled(x, batch)?;
        if sum.is_empty() {
            sum = times;
        } else {
            for (s, t) in sum.iter_mut().zip(times) {
                s.time += t.time;
            }
        }
        logits = y;
    }
    for s in &mut sum {
        s.time /= iters as u32;
    }
    Ok((sum, logits))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<()> {
    if args.batch == 0 || args.iters == 0 {
        bail!("--batch-size and --iters must be at least 1");
    }
    if args.iters > u32::MAX as usize {
        bail!("--iters is too large");
    }
    let kernel = parse_kernel(&args.kernel)?;
    util::check_input(&args.file)?;
    let model =
        Model::load(&args.file).with_context(|| format!("cannot read {}", args.file.display()))?;
    util::check_batch_memory(&model, args.batch)?;
    let act = util::activations(&args.act, &model, &args.file)?;
    let mut packed = Runtime::from_model(&model)
        .with_context(|| format!("cannot run {}", args.file.display()))?;
    packed.set_kernel(kernel);
    // A layer whose weights are stored float runs fp32 in both paths: say so, not "2-bit".
    let weights = |label: &str| -> &'static str {
        let mut kind = "none";
        for word in label.split_whitespace() {
            match model.tensors.get(word) {
                Some(Tensor::Packed(_)) => return "2-bit",
                Some(Tensor::Float(_)) => kind = "float",
                Some(Tensor::Int(_)) | None => {}
            }
        }
        kind
    };
    let all_float = !model
        .tensors
        .values()
        .any(|t| matches!(t, Tensor::Packed(_)));
    let packed_name = if all_float { "float" } else { "2-bit" };
    let fp32 = packed.dequantized();
    // Deterministic pseudo-random normalised input: timing does not depend on the values
    // (no data-dependent skipping of activations).
    let n = args
        .batch
        .checked_mul(packed.input_len())
        .context("--batch-size is too large")?;
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    let x: Vec<f32> = (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 * 4.0 - 2.0
        })
        .collect();
    let (tp, yp) = time_path(&packed, &x, args.batch, args.warmup, args.iters)?;
    let (tf, yf) = time_path(&fp32, &x, args.batch, args.warmup, args.iters)?;
    // The int8-activation path: same network and kernel choice, timed after the others.
    // Each int8 convolution's measured path (tile, gemm, perm or f32), by layer label.
    let mut int8_paths: Vec<(String, &'static str)> = Vec::new();
    let int8 = if act.is_int8() {
        let mut rt = Runtime::from_model(&model)?;
        rt.set_kernel(kernel);
        rt.set_activations(act);
        int8_paths = rt.int8_conv_paths();
        Some(time_path(&rt, &x, args.batch, args.warmup, args.iters)?)
    } else {
        None
    };
    let total_p: Duration = tp.iter().map(|t| t.time).sum();
    let total_f: Duration = tf.iter().map(|t| t.time).sum();
    let max_diff = yp
        .iter()
        .zip(&yf)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    // The diff only means something relative to the logits' size.
    let max_logit = yf.iter().map(|v| v.abs()).fold(0f32, f32::max);
    let classes = packed.arch().classes;
    let agree = yp
        .chunks_exact(classes)
        .zip(yf.chunks_exact(classes))
        .filter(|(a, b)| super::eval::argmax(a) == super::eval::argmax(b))
        .count();
    let agreement = |a: &[f32], b: &[f32]| {
        a.chunks_exact(classes)
            .zip(b.chunks_exact(classes))
            .filter(|(a, b)| super::eval::argmax(a) == super::eval::argmax(b))
            .count()
    };
    let max_abs_diff = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max)
    };
    let total_i: Option<Duration> = int8.as_ref().map(|(ti, _)| ti.iter().map(|t| t.time).sum());
    let path_of = |label: &str| int8_paths.iter().find(|(l, _)| l == label).map(|(_, p)| *p);
    let (wb, wf) = (packed.weight_bytes(), packed.fp32_weight_bytes());
    let ratio = |a: Duration, b: Duration| b.as_secs_f64() / a.as_secs_f64().max(1e-12);
    if args.json {
        let layers: Vec<_> = tp
            .iter()
            .zip(&tf)
            .enumerate()
            .map(|(i, (p, f))| {
                let mut v = serde_json::json!({
                    "layer": p.label, "weights": weights(&p.label),
                    "packed_ms": ms(p.time), "fp32_ms": ms(f.time),
                    "speedup": ratio(p.time, f.time),
                });
                if let Some((ti, _)) = &int8 {
                    v["int8_path"] = path_of(&p.label).into();
                    v["int8_ms"] = ms(ti[i].time).into();
                    v["int8_speedup"] = ratio(ti[i].time, f.time).into();
                    v["int8_vs_packed"] = ratio(ti[i].time, p.time).into();
                }
                v
            })
            .collect();
        let mut v = serde_json::json!({
            "input": args.file.display().to_string(),
            "file": args.file.display().to_string(),
            "model": packed.arch().name,
            "weights": packed_name,
            "kernel": packed.kernel().name(),
            "threads": rayon::current_num_threads(),
            "batch_size": args.batch,
            "iters": args.iters,
            "layers": layers,
            "packed_ms": ms(total_p),
            "fp32_ms": ms(total_f),
            "speedup": ratio(total_p, total_f),
            "images_per_second_packed": args.batch as f64 / total_p.as_secs_f64().max(1e-12),
            "images_per_second_fp32": args.batch as f64 / total_f.as_secs_f64().max(1e-12),
            "weight_bytes_packed": wb,
            "weight_bytes_fp32": wf,
            "memory_ratio": wf as f64 / wb.max(1) as f64,
            "max_abs_logit_diff": max_diff,
            "max_abs_logit": max_logit,
            "argmax_agreement": agree as f64 / args.batch as f64,
            "activations": args.act,
        });
        if let (Some((_, yi)), Some(ti)) = (&int8, total_i) {
            v["int8_kernel"] = twobit_runtime::kernels::int8::int8_isa_name(kernel).into();
            v["int8_ms"] = ms(ti).into();
            v["int8_speedup"] = ratio(ti, total_f).into();
            v["int8_vs_packed"] = ratio(ti, total_p).into();
            v["images_per_second_int8"] = (args.batch as f64 / ti.as_secs_f64().max(1e-12)).into();
            v["int8_max_abs_logit_diff"] = max_abs_diff(yi, &yf).into();
            v["int8_argmax_agreement"] = (agreement(yi, &yf) as f64 / args.batch as f64).into();
            v["int8_argmax_agreement_packed"] =
                (agreement(yi, &yp) as f64 / args.batch as f64).into();
        }
        println!("{v}");
        return Ok(());
    }
    println!(
        "{} ({}{}), batch size {}, {}, kernel {}, {} threads",
        args.file.display(),
        packed.arch().name,
        if all_float { ", float weights" } else { "" },
        args.batch,
        util::plural(args.iters, "iteration"),
        packed.kernel().name(),
        rayon::current_num_threads()
    );
    let label = |p: &LayerTime| match weights(&p.label) {
        "float" => format!("{} (float)", p.label),
        _ => p.label.clone(),
    };
    let width = tp.iter().map(|t| label(t).len()).max().unwrap_or(5).max(5);
    // With `--act int8`: int8 time, its speed-up over fp32 and over the 2-bit path, and a
    // convolution's measured path.
    let int8_cols = |t: Option<Duration>, p: Duration, f: Duration, path: Option<&str>| match t {
        Some(t) => format!(
            "  {:>11.3}  {:>9.2}x  {:>9.2}x  {}",
            ms(t),
            ratio(t, f),
            ratio(t, p),
            path.unwrap_or("")
        ),
        None => String::new(),
    };
    println!(
        "{:width$}  {:>11}  {:>11}  {:>8}{}",
        "layer",
        format!("{packed_name} ms"),
        "fp32 ms",
        "speedup",
        if int8.is_some() {
            format!(
                "  {:>11}  {:>10}  {:>10}  {}",
                "int8 ms", "int8/fp32", "int8/2-bit", "path"
            )
        } else {
            String::new()
        }
    );
    for (i, (p, f)) in tp.iter().zip(&tf).enumerate() {
        let ti = int8.as_ref().map(|(ti, _)| ti[i].time);
        println!(
            "{:width$}  {:>11.3}  {:>11.3}  {:>7.2}x{}",
            label(p),
            ms(p.time),
            ms(f.time),
            ratio(p.time, f.time),
            int8_cols(ti, p.time, f.time, path_of(&p.label))
        );
    }
    println!(
        "{:width$}  {:>11.3}  {:>11.3}  {:>7.2}x{}",
        "total",
        ms(total_p),
        ms(total_f),
        ratio(total_p, total_f),
        int8_cols(total_i, total_p, total_f, None)
    );
    println!(
        "throughput: {packed_name} {:.0} images/s, fp32 {:.0} images/s",
        args.batch as f64 / total_p.as_secs_f64().max(1e-12),
        args.batch as f64 / total_f.as_secs_f64().max(1e-12)
    );
    println!(
        "weight memory: {packed_name} {wb} bytes, fp32 {wf} bytes ({})",
        util::size_ratio(wb as u64, wf as u64)
    );
    println!(
        "{packed_name} vs fp32 logits: max abs diff {max_diff:.3e} (max |logit| {max_logit:.3e}), argmax agrees on {agree}/{}",
        args.batch
    );
    if let Some((_, yi)) = &int8 {
        println!(
            "int8 activations ({}) vs fp32 logits: max abs diff {:.3e}, argmax agrees on {}/{} (with the fp32-activation 2-bit path: {}/{})",
            twobit_runtime::kernels::int8::int8_isa_name(kernel),
            max_abs_diff(yi, &yf),
            agreement(yi, &yf),
            args.batch,
            agreement(yi, &yp),
            args.batch
        );
    }
    Ok(())
}
