//! The fast batch norm (`twobit_train::fast::batch_norm`, training mode, with and without
//! the fused ReLU) against burn's `BatchNorm` (and `relu`): output, gradients of input,
//! gamma and beta, and the running statistics; results independent of the thread count.

use burn::module::Param;
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Distribution, Tensor};
use twobit_train::fast;

fn vals<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap()
}

fn close(name: &str, got: Vec<f32>, want: Vec<f32>) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    let scale = want.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    let worst = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        worst <= 2e-4 * scale,
        "{name}: max difference {worst} (scale {scale})"
    );
}

/// A batch norm of `c` channels with non-trivial parameters and running statistics.
fn layer(c: usize, device: &Device) -> BatchNorm {
    let mut bn = BatchNormConfig::new(c).init(device);
    let r = |m: f64, s: f64| Tensor::<1>::random([c], Distribution::Normal(m, s), device);
    let grad = |t: Tensor<1>| {
        if device.is_autodiff() {
            t.require_grad()
        } else {
            t
        }
    };
    bn.gamma = Param::from_tensor(grad(r(1.0, 0.5)));
    bn.beta = Param::from_tensor(grad(r(0.0, 0.5)));
    bn
}

/// Runs the fast layer and burn's on the same input; compares everything.
fn check<const D: usize>(name: &str, dims: [usize; D], relu_after: bool) {
    let device = Device::flex().autodiff();
    let c = dims[1];
    let bn1 = layer(c, &device);
    let bn2 = bn1.clone();
    // An offset mean, so the statistics matter.
    let x = Tensor::<D>::random(dims, Distribution::Normal(0.7, 2.0), &device);
    let (x1, x2) = (
        x.clone().detach().require_grad(),
        x.clone().detach().require_grad(),
    );
    let y1 = fast::batch_norm(&bn1, x1.clone(), relu_after);
    let y2 = bn2.forward(x2.clone());
    let y2 = if relu_after { relu(y2) } else { y2 };
    let name = format!("{name} relu {relu_after}");
    close(&format!("{name} y"), vals(y1.clone()), vals(y2.clone()));
    let r = Tensor::<D>::random(y2.dims(), Distribution::Normal(0.0, 1.0), &device);
    let g1 = (y1 * r.clone()).sum().backward();
    let g2 = (y2 * r).sum().backward();
    close(
        &format!("{name} dx"),
        vals(x1.grad(&g1).unwrap()),
        vals(x2.grad(&g2).unwrap()),
    );
    for (what, p1, p2) in [
        ("dgamma", &bn1.gamma, &bn2.gamma),
        ("dbeta", &bn1.beta, &bn2.beta),
    ] {
        close(
            &format!("{name} {what}"),
            vals(p1.val().grad(&g1).unwrap()),
            vals(p2.val().grad(&g2).unwrap()),
        );
    }
    close(
        &format!("{name} running mean"),
        vals(bn1.running_mean.value()),
        vals(bn2.running_mean.value()),
    );
    close(
        &format!("{name} running var"),
        vals(bn1.running_var.value()),
        vals(bn2.running_var.value()),
    );
}

#[test]
fn batch_norm_matches_burn_values_gradients_and_statistics() {
    for relu_after in [false, true] {
        check("resnet", [16, 16, 32, 32], relu_after);
        check("ragged", [3, 5, 7, 9], relu_after);
        check("one image", [1, 4, 3, 3], relu_after);
        check("1x1", [6, 3, 1, 1], relu_after);
        check("fc", [128, 64], relu_after);
        check("fc small", [5, 3], relu_after);
    }
}

#[test]
fn batch_norm_in_evaluation_is_burns() {
    // Without autodiff (evaluation) the running statistics are used: burn's layer.
    let device = Device::flex();
    let bn = layer(4, &device);
    let x = Tensor::<4>::random([2, 4, 3, 3], Distribution::Normal(0.0, 1.0), &device);
    close(
        "eval",
        vals(fast::batch_norm(&bn, x.clone(), true)),
        vals(relu(bn.forward(x))),
    );
}

#[test]
fn batch_norm_does_not_depend_on_thread_count() {
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let device = Device::flex().autodiff();
            let bn = BatchNormConfig::new(6).init(&device);
            let data: Vec<f32> = (0..9 * 6 * 5 * 5)
                .map(|i| ((i * 7919) % 101) as f32 / 50.0 - 0.7)
                .collect();
            let x =
                Tensor::<4>::from_data(burn::tensor::TensorData::new(data, [9, 6, 5, 5]), &device)
                    .require_grad();
            let y = fast::batch_norm(&bn, x.clone(), true);
            let w = Tensor::<4>::ones(y.dims(), &device).cumsum(3);
            let g = (y.clone() * w).sum().backward();
            [
                vals(y),
                vals(x.grad(&g).unwrap()),
                vals(bn.gamma.val().grad(&g).unwrap()),
                vals(bn.running_var.value()),
            ]
        })
    };
    let (a, b) = (run(1), run(2));
    for (u, v) in a.iter().zip(&b) {
        let bits = |s: &[f32]| s.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(u), bits(v));
    }
}
