//! Times `Runtime::forward` on a model file: `time_model FILE BATCH ITERS`. Three paths,
//! interleaved pass by pass (so machine load hits them alike): the dequantized fp32
//! network, the 2-bit runtime with fp32 activations, and with int8 activations; then the
//! same per layer (best of ITERS profiled passes each), with each int8 convolution's
//! measured path, and the int8 path's argmax agreement with fp32.
use std::time::Instant;
use twobit_runtime::{Activations, Runtime};

#[path = "common/clock.rs"]
mod clock;
use clock::now;

// The allocator and settings of the `twobit` binary (as in benches/kernels.rs): freed
// memory is kept, so layer outputs are not page-faulted in again on every call.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` of mimalloc 3 (as in the CLI).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn argmax(row: &[f32]) -> usize {
    (0..row.len()).fold(0, |b, i| if row[i] > row[b] { i } else { b })
}

fn main() {
    // SAFETY: sets an integer allocator option before any thread starts.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    let a: Vec<String> = std::env::args().collect();
    let rt = Runtime::load(std::path::Path::new(&a[1])).unwrap();
    let batch: usize = a[2].parse().unwrap();
    let iters: usize = a[3].parse().unwrap();
    let x: Vec<f32> = (0..batch * rt.input_len())
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0)
        .collect();
    let mut int8 = Runtime::load(std::path::Path::new(&a[1])).unwrap();
    let t = Instant::now();
    int8.set_activations(Activations::Int8);
    let conv_paths = int8.int8_conv_paths();
    println!(
        "int8 set-up (measured per-layer choice) {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    // With calibrated input ranges in the file (`twobit calibrate`): also one scale per
    // layer, timed in the same interleaved loop (not in the per-layer table).
    let calibrated = (!rt.arch().input_ranges.is_empty()).then(|| {
        let mut c = Runtime::load(std::path::Path::new(&a[1])).unwrap();
        c.set_activations(Activations::Int8Calibrated);
        let paths: Vec<_> = c.int8_conv_paths().into_iter().map(|(_, p)| p).collect();
        println!("int8-calibrated conv paths: {}", paths.join(" "));
        c
    });
    let mut paths = vec![
        ("fp32", rt.dequantized()),
        ("2-bit f32-act", rt),
        ("2-bit int8", int8),
    ];
    if let Some(c) = calibrated {
        paths.push(("2-bit int8-cal", c));
    }
    let mut best = vec![f64::MAX; paths.len()];
    let mut sum = vec![0f64; paths.len()];
    let y0: Vec<Vec<f32>> = paths
        .iter()
        .map(|(_, r)| r.forward_raw(&x, batch))
        .collect();
    for _ in 0..iters {
        for (i, (_, r)) in paths.iter().enumerate() {
            let t = now();
            let y = r.forward_raw(&x, batch);
            let dt = (now() - t) * 1e6;
            std::hint::black_box(&y);
            best[i] = best[i].min(dt);
            sum[i] += dt;
        }
    }
    let clock = if std::env::var_os("CPU_TIME").is_some() {
        "CPU time"
    } else {
        "wall time"
    };
    println!("{} batch {batch}, {iters} passes each ({clock}):", a[1]);
    for (i, (name, _)) in paths.iter().enumerate() {
        println!(
            "  {name:<14} best {:>10.1} us  mean {:>10.1} us  (fp32 best / this best {:.2}x, logit0 {})",
            best[i],
            sum[i] / iters as f64,
            best[0] / best[i],
            y0[i][0]
        );
    }
    println!("  int8 vs 2-bit f32-act: {:.2}x", best[1] / best[2]);
    if paths.len() > 3 {
        println!(
            "  int8-calibrated vs per-image int8: {:.2}x, vs fp32: {:.2}x",
            best[2] / best[3],
            best[0] / best[3]
        );
    }
    // Per layer: best of `iters` profiled passes each, interleaved (wall time always).
    let mut layers: Vec<(String, [f64; 3])> = Vec::new();
    for _ in 0..iters {
        for (i, (_, r)) in paths.iter().take(3).enumerate() {
            let (_, times) = r.forward_profiled(&x, batch).unwrap();
            if layers.is_empty() {
                layers = times
                    .iter()
                    .map(|t| (t.label.clone(), [f64::MAX; 3]))
                    .collect();
            }
            for (l, t) in layers.iter_mut().zip(&times) {
                l.1[i] = l.1[i].min(t.time.as_secs_f64() * 1e3);
            }
        }
    }
    println!(
        "{:<44} {:>9} {:>9} {:>9} {:>9} {:>10}  path",
        "layer (best ms)", "fp32", "2-bit", "int8", "int8/fp32", "int8/2-bit"
    );
    let mut tot = [0f64; 3];
    for (label, t) in &layers {
        let path = conv_paths
            .iter()
            .find(|(l, _)| l == label)
            .map_or("", |(_, p)| *p);
        println!(
            "{label:<44} {:>9.3} {:>9.3} {:>9.3} {:>8.2}x {:>9.2}x  {path}",
            t[0],
            t[1],
            t[2],
            t[0] / t[2],
            t[1] / t[2]
        );
        for i in 0..3 {
            tot[i] += t[i];
        }
    }
    println!(
        "{:<44} {:>9.3} {:>9.3} {:>9.3} {:>8.2}x {:>9.2}x",
        "sum of layer bests",
        tot[0],
        tot[1],
        tot[2],
        tot[0] / tot[2],
        tot[1] / tot[2]
    );
    let classes = y0[0].len() / batch;
    let agree = |y: &[f32]| {
        (0..batch)
            .filter(|&n| {
                argmax(&y[n * classes..(n + 1) * classes])
                    == argmax(&y0[0][n * classes..(n + 1) * classes])
            })
            .count()
    };
    println!(
        "argmax agreement with fp32: 2-bit {}/{batch}, int8 {}/{batch}",
        agree(&y0[1]),
        agree(&y0[2])
    );
}
