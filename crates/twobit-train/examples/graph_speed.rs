//! Training speed of a built-in network (trained as a [`GraphNet`]): QAT steps (quat, SGD)
//! at batch 128 on random data, 2 threads; the median over rounds.
//!
//! `cargo run --release -p twobit-train --example graph_speed [-- MODEL STEPS ROUNDS]`
//! (MODEL: mlp, lenet5 (default), vgg7 or resnet20).
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

/// Images per second over `steps` training steps (after one warm-up step).
fn time<M: QatModel>(mut model: M, steps: usize, batches: &[(Tensor<4>, Tensor<1, Int>)]) -> f64 {
    let plan = QatPlan::for_model(
        WeightScheme::Quant(Scheme::Quat),
        Granularity::Tensor,
        false,
        &[],
        &model,
    );
    let mut optim = SgdConfig::new()
        .with_momentum(Some(MomentumConfig {
            momentum: 0.9,
            dampening: 0.0,
            nesterov: false,
        }))
        .init();
    let mut state = QatState::default();
    let mut started = Instant::now();
    for step in 0..=steps {
        if step == 1 {
            started = Instant::now();
        }
        let (x, y) = batches[step % batches.len()].clone();
        let fw = plan.train_weights(&model, &mut state).expect("quantizes");
        let loss = cross_entropy(model.forward(x, &fw), y);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(0.01, model, grads);
    }
    (steps * BATCH) as f64 / started.elapsed().as_secs_f64()
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
    let mut ips = Vec::new();
    for round in 0..rounds {
        let net = GraphNet::builtin(kind, input, 10, 1, &device).expect("built in");
        ips.push(time(net, steps, &batches));
        println!("round {round}: {kind} {:.1} img/s", ips[round]);
    }
    ips.sort_by(f64::total_cmp);
    println!("median: {kind} {:.1} img/s", ips[ips.len() / 2]);
}
