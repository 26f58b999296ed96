//! Faster training operations for the flex CPU backend: convolution and ReLU + 2x2 max-pool,
//! forward and backward, as a burn backend extension with hand-written gradients.
//!
//! Why: burn-flex 0.22's convolution backward runs a scalar transposed convolution and its
//! max-pool is scalar; on LeNet-5 they took most of a training step (`examples/ops.rs`
//! times each operation). Here a convolution is im2col + one GEMM per image (the `gemm`
//! crate), parallel over fixed chunks of images ([`kernels::CHUNKS`]), and the pool is fused
//! with the ReLU before it, so the ReLU's full-size output and its mask are never stored.
//!
//! The operations compute the same function as burn's `conv2d` and `max_pool2d(relu(x))`
//! (tests compare values and gradients). Any device other than flex (the `cuda` and `wgpu`
//! features) uses burn's own operations; so does flex when they are switched off
//! ([`set_enabled`], or `TWOBIT_FAST=0` in the environment), which is how the tests check
//! that this fallback, the path every GPU takes, trains as the CPU path does.

pub mod batch_norm;
pub mod conv;
pub mod kernels;

use batch_norm::BnShape;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::NodeId;
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Backend, Dispatch, DispatchDevice, Flex};
use burn::nn::BatchNorm;
use burn::tensor::activation::relu;
use burn::tensor::module::max_pool2d;
use burn::tensor::ops::{ConvOptions, MaxPoolOptions};
use burn::tensor::{Device, Shape, Tensor, TensorData};
use kernels::{ConvShape, PoolShape};
use std::sync::atomic::{AtomicU8, Ordering};

/// The extension: each backend that runs these operations implements it.
#[backend_extension(Flex, Autodiff)]
pub trait FastOps: Backend {
    /// Square convolution `[N, C, H, W] x [O, C, k, k] + bias[O]`, one stride and one zero
    /// padding for both axes, no dilation or groups.
    fn fast_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: usize,
        padding: usize,
    ) -> FloatTensor<Self>;

    /// `max_pool2d(relu(x), 2x2, stride 2)` on `[N, C, H, W]`.
    fn fast_relu_pool2(x: FloatTensor<Self>) -> FloatTensor<Self>;

    /// Batch norm with the batch's statistics on `[N, C, ...]`, followed by a ReLU when
    /// `relu`: the output, and the batch mean and biased variance per channel.
    fn fast_batch_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        relu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

/// The f32 values of a flex tensor in row-major order, and its dimensions.
fn values(t: &FlexTensor) -> (std::borrow::Cow<'_, [f32]>, Vec<usize>) {
    let dims = t.layout().shape().to_vec();
    match t.as_slice::<f32>() {
        Some(s) => (s.into(), dims),
        None => {
            let c = t.to_contiguous();
            let v = c
                .as_slice::<f32>()
                .expect("a contiguous f32 tensor") // flex training tensors are f32
                .to_vec();
            (v.into(), dims)
        }
    }
}

fn flex_tensor(v: Vec<f32>, dims: &[usize]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(v, Shape::from(dims.to_vec())))
}

fn conv_shape(x: &[usize], w: &[usize], stride: usize, padding: usize) -> ConvShape {
    assert!(
        x.len() == 4 && w.len() == 4 && x[1] == w[1] && w[2] == w[3] && stride > 0,
        "fast_conv2d: input {x:?} and weight {w:?} are not a square convolution"
    );
    assert!(
        x[2] + 2 * padding >= w[2] && x[3] + 2 * padding >= w[3],
        "fast_conv2d: kernel larger than the padded input"
    );
    ConvShape {
        n: x[0],
        c: x[1],
        h: x[2],
        w: x[3],
        o: w[0],
        k: w[2],
        stride,
        pad: padding,
    }
}

fn pool_shape(x: &[usize]) -> PoolShape {
    assert_eq!(
        x.len(),
        4,
        "fast_relu_pool2: input {x:?} is not [N, C, H, W]"
    );
    PoolShape {
        planes: x[0] * x[1],
        h: x[2],
        w: x[3],
    }
}

