//! The fast flex operations (`twobit_train::fast`) against burn's own: same values, same
//! gradients for input, weight and bias, on ragged shapes with stride and padding.

use burn::tensor::activation::relu;
use burn::tensor::module::{conv2d, max_pool2d};
use burn::tensor::ops::{ConvOptions, MaxPoolOptions};
use burn::tensor::{Device, Distribution, Tensor};
use twobit_train::fast;

fn close(name: &str, got: Tensor<4>, want: Tensor<4>) {
    close_vec(
        name,
        got.dims().to_vec(),
        want.dims().to_vec(),
        got.into_data().try_into_vec::<f32>().unwrap(),
        want.into_data().try_into_vec::<f32>().unwrap(),
    );
}

fn close_vec(name: &str, gd: Vec<usize>, wd: Vec<usize>, g: Vec<f32>, w: Vec<f32>) {
    assert_eq!(gd, wd, "{name}: shape");
    let scale = w.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    let worst = g
        .iter()
        .zip(&w)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        worst <= 1e-4 * scale,
        "{name}: max difference {worst} (scale {scale})"
    );
}

/// [N, C, H, W, O, k, stride, padding]
const CONVS: [[usize; 8]; 15] = [
    [9, 16, 32, 32, 16, 3, 1, 1], // ResNet-20's 16 channels (direct kernels), ragged chunks
    [3, 32, 16, 16, 32, 3, 1, 1], // ResNet-20's 32 channels (direct forward and dx)
    [2, 8, 5, 40, 16, 5, 1, 2],   // direct forward and dx: 5x5, non-square
    [5, 3, 17, 20, 8, 3, 1, 1],   // direct forward and weight gradient, ragged grid blocks
    [2, 24, 8, 8, 64, 3, 1, 1],   // 8x8 images: im2col (the direct kernel's grid too wide)
    [3, 1, 28, 28, 20, 5, 1, 0],  // LeNet-5 conv1
    [5, 20, 12, 12, 50, 5, 1, 0], // LeNet-5 conv2, 5 images in 8 chunks
    [2, 3, 9, 7, 4, 3, 1, 1],     // padded, non-square image
    [2, 4, 8, 8, 6, 3, 2, 1],     // strided (ResNet downsampling)
    [1, 5, 6, 6, 3, 1, 1, 0],     // 1x1
    [17, 2, 5, 5, 3, 3, 2, 0],    // more images than chunks, ragged last chunk
    [40, 64, 32, 32, 8, 3, 1, 1], // a VGG-sized image
    [2, 2, 1, 1, 3, 5, 1, 2],     // kernel wider than the image, padding reaches over it
    [1, 1, 3, 4, 2, 3, 3, 2],     // stride 3 with padding 2
    [40, 3, 6, 6, 5, 3, 1, 1],    // small images: GEMMs over 2 images, ragged last group
];

#[test]
fn conv_matches_burn_values_and_gradients() {
    let device = Device::flex().autodiff();
    for (i, &[n, c, h, w, o, k, s, p]) in CONVS.iter().enumerate() {
        for with_bias in [true, false] {
            let x = Tensor::<4>::random([n, c, h, w], Distribution::Normal(0.0, 1.0), &device);
            let wt = Tensor::<4>::random([o, c, k, k], Distribution::Normal(0.0, 0.3), &device);
            let b = Tensor::<1>::random([o], Distribution::Normal(0.0, 0.3), &device);
            let mk = |t: &Tensor<4>| t.clone().detach().require_grad();
            let (x1, w1, b1) = (mk(&x), mk(&wt), b.clone().detach().require_grad());
            let (x2, w2, b2) = (mk(&x), mk(&wt), b.clone().detach().require_grad());
            let y1 = fast::conv2d(x1.clone(), w1.clone(), with_bias.then(|| b1.clone()), s, p);
            let opts = ConvOptions::new([s, s], [p, p], [1, 1], 1);
            let y2 = conv2d(x2.clone(), w2.clone(), with_bias.then(|| b2.clone()), opts);
            let name = format!("conv {i} bias {with_bias}");
            close(&format!("{name} y"), y1.clone(), y2.clone());
            // A loss whose gradient differs per output element.
            let r = Tensor::<4>::random(y2.dims(), Distribution::Normal(0.0, 1.0), &device);
            let g1 = (y1 * r.clone()).sum().backward();
            let g2 = (y2 * r).sum().backward();
            close(
                &format!("{name} dx"),
                x1.grad(&g1).unwrap(),
                x2.grad(&g2).unwrap(),
            );
            close(
                &format!("{name} dw"),
                w1.grad(&g1).unwrap(),
                w2.grad(&g2).unwrap(),
            );
            if with_bias {
                let (d1, d2) = (b1.grad(&g1).unwrap(), b2.grad(&g2).unwrap());
                close_vec(
                    &format!("{name} db"),
                    d1.dims().to_vec(),
                    d2.dims().to_vec(),
                    d1.into_data().try_into_vec::<f32>().unwrap(),
                    d2.into_data().try_into_vec::<f32>().unwrap(),
                );
            }
        }
    }
}

