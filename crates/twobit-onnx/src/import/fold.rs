//! Shape arithmetic that exporters write around Reshape, folded into constants: Shape,
//! Gather, Unsqueeze, Squeeze, Cast and Concat of constants (PyTorch's
//! `x.view(x.size(0), -1)` becomes `Shape -> Gather -> Unsqueeze -> Concat -> Reshape`).
//! The symbolic batch size is represented by 0, which Reshape reads as "keep the batch".
//! A Squeeze of an activation's unit axes to `[N, F]` becomes a Flatten.
use super::ctx::{Ctx, N};
use super::tensor::Const;
use crate::OnnxError;
use twobit_format::graph::Op;

/// The axes of an Unsqueeze/Squeeze (attribute before opset 13, constant input after).
fn axes(cx: &Ctx, n: &N) -> Result<Option<Vec<i64>>, OnnxError> {
    if cx.opset < 13 {
        n.allow(&["axes"])?;
        n.arity(1, 1)?;
        return n.ints("axes");
    }
    n.allow(&[])?;
    n.arity(1, 2)?;
    Ok(match n.input(1) {
        Some(_) => Some(cx.constant(n, 1)?.ints()),
        None => None,
    })
}

/// `axis` (may be negative) as an index into `rank` axes.
fn norm_axis(n: &N, axis: i64, rank: usize) -> Result<usize, OnnxError> {
    let r = rank as i64;
    if axis < -r || axis >= r {
        return Err(n.bad(format!("axis {axis} out of range for rank {rank}")));
    }
    Ok(if axis < 0 { axis + r } else { axis } as usize)
}

fn set_const(cx: &mut Ctx, n: &N, c: Const) -> Result<(), OnnxError> {
    let out = n.p.output.first().ok_or_else(|| n.bad("has no output"))?;
    cx.consts.insert(out.clone(), c);
    Ok(())
}

/// Imports a Shape, Gather, Unsqueeze, Squeeze or Cast node.
pub(crate) fn fold_op(cx: &mut Ctx, n: &N) -> Result<(), OnnxError> {
    match n.op() {
        "Shape" => {
            n.allow(&["start", "end"])?;
            n.arity(1, 1)?;
            let x = cx.value(n, 0)?;
            let mut dims = vec![0.0];
            dims.extend(cx.shape(n, &x)?.iter().map(|&d| d as f64));
            let r = dims.len() as i64;
            let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
            let (s, e) = (clamp(n.int("start", 0)?), clamp(n.int("end", r)?));
            let vals = dims.get(s..e.max(s)).unwrap_or_default().to_vec();
            set_const(cx, n, Const::new(vec![vals.len()], vals))
        }
        "Gather" => {
            n.allow(&["axis"])?;
            n.arity(2, 2)?;
            let data = cx.constant(n, 0)?;
            let idx = cx.constant(n, 1)?;
            if data.dims.len() != 1 || n.int("axis", 0)? != 0 {
                return Err(n.bad("only gathering from a 1-D constant (a shape) is supported"));
            }
            let len = data.vals.len() as i64;
            let mut vals = Vec::with_capacity(idx.vals.len());
            for i in idx.ints() {
                let j = if i < 0 { i + len } else { i };
                let v = usize::try_from(j).ok().and_then(|j| data.vals.get(j));
                vals.push(*v.ok_or_else(|| n.bad(format!("index {i} out of range")))?);
            }
            let c = Const::new(idx.dims.clone(), vals);
            set_const(cx, n, c)
        }
        "Unsqueeze" => {
            let axes = axes(cx, n)?.ok_or_else(|| n.bad("axes are required"))?;
            if !cx.is_const(n, 0) {
                return Err(n.bad("Unsqueeze of an activation is not supported"));
            }
            let c = cx.constant(n, 0)?.clone();
            let rank = c.dims.len() + axes.len();
            let mut ax: Vec<usize> = axes
                .iter()
                .map(|&a| norm_axis(n, a, rank))
                .collect::<Result<_, _>>()?;
            ax.sort_unstable();
            let mut dims = c.dims.clone();
            for a in ax {
                if a > dims.len() {
                    return Err(n.bad(format!("axes {axes:?}")));
                }
                dims.insert(a, 1);
            }
            set_const(cx, n, Const::new(dims, c.vals))
        }
        "Squeeze" => squeeze(cx, n),
        _ => {
            // Cast: of a constant (values converted), or a no-op float -> float cast.
            n.allow(&["to", "saturate", "round_mode"])?;
            n.arity(1, 1)?;
            let to = n.int("to", 0)?;
            if cx.is_const(n, 0) {
                let mut c = cx.constant(n, 0)?.clone();
                match to as i32 {
                    crate::proto::dtype::INT32 | crate::proto::dtype::INT64 => {
                        c.vals.iter_mut().for_each(|v| *v = v.trunc())
                    }
                    crate::proto::dtype::FLOAT | crate::proto::dtype::DOUBLE => {}
                    _ => return Err(n.bad(format!("cast to element type {to}"))),
                }
                return set_const(cx, n, c);
            }
            if to as i32 != crate::proto::dtype::FLOAT {
                return Err(n.bad(format!("cast of an activation to element type {to}")));
            }
            let x = cx.value(n, 0)?;
            cx.alias(n, x)
        }
    }
}

