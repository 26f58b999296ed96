//! Conv (2-D): weight and optional bias from initializers; `auto_pad` resolved to explicit
//! pads from the known input shape.
use super::ctx::{Ctx, N};
use crate::OnnxError;
use twobit_format::graph::Op;

/// Explicit pads `[top, left, bottom, right]` for `auto_pad` (`NOTSET` uses `pads`).
pub(crate) fn resolve_pads(
    n: &N,
    hw: [usize; 2],
    kernel: [usize; 2],
    strides: [usize; 2],
    dilations: [usize; 2],
) -> Result<[usize; 4], OnnxError> {
    let auto = n.string("auto_pad")?.unwrap_or_else(|| "NOTSET".into());
    let explicit = n.usizes("pads", 4, 0)?;
    let explicit = [explicit[0], explicit[1], explicit[2], explicit[3]];
    match auto.as_str() {
        "NOTSET" => Ok(explicit),
        "VALID" => Ok([0; 4]),
        "SAME_UPPER" | "SAME_LOWER" => {
            let mut pads = [0usize; 4];
            for a in 0..2 {
                if strides[a] == 0 {
                    return Err(n.bad("zero stride"));
                }
                let out = hw[a].div_ceil(strides[a]);
                let span = dilations[a]
                    .checked_mul(kernel[a].saturating_sub(1))
                    .and_then(|s| s.checked_add(1));
                let need = (out.saturating_sub(1))
                    .checked_mul(strides[a])
                    .zip(span)
                    .and_then(|(x, s)| x.checked_add(s))
                    .ok_or_else(|| n.bad("kernel/stride too large"))?;
                let total = need.saturating_sub(hw[a]);
                let (small, big) = (total / 2, total - total / 2);
                (pads[a], pads[a + 2]) = if auto == "SAME_UPPER" {
                    (small, big)
                } else {
                    (big, small)
                };
            }
            Ok(pads)
        }
        other => Err(n.bad(format!("auto_pad '{other}'"))),
    }
}

/// Imports a Conv node.
pub(crate) fn conv(cx: &mut Ctx, n: &N) -> Result<(), OnnxError> {
    n.allow(&[
        "auto_pad",
        "dilations",
        "group",
        "kernel_shape",
        "pads",
        "strides",
    ])?;
    n.arity(2, 3)?;
    let x = cx.value(n, 0)?;
    let w = cx.constant(n, 1)?;
    let &[o, _, kh, kw] = w.dims.as_slice() else {
        return Err(n.bad(format!("weight shape {:?}: only 2-D convolutions", w.dims)));
    };
    if let Some(k) = n.ints("kernel_shape")? {
        if k != [kh as i64, kw as i64] {
            return Err(n.bad(format!(
                "kernel_shape {k:?} disagrees with the weight {:?}",
                w.dims
            )));
        }
    }
    let group = usize::try_from(n.int("group", 1)?)
        .ok()
        .filter(|&g| g > 0)
        .ok_or_else(|| n.bad("group must be positive"))?;
    let s = n.usizes("strides", 2, 1)?;
    let d = n.usizes("dilations", 2, 1)?;
    let (strides, dilations) = ([s[0], s[1]], [d[0], d[1]]);
    let shape = cx.shape(n, &x)?;
    let &[_, h, wd] = shape.as_slice() else {
        return Err(n.bad(format!("input shape {shape:?} is not [C, H, W]")));
    };
    let pads = resolve_pads(n, [h, wd], [kh, kw], strides, dilations)?;
    let weight = cx.const_tensor(n, 1)?;
    let bias = match n.input(2) {
        Some(_) => {
            let b = cx.constant(n, 2)?;
            if b.vals.len() != o {
                return Err(n.bad(format!("bias shape {:?} for {o} outputs", b.dims)));
            }
            let hint = n.input(2).unwrap_or_default().to_string();
            let vals = b.f32s();
            Some(cx.add_tensor(&hint, vec![o], vals)?)
        }
        None => None,
    };
    let op = Op::Conv {
        weight,
        bias,
        strides,
        pads,
        dilations,
        group,
    };
    cx.push(n, op, vec![x])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use crate::OnnxError;
    use twobit_format::graph::Op;

    fn conv_model(attrs: Vec<crate::proto::AttributeProto>, w: &[i64], chw: [i64; 3]) -> Vec<u8> {
        model(
            chw,
            vec![node("Conv", &["x", "w", "b"], &["y"], attrs)],
            vec![tf("w", w), tf("b", &[w[0]])],
        )
    }

    #[test]
    fn explicit_attributes() {
        let m = imp(&conv_model(
            vec![
                ais("strides", &[2, 1]),
                ais("pads", &[1, 0, 2, 1]),
                ais("dilations", &[1, 2]),
                ai("group", 2),
                ais("kernel_shape", &[3, 3]),
            ],
            &[4, 2, 3, 3],
            [4, 9, 9],
        ))
        .unwrap();
        let Op::Conv {
            strides,
            pads,
            dilations,
            group,
            bias,
            weight,
        } = &ops(&m)[0]
        else {
            panic!()
        };
        assert_eq!(
            (*strides, *pads, *dilations, *group),
            ([2, 1], [1, 0, 2, 1], [1, 2], 2)
        );
        assert_eq!(weight, "w");
        assert_eq!(bias.as_deref(), Some("b"));
        assert_eq!(m.arch.unwrap().classes, 4 * 5 * 6);
    }

    #[test]
    fn auto_pad_same_upper_and_lower() {
        for (mode, want) in [("SAME_UPPER", [0, 0, 1, 1]), ("SAME_LOWER", [1, 1, 0, 0])] {
            // 8 wide, stride 2, kernel 2: out 4, needs (4-1)*2+2-8 = 0; kernel 3: 1 pad.
            let m = imp(&conv_model(
                vec![as_("auto_pad", mode), ais("strides", &[2, 2])],
                &[2, 1, 3, 3],
                [1, 8, 8],
            ))
            .unwrap();
            let Op::Conv { pads, .. } = &ops(&m)[0] else {
                panic!()
            };
            assert_eq!(*pads, want, "{mode}");
        }
        let m = imp(&conv_model(
            vec![as_("auto_pad", "VALID")],
            &[2, 1, 3, 3],
            [1, 8, 8],
        ))
        .unwrap();
        assert_eq!(m.arch.unwrap().classes, 2 * 6 * 6);
    }

    #[test]
    fn conv1d_and_bad_attributes_are_refused() {
        let e = imp(&model(
            [1, 8, 8],
            vec![node("Conv", &["x", "w"], &["y"], vec![])],
            vec![tf("w", &[2, 1, 3])],
        ))
        .unwrap_err();
        assert!(matches!(e, OnnxError::UnsupportedAttribute { .. }), "{e}");
        let e = imp(&conv_model(
            vec![as_("auto_pad", "WEIRD")],
            &[2, 1, 3, 3],
            [1, 8, 8],
        ))
        .unwrap_err();
        assert!(e.to_string().contains("Conv_node"), "{e}");
        let e = imp(&conv_model(vec![ai("group", 0)], &[2, 1, 3, 3], [1, 8, 8])).unwrap_err();
        assert!(matches!(e, OnnxError::UnsupportedAttribute { .. }), "{e}");
    }

    #[test]
    fn missing_weight() {
        let e = imp(&model(
            [1, 8, 8],
            vec![node("Conv", &["x", "nope"], &["y"], vec![])],
            vec![],
        ))
        .unwrap_err();
        assert!(matches!(e, OnnxError::MissingInitializer { ref name, .. } if name == "nope"));
    }
}
