//! Times LeNet-5's training operations at batch 128 on flex: burn's own against
//! `twobit_train::fast`, forward alone and forward + backward.
//!
//! `cargo run --release -p twobit-train --example ops [-- ITERS]`
//!
//! Run it on an idle machine; it prints milliseconds per call (mean over ITERS, default 30,
//! after 3 warm-up calls). Whole-step throughput is `twobit train ... --json`'s
//! `images_per_second`.

use burn::tensor::activation::relu;
use burn::tensor::module::{conv2d, max_pool2d};
use burn::tensor::ops::{ConvOptions, MaxPoolOptions};
use burn::tensor::{Device, Distribution, Tensor};
use std::time::Instant;
use twobit_train::fast;

fn ms<F: FnMut()>(iters: usize, mut f: F) -> f64 {
    for _ in 0..3 {
        f();
    }
    let t = Instant::now();
    for _ in 0..iters {
        f();
    }
    t.elapsed().as_secs_f64() * 1e3 / iters as f64
}

/// Times one operation done by burn and by `fast`; prints a table row.
fn compare(name: &str, iters: usize, burn: impl FnMut(), fast: impl FnMut()) {
    let (burn, fast) = (ms(iters, burn), ms(iters, fast));
    println!("| {name} | {burn:.2} | {fast:.2} | {:.1}x |", burn / fast);
}

fn main() {
    let iters = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(30);
    let normal = |s: f64| Distribution::Normal(0.0, s);
    let opts = ConvOptions::new([1, 1], [0, 0], [1, 1], 1);
    let burn_conv = |x: &Tensor<4>, w: &Tensor<4>, b: Option<&Tensor<1>>| {
        conv2d(x.clone(), w.clone(), b.cloned(), opts.clone())
    };
    let fast_conv = |x: &Tensor<4>, w: &Tensor<4>, b: Option<&Tensor<1>>| {
        fast::conv2d(x.clone(), w.clone(), b.cloned(), 1, 0)
    };
    let burn_pool = |x: Tensor<4>| max_pool2d(relu(x), MaxPoolOptions::new([2, 2]));
    println!(
        "LeNet-5, batch 128, {} threads, ms per call",
        rayon::current_num_threads()
    );
    println!("| operation | burn | fast | speed-up |\n|---|---|---|---|");

    // Forward only (evaluation device); `into_data` waits for the result.
    let d = Device::flex();
    let x = Tensor::<4>::random([128, 1, 28, 28], normal(1.0), &d);
    let w1 = Tensor::<4>::random([20, 1, 5, 5], normal(0.1), &d);
    let b1 = Tensor::<1>::random([20], normal(0.1), &d);
    let w2 = Tensor::<4>::random([50, 20, 5, 5], normal(0.1), &d);
    let b2 = Tensor::<1>::random([50], normal(0.1), &d);
    let c1 = burn_conv(&x, &w1, Some(&b1));
    let p1 = burn_pool(c1.clone());
    let c2 = burn_conv(&p1, &w2, Some(&b2));
    for (name, x, w, b) in [("conv1", &x, &w1, &b1), ("conv2", &p1, &w2, &b2)] {
        compare(
            &format!("{name} forward"),
            iters,
            || drop(burn_conv(x, w, Some(b)).into_data()),
            || drop(fast_conv(x, w, Some(b)).into_data()),
        );
    }
    for (name, c) in [("relu + pool1", &c1), ("relu + pool2", &c2)] {
        compare(
            &format!("{name} forward"),
            iters,
            || drop(burn_pool(c.clone()).into_data()),
            || drop(fast::relu_pool2(c.clone()).into_data()),
        );
    }

    // Forward + backward (training device): conv1 needs no input gradient, conv2 does.
    let d = d.autodiff();
    let x = Tensor::<4>::random([128, 1, 28, 28], normal(1.0), &d);
    let w1 = Tensor::<4>::random([20, 1, 5, 5], normal(0.1), &d).require_grad();
    let p1 = Tensor::<4>::random([128, 20, 12, 12], normal(1.0), &d).require_grad();
    let w2 = Tensor::<4>::random([50, 20, 5, 5], normal(0.1), &d).require_grad();
    for (name, x, w) in [
        ("conv1 + relu + pool1", &x, &w1),
        ("conv2 + relu + pool2", &p1, &w2),
    ] {
        compare(
            &format!("{name}, forward + backward"),
            iters,
            || drop(burn_pool(burn_conv(x, w, None)).sum().backward()),
            || drop(fast::relu_pool2(fast_conv(x, w, None)).sum().backward()),
        );
    }
}
