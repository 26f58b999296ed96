//! Flatten (axis 1), Reshape to 2-D with a constant shape (-> Flatten), Concat on channels,
//! Dropout/Identity (removed), Softmax over the last axis, Pad of zero channels
//! (-> PadChannels).
use super::ctx::{Ctx, N};
use crate::OnnxError;
use twobit_format::graph::Op;

/// Imports a shape-related node.
pub(crate) fn shape_op(cx: &mut Ctx, n: &N) -> Result<(), OnnxError> {
    match n.op() {
        "Identity" | "Dropout" => {
            n.allow(&["ratio", "seed", "is_test"])?;
            n.arity(1, 3)?;
            if n.op() == "Dropout" && n.input(2).is_some() {
                let t = cx.constant(n, 2)?;
                if t.scalar() != Some(0.0) {
                    return Err(n.bad("training_mode must be false"));
                }
            }
            let out = n.p.output.first().ok_or_else(|| n.bad("has no output"))?;
            if cx.is_const(n, 0) {
                let c = cx.constant(n, 0)?.clone();
                cx.consts.insert(out.clone(), c);
                return Ok(());
            }
            let x = cx.value(n, 0)?;
            cx.alias(n, x)
        }
        "Flatten" => {
            n.allow(&["axis"])?;
            n.arity(1, 1)?;
            let x = cx.value(n, 0)?;
            if n.int("axis", 1)? != 1 {
                return Err(n.bad(format!("axis={} (only 1)", n.int("axis", 1)?)));
            }
            cx.push(n, Op::Flatten, vec![x])?;
            Ok(())
        }
        "Reshape" => reshape(cx, n),
        "Concat" => {
            n.allow(&["axis"])?;
            let k = n.p.input.len();
            n.arity(1, k.max(1))?;
            let xs = (0..k)
                .map(|i| cx.value(n, i))
                .collect::<Result<Vec<_>, _>>()?;
            let rank = cx.shape(n, &xs[0])?.len() + 1;
            let axis = n.int("axis", 1)?;
            if rank != 4 || !(axis == 1 || axis == -3) {
                return Err(n.bad(format!(
                    "axis={axis} on rank {rank} (only channels of NCHW)"
                )));
            }
            cx.push(n, Op::Concat, xs)?;
            Ok(())
        }
        "Softmax" => {
            n.allow(&["axis"])?;
            n.arity(1, 1)?;
            let x = cx.value(n, 0)?;
            let rank = cx.shape(n, &x)?.len() + 1;
            let axis = n.int("axis", if cx.opset < 13 { 1 } else { -1 })?;
            if rank != 2 || !(axis == 1 || axis == -1) {
                return Err(n.bad(format!(
                    "axis={axis} on rank {rank} (only the last axis of [N, F])"
                )));
            }
            cx.push(n, Op::Softmax, vec![x])?;
            Ok(())
        }
        _ => pad(cx, n),
    }
}