impl FastOps for Flex {
    fn fast_conv2d(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        stride: usize,
        padding: usize,
    ) -> FlexTensor {
        let (xv, xd) = values(&x);
        let (wv, wd) = values(&weight);
        let (bv, _) = values(&bias);
        let s = conv_shape(&xd, &wd, stride, padding);
        assert_eq!(bv.len(), s.o, "fast_conv2d: bias length");
        // SAFETY: `conv_forward` writes all of its output.
        let y = unsafe {
            kernels::output(s.n * s.o * s.p(), |y| {
                kernels::conv_forward(&s, &xv, &wv, Some(&bv), y)
            })
        };
        flex_tensor(y, &[s.n, s.o, s.oh(), s.ow()])
    }

    fn fast_relu_pool2(x: FlexTensor) -> FlexTensor {
        let (xv, xd) = values(&x);
        let s = pool_shape(&xd);
        // SAFETY: `relu_pool2_forward` writes all of its output.
        let y = unsafe {
            kernels::output(s.planes * (s.h / 2) * (s.w / 2), |y| {
                kernels::relu_pool2_forward(&s, &xv, y)
            })
        };
        flex_tensor(y, &[xd[0], xd[1], s.h / 2, s.w / 2])
    }

    fn fast_batch_norm(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        epsilon: f64,
        relu: bool,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let (xv, xd) = values(&x);
        let (gv, bv) = (values(&gamma).0, values(&beta).0);
        let sh = BnShape::of(&xd);
        let mut stats = (Vec::new(), Vec::new());
        // SAFETY: `batch_norm::forward` writes all of its output.
        let y = unsafe {
            kernels::output(xv.len(), |y| {
                stats = batch_norm::forward(&sh, &xv, (&gv, &bv), epsilon, relu, y)
            })
        };
        (
            flex_tensor(y, &xd),
            flex_tensor(stats.0, &[sh.c]),
            flex_tensor(stats.1, &[sh.c]),
        )
    }
}

#[derive(Debug)]
struct BatchNormBackward;

impl Backward<Flex, 3> for BatchNormBackward {
    /// Checkpointed input; parameters and batch statistics.
    type State = (NodeId, batch_norm::BnSaved);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_g, node_b] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let (x_state, saved) = ops.state;
        let x: FlexTensor = checkpointer.retrieve_node_output(x_state);
        let (xv, xd) = values(&x);
        let (dyv, _) = values(&dy);
        let sh = BnShape::of(&xd);
        let g = batch_norm::backward(&sh, &xv, &dyv, &saved, node_x.is_some());
        if let (Some(node), Some(v)) = (node_x, g.x) {
            grads.register::<Flex>(node.id, flex_tensor(v, &xd));
        }
        if let Some(node) = node_g {
            grads.register::<Flex>(node.id, flex_tensor(g.gamma, &[sh.c]));
        }
        if let Some(node) = node_b {
            grads.register::<Flex>(node.id, flex_tensor(g.beta, &[sh.c]));
        }
    }
}

#[derive(Debug)]
struct ConvBackward;

impl Backward<Flex, 3> for ConvBackward {
    /// Checkpointed input and weight, stride, padding.
    type State = (NodeId, NodeId, usize, usize);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_w, node_b] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let (x_state, w_state, stride, padding) = ops.state;
        let x: FlexTensor = checkpointer.retrieve_node_output(x_state);
        let w: FlexTensor = checkpointer.retrieve_node_output(w_state);
        let (xv, xd) = values(&x);
        let (wv, wd) = values(&w);
        let (dyv, _) = values(&dy);
        let s = conv_shape(&xd, &wd, stride, padding);
        let want = [node_x.is_some(), node_w.is_some(), node_b.is_some()];
        let g = kernels::conv_backward(&s, &xv, &wv, &dyv, want);
        if let (Some(node), Some(v)) = (node_x, g.x) {
            grads.register::<Flex>(node.id, flex_tensor(v, &xd));
        }
        if let (Some(node), Some(v)) = (node_w, g.w) {
            grads.register::<Flex>(node.id, flex_tensor(v, &wd));
        }
        if let (Some(node), Some(v)) = (node_b, g.bias) {
            grads.register::<Flex>(node.id, flex_tensor(v, &[s.o]));
        }
    }
}

