//! Int8-activation kernels against the plain int8 reference (weights decoded from the file
//! layout, sums in f64) on ragged shapes, through every kernel the CPU supports; int8
//! convolutions against the fp32 convolution of the same quantized input; whole networks
//! with int8 activations against fp32.
mod common;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use twobit_quant::Levels;
use twobit_runtime::kernels::int8::{quantize, quantize_with, row_scale};
use twobit_runtime::kernels::{
    reference_matmul_i8, Kernel, PackedMatrix, RowOffsets, TileInput, TILE,
};
use twobit_runtime::ops::{
    conv2d_f32, conv2d_packed_i8, conv2d_packed_i8_gemm, conv2d_packed_i8_perm, ConvGeom,
};

fn pack(codes: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; codes.len().div_ceil(4)];
    for (i, &c) in codes.iter().enumerate() {
        p[i / 4] |= c << (2 * (i % 4));
    }
    p
}

/// Ternary asymmetric (`{-a, 0, b}`), the patent's quaternary (zero and three levels) or
/// four free levels (no zero).
fn levels(rng: &mut StdRng, kind: usize) -> Levels {
    let (a, b) = (rng.random_range(0.1..2.0f32), rng.random_range(0.1..2.0f32));
    let values = match kind {
        0 => [-a, 0.0, b, b],
        1 => [-a - b, -a, 0.0, b],
        _ => [-a - b, -0.3 * a, 0.2 * b, a + b],
    };
    Levels {
        values,
        thresholds: [-0.5, 0.0, 0.5],
    }
}

/// Codes: ternary 0..=2 with 60 % zeros (code 1), else all four; one all-zero row.
fn random_matrix(
    rng: &mut StdRng,
    rows: usize,
    cols: usize,
    kind: usize,
    per_channel: bool,
) -> (Vec<u8>, Vec<Levels>) {
    let zero_row = rng.random_range(0..rows);
    let codes: Vec<u8> = (0..rows * cols)
        .map(|i| match (i / cols == zero_row, kind) {
            (true, _) => 1,
            (false, 0) => [0, 1, 1, 1, 2][rng.random_range(0..5)],
            _ => rng.random_range(0..4),
        })
        .collect();
    let n = if per_channel { rows } else { 1 };
    (pack(&codes), (0..n).map(|_| levels(rng, kind)).collect())
}

fn close(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= 1e-5 * (1.0 + scale),
            "{what}: element {i}: {x} vs reference {y}"
        );
    }
}

/// Each sample quantized as the kernels do: its int8 values and scale.
fn quantized(x: &[f32], cols: usize) -> (Vec<i8>, Vec<f32>) {
    let mut q = vec![0i8; x.len()];
    let s = x
        .chunks(cols)
        .zip(q.chunks_mut(cols))
        .map(|(x, q)| quantize(x, q))
        .collect();
    (q, s)
}

#[test]
fn quantize_rounds_and_clamps() {
    let x = [0.0, 1.0, -1.0, 0.5, 0.25, -0.004, f32::NAN];
    let mut q = [0i8; 7];
    let s = quantize(&x, &mut q);
    assert_eq!(s, 1.0 / 127.0);
    assert_eq!(&q[..6], &[0, 127, -127, 64, 32, -1]);
    assert_eq!(row_scale(&[0.0; 4]), 0.0);
    quantize_with(&[3.0, -3.0], 0.0, &mut q[..2]);
    assert_eq!(&q[..2], &[0, 0]);
}

#[test]
fn matmul_i8_matches_reference_on_ragged_shapes() {
    let mut rng = StdRng::seed_from_u64(11);
    for case in 0..36 {
        let rows = if case % 5 == 4 {
            rng.random_range(129..260)
        } else {
            rng.random_range(1..70)
        };
        let cols = rng.random_range(1..600);
        let batch = [1, 2, 7, 8, 9, 31, 33, 70, 3][case % 9];
        let (kind, pc) = (case % 3, case % 4 >= 2);
        let (codes, lv) = random_matrix(&mut rng, rows, cols, kind, pc);
        let x: Vec<f32> = (0..batch * cols)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let (q, s) = quantized(&x, cols);
        let want = reference_matmul_i8(rows, cols, &codes, &lv, &q, &s);
        let m = PackedMatrix::from_codes(rows, cols, &codes, &lv).unwrap();
        for k in Kernel::all_available() {
            let mut y = vec![0f32; batch * rows];
            m.matmul_i8(k, &x, batch, &mut y);
            close(
                &y,
                &want,
                &format!("{k:?} case {case} [{rows}x{cols}] batch {batch} kind {kind}"),
            );
        }
    }
}

