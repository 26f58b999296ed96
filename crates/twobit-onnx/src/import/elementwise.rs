//! Add and Mul (numpy broadcasting; a constant operand becomes a tensor; two constants are
//! folded), and Constant nodes (folded into constants).
use super::ctx::{Ctx, N};
use super::tensor::{dims_numel, Const};
use crate::proto::attr_type;
use crate::OnnxError;
use twobit_format::graph::Op;

/// Largest constant computed by folding (elements).
const FOLD_LIMIT: usize = 1 << 24;

/// Imports a Constant node (its value becomes a constant, no graph node).
pub(crate) fn constant(cx: &mut Ctx, n: &N) -> Result<(), OnnxError> {
    let a = match n.p.attribute.as_slice() {
        [a] => a,
        _ => return Err(n.bad("needs exactly one value attribute")),
    };
    let c = match (a.name.as_str(), a.r#type) {
        ("value", attr_type::TENSOR | 0) => {
            let t =
                a.t.as_ref()
                    .ok_or_else(|| n.bad("'value' holds no tensor"))?;
            super::tensor::decode(t)?
        }
        ("value_float", attr_type::FLOAT | 0) => Const::new(vec![], vec![f64::from(a.f)]),
        ("value_floats", attr_type::FLOATS | 0) => Const::new(
            vec![a.floats.len()],
            a.floats.iter().map(|&v| f64::from(v)).collect(),
        ),
        ("value_int", attr_type::INT | 0) => Const::new(vec![], vec![a.i as f64]),
        ("value_ints", attr_type::INTS | 0) => Const::new(
            vec![a.ints.len()],
            a.ints.iter().map(|&v| v as f64).collect(),
        ),
        (other, _) => return Err(n.bad(format!("value attribute '{other}'"))),
    };
    let out = n.p.output.first().ok_or_else(|| n.bad("has no output"))?;
    cx.consts.insert(out.clone(), c);
    Ok(())
}

/// Imports an Add or Mul node, or a Sub/Div by a constant (as Add/Mul of `-c`/`1/c`).
pub(crate) fn binary(cx: &mut Ctx, n: &N) -> Result<(), OnnxError> {
    n.allow(&[])?;
    n.arity(2, 2)?;
    let op = n.op();
    let add = op == "Add" || op == "Sub";
    if op == "Sub" || op == "Div" {
        return sub_div(cx, n, add);
    }
    match (cx.is_const(n, 0), cx.is_const(n, 1)) {
        (true, true) => {
            let c = fold(n, cx.constant(n, 0)?, cx.constant(n, 1)?, add)?;
            let out = n.p.output.first().ok_or_else(|| n.bad("has no output"))?;
            cx.consts.insert(out.clone(), c);
            Ok(())
        }
        (false, false) => {
            let (a, b) = (cx.value(n, 0)?, cx.value(n, 1)?);
            let op = if add {
                Op::Add { constant: None }
            } else {
                Op::Mul { constant: None }
            };
            cx.push(n, op, vec![a, b])?;
            Ok(())
        }
        (c0, _) => {
            // Both operations commute: the activation goes first.
            let (xi, ci) = if c0 { (1, 0) } else { (0, 1) };
            let x = cx.value(n, xi)?;
            if add && fold_bias(cx, n, xi, ci, &x)? {
                return Ok(());
            }
            let constant = Some(cx.const_tensor(n, ci)?);
            let op = if add {
                Op::Add { constant }
            } else {
                Op::Mul { constant }
            };
            cx.push(n, op, vec![x])?;
            Ok(())
        }
    }
}

/// `x - c` as `x + (-c)`, `x / c` as `x * (1/c)`; constants fold.
fn sub_div(cx: &mut Ctx, n: &N, sub: bool) -> Result<(), OnnxError> {
    if !cx.is_const(n, 1) {
        return Err(n.bad("only subtracting or dividing by a constant is supported"));
    }
    let mut c = cx.constant(n, 1)?.clone();
    if sub {
        c.vals.iter_mut().for_each(|v| *v = -*v);
    } else {
        if c.vals.contains(&0.0) {
            return Err(n.bad("division by zero"));
        }
        c.vals.iter_mut().for_each(|v| *v = 1.0 / *v);
    }
    if cx.is_const(n, 0) {
        let r = fold(n, cx.constant(n, 0)?, &c, sub)?;
        let out = n.p.output.first().ok_or_else(|| n.bad("has no output"))?;
        cx.consts.insert(out.clone(), r);
        return Ok(());
    }
    let x = cx.value(n, 0)?;
    let hint = n.input(1).unwrap_or_default().to_string();
    let vals = c.f32s();
    let constant = Some(cx.add_tensor(&hint, c.dims, vals)?);
    let op = if sub {
        Op::Add { constant }
    } else {
        Op::Mul { constant }
    };
    cx.push(n, op, vec![x])?;
    Ok(())
}

