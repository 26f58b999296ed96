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

fn row(name: &str, burn: f64, fast: f64) {
    println!("| {name} | {burn:.2} | {fast:.2} | {:.1}x |", burn / fast);
}

fn main() {
    let iters = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(30);
    let normal = |s: f64| Distribution::Normal(0.0, s);
    let opts = ConvOptions::new([1, 1], [0, 0], [1, 1], 1);
    let pool = || MaxPoolOptions::new([2, 2]);
    println!(
        "LeNet-5, batch 128, {} threads, ms per call",
        rayon::current_num_threads()
    );
    println!("| operation | burn | fast | speed-up |\n|---|---|---|---|");

    // Forward only (evaluation device).
    let d = Device::flex();
    let x = Tensor::<4>::random([128, 1, 28, 28], normal(1.0), &d);
    let w1 = Tensor::<4>::random([20, 1, 5, 5], normal(0.1), &d);
    let b1 = Tensor::<1>::random([20], normal(0.1), &d);
    let w2 = Tensor::<4>::random([50, 20, 5, 5], normal(0.1), &d);
    let b2 = Tensor::<1>::random([50], normal(0.1), &d);
    let c1 = conv2d(x.clone(), w1.clone(), Some(b1.clone()), opts.clone());
    let p1 = max_pool2d(relu(c1.clone()), pool());
    let c2 = conv2d(p1.clone(), w2.clone(), Some(b2.clone()), opts.clone());
    // `into_data` waits for the result.
    let burn = ms(iters, || {
        conv2d(x.clone(), w1.clone(), Some(b1.clone()), opts.clone()).into_data();
    });
    let fast = ms(iters, || {
        fast::conv2d(x.clone(), w1.clone(), Some(b1.clone()), 1, 0).into_data();
    });
    row("conv1 forward", burn, fast);
    let burn = ms(iters, || {
        max_pool2d(relu(c1.clone()), pool()).into_data();
    });
    let fast = ms(iters, || {
        fast::relu_pool2(c1.clone()).into_data();
    });
    row("relu + pool1 forward", burn, fast);
    let burn = ms(iters, || {
        conv2d(p1.clone(), w2.clone(), Some(b2.clone()), opts.clone()).into_data();
    });
    let fast = ms(iters, || {
        fast::conv2d(p1.clone(), w2.clone(), Some(b2.clone()), 1, 0).into_data();
    });
    row("conv2 forward", burn, fast);
    let burn = ms(iters, || {
        max_pool2d(relu(c2.clone()), pool()).into_data();
    });
    let fast = ms(iters, || {
        fast::relu_pool2(c2.clone()).into_data();
    });
    row("relu + pool2 forward", burn, fast);

    // Forward + backward (training device): conv1 needs no input gradient, conv2 does.
    let d = d.autodiff();
    let x = Tensor::<4>::random([128, 1, 28, 28], normal(1.0), &d);
    let w1 = Tensor::<4>::random([20, 1, 5, 5], normal(0.1), &d).require_grad();
    let p1 = Tensor::<4>::random([128, 20, 12, 12], normal(1.0), &d).require_grad();
    let w2 = Tensor::<4>::random([50, 20, 5, 5], normal(0.1), &d).require_grad();
    let burn = ms(iters, || {
        let y = max_pool2d(
            relu(conv2d(x.clone(), w1.clone(), None, opts.clone())),
            pool(),
        );
        y.sum().backward();
    });
    let fast = ms(iters, || {
        let y = fast::relu_pool2(fast::conv2d(x.clone(), w1.clone(), None, 1, 0));
        y.sum().backward();
    });
    row("conv1 + relu + pool1, forward + backward", burn, fast);
    let burn = ms(iters, || {
        let y = max_pool2d(
            relu(conv2d(p1.clone(), w2.clone(), None, opts.clone())),
            pool(),
        );
        y.sum().backward();
    });
    let fast = ms(iters, || {
        let y = fast::relu_pool2(fast::conv2d(p1.clone(), w2.clone(), None, 1, 0));
        y.sum().backward();
    });
    row("conv2 + relu + pool2, forward + backward", burn, fast);
}