#[test]
fn gemv_i8_and_tile_i8_agree_with_reference() {
    let mut rng = StdRng::seed_from_u64(12);
    for &(rows, cols) in &[
        (5, 1),
        (3, 7),
        (9, 33),
        (17, 65),
        (4, 257),
        (33, 1000),
        (7, 129),
        // Over `SMALL_GEMV` weights: the GEMV splits its rows over the thread pool.
        (301, 1000),
    ] {
        for kind in 0..3 {
            let (codes, lv) = random_matrix(&mut rng, rows, cols, kind, true);
            let m = PackedMatrix::from_codes(rows, cols, &codes, &lv).unwrap();
            let q: Vec<i8> = (0..cols).map(|_| rng.random_range(-127..=127)).collect();
            let want = reference_matmul_i8(rows, cols, &codes, &lv, &q, &[0.5]);
            let kpad = cols.div_ceil(8) * 8;
            for k in Kernel::all_available() {
                let mut qp = vec![0i8; m.gemv_i8_len()];
                qp[..cols].copy_from_slice(&q);
                let mut y = vec![0f32; rows];
                m.gemv_i8(k, &qp, 0.5, &mut y);
                close(&y, &want, &format!("gemv {k:?} {rows}x{cols} kind {kind}"));
                // The vector in lane 5 of a tile, other lanes random: rows past `cols` hold
                // garbage, which the kernels must ignore.
                let mut xt: Vec<i8> = (0..kpad * TILE)
                    .map(|_| rng.random_range(-127..=127))
                    .collect();
                for (i, v) in q.iter().enumerate() {
                    xt[i * TILE + 5] = *v;
                }
                let koff = RowOffsets::dense(kpad);
                let input = TileInput::dense(&xt, &koff);
                let mut tables = Vec::new();
                let (mut out, mut total) = (vec![0f32; rows * TILE], [0i32; TILE]);
                m.tile_i8(
                    k,
                    0..rows,
                    &m.int8_offsets(),
                    &input,
                    &mut tables,
                    &mut out,
                    &mut total,
                );
                let t5: i32 = q.iter().map(|&v| v as i32).sum();
                assert_eq!(total[5], t5, "tile total {k:?}");
                let col: Vec<f32> = (0..rows)
                    .map(|o| {
                        let l = lv[o].values;
                        0.5 * (out[o * TILE + 5] + l[1] * total[5] as f32)
                    })
                    .collect();
                close(
                    &col,
                    &want,
                    &format!("tile {k:?} {rows}x{cols} kind {kind}"),
                );
            }
        }
    }
}

/// Int8 convolution = fp32 convolution of the per-image dequantized input.
fn conv_i8_case(
    seed: u64,
    cin: usize,
    (h, w): (usize, usize),
    o: usize,
    geom: impl Fn(ConvGeom) -> ConvGeom,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let g = geom(ConvGeom::square(cin, (h, w), 3, 1, 1));
    for kind in 0..3 {
        let og = o / g.group;
        let m: Vec<PackedMatrix> = (0..g.group)
            .map(|_| {
                let (codes, lv) = random_matrix(&mut rng, og, g.k(), kind, kind != 1);
                PackedMatrix::from_codes(og, g.k(), &codes, &lv).unwrap()
            })
            .collect();
        let wf: Vec<f32> = m.iter().flat_map(|m| m.dequantize()).collect();
        let batch = 3;
        let x: Vec<f32> = (0..batch * cin * h * w)
            .map(|_| rng.random_range(-1.0..2.0))
            .collect();
        let (q, s) = quantized(&x, cin * h * w);
        let xd: Vec<f32> = q
            .iter()
            .enumerate()
            .map(|(i, &v)| v as f32 * s[i / (cin * h * w)])
            .collect();
        let scale: Vec<f32> = (0..o).map(|_| rng.random_range(0.5..1.5)).collect();
        let shift: Vec<f32> = (0..o).map(|_| rng.random_range(-0.5..0.5)).collect();
        let clamp = (-0.7, 3.0);
        let want = conv2d_f32(&wf, o, &g, &xd, batch, &scale, &shift, clamp);
        let gm: Vec<_> = m.iter().map(|m| m.int8_gemm()).collect();
        for k in Kernel::all_available() {
            let got = conv2d_packed_i8(&m, &g, k, &x, batch, &scale, &shift, clamp);
            close(&got, &want, &format!("conv {k:?} {g:?} kind {kind}"));
            let got = conv2d_packed_i8_gemm(&gm, &g, k, &x, batch, &scale, &shift, clamp);
            close(&got, &want, &format!("conv GEMM {k:?} {g:?} kind {kind}"));
            // The `vpermw` path (one group): AVX-512 where the CPU has it, else portable.
            if g.group == 1 {
                let pm = m[0].int8_perm(cin, g.kh, g.kw).unwrap();
                let got = conv2d_packed_i8_perm(&pm, &g, k, &x, batch, &scale, &shift, clamp);
                close(&got, &want, &format!("conv perm {k:?} {g:?} kind {kind}"));
            }
        }
    }
}

