//! Per-operation profile of a ResNet-20 or VGG-7 training step (batch 128, 3x32x32) on
//! flex: every node type at every shape the network has, forward alone and forward +
//! backward, each the way the graph module (`GraphNet`) runs it, times how often the
//! network has it.
//!
//! `cargo run --release -p twobit-train --example profile_graph [-- MODEL ITERS]`
//! (MODEL: resnet20 (default) or vgg7; ITERS default 10). 2 threads.
//!
//! Prints a markdown table: milliseconds per step (count x per call) of forward and backward
//! (forward + backward minus forward), wall and CPU time (this process's user + system time,
//! from `/proc/self/stat`, so other load on the machine shows less in it).

use burn::nn::BatchNormConfig;
use burn::tensor::activation::relu;
use burn::tensor::module::{linear, max_pool2d};
use burn::tensor::ops::MaxPoolOptions;
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use std::time::Instant;
use twobit_train::fast;
use twobit_train::trainer::cross_entropy;

const N: usize = 128;

/// This process's CPU seconds (user + system).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses): state is field 3; utime 14.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    // rest[0] is field 3, so utime (14) is rest[11] and stime (15) rest[12]; 100 ticks/s.
    (f.get(11).unwrap_or(&0.0) + f.get(12).unwrap_or(&0.0)) / 100.0
}

/// (wall ms, cpu ms) per call of `f`, after 2 warm-up calls.
fn ms(iters: usize, mut f: impl FnMut()) -> (f64, f64) {
    f();
    f();
    let (t, c) = (Instant::now(), cpu_seconds());
    for _ in 0..iters {
        f();
    }
    let k = 1e3 / iters as f64;
    (t.elapsed().as_secs_f64() * k, (cpu_seconds() - c) * k)
}

