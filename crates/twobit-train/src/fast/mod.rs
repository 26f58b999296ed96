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
//! features) uses burn's own operations.

pub mod kernels;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::NodeId;
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Backend, Dispatch, DispatchDevice, Flex};
use burn::tensor::activation::relu;
use burn::tensor::module::max_pool2d;
use burn::tensor::ops::{ConvOptions, MaxPoolOptions};
use burn::tensor::{Device, Shape, Tensor, TensorData};
use kernels::{ConvShape, PoolShape};

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
}

/// Whether `device` runs on flex (with or without autodiff), where these operations apply.
pub fn on_flex(device: &Device) -> bool {
    matches!(
        device.as_dispatch().clone().inner(),
        DispatchDevice::Flex(_)
    )
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
    if !on_flex(&device) {
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
    if !on_flex(&x.device()) {
        return max_pool2d(relu(x), MaxPoolOptions::new([2, 2]));
    }
    Tensor::from_dispatch(<Dispatch as FastOps>::fast_relu_pool2(x.into_dispatch()))
}
