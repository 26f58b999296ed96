//! Training speed of a built-in network (trained as a [`GraphNet`]): QAT steps (SGD with
//! momentum) at batch 128 on random data, 2 threads; the median over rounds, with the time per
//! phase (quantize, forward, backward, optimizer step) of the median round.
//!
//! `cargo run --release -p twobit-train --example graph_speed [-- MODEL STEPS ROUNDS SCHEMES]`
//! (MODEL: mlp, lenet5 (default), vgg7 or resnet20; SCHEMES: comma-separated, each `fp`, a
//! scheme name (its default layers quantized) or a scheme name with `-all` (every layer, as
//! `--quantize-all`); default `quat`). With several schemes the rounds alternate between them,
//! so that they see the same load on a shared machine.
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::{Int, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::Instant;
use twobit_quant::{Granularity, Scheme};
use twobit_train::models::QatModel;
use twobit_train::qat::{QatPlan, QatState};
use twobit_train::trainer::cross_entropy;
use twobit_train::{GraphNet, ModelKind, WeightScheme};

const BATCH: usize = 128;

/// Images per second over `steps` training steps (after one warm-up step), and seconds per
/// phase (quantize, forward, backward, step) over them.
fn time<M: QatModel>(
    mut model: M,
    (scheme, all): (WeightScheme, bool),
    steps: usize,
    batches: &[(Tensor<4>, Tensor<1, Int>)],
) -> (f64, [f64; 4]) {
    let plan = QatPlan::for_model(scheme, Granularity::Tensor, all, &[], &model);
    let mut optim = SgdConfig::new()
        .with_momentum(Some(MomentumConfig {
            momentum: 0.9,
            dampening: 0.0,
            nesterov: false,
        }))
        .init();
    let mut state = QatState::default();
    let mut started = Instant::now();
    let mut phases = [0.0; 4];
    for step in 0..=steps {
        if step == 1 {
            started = Instant::now();
            phases = [0.0; 4];
        }
        let (x, y) = batches[step % batches.len()].clone();
        let t0 = Instant::now();
        let fw = plan.train_weights(&model, &mut state).expect("quantizes");
        let t1 = Instant::now();
        let loss = cross_entropy(model.forward(x, &fw), y);
        let _: f32 = loss.clone().into_scalar();
        let t2 = Instant::now();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let t3 = Instant::now();
        model = optim.step(0.01, model, grads);
        let t4 = Instant::now();
        for (p, (a, b)) in phases
            .iter_mut()
            .zip([(t0, t1), (t1, t2), (t2, t3), (t3, t4)])
        {
            *p += (b - a).as_secs_f64();
        }
    }
    let ips = (steps * BATCH) as f64 / started.elapsed().as_secs_f64();
    (ips, phases)
}

fn parse_scheme(s: &str) -> (WeightScheme, bool) {
    let (name, all) = match s.strip_suffix("-all") {
        Some(n) => (n, true),
        None => (s, false),
    };
    let scheme = if name == "fp" {
        WeightScheme::Fp
    } else {
        WeightScheme::Quant(name.parse::<Scheme>().expect("scheme name"))
    };
    (scheme, all)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let kind: ModelKind = args
        .first()
        .map_or("lenet5", String::as_str)
        .parse()
        .expect("model");
    let num = |i: usize, d: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
    let (steps, rounds) = (num(1, 20), num(2, 3));
    let schemes: Vec<&str> = args
        .get(3)
        .map_or("quat", String::as_str)
        .split(',')
        .collect();
    rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build_global()
        .expect("thread pool");
    let device = twobit_train::default_device().autodiff();
    let input = match kind {
        ModelKind::Mlp | ModelKind::Lenet5 => [1, 28, 28],
        _ => [3, 32, 32],
    };
    let mut rng = StdRng::seed_from_u64(1);
    let batches: Vec<_> = (0..4)
        .map(|_| {
            let x: Vec<f32> = (0..BATCH * input.iter().product::<usize>())
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            let y: Vec<i64> = (0..BATCH).map(|_| rng.random_range(0..10)).collect();
            let [c, h, w] = input;
            (
                Tensor::<4>::from_data(TensorData::new(x, [BATCH, c, h, w]), &device),
                Tensor::<1, Int>::from_data(TensorData::new(y, [BATCH]), &device),
            )
        })
        .collect();
    let mut results: Vec<Vec<(f64, [f64; 4])>> = vec![Vec::new(); schemes.len()];
    for round in 0..rounds {
        for (i, s) in schemes.iter().enumerate() {
            let net = GraphNet::builtin(kind, input, 10, 1, &device).expect("built in");
            let (ips, ph) = time(net, parse_scheme(s), steps, &batches);
            println!(
                "round {round}: {kind} {s} {ips:.1} img/s (quantize {:.3} forward {:.3} \
                 backward {:.3} step {:.3} s)",
                ph[0], ph[1], ph[2], ph[3]
            );
            results[i].push((ips, ph));
        }
    }
    for (s, mut r) in schemes.iter().zip(results) {
        r.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (ips, ph) = r[r.len() / 2];
        println!(
            "median: {kind} {s} {ips:.1} img/s (quantize {:.3} forward {:.3} backward {:.3} \
             step {:.3} s over {steps} steps)",
            ph[0], ph[1], ph[2], ph[3]
        );
    }
}
