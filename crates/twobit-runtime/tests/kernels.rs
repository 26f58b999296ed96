//! Packed kernels (AVX2 and portable) against the plain reference on random shapes.
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use twobit_quant::Levels;
use twobit_runtime::kernels::{
    reference_matmul, Kernel, PackedMatrix, RowOffsets, TileInput, TILE,
};
use twobit_runtime::ops::{conv2d_f32, conv2d_packed, ConvGeom};

fn pack(codes: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; codes.len().div_ceil(4)];
    for (i, &c) in codes.iter().enumerate() {
        p[i / 4] |= c << (2 * (i % 4));
    }
    p
}

fn levels(rng: &mut StdRng, quat: bool) -> Levels {
    let mut v = if quat {
        [
            -rng.random_range(0.5..2.0f32),
            rng.random_range(-0.3..0.3f32),
            rng.random_range(0.4..1.0f32),
            rng.random_range(1.1..2.0f32),
        ]
    } else {
        let p = rng.random_range(0.1..2.0f32);
        [-rng.random_range(0.1..2.0f32), 0.0, p, p]
    };
    v.sort_by(f32::total_cmp);
    Levels {
        values: v,
        thresholds: [-0.5, 0.0, 0.5],
    }
}

/// Random codes: ternary uses 0..=2, quaternary 0..=3; some rows all zero-code.
fn random_matrix(
    rng: &mut StdRng,
    rows: usize,
    cols: usize,
    quat: bool,
    per_channel: bool,
) -> (Vec<u8>, Vec<Levels>) {
    let zero_row = rng.random_range(0..rows);
    let codes: Vec<u8> = (0..rows * cols)
        .map(|i| {
            if i / cols == zero_row {
                1
            } else if quat {
                rng.random_range(0..4)
            } else {
                rng.random_range(0..3)
            }
        })
        .collect();
    let n = if per_channel { rows } else { 1 };
    let lv = (0..n).map(|_| levels(rng, quat)).collect();
    (pack(&codes), lv)
}

fn close(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let tol = 1e-3 * (1.0 + y.abs());
        assert!(
            (x - y).abs() <= tol,
            "{what}: element {i}: {x} vs reference {y}"
        );
    }
}

fn kernels() -> Vec<Kernel> {
    Kernel::all_available()
}

#[test]
fn matmul_matches_reference_on_ragged_shapes() {
    let mut rng = StdRng::seed_from_u64(1);
    for case in 0..40 {
        // Up to 260 rows: batched products split rows into chunks of at least 64.
        let rows = if case % 5 == 4 {
            rng.random_range(129..260)
        } else {
            rng.random_range(1..70)
        };
        let cols = rng.random_range(1..300);
        let batch = [1, 2, 3, 7, 8, 9, 31, 33, 70][case % 9];
        let (quat, pc) = (case % 2 == 1, case % 4 >= 2);
        let (codes, lv) = random_matrix(&mut rng, rows, cols, quat, pc);
        let x: Vec<f32> = (0..batch * cols)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let want = reference_matmul(rows, cols, &codes, &lv, &x, batch);
        let m = PackedMatrix::from_codes(rows, cols, &codes, &lv).unwrap();
        for k in kernels() {
            let mut y = vec![0f32; batch * rows];
            m.matmul(k, &x, batch, &mut y);
            close(
                &y,
                &want,
                &format!("{k:?} case {case} [{rows}x{cols}] batch {batch}"),
            );
        }
    }
}

