//! Max and average pooling with ONNX's pads, strides, dilations and `ceil_mode`.
use rayon::prelude::*;

/// Geometry of a pooling window over `h × w` planes; `oh`/`ow` are the output size (from
/// `twobit_format::graph::window_out`, which applies the ceil-mode rules).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolGeom {
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Window (h, w).
    pub kernel: [usize; 2],
    /// Strides (h, w).
    pub strides: [usize; 2],
    /// Padding (top, left, bottom, right).
    pub pads: [usize; 4],
    /// Dilations (h, w).
    pub dilations: [usize; 2],
    /// Output height.
    pub oh: usize,
    /// Output width.
    pub ow: usize,
}

impl PoolGeom {
    /// Window taps along one axis for output `o`: the input index of tap `k` is
    /// `start + k·dilation`, valid for `k` in the returned range.
    #[inline(always)]
    fn taps(
        o: usize,
        stride: usize,
        pad: usize,
        dil: usize,
        k: usize,
        len: usize,
    ) -> (isize, usize, usize) {
        let start = (o * stride) as isize - pad as isize;
        // First tap at or after index 0, first tap at or after `len`.
        let lo = if start < 0 {
            ((-start) as usize).div_ceil(dil).min(k)
        } else {
            0
        };
        let end = len as isize - start;
        let hi = if end <= 0 {
            0
        } else {
            (end as usize).div_ceil(dil).min(k)
        };
        (start, lo, hi.max(lo))
    }

    /// True when every window lies inside the plane (no padding reached), the common
    /// unpadded case, which then needs no bounds logic.
    fn inside(&self) -> bool {
        let [kh, kw] = self.kernel;
        let [sh, sw] = self.strides;
        let [dh, dw] = self.dilations;
        self.pads == [0; 4]
            && (self.oh - 1) * sh + (kh - 1) * dh < self.h
            && (self.ow - 1) * sw + (kw - 1) * dw < self.w
    }
}

/// Max pooling over `nc` planes: `[nc, h, w] -> [nc, oh, ow]`; padding never wins.
pub fn max_pool(x: &[f32], nc: usize, g: &PoolGeom) -> Vec<f32> {
    let (h, w, oh, ow) = (g.h, g.w, g.oh, g.ow);
    let ([kh, kw], [sh, sw], [dh, dw]) = (g.kernel, g.strides, g.dilations);
    let [pt, pl, _, _] = g.pads;
    assert_eq!(x.len(), nc * h * w, "pool input size");
    let inside = g.inside();
    let mut y = vec![0f32; nc * oh * ow];
    if inside && g.kernel == [2, 2] && g.strides == [2, 2] && g.dilations == [1, 1] {
        // The common 2x2/2 pool, row pair by row pair without index arithmetic or bounds
        // logic per tap, so it vectorises: the generic loop below took vgg7's first pool
        // (batch 64) 14 ms, as long as a quarter of its int8 convolution.
        let pool = |(i, out): (usize, &mut [f32])| {
            let plane = &x[i * h * w..(i + 1) * h * w];
            for (oy, o) in out.chunks_exact_mut(ow).enumerate() {
                let r0 = &plane[2 * oy * w..][..2 * ow];
                let r1 = &plane[(2 * oy + 1) * w..][..2 * ow];
                for (o, (a, b)) in o.iter_mut().zip(r0.chunks_exact(2).zip(r1.chunks_exact(2))) {
                    *o = [a[0], a[1], b[0], b[1]]
                        .into_iter()
                        .fold(f32::NEG_INFINITY, max_nan_skipping);
                }
            }
        };
        // Small inputs (LeNet-5 at batch 1) on the calling thread: waking the pool took
        // longer than the pooling.
        if x.len() < 1 << 16 {
            y.chunks_mut(oh * ow).enumerate().for_each(pool);
        } else {
            y.par_chunks_mut(oh * ow).enumerate().for_each(pool);
        }
        return y;
    }
    y.par_chunks_mut(oh * ow).enumerate().for_each(|(i, out)| {
        let plane = &x[i * h * w..(i + 1) * h * w];
        for oy in 0..oh {
            for ox in 0..ow {
                let mut m = f32::NEG_INFINITY;
                if inside {
                    for ky in 0..kh {
                        let row = &plane[(oy * sh + ky * dh) * w..];
                        for kx in 0..kw {
                            m = m.max(row[ox * sw + kx * dw]);
                        }
                    }
                } else {
                    let (y0, ky0, ky1) = PoolGeom::taps(oy, sh, pt, dh, kh, h);
                    let (x0, kx0, kx1) = PoolGeom::taps(ox, sw, pl, dw, kw, w);
                    for ky in ky0..ky1 {
                        let row = &plane[(y0 + (ky * dh) as isize) as usize * w..];
                        for kx in kx0..kx1 {
                            m = m.max(row[(x0 + (kx * dw) as isize) as usize]);
                        }
                    }
                }
                out[oy * ow + ox] = m;
            }
        }
    });
    y
}

/// `f32::max` for a running maximum that starts at `-inf`: a NaN `v` is skipped, without
/// `f32::max`'s branch, so loops vectorise.
#[inline(always)]
fn max_nan_skipping(m: f32, v: f32) -> f32 {
    if v > m {
        v
    } else {
        m
    }
}

/// Average pooling over `nc` planes (dilation 1). With `count_include_pad` the divisor
/// counts padded positions, but never the part of a ceil-mode window past the end padding
/// (as onnxruntime and PyTorch); otherwise only the input positions.
pub fn avg_pool(x: &[f32], nc: usize, g: &PoolGeom, count_include_pad: bool) -> Vec<f32> {
    let (h, w, oh, ow) = (g.h, g.w, g.oh, g.ow);
    let ([kh, kw], [sh, sw]) = (g.kernel, g.strides);
    let [pt, pl, pb, pr] = g.pads;
    assert_eq!(x.len(), nc * h * w, "pool input size");
    let mut y = vec![0f32; nc * oh * ow];
    y.par_chunks_mut(oh * ow).enumerate().for_each(|(i, out)| {
        let plane = &x[i * h * w..(i + 1) * h * w];
        for oy in 0..oh {
            let (y0, ky0, ky1) = PoolGeom::taps(oy, sh, pt, 1, kh, h);
            // Window rows inside the padded plane [-pt, h + pb).
            let ph = ((y0 + kh as isize).min((h + pb) as isize) - y0) as usize;
            for ox in 0..ow {
                let (x0, kx0, kx1) = PoolGeom::taps(ox, sw, pl, 1, kw, w);
                let pw = ((x0 + kw as isize).min((w + pr) as isize) - x0) as usize;
                let mut s = 0f32;
                for ky in ky0..ky1 {
                    let row = &plane[(y0 + ky as isize) as usize * w..];
                    for kx in kx0..kx1 {
                        s += row[(x0 + kx as isize) as usize];
                    }
                }
                let n = if count_include_pad {
                    ph * pw
                } else {
                    (ky1 - ky0) * (kx1 - kx0)
                };
                out[oy * ow + ox] = s / n.max(1) as f32;
            }
        }
    });
    y
}
