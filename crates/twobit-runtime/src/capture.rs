//! Calibration hook: runs the network step by step and reports each conv/linear layer's
//! input as the rows its weight matrix multiplies (a convolution through its im2col view),
//! so a caller can accumulate the layer's input Gram matrix `XᵀX` for calibrated
//! quantization. Same plan and kernels as [`Runtime::forward`]; nothing here changes them.
use crate::exec::run_step;
use crate::ops::ConvGeom;
use crate::plan::Kind;
use crate::{Runtime, RuntimeError};
use twobit_format::Op;

/// One conv/linear layer's input, as rows of its weight matrix's columns.
#[derive(Debug)]
pub struct LayerInput<'a> {
    /// The layer's weight tensor name.
    pub weight: &'a str,
    /// Convolution groups (1 for a linear layer); output channels split evenly.
    pub groups: usize,
    /// The group these rows feed (`0..groups`).
    pub group: usize,
    /// `[rows, cols]` row-major: one im2col row per output position and image (a linear
    /// layer: one row per image).
    pub x: &'a [f32],
    /// Rows in `x`.
    pub rows: usize,
    /// Values per row: `in/groups·kh·kw` for a conv, `in` for a linear layer.
    pub cols: usize,
}

/// Most values passed per callback (images are grouped up to this).
const CHUNK: usize = 1 << 22;

impl Runtime {
    /// Runs the normalised input batch `[batch, c, h, w]` and calls `f` with the input of
    /// every conv/linear layer (in execution order, possibly several calls per layer and
    /// group, each with a slice of the images); when `only` names a weight tensor, only
    /// that layer is reported and execution stops after it. Returns the logits, or an
    /// empty vector when it stopped early.
    pub fn layer_inputs(
        &self,
        input: &[f32],
        batch: usize,
        only: Option<&str>,
        mut f: impl FnMut(&LayerInput),
    ) -> Result<Vec<f32>, RuntimeError> {
        let expected = batch.checked_mul(self.input_len());
        if expected != Some(input.len()) || batch == 0 {
            return Err(RuntimeError::Input {
                got: input.len(),
                batch,
                expected: expected.unwrap_or(usize::MAX),
            });
        }
        // The k-th conv/linear step is the k-th Conv/Linear node: fusion folds only batch
        // norm and clamps into a step, never a weighted layer.
        let mut names = self.arch.nodes.iter().filter_map(|n| match &n.op {
            Op::Conv { weight, .. } | Op::Linear { weight, .. } => Some(weight.as_str()),
            _ => None,
        });
        let mut slots: Vec<Option<Vec<f32>>> = vec![None; self.plan.slots];
        slots[0] = Some(input.to_vec());
        for step in &self.plan.steps {
            let layer = match &step.kind {
                Kind::Conv { d, geom, .. } => Some((d.rows, Some(*geom))),
                Kind::Linear { d } => Some((d.rows, None)),
                _ => None,
            };
            if let Some((_, geom)) = layer {
                let name = names.next().unwrap_or("?");
                if only.is_none_or(|o| o == name) {
                    let x = slots[step.inputs[0]]
                        .as_deref()
                        .expect("slot computed earlier");
                    report(name, x, batch, step.in_lens[0], geom.as_ref(), &mut f);
                    if only.is_some() {
                        return Ok(Vec::new());
                    }
                }
            }
            let y = run_step(step, self.kernel, self.act, &mut slots, batch);
            for &s in &step.free {
                slots[s] = None;
            }
            slots[step.output] = Some(y);
        }
        Ok(slots[self.plan.output]
            .take()
            .expect("the plan computes its output"))
    }

    /// [`Runtime::layer_inputs`] for raw pixels in `[0, 1]`, normalised with the
    /// manifest's `normalize` first.
    pub fn layer_inputs_raw(
        &self,
        input: &[f32],
        batch: usize,
        only: Option<&str>,
        f: impl FnMut(&LayerInput),
    ) -> Result<Vec<f32>, RuntimeError> {
        let [c, h, w] = self.arch.input;
        let n = &self.arch.normalize;
        let mut x = input.to_vec();
        for img in x.chunks_mut(c * h * w) {
            for (ci, plane) in img.chunks_mut(h * w).enumerate() {
                let (m, s) = (n.mean[ci], n.std[ci]);
                for v in plane {
                    *v = (*v - m) / s;
                }
            }
        }
        self.layer_inputs(&x, batch, only, f)
    }
}

