//! Relu, LeakyRelu, Clip (bounds as attributes before opset 11, as constant inputs from
//! opset 11: PyTorch's ReLU6), Sigmoid, HardSigmoid, HardSwish.
use super::ctx::{Ctx, N};
use crate::OnnxError;
use twobit_format::graph::Op;

/// Imports an activation node.
pub(crate) fn activation(cx: &mut Ctx, n: &N) -> Result<(), OnnxError> {
    let op = match n.op() {
        "Relu" => {
            n.allow(&[])?;
            Op::Relu
        }
        "Sigmoid" => {
            n.allow(&[])?;
            Op::Sigmoid
        }
        "HardSwish" => {
            n.allow(&[])?;
            Op::HardSwish
        }
        "LeakyRelu" => {
            n.allow(&["alpha"])?;
            Op::LeakyRelu {
                alpha: n.float("alpha", 0.01)?,
            }
        }
        "HardSigmoid" => {
            n.allow(&["alpha", "beta"])?;
            Op::HardSigmoid {
                alpha: n.float("alpha", 0.2)?,
                beta: n.float("beta", 0.5)?,
            }
        }
        _ => clip(cx, n)?,
    };
    if n.op() != "Clip" {
        n.arity(1, 1)?;
    }
    let x = cx.value(n, 0)?;
    cx.push(n, op, vec![x])?;
    Ok(())
}

fn clip(cx: &Ctx, n: &N) -> Result<Op, OnnxError> {
    if cx.opset < 11 {
        n.allow(&["min", "max"])?;
        n.arity(1, 1)?;
        let min = n.attr("min").map(|_| n.float("min", 0.0)).transpose()?;
        let max = n.attr("max").map(|_| n.float("max", 0.0)).transpose()?;
        return Ok(Op::Clip { min, max });
    }
    n.allow(&[])?;
    n.arity(1, 3)?;
    let bound = |i: usize| -> Result<Option<f32>, OnnxError> {
        if n.input(i).is_none() {
            return Ok(None);
        }
        let c = cx.constant(n, i)?;
        let v = c.scalar().ok_or_else(|| {
            n.bad(format!(
                "input {i} has shape {:?}, expected a scalar",
                c.dims
            ))
        })? as f32;
        if !v.is_finite() {
            return Err(n.bad(format!("bound {v} is not finite")));
        }
        Ok(Some(v))
    };
    Ok(Op::Clip {
        min: bound(1)?,
        max: bound(2)?,
    })
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use crate::OnnxError;
    use twobit_format::graph::Op;

    fn one(op: &str, attrs: Vec<crate::proto::AttributeProto>) -> Op {
        let m = imp(&model(
            [2, 2, 2],
            vec![node(op, &["x"], &["y"], attrs)],
            vec![],
        ))
        .unwrap();
        ops(&m).remove(0)
    }

    #[test]
    fn simple_activations_and_defaults() {
        assert_eq!(one("Relu", vec![]), Op::Relu);
        assert_eq!(one("Sigmoid", vec![]), Op::Sigmoid);
        assert_eq!(one("HardSwish", vec![]), Op::HardSwish);
        assert_eq!(one("LeakyRelu", vec![]), Op::LeakyRelu { alpha: 0.01 });
        assert_eq!(
            one("LeakyRelu", vec![af("alpha", 0.2)]),
            Op::LeakyRelu { alpha: 0.2 }
        );
        assert_eq!(
            one("HardSigmoid", vec![]),
            Op::HardSigmoid {
                alpha: 0.2,
                beta: 0.5
            }
        );
        assert_eq!(
            one("HardSigmoid", vec![af("alpha", 1.0 / 6.0)]),
            Op::HardSigmoid {
                alpha: 1.0 / 6.0,
                beta: 0.5
            }
        );
    }

    #[test]
    fn clip_with_constant_inputs_and_attributes() {
        // opset 13: ReLU6 as PyTorch writes it, bounds from Constant nodes.
        let c = |name: &str, v: f32| {
            let mut n = node("Constant", &[], &[name], vec![]);
            n.attribute.push(crate::proto::AttributeProto {
                name: "value".into(),
                r#type: crate::proto::attr_type::TENSOR,
                t: Some(tv("", &[], &[v])),
                ..Default::default()
            });
            n
        };
        let m = imp(&model(
            [2, 2, 2],
            vec![
                c("lo", 0.0),
                c("hi", 6.0),
                node("Clip", &["x", "lo", "hi"], &["y"], vec![]),
            ],
            vec![],
        ))
        .unwrap();
        assert_eq!(
            ops(&m),
            vec![Op::Clip {
                min: Some(0.0),
                max: Some(6.0)
            }]
        );
        // Only a max, as an initializer.
        let m = imp(&model(
            [2, 2, 2],
            vec![node("Clip", &["x", "", "hi"], &["y"], vec![])],
            vec![tv("hi", &[], &[1.0])],
        ))
        .unwrap();
        assert_eq!(
            ops(&m),
            vec![Op::Clip {
                min: None,
                max: Some(1.0)
            }]
        );
        // opset 6: attributes.
        let m = imp(&model_opset(
            [2, 2, 2],
            vec![node(
                "Clip",
                &["x"],
                &["y"],
                vec![af("min", -1.0), af("max", 1.0)],
            )],
            vec![],
            6,
        ))
        .unwrap();
        assert_eq!(
            ops(&m),
            vec![Op::Clip {
                min: Some(-1.0),
                max: Some(1.0)
            }]
        );
    }

    #[test]
    fn unknown_attribute_is_refused() {
        let e = imp(&model(
            [2, 2, 2],
            vec![node("Relu", &["x"], &["y"], vec![ai("foo", 1)])],
            vec![],
        ))
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "unsupported attribute of ONNX operator 'Relu' (node 'Relu_node'): attribute 'foo' is not supported"
        );
        assert!(matches!(e, OnnxError::UnsupportedAttribute { .. }));
    }
}
