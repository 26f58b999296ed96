//! Gemm and MatMul with a constant weight -> Linear (weight stored `[out, in]`). `alpha` and
//! `beta` are folded into the weight and bias; a MatMul's following Add of a constant
//! `[out]` vector becomes the bias (see `elementwise`).
use super::ctx::{Ctx, N};
use crate::OnnxError;
use twobit_format::graph::Op;

/// Imports a Gemm node (`transA = 0`).
pub(crate) fn gemm(cx: &mut Ctx, n: &N) -> Result<(), OnnxError> {
    n.allow(&["alpha", "beta", "transA", "transB"])?;
    n.arity(2, 3)?;
    if n.int("transA", 0)? != 0 {
        return Err(n.bad("transA=1 is not supported"));
    }
    let trans_b = match n.int("transB", 0)? {
        0 => false,
        1 => true,
        t => return Err(n.bad(format!("transB={t}"))),
    };
    let alpha = n.float("alpha", 1.0)?;
    let beta = n.float("beta", 1.0)?;
    let x = cx.value(n, 0)?;
    let b = cx.constant(n, 1)?;
    let &[r, c] = b.dims.as_slice() else {
        return Err(n.bad(format!("B has shape {:?}, expected 2-D", b.dims)));
    };
    let (out, inp) = if trans_b { (r, c) } else { (c, r) };
    let mut w = if trans_b {
        b.f32s()
    } else {
        transpose(&b.f32s(), r, c)
    };
    if alpha != 1.0 {
        w.iter_mut().for_each(|v| *v *= alpha);
    }
    let bias = match n.input(2) {
        None => None,
        Some(_) => {
            let c = cx.constant(n, 2)?;
            let vals = bias_vector(n, &c.dims, &c.f32s(), out)?;
            let vals: Vec<f32> = vals.iter().map(|v| v * beta).collect();
            let hint = n.input(2).unwrap_or_default().to_string();
            Some(cx.add_tensor(&hint, vec![out], vals)?)
        }
    };
    let hint = n.input(1).unwrap_or_default().to_string();
    let weight = cx.add_tensor(&hint, vec![out, inp], w)?;
    cx.push(n, Op::Linear { weight, bias }, vec![x])?;
    Ok(())
}

/// Imports a MatMul of an activation `[N, in]` by a constant `[in, out]`.
pub(crate) fn matmul(cx: &mut Ctx, n: &N) -> Result<(), OnnxError> {
    n.allow(&[])?;
    n.arity(2, 2)?;
    let x = cx.value(n, 0)?;
    let b = cx.constant(n, 1)?;
    let &[inp, out] = b.dims.as_slice() else {
        return Err(n.bad(format!("B has shape {:?}, expected a 2-D constant", b.dims)));
    };
    let w = transpose(&b.f32s(), inp, out);
    let hint = n.input(1).unwrap_or_default().to_string();
    let weight = cx.add_tensor(&hint, vec![out, inp], w)?;
    cx.push(n, Op::Linear { weight, bias: None }, vec![x])?;
    Ok(())
}

/// A bias of shape `[out]`, `[1, out]`, `[1]` or `[]` as `out` values.
pub(crate) fn bias_vector(
    n: &N,
    dims: &[usize],
    vals: &[f32],
    out: usize,
) -> Result<Vec<f32>, OnnxError> {
    match (dims, vals) {
        ([d] | [1, d], _) if *d == out => Ok(vals.to_vec()),
        ([] | [1] | [1, 1], [v]) => Ok(vec![*v; out]),
        _ => Err(n.bad(format!("bias shape {dims:?} does not broadcast to [{out}]"))),
    }
}

/// `[r, c]` -> `[c, r]`.
fn transpose(v: &[f32], r: usize, c: usize) -> Vec<f32> {
    let mut t = vec![0.0; v.len()];
    for i in 0..r {
        for j in 0..c {
            t[j * r + i] = v[i * c + j];
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use crate::OnnxError;
    use twobit_format::graph::Op;

    fn flat(nodes: Vec<crate::proto::NodeProto>) -> Vec<crate::proto::NodeProto> {
        let mut v = vec![node("Flatten", &["x"], &["f"], vec![])];
        v.extend(nodes);
        v
    }

    #[test]
    fn gemm_trans_b_and_alpha_beta() {
        // x: [2,1,1] -> f [2]; B [3, 2] (transB=1) -> weight [3, 2] * alpha.
        let w = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let m = imp(&model(
            [2, 1, 1],
            flat(vec![node(
                "Gemm",
                &["f", "B", "C"],
                &["y"],
                vec![ai("transB", 1), af("alpha", 2.0), af("beta", 0.5)],
            )]),
            vec![tv("B", &[3, 2], &w), tv("C", &[3], &[2.0, 4.0, 6.0])],
        ))
        .unwrap();
        let Op::Linear { weight, bias } = &ops(&m)[1] else {
            panic!()
        };
        assert_eq!(vals(&m, weight), vec![2.0, 4.0, 6.0, 8.0, 10.0, 12.0]);
        assert_eq!(m.tensors[weight].shape(), &[3, 2]);
        assert_eq!(vals(&m, bias.as_ref().unwrap()), vec![1.0, 2.0, 3.0]);
    }

    #[test]
    fn gemm_untransposed_weight_is_transposed() {
        let w = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]; // [in=2, out=3]
        let m = imp(&model(
            [2, 1, 1],
            flat(vec![node("Gemm", &["f", "B"], &["y"], vec![])]),
            vec![tv("B", &[2, 3], &w)],
        ))
        .unwrap();
        let Op::Linear { weight, bias } = &ops(&m)[1] else {
            panic!()
        };
        assert_eq!(vals(&m, weight), vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
        assert!(bias.is_none());
        let e = imp(&model(
            [2, 1, 1],
            flat(vec![node(
                "Gemm",
                &["f", "B"],
                &["y"],
                vec![ai("transA", 1)],
            )]),
            vec![tv("B", &[2, 3], &w)],
        ))
        .unwrap_err();
        assert!(matches!(e, OnnxError::UnsupportedAttribute { .. }));
    }

    #[test]
    fn matmul_then_add_becomes_one_linear() {
        let w = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]; // [in=2, out=3]
        let m = imp(&model(
            [2, 1, 1],
            flat(vec![
                node("MatMul", &["f", "W"], &["mm"], vec![]),
                node("Add", &["mm", "b"], &["y"], vec![]),
            ]),
            vec![tv("W", &[2, 3], &w), tv("b", &[3], &[0.1, 0.2, 0.3])],
        ))
        .unwrap();
        let o = ops(&m);
        assert_eq!(o.len(), 2);
        let Op::Linear { weight, bias } = &o[1] else {
            panic!()
        };
        assert_eq!(vals(&m, weight), vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
        assert_eq!(vals(&m, bias.as_ref().unwrap()), vec![0.1, 0.2, 0.3]);
    }

    #[test]
    fn matmul_by_a_computed_value_is_refused() {
        let e = imp(&model(
            [2, 1, 1],
            flat(vec![node("MatMul", &["f", "f"], &["y"], vec![])]),
            vec![],
        ))
        .unwrap_err();
        assert!(matches!(e, OnnxError::UnsupportedAttribute { .. }), "{e}");
    }
}
