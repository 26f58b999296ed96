//! `twobit bench`: times the 2-bit runtime against the same network with dequantized fp32
//! weights (fp32 GEMM), in the same process, per layer and in total.
use anyhow::{bail, Context};
use std::path::PathBuf;
use std::time::Duration;
use twobit_runtime::{Kernel, LayerTime, Runtime};

/// Arguments.
#[derive(clap::Args)]
pub struct Args {
    /// The .twobit file (must contain an architecture manifest).
    pub file: PathBuf,
    /// Images per forward pass.
    #[arg(long, default_value_t = 64)]
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
        bail!("--batch and --iters must be at least 1");
    }
    if args.iters > u32::MAX as usize {
        bail!("--iters is too large");
    }
    let kernel = parse_kernel(&args.kernel)?;
    let mut packed =
        Runtime::load(&args.file).with_context(|| format!("cannot run {}", args.file.display()))?;
    packed.set_kernel(kernel);
    let fp32 = packed.dequantized();
    // Deterministic pseudo-random normalised input: timing does not depend on the values
    // (no data-dependent skipping of activations).
    let n = args.batch * packed.input_len();
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
    let (wb, wf) = (packed.weight_bytes(), packed.fp32_weight_bytes());
    let ratio = |a: Duration, b: Duration| b.as_secs_f64() / a.as_secs_f64().max(1e-12);
    if args.json {
        let layers: Vec<_> = tp
            .iter()
            .zip(&tf)
            .map(|(p, f)| {
                serde_json::json!({
                    "layer": p.label, "packed_ms": ms(p.time), "fp32_ms": ms(f.time),
                    "speedup": ratio(p.time, f.time),
                })
            })
            .collect();
        let v = serde_json::json!({
            "file": args.file.display().to_string(),
            "model": packed.arch().name,
            "kernel": packed.kernel().name(),
            "threads": rayon::current_num_threads(),
            "batch": args.batch,
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
        });
        println!("{v}");
        return Ok(());
    }
    println!(
        "{} ({}), batch {}, {} iters, kernel {}, {} threads",
        args.file.display(),
        packed.arch().name,
        args.batch,
        args.iters,
        packed.kernel().name(),
        rayon::current_num_threads()
    );
    let width = tp.iter().map(|t| t.label.len()).max().unwrap_or(5).max(5);
    println!(
        "{:width$}  {:>11}  {:>11}  {:>8}",
        "layer", "2-bit ms", "fp32 ms", "speedup"
    );
    for (p, f) in tp.iter().zip(&tf) {
        println!(
            "{:width$}  {:>11.3}  {:>11.3}  {:>7.2}x",
            p.label,
            ms(p.time),
            ms(f.time),
            ratio(p.time, f.time)
        );
    }
    println!(
        "{:width$}  {:>11.3}  {:>11.3}  {:>7.2}x",
        "total",
        ms(total_p),
        ms(total_f),
        ratio(total_p, total_f)
    );
    println!(
        "throughput: 2-bit {:.0} images/s, fp32 {:.0} images/s",
        args.batch as f64 / total_p.as_secs_f64().max(1e-12),
        args.batch as f64 / total_f.as_secs_f64().max(1e-12)
    );
    println!(
        "weight memory: 2-bit {wb} bytes, fp32 {wf} bytes ({:.1}x smaller)",
        wf as f64 / wb.max(1) as f64
    );
    println!(
        "2-bit vs fp32 logits: max abs diff {max_diff:.3e} (max |logit| {max_logit:.3e}), argmax agrees on {agree}/{}",
        args.batch
    );
    Ok(())
}
