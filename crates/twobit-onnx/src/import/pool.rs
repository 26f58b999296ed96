//! MaxPool (pads, ceil_mode, dilations, strides; `storage_order = 0`, no indices output),
//! AveragePool (count_include_pad, ceil_mode) and GlobalAveragePool.
use super::conv::resolve_pads;
use super::ctx::{Ctx, N};
use crate::OnnxError;
use twobit_format::graph::Op;

/// Imports a pooling node.
pub(crate) fn pool(cx: &mut Ctx, n: &N) -> Result<(), OnnxError> {
    n.arity(1, 1)?;
    let x = cx.value(n, 0)?;
    if n.op() == "GlobalAveragePool" {
        n.allow(&[])?;
        cx.push(n, Op::GlobalAvgPool, vec![x])?;
        return Ok(());
    }
    let max = n.op() == "MaxPool";
    if max {
        n.allow(&[
            "auto_pad",
            "ceil_mode",
            "dilations",
            "kernel_shape",
            "pads",
            "storage_order",
            "strides",
        ])?;
        if n.int("storage_order", 0)? != 0 {
            return Err(n.bad("storage_order=1"));
        }
    } else {
        n.allow(&[
            "auto_pad",
            "ceil_mode",
            "count_include_pad",
            "dilations",
            "kernel_shape",
            "pads",
            "strides",
        ])?;
    }
    let k = n
        .ints("kernel_shape")?
        .ok_or_else(|| n.bad("kernel_shape is required"))?;
    let kernel = match k.as_slice() {
        &[h, w] if h > 0 && w > 0 => [h as usize, w as usize],
        _ => return Err(n.bad(format!("kernel_shape {k:?} (2-D only)"))),
    };
    let s = n.usizes("strides", 2, 1)?;
    let d = n.usizes("dilations", 2, 1)?;
    let (strides, dilations) = ([s[0], s[1]], [d[0], d[1]]);
    if !max && dilations != [1, 1] {
        return Err(n.bad(format!("dilations {dilations:?} in average pooling")));
    }
    let ceil_mode = match n.int("ceil_mode", 0)? {
        0 => false,
        1 => true,
        v => return Err(n.bad(format!("ceil_mode={v}"))),
    };
    let shape = cx.shape(n, &x)?;
    let &[_, h, w] = shape.as_slice() else {
        return Err(n.bad(format!("input shape {shape:?} is not [C, H, W]")));
    };
    let pads = resolve_pads(n, [h, w], kernel, strides, dilations)?;
    let op = if max {
        Op::MaxPool {
            kernel,
            strides,
            pads,
            dilations,
            ceil_mode,
        }
    } else {
        Op::AvgPool {
            kernel,
            strides,
            pads,
            ceil_mode,
            count_include_pad: match n.int("count_include_pad", 0)? {
                0 => false,
                1 => true,
                v => return Err(n.bad(format!("count_include_pad={v}"))),
            },
        }
    };
    cx.push(n, op, vec![x])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use crate::OnnxError;
    use twobit_format::graph::Op;

    fn one(op: &str, attrs: Vec<crate::proto::AttributeProto>) -> Result<(Op, usize), OnnxError> {
        let m = imp(&model(
            [2, 7, 7],
            vec![node(op, &["x"], &["y"], attrs)],
            vec![],
        ))?;
        Ok((ops(&m).remove(0), m.arch.unwrap().classes))
    }

    #[test]
    fn max_pool_attributes() {
        let (op, classes) = one(
            "MaxPool",
            vec![
                ais("kernel_shape", &[3, 3]),
                ais("strides", &[2, 2]),
                ais("pads", &[1, 1, 1, 1]),
                ai("ceil_mode", 1),
            ],
        )
        .unwrap();
        assert_eq!(
            op,
            Op::MaxPool {
                kernel: [3, 3],
                strides: [2, 2],
                pads: [1, 1, 1, 1],
                dilations: [1, 1],
                ceil_mode: true
            }
        );
        assert_eq!(classes, 2 * 4 * 4);
        let e = one(
            "MaxPool",
            vec![ais("kernel_shape", &[2, 2]), ai("storage_order", 1)],
        );
        assert!(matches!(e, Err(OnnxError::UnsupportedAttribute { .. })));
        let e = one("MaxPool", vec![]);
        assert!(matches!(e, Err(OnnxError::UnsupportedAttribute { .. })));
    }

    #[test]
    fn average_pool_attributes() {
        let (op, _) = one(
            "AveragePool",
            vec![
                ais("kernel_shape", &[2, 2]),
                ai("count_include_pad", 1),
                as_("auto_pad", "SAME_UPPER"),
            ],
        )
        .unwrap();
        assert_eq!(
            op,
            Op::AvgPool {
                kernel: [2, 2],
                strides: [1, 1],
                pads: [0, 0, 1, 1],
                ceil_mode: false,
                count_include_pad: true
            }
        );
        let (op, classes) = one("GlobalAveragePool", vec![]).unwrap();
        assert_eq!((op, classes), (Op::GlobalAvgPool, 2));
    }
}
