//! Runs a [`Plan`]: each step reads its input slots (taking a buffer over when this is its
//! last use, so element-wise steps work in place) and writes its output slot; slots are
//! freed after their last use, so only live values hold memory.
use crate::kernels::Kernel;
use crate::ops;
use crate::plan::{Dense, Kind, Plan, Step};
use crate::tensors::Weights;
use crate::Activations;
use crate::LayerTime;
use std::time::Instant;

/// Logits for the (normalised) input batch.
pub(crate) fn run(
    plan: &Plan,
    kernel: Kernel,
    act: Activations,
    input: Vec<f32>,
    batch: usize,
    mut times: Option<&mut Vec<LayerTime>>,
) -> Vec<f32> {
    let mut slots: Vec<Option<Vec<f32>>> = vec![None; plan.slots];
    slots[0] = Some(input);
    for step in &plan.steps {
        let t0 = Instant::now();
        let y = run_step(step, kernel, act, &mut slots, batch);
        debug_assert_eq!(y.len(), batch * step.out_len, "{}", step.label);
        for &s in &step.free {
            slots[s] = None;
        }
        slots[step.output] = Some(y);
        if let Some(t) = times.as_deref_mut() {
            t.push(LayerTime {
                label: step.label.clone(),
                time: t0.elapsed(),
            });
        }
    }
    slots[plan.output]
        .take()
        .expect("the plan computes its output")
}

/// Input `i`'s buffer: taken over when the step owns it, else copied.
fn take(step: &Step, slots: &mut [Option<Vec<f32>>], i: usize) -> Vec<f32> {
    let s = step.inputs[i];
    if step.owned[i] {
        slots[s].take().expect("slot computed earlier")
    } else {
        get(slots, s).to_vec()
    }
}

fn get(slots: &[Option<Vec<f32>>], s: usize) -> &[f32] {
    slots[s].as_deref().expect("slot computed earlier")
}

fn linear(d: &Dense, kernel: Kernel, act: Activations, x: &[f32], batch: usize) -> Vec<f32> {
    let mut y = vec![0f32; batch * d.rows];
    match &d.w {
        Weights::Packed(p) if act.is_int8() => match &d.int8 {
            Some(l) if batch >= l.f32_from => p[0].matmul(kernel, x, batch, &mut y),
            Some(l) => {
                let (offs, act) = (Some(&l.offsets[0]), l.act_scale);
                p[0].matmul_i8_scaled(offs, l.gemv_below, kernel, act, x, batch, &mut y)
            }
            None => p[0].matmul_i8(kernel, x, batch, &mut y),
        },
        Weights::Packed(p) => p[0].matmul(kernel, x, batch, &mut y),
        Weights::Float(w) => crate::fp32::sgemm(batch, d.rows, d.cols, x, w, true, &mut y, true),
    }
    let (lo, hi) = d.clamp;
    for row in y.chunks_exact_mut(d.rows) {
        for (o, v) in row.iter_mut().enumerate() {
            *v = ops::clamp(d.scale[o] * *v + d.shift[o], lo, hi);
        }
    }
    y
}

pub(crate) fn run_step(
    step: &Step,
    kernel: Kernel,
    act: Activations,
    slots: &mut [Option<Vec<f32>>],
    batch: usize,
) -> Vec<f32> {
    let x = || get(slots, step.inputs[0]);
    match &step.kind {
        Kind::Conv { d, geom, direct } => {
            let args = (&d.scale[..], &d.shift[..], d.clamp);
            match (&d.w, direct) {
                (Weights::Packed(p), _) if act.is_int8() => match &d.int8 {
                    Some(l) => ops::conv2d_packed_i8_layer(
                        p,
                        l,
                        geom,
                        kernel,
                        x(),
                        batch,
                        args.0,
                        args.1,
                        args.2,
                    ),
                    None => {
                        ops::conv2d_packed_i8(p, geom, kernel, x(), batch, args.0, args.1, args.2)
                    }
                },
                (Weights::Packed(p), _) => {
                    ops::conv2d_packed(p, geom, kernel, x(), batch, args.0, args.1, args.2)
                }
                (Weights::Float(w), true) => {
                    ops::conv2d_direct(w, d.rows, geom, x(), batch, args.0, args.1, args.2)
                }
                (Weights::Float(w), false) => {
                    ops::conv2d_f32(w, d.rows, geom, x(), batch, args.0, args.1, args.2)
                }
            }
        }
        Kind::Linear { d } => linear(d, kernel, act, x(), batch),
        Kind::Affine {
            scale,
            shift,
            inner,
            clamp,
        } => {
            let mut y = take(step, slots, 0);
            ops::affine(&mut y, scale.len(), *inner, scale, shift, *clamp);
            y
        }
        Kind::Unary(f) => {
            let mut y = take(step, slots, 0);
            ops::unary(&mut y, *f);
            y
        }
        Kind::MaxPool { geom, c } => ops::max_pool(x(), batch * c, geom),
        Kind::AvgPool {
            geom,
            c,
            count_include_pad,
        } => ops::avg_pool(x(), batch * c, geom, *count_include_pad),
        Kind::GlobalAvgPool { inner } => ops::global_avg_pool(x(), *inner),
        Kind::Binary {
            op,
            bc,
            constant,
            clamp,
        } => binary(step, slots, batch, *op, bc, constant.as_deref(), *clamp),
        Kind::Concat { sizes } => {
            let inputs: Vec<&[f32]> = step.inputs.iter().map(|&s| get(slots, s)).collect();
            ops::concat(&inputs, sizes, batch)
        }
        Kind::PadChannels {
            c,
            inner,
            before,
            after,
        } => ops::pad_channels(x(), batch, *c, *inner, (*before, *after)),
        Kind::Softmax { f } => {
            let mut y = take(step, slots, 0);
            ops::softmax(&mut y, *f);
            y
        }
    }
}

/// Add/Mul: the result is accumulated into an operand that already has the output's shape
/// (taken over when possible, both operators being commutative), else into the first
/// operand broadcast to it.
#[allow(clippy::too_many_arguments)]
fn binary(
    step: &Step,
    slots: &mut [Option<Vec<f32>>],
    batch: usize,
    op: ops::Binary,
    bc: &[ops::Broadcast; 2],
    constant: Option<&[f32]>,
    clamp: (f32, f32),
) -> Vec<f32> {
    let full: Vec<bool> = (0..step.inputs.len())
        .map(|i| step.in_lens[i] == step.out_len)
        .collect();
    let two = constant.is_none();
    // Which operand accumulates: 0 or 1.
    let acc = if full[0] && (step.owned[0] || !two || !(full[1] && step.owned[1])) {
        0
    } else if two && full[1] {
        1
    } else {
        let mut y = ops::expand(get(slots, step.inputs[0]), &bc[0], batch);
        let other = constant.unwrap_or_else(|| get(slots, step.inputs[1]));
        ops::binary(op, &mut y, other, &bc[1], clamp);
        return y;
    };
    let mut y = take(step, slots, acc);
    let other = match constant {
        Some(c) => c,
        None => get(slots, step.inputs[1 - acc]),
    };
    ops::binary(op, &mut y, other, &bc[1 - acc], clamp);
    y
}