#[test]
fn conv_i8_matches_fp32_on_quantized_input() {
    // Lane layouts: 32-wide rows (one load), 16- and 8-wide (runs), odd widths (scalar).
    conv_i8_case(1, 3, (32, 32), 16, |g| g);
    conv_i8_case(2, 37, (16, 16), 20, |g| g);
    conv_i8_case(3, 20, (8, 8), 9, |g| g);
    conv_i8_case(4, 5, (13, 11), 7, |g| ConvGeom {
        strides: [2, 1],
        pads: [1, 0, 2, 1],
        ..g
    });
    conv_i8_case(5, 8, (12, 7), 12, |g| ConvGeom {
        group: 4,
        dilations: [2, 1],
        ..g
    });
    conv_i8_case(6, 80, (6, 7), 8, |g| ConvGeom { group: 4, ..g });
    conv_i8_case(7, 64, (9, 9), 3, |g| ConvGeom { pads: [0; 4], ..g });
    // Perm: 70 rows (a 32-row block left after the pairs), 11 channels (groups of 5 with
    // a short last), dilation, 63 positions (a short last task).
    conv_i8_case(10, 11, (7, 9), 70, |g| ConvGeom {
        dilations: [2, 1],
        ..g
    });
    // GEMM tiles: more than one k chunk (cin·9 > 256), short last tiles, 1x1 kernels.
    conv_i8_case(8, 40, (10, 13), 13, |g| g);
    conv_i8_case(9, 7, (5, 3), 5, |g| ConvGeom {
        kh: 1,
        kw: 1,
        pads: [0; 4],
        ..g
    });
}

/// A network of packed layers runs with int8 activations: its first layer exactly as the
/// fp32 runtime on the per-image quantized input; the whole network close to fp32.
#[test]
fn runtime_int8_activations() {
    use twobit_runtime::{Activations, Runtime};
    let mut rng = StdRng::seed_from_u64(21);
    let (first, whole) = common::conv_net(&mut rng);
    let batch = 40;
    let x: Vec<f32> = (0..batch * 300)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let (q, s) = quantized(&x, 300);
    let xd: Vec<f32> = q
        .iter()
        .enumerate()
        .map(|(i, &v)| v as f32 * s[i / 300])
        .collect();
    for k in Kernel::all_available() {
        let mut rt = Runtime::from_model(&first).unwrap();
        rt.set_kernel(k);
        let (want_q, want_f) = (rt.forward(&xd, batch), rt.forward(&x, batch));
        rt.set_activations(Activations::Int8);
        assert_eq!(rt.activations(), Activations::Int8);
        // The layer's measured path: int8 (tile or GEMM) quantizes, fp32 activations not.
        let paths = rt.int8_conv_paths();
        assert_eq!(paths.len(), 1);
        let want = if paths[0].1 == "f32" {
            &want_f
        } else {
            &want_q
        };
        close(
            &rt.forward(&x, batch),
            want,
            &format!("first layer {k:?} {paths:?}"),
        );
        let mut rt = Runtime::from_model(&whole).unwrap();
        rt.set_kernel(k);
        let want = rt.forward(&x, batch);
        rt.set_activations(Activations::Int8);
        for b in [1, batch] {
            let got = rt.forward(&x[..b * 300], b);
            let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
            let err = got
                .iter()
                .zip(&want)
                .fold(0f32, |m, (g, w)| m.max((g - w).abs()));
            assert!(
                err <= 0.03 * scale,
                "{k:?} batch {b}: max error {err} of {scale}"
            );
        }
    }
}