/// `Linear (no bias) -> Add [out]` (MatMul + Add as exporters write it): the constant becomes
/// the Linear's bias when the Linear's output is read by nothing else.
fn fold_bias(cx: &mut Ctx, n: &N, xi: usize, ci: usize, x: &str) -> Result<bool, OnnxError> {
    let onnx_x = n.input(xi).unwrap_or_default();
    if cx.uses.get(onnx_x).copied().unwrap_or(0) != 1 {
        return Ok(false);
    }
    let Some(k) = cx.nodes.iter().rposition(|m| m.output == x) else {
        return Ok(false);
    };
    let Op::Linear { weight, bias: None } = &cx.nodes[k].op else {
        return Ok(false);
    };
    let out = cx.tensors[weight].shape()[0];
    let c = cx.constant(n, ci)?;
    if !matches!(c.dims.as_slice(), [d] | [1, d] if *d == out) {
        return Ok(false);
    }
    let vals = c.f32s();
    let hint = n.input(ci).unwrap_or_default().to_string();
    let bias = cx.add_tensor(&hint, vec![out], vals)?;
    if let Op::Linear { bias: b, .. } = &mut cx.nodes[k].op {
        *b = Some(bias);
    }
    cx.alias(n, x.to_string())?;
    Ok(true)
}

/// `a + b` or `a * b` of two constants, numpy broadcasting.
fn fold(n: &N, a: &Const, b: &Const, add: bool) -> Result<Const, OnnxError> {
    let rank = a.dims.len().max(b.dims.len());
    let pad = |d: &[usize]| {
        let mut v = vec![1; rank - d.len()];
        v.extend_from_slice(d);
        v
    };
    let (da, db) = (pad(&a.dims), pad(&b.dims));
    let mut dims = Vec::with_capacity(rank);
    for (&x, &y) in da.iter().zip(&db) {
        dims.push(match (x, y) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => {
                return Err(n.bad(format!(
                    "shapes {:?} and {:?} do not broadcast",
                    a.dims, b.dims
                )))
            }
        });
    }
    let dims_i: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
    let (_, total) = dims_numel(&n.name, &dims_i)?;
    if total > FOLD_LIMIT {
        return Err(n.bad(format!("folding constants of shape {dims:?} is too large")));
    }
    let index = |d: &[usize], mut i: usize| {
        let mut off = 0;
        let mut stride = 1;
        for ax in (0..rank).rev() {
            let coord = i % dims[ax];
            i /= dims[ax];
            if d[ax] != 1 {
                off += coord * stride;
            }
            stride *= d[ax];
        }
        off
    };
    let vals = (0..total)
        .map(|i| {
            let (x, y) = (a.vals[index(&da, i)], b.vals[index(&db, i)]);
            if add {
                x + y
            } else {
                x * y
            }
        })
        .collect();
    Ok(Const::new(dims, vals))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use twobit_format::graph::Op;

    #[test]
    fn constant_operands_become_tensors() {
        let m = imp(&model(
            [2, 3, 3],
            vec![
                node("Mul", &["s", "x"], &["a"], vec![]),
                node("Add", &["a", "x"], &["y"], vec![]),
            ],
            vec![tv("s", &[1, 2, 1, 1], &[2.0, 3.0])],
        ))
        .unwrap();
        let o = ops(&m);
        assert_eq!(
            o[0],
            Op::Mul {
                constant: Some("s".into())
            }
        );
        assert_eq!(o[1], Op::Add { constant: None });
        assert_eq!(m.arch.unwrap().classes, 18);
    }

    #[test]
    fn constants_fold() {
        // (c1 + c2) * x with c1 [2,1,1] and c2 [1]: one Mul by the folded constant.
        let m = imp(&model(
            [2, 1, 2],
            vec![
                node("Add", &["c1", "c2"], &["c"], vec![]),
                node("Mul", &["x", "c"], &["y"], vec![]),
            ],
            vec![tv("c1", &[2, 1, 1], &[1.0, 2.0]), tv("c2", &[1], &[10.0])],
        ))
        .unwrap();
        let o = ops(&m);
        assert_eq!(o.len(), 1);
        let Op::Mul { constant: Some(c) } = &o[0] else {
            panic!()
        };
        assert_eq!(vals(&m, c), vec![11.0, 12.0]);
        assert_eq!(m.tensors[c].shape(), &[2, 1, 1]);
    }

    #[test]
    fn sub_and_div_by_constants() {
        let m = imp(&model(
            [2, 1, 1],
            vec![
                node("Sub", &["x", "m"], &["a"], vec![]),
                node("Div", &["a", "s"], &["y"], vec![]),
            ],
            vec![
                tv("m", &[2, 1, 1], &[1.0, 2.0]),
                tv("s", &[2, 1, 1], &[0.5, 4.0]),
            ],
        ))
        .unwrap();
        let o = ops(&m);
        let (Op::Add { constant: Some(a) }, Op::Mul { constant: Some(b) }) = (&o[0], &o[1]) else {
            panic!("{o:?}")
        };
        assert_eq!(
            (vals(&m, a), vals(&m, b)),
            (vec![-1.0, -2.0], vec![2.0, 0.25])
        );
        let e = imp(&model(
            [2, 1, 1],
            vec![node("Sub", &["m", "x"], &["y"], vec![])],
            vec![tf("m", &[1])],
        ))
        .unwrap_err();
        assert!(e.to_string().contains("'Sub'"), "{e}");
    }

    #[test]
    fn non_broadcastable_constants_are_refused() {
        let e = imp(&model(
            [2, 1, 2],
            vec![
                node("Add", &["c1", "c2"], &["c"], vec![]),
                node("Mul", &["x", "c"], &["y"], vec![]),
            ],
            vec![tf("c1", &[2]), tf("c2", &[3])],
        ))
        .unwrap_err();
        assert!(e.to_string().contains("Add_node"), "{e}");
    }
}