fn squeeze(cx: &mut Ctx, n: &N) -> Result<(), OnnxError> {
    let axes = axes(cx, n)?;
    if cx.is_const(n, 0) {
        let c = cx.constant(n, 0)?.clone();
        let rank = c.dims.len();
        let drop: Vec<usize> = match &axes {
            Some(a) => a
                .iter()
                .map(|&a| norm_axis(n, a, rank))
                .collect::<Result<_, _>>()?,
            None => (0..rank).filter(|&i| c.dims[i] == 1).collect(),
        };
        let dims = (0..rank)
            .filter(|i| !drop.contains(i))
            .map(|i| c.dims[i])
            .collect();
        return set_const(cx, n, Const::new(dims, c.vals));
    }
    let x = cx.value(n, 0)?;
    let s = cx.shape(n, &x)?;
    let rank = s.len() + 1;
    let drop: Vec<usize> = match &axes {
        Some(a) => a
            .iter()
            .map(|&a| norm_axis(n, a, rank))
            .collect::<Result<_, _>>()?,
        None => (1..rank).filter(|&i| s[i - 1] == 1).collect(),
    };
    if drop.contains(&0) || drop.iter().any(|&a| s[a - 1] != 1) {
        return Err(n.bad(format!(
            "axes {axes:?} of [N, {s:?}]: only unit axes after the batch"
        )));
    }
    if rank - drop.len() != 2 {
        return Err(n.bad(format!(
            "axes {axes:?}: only squeezing to [N, F] is supported"
        )));
    }
    cx.push(n, Op::Flatten, vec![x])?;
    Ok(())
}

/// Concat of constants along an axis (shape vectors).
pub(crate) fn concat_consts(cx: &mut Ctx, n: &N) -> Result<(), OnnxError> {
    let mut dims: Option<Vec<usize>> = None;
    let mut vals = Vec::new();
    for i in 0..n.p.input.len() {
        let c = cx.constant(n, i)?;
        if c.dims.len() != 1 {
            return Err(n.bad("only 1-D constants are concatenated"));
        }
        vals.extend_from_slice(&c.vals);
        dims = Some(vec![vals.len()]);
    }
    let axis = n.int("axis", 0)?;
    if axis != 0 && axis != -1 {
        return Err(n.bad(format!("axis={axis} for 1-D constants")));
    }
    let dims = dims.ok_or_else(|| n.bad("no inputs"))?;
    set_const(cx, n, Const::new(dims, vals))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use twobit_format::graph::Op;

    #[test]
    fn pytorch_view_chain_becomes_flatten() {
        let m = imp(&model(
            [2, 3, 3],
            vec![
                node("Relu", &["x"], &["r"], vec![]),
                node("Shape", &["r"], &["s"], vec![]),
                node("Gather", &["s", "zero"], &["b"], vec![ai("axis", 0)]),
                node("Unsqueeze", &["b", "ax"], &["bu"], vec![]),
                node("Concat", &["bu", "minus1"], &["shape"], vec![ai("axis", 0)]),
                node("Reshape", &["r", "shape"], &["y"], vec![]),
            ],
            vec![
                ti("zero", &[], &[0]),
                ti("ax", &[1], &[0]),
                ti("minus1", &[1], &[-1]),
            ],
        ))
        .unwrap();
        assert_eq!(ops(&m), vec![Op::Relu, Op::Flatten]);
        assert_eq!(m.arch.unwrap().classes, 18);
    }

    #[test]
    fn squeeze_of_unit_axes_becomes_flatten() {
        let m = imp(&model(
            [4, 3, 3],
            vec![
                node("GlobalAveragePool", &["x"], &["g"], vec![]),
                node("Squeeze", &["g", "axes"], &["y"], vec![]),
            ],
            vec![ti("axes", &[2], &[2, 3])],
        ))
        .unwrap();
        assert_eq!(ops(&m), vec![Op::GlobalAvgPool, Op::Flatten]);
        let e = imp(&model(
            [4, 3, 3],
            vec![node("Squeeze", &["x", "axes"], &["y"], vec![])],
            vec![ti("axes", &[1], &[2])],
        ))
        .unwrap_err();
        assert!(e.to_string().contains("Squeeze"), "{e}");
    }
}
