//! BatchNormalization, inference form (`training_mode = 0`, one output).
use super::ctx::{Ctx, N};
use crate::OnnxError;
use twobit_format::graph::Op;

/// Imports a BatchNormalization node.
pub(crate) fn batch_norm(cx: &mut Ctx, n: &N) -> Result<(), OnnxError> {
    n.allow(&[
        "epsilon",
        "momentum",
        "training_mode",
        "spatial",
        "is_test",
        "consumed_inputs",
    ])?;
    n.arity(5, 5)?;
    if n.int("training_mode", 0)? != 0 {
        return Err(n.bad("training_mode=1 (only the inference form is supported)"));
    }
    if n.int("spatial", 1)? != 1 {
        return Err(n.bad("spatial=0"));
    }
    let eps = n.float("epsilon", 1e-5)?;
    let x = cx.value(n, 0)?;
    let mut t = Vec::with_capacity(4);
    for i in 1..5 {
        let c = cx.constant(n, i)?;
        if c.dims.len() != 1 {
            return Err(n.bad(format!("input {i} has shape {:?}, expected [C]", c.dims)));
        }
        t.push(cx.const_tensor(n, i)?);
    }
    let [weight, bias, running_mean, running_var] =
        <[String; 4]>::try_from(t).map_err(|_| n.bad("needs scale, B, mean and var"))?;
    let op = Op::BatchNorm {
        weight,
        bias,
        running_mean,
        running_var,
        eps,
    };
    cx.push(n, op, vec![x])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use crate::OnnxError;
    use twobit_format::graph::Op;

    fn bn(attrs: Vec<crate::proto::AttributeProto>, outputs: &[&str]) -> Vec<u8> {
        let mut nodes = vec![node(
            "BatchNormalization",
            &["x", "s", "b", "m", "v"],
            outputs,
            attrs,
        )];
        if outputs.len() > 1 {
            nodes.push(node("Add", &["y", outputs[1]], &["z"], vec![]));
        }
        model(
            [3, 2, 2],
            nodes,
            vec![
                tf("s", &[3]),
                tf("b", &[3]),
                tf("m", &[3]),
                tv("v", &[3], &[1.0, 2.0, 3.0]),
            ],
        )
    }

    #[test]
    fn inference_form() {
        let m = imp(&bn(vec![af("epsilon", 1e-3)], &["y"])).unwrap();
        let Op::BatchNorm {
            eps, running_var, ..
        } = &ops(&m)[0]
        else {
            panic!()
        };
        assert_eq!(*eps, 1e-3);
        assert_eq!(vals(&m, running_var), vec![1.0, 2.0, 3.0]);
    }

    #[test]
    fn training_form_is_refused() {
        let e = imp(&bn(vec![ai("training_mode", 1)], &["y"])).unwrap_err();
        assert!(matches!(e, OnnxError::UnsupportedAttribute { .. }), "{e}");
        let e = imp(&bn(vec![], &["y", "mean_out"])).unwrap_err();
        assert!(e.to_string().contains("output 1"), "{e}");
    }
}