#[test]
fn gemv_and_tile_paths_agree_with_reference() {
    let mut rng = StdRng::seed_from_u64(2);
    for &(rows, cols) in &[(5, 1), (3, 7), (9, 33), (17, 65), (4, 257), (33, 1000)] {
        for quat in [false, true] {
            let (codes, lv) = random_matrix(&mut rng, rows, cols, quat, true);
            let m = PackedMatrix::from_codes(rows, cols, &codes, &lv).unwrap();
            let x: Vec<f32> = (0..cols).map(|_| rng.random_range(-2.0..2.0)).collect();
            let want = reference_matmul(rows, cols, &codes, &lv, &x, 1);
            let kpad = cols.div_ceil(8) * 8;
            for k in kernels() {
                let mut y = vec![0f32; rows];
                m.gemv(k, &x, &mut y);
                close(&y, &want, &format!("gemv {k:?} {rows}x{cols}"));
                // The same vector in column 5 of a tile; other columns zero.
                let mut xt = vec![0f32; kpad * TILE];
                for (i, v) in x.iter().enumerate() {
                    xt[i * TILE + 5] = *v;
                }
                let koff = RowOffsets::dense(kpad);
                let xt = TileInput::dense(&xt, &koff);
                // Both block layouts (AVX-512 switches to 5-column groups for many rows),
                // sharing one scratch: a kernel must not depend on what a call with the other
                // layout left in it.
                let mut tables = Vec::new();
                for rows_per_pass in [usize::MAX, rows] {
                    let words = m.block_words(k, rows_per_pass);
                    let what = format!("{k:?} {rows}x{cols} rows/pass {rows_per_pass}");
                    let mut out = vec![0f32; rows * TILE];
                    m.tile_matmul(k, 0..rows, &words, &xt, &mut tables, &mut out);
                    let col: Vec<f32> = (0..rows).map(|o| out[o * TILE + 5]).collect();
                    close(&col, &want, &format!("tile {what}"));
                    assert!((0..rows)
                        .all(|o| out[o * TILE] == 0.0 || lv.iter().any(|l| l.values[1] != 0.0)));
                    // A range of rows gives those rows.
                    if rows >= 3 {
                        let r = 1..rows - 1;
                        let mut part = vec![0f32; r.len() * TILE];
                        m.tile_matmul(k, r.clone(), &words, &xt, &mut tables, &mut part);
                        let col: Vec<f32> = (0..r.len()).map(|i| part[i * TILE + 5]).collect();
                        close(&col, &want[r], &format!("tile rows {what}"));
                    }
                }
            }
        }
    }
}

#[test]
fn dequantize_matches_levels_and_memory_is_two_bits() {
    let mut rng = StdRng::seed_from_u64(3);
    let (rows, cols) = (64, 1152);
    let (codes, lv) = random_matrix(&mut rng, rows, cols, true, true);
    let m = PackedMatrix::from_codes(rows, cols, &codes, &lv).unwrap();
    let d = m.dequantize();
    for (i, v) in d.iter().enumerate() {
        let c = (codes[i / 4] >> (2 * (i % 4))) & 3;
        let want = lv[i / cols].values[c as usize];
        assert!(
            (v - want).abs() <= 1e-6 * (1.0 + want.abs()),
            "weight {i}: {v} vs {want}"
        );
    }
    assert!(
        m.weight_bytes() * 15 <= rows * cols * 4,
        "{} bytes",
        m.weight_bytes()
    );
}

#[test]
fn bad_codes_and_levels_are_errors() {
    let l = Levels {
        values: [-1.0, 0.0, 1.0, 1.0],
        thresholds: [-0.5, 0.5, f32::INFINITY],
    };
    assert!(
        PackedMatrix::from_codes(3, 5, &[0u8; 3], &[l]).is_err(),
        "short codes"
    );
    assert!(
        PackedMatrix::from_codes(3, 5, &[0u8; 4], &[l, l]).is_err(),
        "2 tables for 3 rows"
    );
    let mut nan = l;
    nan.values[0] = f32::NAN;
    assert!(
        PackedMatrix::from_codes(3, 5, &[0u8; 4], &[nan]).is_err(),
        "NaN level"
    );
    assert!(PackedMatrix::from_codes(0, 5, &[], &[l]).is_err(), "empty");
}