#[derive(Debug)]
struct ReluPool2Backward;

impl Backward<Flex, 1> for ReluPool2Backward {
    /// Checkpointed input (the window maxima are found again from it).
    type State = NodeId;

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let Some(node) = node_x else { return };
        let x: FlexTensor = checkpointer.retrieve_node_output(ops.state);
        let (xv, xd) = values(&x);
        let (dyv, _) = values(&dy);
        let s = pool_shape(&xd);
        // SAFETY: `relu_pool2_backward` writes all of its output.
        let dx = unsafe {
            kernels::output(xv.len(), |dx| {
                kernels::relu_pool2_backward(&s, &xv, &dyv, dx)
            })
        };
        grads.register::<Flex>(node.id, flex_tensor(dx, &xd));
    }
}

impl<C: CheckpointStrategy> FastOps for Autodiff<Flex, C> {
    fn fast_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: usize,
        padding: usize,
    ) -> FloatTensor<Self> {
        let forward = |x: FloatTensor<Self>, weight: FloatTensor<Self>, bias: FloatTensor<Self>| {
            let (x, weight) = (x.into_primitive(), weight.into_primitive());
            Flex::fast_conv2d(x, weight, bias.into_primitive(), stride, padding)
        };
        match ConvBackward
            .prepare::<C>([x.node(), weight.node(), bias.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let state = (
                    prep.checkpoint(&x),
                    prep.checkpoint(&weight),
                    stride,
                    padding,
                );
                prep.finish(state, forward(x, weight, bias))
            }
            OpsKind::UnTracked(prep) => prep.finish(forward(x, weight, bias)),
        }
    }

    fn fast_relu_pool2(x: FloatTensor<Self>) -> FloatTensor<Self> {
        match ReluPool2Backward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                prep.finish(x_state, Flex::fast_relu_pool2(x.into_primitive()))
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::fast_relu_pool2(x.into_primitive())),
        }
    }

    fn fast_batch_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        relu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let prep = BatchNormBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful();
        let (g, b) = (gamma.into_primitive(), beta.into_primitive());
        let (gv, bv) = (values(&g).0.into_owned(), values(&b).0.into_owned());
        match prep {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let (y, mean, var) = Flex::fast_batch_norm(x.into_primitive(), g, b, epsilon, relu);
                let saved = batch_norm::BnSaved {
                    gamma: gv,
                    beta: bv,
                    mean: values(&mean).0.into_owned(),
                    var: values(&var).0.into_owned(),
                    eps: epsilon,
                    relu,
                };
                let y = prep.finish((x_state, saved), y);
                (
                    y,
                    FloatTensor::<Self>::new(mean),
                    FloatTensor::<Self>::new(var),
                )
            }
            OpsKind::UnTracked(prep) => {
                let (y, mean, var) = Flex::fast_batch_norm(x.into_primitive(), g, b, epsilon, relu);
                let y = prep.finish(y);
                (
                    y,
                    FloatTensor::<Self>::new(mean),
                    FloatTensor::<Self>::new(var),
                )
            }
        }
    }
}

/// Whether `device` runs on flex (with or without autodiff), where these operations apply.
/// The first call that finds flex also keeps large buffers in the heap ([`keep_large_buffers`]).
pub fn on_flex(device: &Device) -> bool {
    let flex = matches!(
        device.as_dispatch().clone().inner(),
        DispatchDevice::Flex(_)
    );
    if flex {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(keep_large_buffers);
    }
    flex
}

/// On glibc: serve large allocations from the heap and do not give freed memory back to the
/// system at once. A training step allocates and frees the same tensors every step; VGG-7's
/// activations at batch 128 (64 MiB) are above glibc's largest automatic `mmap` threshold
/// (32 MiB), so each was a fresh mapping whose pages faulted in on first write: 2.8 of 12.4
/// CPU seconds over 4 steps were system time, 0.6 with this (`MALLOC_MMAP_THRESHOLD_` run
/// by hand; 35 -> 41-43 images/s). Peak resident memory is unchanged (the step's peak is
/// reached every step anyway). Other allocators (the CLI's mimalloc) are not affected.
fn keep_large_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only sets allocator parameters; called once, before the training's
    // large allocations.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