struct Row {
    name: String,
    count: usize,
    fwd: (f64, f64),
    both: (f64, f64),
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let model = args.first().map_or("resnet20", String::as_str).to_string();
    let iters = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10);
    rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build_global()
        .expect("thread pool");
    let d = Device::flex().autodiff();
    let rnd = |dims: [usize; 4], grad: bool| {
        let t = Tensor::<4>::random(dims, Distribution::Normal(0.0, 1.0), &d);
        if grad {
            t.require_grad()
        } else {
            t
        }
    };
    let mut rows: Vec<Row> = Vec::new();
    let mut add = |name: String, count: usize, fwd: &mut dyn FnMut(), both: &mut dyn FnMut()| {
        let fwd = ms(iters, fwd);
        let both = ms(iters, both);
        eprintln!(
            "{name}: x{count} fwd {:.2} ms, fwd+bwd {:.2} ms",
            fwd.0, both.0
        );
        rows.push(Row {
            name,
            count,
            fwd,
            both,
        });
    };
    // (C_in, C_out, side, stride, input needs a gradient, count)
    let convs: Vec<(usize, usize, usize, usize, bool, usize)> = match model.as_str() {
        "vgg7" => vec![
            (3, 128, 32, 1, false, 1),
            (128, 128, 32, 1, true, 1),
            (128, 256, 16, 1, true, 1),
            (256, 256, 16, 1, true, 1),
            (256, 512, 8, 1, true, 1),
            (512, 512, 8, 1, true, 1),
        ],
        _ => vec![
            (3, 16, 32, 1, false, 1),
            (16, 16, 32, 1, true, 6),
            (16, 32, 32, 2, true, 1),
            (32, 32, 16, 1, true, 5),
            (32, 64, 16, 2, true, 1),
            (64, 64, 8, 1, true, 5),
        ],
    };
    for &(ci, co, side, stride, gx, count) in &convs {
        let x = rnd([N, ci, side, side], gx);
        let w = rnd([co, ci, 3, 3], true);
        let conv = || fast::conv2d(x.clone(), w.clone(), None, stride, 1);
        add(
            format!("conv 3x3 {ci}->{co} @{side} s{stride}"),
            count,
            &mut || drop(conv().into_data()),
            &mut || drop(conv().sum().backward()),
        );
    }
    // Batch norm (training mode) after each convolution, with the ReLU after it fused where
    // the graph module fuses it (the ReLU alone reads the batch norm's output and is not
    // fused into a 2x2 max pool): (channels, side, fused count, unfused count).
    let bns: Vec<(usize, usize, usize, usize)> = match model.as_str() {
        "vgg7" => vec![(128, 32, 1, 1), (256, 16, 1, 1), (512, 8, 1, 1)],
        _ => vec![(16, 32, 4, 3), (32, 16, 3, 3), (64, 8, 3, 3)],
    };
    for &(c, side, fused, plain) in &bns {
        let bn = BatchNormConfig::new(c).init(&d);
        let x = rnd([N, c, side, side], true);
        for (relu_after, count) in [(true, fused), (false, plain)] {
            let f = || fast::batch_norm(&bn, x.clone(), relu_after);
            let what = if relu_after {
                "batch norm + relu"
            } else {
                "batch norm"
            };
            add(
                format!("{what} {c}@{side}"),
                count,
                &mut || drop(f().into_data()),
                &mut || drop(f().sum().backward()),
            );
        }
        if std::env::var_os("PROFILE_BURN_BN").is_some() {
            add(
                format!("(burn's batch norm {c}@{side}, not in the sum)"),
                0,
                &mut || drop(bn.forward(x.clone()).into_data()),
                &mut || drop(bn.forward(x.clone()).sum().backward()),
            );
        }
    }
    if model == "vgg7" {
        for (c, side) in [(128, 32), (256, 16), (512, 8)] {
            let x = rnd([N, c, side, side], true);
            add(
                format!("relu + max-pool 2 {c}@{side}"),
                1,
                &mut || drop(fast::relu_pool2(x.clone()).into_data()),
                &mut || drop(fast::relu_pool2(x.clone()).sum().backward()),
            );
        }
        let x = Tensor::<2>::random([N, 8192], Distribution::Normal(0.0, 1.0), &d).require_grad();
        let w =
            Tensor::<2>::random([1024, 8192], Distribution::Normal(0.0, 0.01), &d).require_grad();
        let f = || linear(x.clone(), w.clone().transpose(), None);
        add(
            "linear 8192->1024".into(),
            1,
            &mut || drop(f().into_data()),
            &mut || drop(f().sum().backward()),
        );
        let bn = BatchNormConfig::new(1024).init(&d);
        let h = Tensor::<2>::random([N, 1024], Distribution::Normal(0.0, 1.0), &d).require_grad();
        let f = || fast::batch_norm(&bn, h.clone(), true);
        add(
            "batch norm + relu 1024 (fc)".into(),
            1,
            &mut || drop(f().into_data()),
            &mut || drop(f().sum().backward()),
        );
    } else {
        // Residual add + ReLU: (channels, side, count).
        for (c, side, count) in [(16, 32, 3), (32, 16, 3), (64, 8, 3)] {
            let a = rnd([N, c, side, side], true);
            let b = rnd([N, c, side, side], true);
            add(
                format!("residual add {c}@{side}"),
                count,
                &mut || drop((a.clone() + b.clone()).into_data()),
                &mut || drop((a.clone() + b.clone()).sum().backward()),
            );
            add(
                format!("relu after add {c}@{side}"),
                count,
                &mut || drop(relu(a.clone()).into_data()),
                &mut || drop(relu(a.clone()).sum().backward()),
            );
        }
        // Option-A shortcut: 1x1 max-pool stride 2 then zero channels around.
        for (c, side) in [(16, 32), (32, 16)] {
            let x = rnd([N, c, side, side], true);
            let f = || {
                let t = max_pool2d(x.clone(), MaxPoolOptions::new([1, 1]).with_stride([2, 2]));
                let z = Tensor::<4>::zeros([N, c / 2, side / 2, side / 2], &d);
                Tensor::cat(vec![z.clone(), t, z], 1)
            };
            add(
                format!("shortcut (pool 1x1/2 + pad) {c}@{side}"),
                1,
                &mut || drop(f().into_data()),
                &mut || drop(f().sum().backward()),
            );
        }
        let x = rnd([N, 64, 8, 8], true);
        let f = || x.clone().mean_dim(3).mean_dim(2);
        add(
            "global average pool 64@8".into(),
            1,
            &mut || drop(f().into_data()),
            &mut || drop(f().sum().backward()),
        );
    }
    let feat = if model == "vgg7" { 1024 } else { 64 };
    let x = Tensor::<2>::random([N, feat], Distribution::Normal(0.0, 1.0), &d).require_grad();
    let w = Tensor::<2>::random([10, feat], Distribution::Normal(0.0, 0.1), &d).require_grad();
    let labels = Tensor::<1, Int>::from_data(
        TensorData::new((0..N as i64).map(|i| i % 10).collect::<Vec<_>>(), [N]),
        &d,
    );
    let f = || {
        cross_entropy(
            linear(x.clone(), w.clone().transpose(), None),
            labels.clone(),
        )
    };
    add(
        format!("linear {feat}->10 + cross-entropy"),
        1,
        &mut || drop(f().into_data()),
        &mut || drop(f().backward()),
    );

    println!("{model}, batch {N}, 2 threads, ms per training step (count x per call); wall (CPU)");
    println!("| operation | count | forward | backward | total | share |");
    println!("|---|---|---|---|---|---|");
    let total: f64 = rows.iter().map(|r| r.both.0 * r.count as f64).sum();
    let cpu_total: f64 = rows.iter().map(|r| r.both.1 * r.count as f64).sum();
    for r in &rows {
        // A reference row (count 0) shows one call.
        let k = r.count.max(1) as f64;
        let (f, b) = (r.fwd.0 * k, (r.both.0 - r.fwd.0).max(0.0) * k);
        let (fc, bc) = (r.fwd.1 * k, (r.both.1 - r.fwd.1).max(0.0) * k);
        println!(
            "| {} | {} | {f:.1} ({fc:.1}) | {b:.1} ({bc:.1}) | {:.1} ({:.1}) | {:.0} % |",
            r.name,
            r.count,
            f + b,
            fc + bc,
            100.0 * (f + b) / total
        );
    }
    println!("| sum | | | | {total:.1} ({cpu_total:.1}) | |");
}