/// A grouped convolution asked for the perm path (one group only) gets the tile, with
/// what the tile needs.
#[test]
fn perm_path_falls_back_for_groups() {
    use twobit_runtime::kernels::int8::ConvPath;
    use twobit_runtime::ops::int8_conv_layer_on;
    let mut rng = StdRng::seed_from_u64(41);
    let g = ConvGeom {
        group: 2,
        ..ConvGeom::square(4, (5, 5), 3, 1, 1)
    };
    let m: Vec<PackedMatrix> = (0..2)
        .map(|_| {
            let (codes, lv) = random_matrix(&mut rng, 3, g.k(), 0, true);
            PackedMatrix::from_codes(3, g.k(), &codes, &lv).unwrap()
        })
        .collect();
    let l = int8_conv_layer_on(&m, &g, ConvPath::Perm);
    assert_eq!(l.conv, ConvPath::Tile);
    assert!(l.perm.is_empty() && l.offsets.len() == 2);
    let l = int8_conv_layer_on(
        &m[..1],
        &ConvGeom {
            group: 1,
            cin: 2,
            ..g
        },
        ConvPath::Perm,
    );
    assert_eq!(l.conv, ConvPath::Perm);
    assert!(l.perm.len() == 1 && l.offsets.is_empty());
}

/// Every convolution path a runtime can choose gives the same convolution through
/// `conv2d_packed_i8_layer`, and the measured set-up keeps only what its path needs.
#[test]
fn conv_layer_paths_agree() {
    use twobit_runtime::kernels::int8::{ConvPath, Int8Layer};
    use twobit_runtime::ops::{conv2d_packed, conv2d_packed_i8_layer, int8_conv_layer};
    let mut rng = StdRng::seed_from_u64(31);
    let g = ConvGeom::square(6, (9, 11), 3, 1, 1);
    let o = 10;
    let (codes, lv) = random_matrix(&mut rng, o, g.k(), 0, true);
    let m = [PackedMatrix::from_codes(o, g.k(), &codes, &lv).unwrap()];
    let batch = 2;
    let x: Vec<f32> = (0..batch * 6 * 99)
        .map(|_| rng.random_range(-1.0..2.0))
        .collect();
    let (scale, shift) = (vec![1.5f32; o], vec![0.1f32; o]);
    let clamp = (0.0, f32::INFINITY);
    for k in Kernel::all_available() {
        let want_q = conv2d_packed_i8(&m, &g, k, &x, batch, &scale, &shift, clamp);
        let want_f = conv2d_packed(&m, &g, k, &x, batch, &scale, &shift, clamp);
        for conv in [
            ConvPath::Tile,
            ConvPath::Gemm,
            ConvPath::F32,
            ConvPath::Perm,
        ] {
            let l = Int8Layer {
                offsets: vec![m[0].int8_offsets()],
                gemm: vec![m[0].int8_gemm()],
                perm: m[0].int8_perm(g.cin, g.kh, g.kw).into_iter().collect(),
                conv,
                gemv_below: 8,
                f32_from: usize::MAX,
                act_scale: Default::default(),
            };
            let got = conv2d_packed_i8_layer(&m, &l, &g, k, &x, batch, &scale, &shift, clamp);
            let want = if conv == ConvPath::F32 {
                &want_f
            } else {
                &want_q
            };
            close(&got, want, &format!("{k:?} {conv:?}"));
        }
        let l = int8_conv_layer(&m, &g, k);
        assert_eq!(!l.offsets.is_empty(), l.conv == ConvPath::Tile, "{k:?}");
        assert_eq!(!l.gemm.is_empty(), l.conv == ConvPath::Gemm, "{k:?}");
        assert_eq!(!l.perm.is_empty(), l.conv == ConvPath::Perm, "{k:?}");
    }
}