fn reshape(cx: &mut Ctx, n: &N) -> Result<(), OnnxError> {
    n.allow(&["allowzero"])?;
    n.arity(2, 2)?;
    let x = cx.value(n, 0)?;
    let target = cx.constant(n, 1)?.ints();
    let shape = cx.shape(n, &x)?;
    let f: usize = shape.iter().product();
    let fi = i64::try_from(f).unwrap_or(-2);
    let allowzero = n.int("allowzero", 0)? != 0;
    let ok = match target.as_slice() {
        // [N, -1], [N, F] with N kept (0), 1 or -1 (then F must be given).
        &[b, c] => {
            let batch = b == 1 || (b == 0 && !allowzero);
            (batch && (c == -1 || c == fi)) || (b == -1 && c == fi)
        }
        _ => false,
    };
    if !ok {
        return Err(n.bad(format!(
            "shape {target:?} on a [N, {}] input: only flattening to [N, {f}] is supported",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    if shape.len() == 1 {
        return cx.alias(n, x);
    }
    cx.push(n, Op::Flatten, vec![x])?;
    Ok(())
}

fn pad(cx: &mut Ctx, n: &N) -> Result<(), OnnxError> {
    let x = cx.value(n, 0)?;
    let (pads, value) = if cx.opset < 11 {
        n.allow(&["mode", "pads", "value"])?;
        n.arity(1, 1)?;
        let p = n.ints("pads")?.ok_or_else(|| n.bad("pads is required"))?;
        (p, f64::from(n.float("value", 0.0)?))
    } else {
        n.allow(&["mode"])?;
        n.arity(2, 4)?;
        if n.input(3).is_some() {
            return Err(n.bad("the axes input is not supported"));
        }
        let p = cx.constant(n, 1)?.ints();
        let v = match n.input(2) {
            Some(_) => cx
                .constant(n, 2)?
                .scalar()
                .ok_or_else(|| n.bad("constant_value must be a scalar"))?,
            None => 0.0,
        };
        (p, v)
    };
    let mode = n.string("mode")?.unwrap_or_else(|| "constant".into());
    if mode != "constant" || value != 0.0 {
        return Err(n.bad(format!("mode '{mode}' value {value}: only zero padding")));
    }
    let &[0, before, 0, 0, 0, after, 0, 0] = pads.as_slice() else {
        return Err(n.bad(format!(
            "pads {pads:?}: only channels of NCHW may be padded"
        )));
    };
    let (Ok(before), Ok(after)) = (usize::try_from(before), usize::try_from(after)) else {
        return Err(n.bad(format!("negative pads {pads:?}")));
    };
    cx.push(n, Op::PadChannels { before, after }, vec![x])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use crate::OnnxError;
    use twobit_format::graph::Op;

    #[test]
    fn reshape_forms() {
        for shape in [[0, -1], [1, -1], [-1, 12], [1, 12]] {
            let m = imp(&model(
                [3, 2, 2],
                vec![node("Reshape", &["x", "s"], &["y"], vec![])],
                vec![ti("s", &[2], &shape)],
            ))
            .unwrap();
            assert_eq!(ops(&m), vec![Op::Flatten], "{shape:?}");
        }
        let e = imp(&model(
            [3, 2, 2],
            vec![node("Reshape", &["x", "s"], &["y"], vec![])],
            vec![ti("s", &[4], &[0, 3, 4, 1])],
        ))
        .unwrap_err();
        assert!(matches!(e, OnnxError::UnsupportedAttribute { .. }), "{e}");
    }

    #[test]
    fn identity_and_dropout_are_removed() {
        let m = imp(&model(
            [3, 2, 2],
            vec![
                node("Identity", &["x"], &["a"], vec![]),
                node("Dropout", &["a"], &["b", ""], vec![]),
                node("Flatten", &["b"], &["c"], vec![]),
                node("Softmax", &["c"], &["y"], vec![]),
            ],
            vec![],
        ))
        .unwrap();
        assert_eq!(ops(&m), vec![Op::Flatten, Op::Softmax]);
        assert_eq!(
            m.arch.as_ref().unwrap().nodes[0].inputs,
            vec!["input".to_string()]
        );
    }

    #[test]
    fn concat_and_pad() {
        let m = imp(&model(
            [3, 2, 2],
            vec![
                node("Concat", &["x", "x"], &["c"], vec![ai("axis", 1)]),
                node("Pad", &["c", "p"], &["y"], vec![]),
            ],
            vec![ti("p", &[8], &[0, 1, 0, 0, 0, 2, 0, 0])],
        ))
        .unwrap();
        assert_eq!(
            ops(&m),
            vec![
                Op::Concat,
                Op::PadChannels {
                    before: 1,
                    after: 2
                }
            ]
        );
        assert_eq!(m.arch.unwrap().classes, 9 * 4);
        let e = imp(&model(
            [3, 2, 2],
            vec![node("Pad", &["x", "p"], &["y"], vec![])],
            vec![ti("p", &[8], &[0, 0, 1, 0, 0, 0, 1, 0])],
        ))
        .unwrap_err();
        assert!(matches!(e, OnnxError::UnsupportedAttribute { .. }), "{e}");
        let e = imp(&model(
            [3, 2, 2],
            vec![node("Concat", &["x", "x"], &["y"], vec![ai("axis", 2)])],
            vec![],
        ))
        .unwrap_err();
        assert!(matches!(e, OnnxError::UnsupportedAttribute { .. }), "{e}");
    }
}