#[test]
fn packed_conv_matches_fp32_conv() {
    let mut rng = StdRng::seed_from_u64(4);
    for &(cin, o, h, w, k, s, p, batch) in &[
        (3, 8, 9, 7, 3, 1, 1, 2),
        (5, 13, 11, 11, 3, 2, 1, 3),
        (2, 4, 6, 5, 1, 1, 0, 1),
        (4, 6, 8, 8, 5, 1, 2, 2),
        (3, 5, 13, 10, 3, 3, 2, 2),
        (2, 7, 7, 9, 4, 2, 0, 1),
        (1, 3, 40, 3, 3, 1, 1, 2),
        // Widths whose tiles read whole 16-lane runs (16, 32), two 8-lane runs (8) or a
        // mix (24) without gathers.
        (3, 6, 16, 16, 3, 1, 1, 1),
        (2, 3, 32, 32, 3, 1, 1, 1),
        (4, 5, 8, 8, 3, 1, 1, 2),
        (3, 4, 5, 24, 3, 1, 1, 1),
        // 256 output channels and more: the AVX-512 kernel's 5-column groups.
        (3, 260, 6, 5, 3, 1, 1, 1),
        (40, 256, 5, 5, 3, 1, 1, 1),
        (13, 257, 4, 7, 3, 2, 1, 2),
    ] {
        let g = ConvGeom::square(cin, (h, w), k, s, p);
        let cols = cin * k * k;
        for quat in [false, true] {
            let (codes, lv) = random_matrix(&mut rng, o, cols, quat, quat);
            let m = PackedMatrix::from_codes(o, cols, &codes, &lv).unwrap();
            let x: Vec<f32> = (0..batch * cin * h * w)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            let scale: Vec<f32> = (0..o).map(|_| rng.random_range(0.5..1.5)).collect();
            let shift: Vec<f32> = (0..o).map(|_| rng.random_range(-0.5..0.5)).collect();
            // Quaternary cases also check a fused ReLU.
            let clamp = (if quat { 0.0 } else { f32::NEG_INFINITY }, f32::INFINITY);
            let want = conv2d_f32(&m.dequantize(), o, &g, &x, batch, &scale, &shift, clamp);
            close(
                &want,
                &naive_conv(&m.dequantize(), o, &g, &x, batch, &scale, &shift)
                    .iter()
                    .map(|v| if quat { v.max(0.0) } else { *v })
                    .collect::<Vec<_>>(),
                &format!("fp32 conv {g:?}"),
            );
            for kern in kernels() {
                let got = conv2d_packed(
                    std::slice::from_ref(&m),
                    &g,
                    kern,
                    &x,
                    batch,
                    &scale,
                    &shift,
                    clamp,
                );
                close(&got, &want, &format!("conv {kern:?} {g:?}"));
            }
        }
    }
}

/// Direct convolution from the definition, independent of im2col.
fn naive_conv(
    w: &[f32],
    o: usize,
    g: &ConvGeom,
    x: &[f32],
    batch: usize,
    scale: &[f32],
    shift: &[f32],
) -> Vec<f32> {
    let (oh, ow) = (g.oh(), g.ow());
    let mut y = vec![0f32; batch * o * oh * ow];
    for b in 0..batch {
        for oc in 0..o {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut s = 0f32;
                    for ci in 0..g.cin {
                        for ky in 0..g.kh {
                            for kx in 0..g.kw {
                                let iy = (oy * g.strides[0] + ky) as isize - g.pads[0] as isize;
                                let ix = (ox * g.strides[1] + kx) as isize - g.pads[1] as isize;
                                if iy >= 0 && ix >= 0 && (iy as usize) < g.h && (ix as usize) < g.w
                                {
                                    let xv = x[((b * g.cin + ci) * g.h + iy as usize) * g.w
                                        + ix as usize];
                                    s += w[((oc * g.cin + ci) * g.kh + ky) * g.kw + kx] * xv;
                                }
                            }
                        }
                    }
                    y[((b * o + oc) * oh + oy) * ow + ox] = scale[oc] * s + shift[oc];
                }
            }
        }
    }
    y
}
