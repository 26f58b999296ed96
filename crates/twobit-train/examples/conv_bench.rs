//! Convolution kernels alone (`fast::kernels`), at ResNet-20's and VGG-7's shapes: forward and
//! backward (input and weight gradients) of a batch of 128 on one thread, the fastest of
//! several repetitions (robust to other load on a shared machine), in GFLOP/s.
//!
//! `cargo run --release -p twobit-train --example conv_bench [-- REPS [resnet20|vgg7|all]
//! [VARIANTS]]`: VARIANTS (`A|B|...`, each `NAME=VALUE,...` or empty) are environment
//! settings that the repetitions alternate between, for A/B comparisons of switches read at
//! run time in the same process and under the same load.
use std::mem::MaybeUninit;
use std::time::Instant;
use twobit_train::fast::kernels::{self, ConvShape};

fn set_env(variant: &str, all: &[&str]) {
    for v in all {
        for kv in v.split(',').filter(|kv| !kv.is_empty()) {
            let name = kv.split_once('=').map_or(kv, |(n, _)| n);
            std::env::remove_var(name);
        }
    }
    for kv in variant.split(',').filter(|kv| !kv.is_empty()) {
        let (name, value) = kv.split_once('=').unwrap_or((kv, "1"));
        std::env::set_var(name, value);
    }
}

/// The fastest of `reps` calls of `f` per variant, calls alternating between the variants.
fn best(reps: usize, variants: &[&str], mut f: impl FnMut()) -> Vec<f64> {
    let mut t = vec![f64::INFINITY; variants.len()];
    for rep in 0..=reps {
        for (i, v) in variants.iter().enumerate() {
            set_env(v, variants);
            let start = Instant::now();
            f();
            if rep > 0 {
                t[i] = t[i].min(start.elapsed().as_secs_f64());
            }
        }
    }
    t
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let reps = args.first().and_then(|a| a.parse().ok()).unwrap_or(10);
    let only = args.get(1).map_or("all", String::as_str);
    let variants: Vec<&str> = args.get(2).map_or("", String::as_str).split('|').collect();
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build_global()
        .expect("thread pool");
    let n = 128;
    // (C, O, side, stride)
    let shapes = [
        (3, 16, 32, 1),
        (16, 16, 32, 1),
        (16, 32, 32, 2),
        (32, 32, 16, 1),
        (64, 64, 8, 1),
        (128, 128, 32, 1),
        (256, 256, 16, 1),
        (512, 512, 8, 1),
    ];
    for (c, o, side, stride) in shapes {
        let vgg = c >= 128;
        if (only == "resnet20" && vgg) || (only == "vgg7" && !vgg) {
            continue;
        }
        let s = ConvShape {
            n,
            c,
            h: side,
            w: side,
            o,
            k: 3,
            stride,
            pad: 1,
        };
        let x: Vec<f32> = (0..n * c * side * side)
            .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let w: Vec<f32> = (0..o * c * 9)
            .map(|i| ((i * 104_729) % 1000) as f32 / 5000.0 - 0.1)
            .collect();
        let dy: Vec<f32> = (0..n * o * s.p())
            .map(|i| ((i * 31) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let mut y: Vec<MaybeUninit<f32>> = vec![MaybeUninit::uninit(); n * o * s.p()];
        let flop = 2.0 * (n * o * s.p() * c * 9) as f64 / 1e9;
        let reps = if vgg { reps / 4 + 1 } else { reps };
        let fwd = best(reps, &variants, || {
            kernels::conv_forward(&s, &x, &w, None, &mut y)
        });
        let dx = best(reps, &variants, || {
            kernels::conv_backward(&s, &x, &w, &dy, [true, false, false]);
        });
        let dw = best(reps, &variants, || {
            kernels::conv_backward(&s, &x, &w, &dy, [false, true, false]);
        });
        for (i, v) in variants.iter().enumerate() {
            println!(
                "{c:>3}->{o:<3} @{side:<2} s{stride} [{v}]: forward {:7.2} ms {:5.1} GFLOP/s | dx \
                 {:7.2} ms {:5.1} | dw {:7.2} ms {:5.1}",
                fwd[i] * 1e3,
                flop / fwd[i],
                dx[i] * 1e3,
                flop / dx[i],
                dw[i] * 1e3,
                flop / dw[i]
            );
        }
    }
}
