//! Operators on NCHW (or NF) activations, ONNX semantics: convolution (packed, fp32 and
//! direct), pooling, element-wise and broadcasting ops, concatenation, softmax.
mod conv;
mod conv_int8;
mod elementwise;
mod pool;

pub use conv::{conv2d_direct, conv2d_f32, conv2d_packed};
pub use conv_int8::{
    conv2d_packed_i8, conv2d_packed_i8_gemm, conv2d_packed_i8_layer, conv2d_packed_i8_perm,
    conv2d_packed_i8_with, int8_conv_layer, int8_conv_layer_on,
};
pub use elementwise::{
    affine, binary, concat, expand, global_avg_pool, pad_channels, softmax, unary, Binary,
    Broadcast, Unary,
};
pub use pool::{avg_pool, max_pool, PoolGeom};

/// Geometry of a 2-D convolution over one image (ONNX attributes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeom {
    /// Input channels (all groups).
    pub cin: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Strides (h, w).
    pub strides: [usize; 2],
    /// Zero padding (top, left, bottom, right).
    pub pads: [usize; 4],
    /// Dilations (h, w).
    pub dilations: [usize; 2],
    /// Groups (`cin` and the output channels are multiples).
    pub group: usize,
}

impl ConvGeom {
    /// A dense convolution with a square stride and symmetric padding.
    pub fn square(cin: usize, (h, w): (usize, usize), k: usize, stride: usize, pad: usize) -> Self {
        ConvGeom {
            cin,
            h,
            w,
            kh: k,
            kw: k,
            strides: [stride; 2],
            pads: [pad; 4],
            dilations: [1, 1],
            group: 1,
        }
    }

    /// Input height and width with the padding.
    pub fn padded(&self) -> (usize, usize) {
        let [pt, pl, pb, pr] = self.pads;
        (self.h + pt + pb, self.w + pl + pr)
    }

    /// Output height.
    pub fn oh(&self) -> usize {
        let (hp, _) = self.padded();
        (hp - self.dilations[0] * (self.kh - 1) - 1) / self.strides[0] + 1
    }

    /// Output width.
    pub fn ow(&self) -> usize {
        let (_, wp) = self.padded();
        (wp - self.dilations[1] * (self.kw - 1) - 1) / self.strides[1] + 1
    }

    /// im2col rows of one group (the columns of its weight matrix): `cin/group·kh·kw`.
    pub fn k(&self) -> usize {
        self.cin / self.group * self.kh * self.kw
    }
}

/// `min(max(v, lo), hi)` without `f32::clamp`'s panic on `lo > hi` or NaN branches, so
/// loops vectorise (a NaN `v` gives `lo`, as the kernels' affine does).
#[inline(always)]
pub(crate) fn clamp(v: f32, lo: f32, hi: f32) -> f32 {
    let v = if v > lo { v } else { lo };
    if v < hi {
        v
    } else {
        hi
    }
}
