//! Prints the single-thread `quantize` time of every scheme and its ratio to TWN.
//!
//! `cargo run --release -p twobit-quant --example ratios [-- SIZE...]` (default 1M and 16M
//! weights, normal and Laplace).
use std::time::Instant;
use twobit_quant::{quantize, Granularity, Scheme};

#[path = "../benches/common/weights.rs"]
mod gen;
use gen::weights;

/// Median wall time of `quantize` in milliseconds.
fn time(w: &[f32], s: Scheme) -> f64 {
    time_shaped(w, &[w.len()], s, Granularity::Tensor)
}

/// Median wall time of `quantize` with a shape and granularity, in milliseconds.
fn time_shaped(w: &[f32], shape: &[usize], s: Scheme, g: Granularity) -> f64 {
    let reps = if w.len() > 4_000_000 { 5 } else { 15 };
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let t0 = Instant::now();
            let q = quantize(w, shape, s, g).expect("finite input");
            std::hint::black_box(q);
            t0.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[reps / 2]
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1 << 20, 16 << 20]
    } else {
        sizes
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("thread pool");
    println!("single thread, median of repeated quantize (fit + encode), per-tensor");
    println!(
        "{:>10} {:>8} {:>10} {:>9} {:>9}",
        "weights", "dist", "scheme", "ms", "x twn"
    );
    for &n in &sizes {
        for laplace in [false, true] {
            let w = weights(n, laplace, 0x9e37_79b9_7f4a_7c15 ^ n as u64);
            let dist = if laplace { "laplace" } else { "normal" };
            pool.install(|| {
                let base = time(&w, Scheme::Twn);
                for s in Scheme::ALL {
                    let t = if s == Scheme::Twn { base } else { time(&w, s) };
                    println!(
                        "{n:>10} {dist:>8} {:>10} {t:>9.2} {:>9.2}",
                        s.name(),
                        t / base
                    );
                }
            });
        }
    }
    // Per output channel, many small groups: the MLP's fc1 (300 rows of 784) as in
    // `twobit experiment fmnist`'s per-channel setting.
    let (rows, cols) = (300, 784);
    let w = weights(rows * cols, false, 0x5eed);
    println!("per channel, {rows}x{cols} normal ({rows} groups of {cols})");
    pool.install(|| {
        let base = time_shaped(&w, &[rows, cols], Scheme::Twn, Granularity::Channel);
        for s in Scheme::ALL {
            let t = time_shaped(&w, &[rows, cols], s, Granularity::Channel);
            println!(
                "{:>10} {:>8} {:>10} {t:>9.2} {:>9.2}",
                rows * cols,
                "normal",
                s.name(),
                t / base
            );
        }
    });
}