#[test]
fn conv_without_input_gradient_and_in_eval() {
    // The first layer's input needs no gradient; the inner (non-autodiff) device runs eval.
    let device = Device::flex().autodiff();
    let x = Tensor::<4>::random([4, 1, 10, 10], Distribution::Normal(0.0, 1.0), &device);
    let w =
        Tensor::<4>::random([3, 1, 3, 3], Distribution::Normal(0.0, 1.0), &device).require_grad();
    let y = fast::conv2d(x.clone(), w.clone(), None, 1, 0);
    let grads = y.clone().sum().backward();
    let want = conv2d(
        x.clone(),
        w.clone().detach().require_grad(),
        None,
        ConvOptions::new([1, 1], [0, 0], [1, 1], 1),
    );
    close("no-dx y", y, want.clone());
    assert!(w.grad(&grads).is_some());
    let inner = Device::flex();
    let yi = fast::conv2d(x.inner().to_device(&inner), w.inner(), None, 1, 0);
    close("eval y", yi, want.inner());
}

#[test]
fn relu_pool_matches_burn_values_and_gradients() {
    let device = Device::flex().autodiff();
    for dims in [[3, 20, 24, 24], [2, 3, 7, 9], [1, 1, 2, 2], [2, 2, 1, 5]] {
        let x = Tensor::<4>::random(dims, Distribution::Normal(0.0, 1.0), &device);
        let x1 = x.clone().detach().require_grad();
        let x2 = x.detach().require_grad();
        let y1 = fast::relu_pool2(x1.clone());
        let y2 = max_pool2d(relu(x2.clone()), MaxPoolOptions::new([2, 2]));
        close(&format!("pool {dims:?} y"), y1.clone(), y2.clone());
        if y2.dims().iter().product::<usize>() == 0 {
            continue;
        }
        let r = Tensor::<4>::random(y2.dims(), Distribution::Normal(0.0, 1.0), &device);
        let g1 = (y1 * r.clone()).sum().backward();
        let g2 = (y2 * r).sum().backward();
        close(
            &format!("pool {dims:?} dx"),
            x1.grad(&g1).unwrap(),
            x2.grad(&g2).unwrap(),
        );
    }
}

#[test]
fn gradients_do_not_depend_on_thread_count() {
    // Partial sums are taken per fixed chunk of images, so one and two threads agree bitwise:
    // output, input and weight gradients, on a small shape (im2col + GEMM) and a ResNet-20
    // shape (the direct kernel on CPUs with AVX-512).
    let run = |threads: usize, [n, c, h, o]: [usize; 4]| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let device = Device::flex().autodiff();
            let x = Tensor::<4>::from_data(
                burn::tensor::TensorData::new(
                    (0..n * c * h * h)
                        .map(|i| ((i * 7919) % 101) as f32 / 50.0 - 1.0)
                        .collect::<Vec<_>>(),
                    [n, c, h, h],
                ),
                &device,
            )
            .require_grad();
            let w = Tensor::<4>::from_data(
                burn::tensor::TensorData::new(
                    (0..o * c * 9)
                        .map(|i| ((i * 104_729) % 103) as f32 / 500.0 - 0.1)
                        .collect::<Vec<_>>(),
                    [o, c, 3, 3],
                ),
                &device,
            )
            .require_grad();
            let y = fast::conv2d(x.clone(), w.clone(), None, 1, 1);
            let g = (y.clone() * y.clone()).sum().backward();
            let v = |t: Tensor<4>| t.into_data().try_into_vec::<f32>().unwrap();
            [v(y), v(x.grad(&g).unwrap()), v(w.grad(&g).unwrap())]
        })
    };
    for shape in [[13, 2, 6, 3], [11, 16, 32, 16]] {
        assert_eq!(run(1, shape), run(2, shape), "{shape:?}");
    }
}