/// The switch: unread (the environment decides at the first query), on, off.
static FAST: AtomicU8 = AtomicU8::new(0);
const FAST_ON: u8 = 1;
const FAST_OFF: u8 = 2;

/// Whether twobit's own operations are used on flex: yes unless switched off by
/// [`set_enabled`] or, read once, by `TWOBIT_FAST=0` in the environment. Off, every
/// operation here is burn's, as on a GPU device.
pub fn enabled() -> bool {
    match FAST.load(Ordering::Relaxed) {
        FAST_ON => true,
        FAST_OFF => false,
        _ => {
            let on = std::env::var_os("TWOBIT_FAST").is_none_or(|v| v != "0");
            // A concurrent set_enabled wins over the environment.
            let state = if on { FAST_ON } else { FAST_OFF };
            let _ = FAST.compare_exchange(0, state, Ordering::Relaxed, Ordering::Relaxed);
            FAST.load(Ordering::Relaxed) == FAST_ON
        }
    }
}

/// Switches twobit's own operations on or off for the whole process (overrides
/// `TWOBIT_FAST`). Takes effect at the next operation; a model mid-step mixes the two.
pub fn set_enabled(on: bool) {
    FAST.store(if on { FAST_ON } else { FAST_OFF }, Ordering::Relaxed);
}

/// Whether the operations below take their fast path on `device`.
fn use_fast(device: &Device) -> bool {
    on_flex(device) && enabled()
}

/// A square convolution (no dilation, no groups): the fast operation on flex, burn's
/// `conv2d` elsewhere.
pub fn conv2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    stride: usize,
    padding: usize,
) -> Tensor<4> {
    let device = x.device();
    if !use_fast(&device) {
        let options = ConvOptions::new([stride, stride], [padding, padding], [1, 1], 1);
        return burn::tensor::module::conv2d(x, weight, bias, options);
    }
    let bias = bias.unwrap_or_else(|| Tensor::zeros([weight.dims()[0]], &device));
    Tensor::from_dispatch(<Dispatch as FastOps>::fast_conv2d(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        stride,
        padding,
    ))
}

/// `max_pool2d(relu(x), 2x2, stride 2)`: fused on flex, burn's two operations elsewhere.
pub fn relu_pool2(x: Tensor<4>) -> Tensor<4> {
    if !use_fast(&x.device()) {
        return max_pool2d(relu(x), MaxPoolOptions::new([2, 2]));
    }
    Tensor::from_dispatch(<Dispatch as FastOps>::fast_relu_pool2(x.into_dispatch()))
}

/// A batch norm layer on `x` (`[N, C, ...]`), followed by a ReLU when `relu`. In training
/// on flex (an autodiff device and the layer in training mode: batch statistics) it is the
/// fused operation, and the running statistics are updated as burn's `BatchNorm::forward`
/// updates them; otherwise burn's layer (and ReLU).
pub fn batch_norm<const D: usize>(bn: &BatchNorm, x: Tensor<D>, relu: bool) -> Tensor<D> {
    let device = x.device();
    if !(use_fast(&device) && device.is_autodiff() && bn.training.is_enabled()) {
        let y = bn.forward(x);
        return if relu {
            burn::tensor::activation::relu(y)
        } else {
            y
        };
    }
    let (y, mean, var) = <Dispatch as FastOps>::fast_batch_norm(
        x.into_dispatch(),
        bn.gamma.val().into_dispatch(),
        bn.beta.val().into_dispatch(),
        bn.epsilon,
        relu,
    );
    let (mean, var) = (
        Tensor::<1>::from_dispatch(mean),
        Tensor::<1>::from_dispatch(var),
    );
    let m = bn.momentum;
    let running_mean = bn.running_mean.value_sync().to_device(&device);
    let running_var = bn.running_var.value_sync().to_device(&device);
    let running_mean = running_mean
        .mul_scalar(1.0 - m)
        .add(mean.detach().mul_scalar(m));
    let running_var = running_var
        .mul_scalar(1.0 - m)
        .add(var.detach().mul_scalar(m));
    bn.running_mean.update(running_mean.detach());
    bn.running_var.update(running_var.detach());
    Tensor::from_dispatch(y)
}
