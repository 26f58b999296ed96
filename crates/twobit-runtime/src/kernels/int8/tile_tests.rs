//! Tests of the AVX-512 tile kernel's fused output (`tile_i8_affine`): streaming stores
//! (large outputs) write exactly what normal stores write.
use super::*;
use crate::kernels::Kernel;
use crate::kernels::{RowOffsets, TileInput};
use twobit_quant::Levels;

/// One tile through the affine into a 64-byte aligned output, once with `stream` and once
/// without: whole rows take the streaming stores, a short tile the masked ones, and both
/// must agree bit for bit; the first blocks' outputs start from zero (no stale values).
#[test]
fn streaming_stores_write_what_normal_stores_write() {
    if !Kernel::Avx512.available() {
        eprintln!("SKIPPED streaming_stores_write_what_normal_stores_write: no AVX-512 here");
        return;
    }
    let mut s = 11u64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    // 1 block, 2 blocks (one pair), 3 blocks (a second pair that adds to the first), and
    // a short last block.
    for (rows, cols) in [(5usize, 100usize), (37, 256), (9, 300), (20, 700)] {
        for quat in [false, true] {
            let codes: Vec<u8> = (0..(rows * cols).div_ceil(4))
                .map(|_| {
                    if quat {
                        next() as u8
                    } else {
                        [0x00u8, 0x45, 0x61, 0x86][next() as usize % 4]
                    }
                })
                .collect();
            let levels: Vec<Levels> = (0..rows)
                .map(|r| Levels {
                    values: [
                        -0.5 - r as f32 * 0.01,
                        0.0,
                        0.75,
                        if quat { 1.5 } else { 0.75 },
                    ],
                    thresholds: [0.0; 3],
                })
                .collect();
            let m = PackedMatrix::from_codes(rows, cols, &codes, &levels).unwrap();
            let offs = m.int8_offsets();
            let kpad = cols.div_ceil(8) * 8;
            let x: Vec<i8> = (0..kpad * TILE).map(|_| (next() % 255) as i8).collect();
            let koff = RowOffsets::dense(kpad);
            let input = TileInput::dense(&x, &koff);
            let (scale, shift): (Vec<f32>, Vec<f32>) = (0..rows)
                .map(|r| (0.5 + r as f32 * 0.03, r as f32 * 0.1 - 1.0))
                .unzip();
            for width in [TILE, 21] {
                let stride = 3 * TILE;
                // The tile through the affine on `kernel` into a 64-byte aligned output;
                // the rows' `width` outputs.
                let run = |kernel: Kernel, stream: bool| {
                    let mut buf = vec![f32::NAN; rows * stride + 16];
                    let at = buf.as_ptr().align_offset(64);
                    let f = Affine8 {
                        scale: &scale,
                        s: 0.02,
                        shift: &shift,
                        floor: -3.0,
                        ceil: 3.0,
                        dst: buf[at..].as_mut_ptr(),
                        stride,
                        width,
                        stream,
                    };
                    let (mut tables, mut out) = (Vec::new(), vec![f32::NAN; rows * TILE]);
                    // SAFETY: `dst` holds `rows` rows of `stride >= width` floats.
                    unsafe { m.tile_i8_affine(kernel, &offs, &input, &mut tables, &mut out, &f) };
                    (0..rows)
                        .flat_map(|r| buf[at + r * stride..at + r * stride + width].to_vec())
                        .collect::<Vec<f32>>()
                };
                let (plain, streamed) = (run(Kernel::Avx512, false), run(Kernel::Avx512, true));
                assert!(
                    plain.iter().all(|v| v.is_finite()),
                    "{rows}x{cols}: unwritten output"
                );
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&plain),
                    bits(&streamed),
                    "{rows}x{cols} quat {quat} width {width}"
                );
                // The portable kernel (its own affine pass) agrees up to float summation order.
                let portable = run(Kernel::Portable, false);
                for (i, (a, b)) in plain.iter().zip(&portable).enumerate() {
                    let (r, j) = (i / width, i % width);
                    assert!(
                        (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                        "{rows}x{cols} row {r} lane {j}: {a} vs {b}"
                    );
                }
            }
        }
    }
}