/// Calls `f` with one layer's input in chunks of images.
fn report(
    name: &str,
    x: &[f32],
    batch: usize,
    per_image: usize,
    geom: Option<&ConvGeom>,
    f: &mut impl FnMut(&LayerInput),
) {
    let Some(g) = geom else {
        // Linear: one row per image.
        let imgs = (CHUNK / per_image.max(1)).max(1);
        for chunk in x.chunks(imgs * per_image) {
            f(&LayerInput {
                weight: name,
                groups: 1,
                group: 0,
                x: chunk,
                rows: chunk.len() / per_image,
                cols: per_image,
            });
        }
        return;
    };
    let (k, pos) = (g.k(), g.oh() * g.ow());
    let imgs = (CHUNK / (k * pos).max(1)).clamp(1, batch);
    let mut buf = Vec::new();
    for group in 0..g.group {
        for start in (0..batch).step_by(imgs) {
            let end = (start + imgs).min(batch);
            buf.clear();
            for img in x[start * per_image..end * per_image].chunks_exact(per_image) {
                im2col(img, g, group, &mut buf);
            }
            f(&LayerInput {
                weight: name,
                groups: g.group,
                group,
                x: &buf,
                rows: (end - start) * pos,
                cols: k,
            });
        }
    }
}

/// Appends one image's im2col rows for `group`: per output position, the columns in the
/// weight's order (input channel of the group, kernel row, kernel column); padding reads 0.
pub fn im2col(img: &[f32], g: &ConvGeom, group: usize, out: &mut Vec<f32>) {
    let cg = g.cin / g.group;
    let [pt, pl, _, _] = g.pads;
    let (oh, ow) = (g.oh(), g.ow());
    for oy in 0..oh {
        for ox in 0..ow {
            for c in group * cg..(group + 1) * cg {
                let plane = &img[c * g.h * g.w..(c + 1) * g.h * g.w];
                for ky in 0..g.kh {
                    let y = (oy * g.strides[0] + ky * g.dilations[0]) as isize - pt as isize;
                    for kx in 0..g.kw {
                        let xx = (ox * g.strides[1] + kx * g.dilations[1]) as isize - pl as isize;
                        let inside = y >= 0 && xx >= 0 && (y as usize) < g.h && (xx as usize) < g.w;
                        out.push(if inside {
                            plane[y as usize * g.w + xx as usize]
                        } else {
                            0.0
                        });
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// im2col rows times the weight matrix give the convolution (fp32 path).
    #[test]
    fn im2col_matches_conv() {
        let geoms = [
            ConvGeom::square(3, (7, 6), 3, 1, 1),
            ConvGeom::square(2, (8, 8), 3, 2, 0),
            ConvGeom {
                cin: 4,
                h: 9,
                w: 7,
                kh: 3,
                kw: 2,
                strides: [2, 1],
                pads: [1, 0, 2, 1],
                dilations: [2, 1],
                group: 2,
            },
        ];
        for g in geoms {
            let rows = 4;
            let k = g.k();
            let w: Vec<f32> = (0..rows * k)
                .map(|i| ((i * 37 % 17) as f32 - 8.0) / 8.0)
                .collect();
            let x: Vec<f32> = (0..g.cin * g.h * g.w)
                .map(|i| ((i * 13 % 11) as f32 - 5.0) / 5.0)
                .collect();
            let y = crate::ops::conv2d_f32(
                &w,
                rows,
                &g,
                &x,
                1,
                &[1.0; 4],
                &[0.0; 4],
                (f32::NEG_INFINITY, f32::INFINITY),
            );
            let pos = g.oh() * g.ow();
            let per = rows / g.group;
            for group in 0..g.group {
                let mut cols = Vec::new();
                im2col(&x, &g, group, &mut cols);
                assert_eq!(cols.len(), pos * k);
                for o in group * per..(group + 1) * per {
                    for p in 0..pos {
                        let s: f32 = (0..k).map(|j| cols[p * k + j] * w[o * k + j]).sum();
                        let e = y[o * pos + p];
                        assert!((s - e).abs() < 1e-4, "{g:?} o {o} p {p}: {s} vs {e}");
                    }
                }
            }
        }
    }
}
