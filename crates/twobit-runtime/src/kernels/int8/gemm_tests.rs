//! Tests of the int8 GEMM (`gemm`): every variant against exact integer sums, and an
//! ignored throughput check of one tile.
use super::*;
use twobit_quant::Levels;

/// Every GEMM variant this CPU runs against exact integer sums taken straight from the
/// bit-planes, on ragged rows, columns (one and several k chunks) and tile widths, for
/// the three level families.
#[test]
fn gemm_variants_match_integer_sums() {
    let mut s = 7u64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let mut part = Vec::new();
    for (rows, cols, width) in [
        (1usize, 1usize, 1usize),
        (5, 3, 16),
        (7, 4, 17),
        (13, 9, 64),
        (4, 100, 33),
        (6, 257, 48),
        (11, 300, 63),
        (3, 600, 64),
        (2, 1030, 7),
    ] {
        for kind in 0..3 {
            let codes: Vec<u8> = (0..(rows * cols).div_ceil(4))
                .map(|_| match kind {
                    // Ternary: codes 0..=2 only.
                    0 => [0x00u8, 0x45, 0x61, 0x86, 0x55][next() as usize % 5],
                    _ => next() as u8,
                })
                .collect();
            let values = match kind {
                0 => [-0.7, 0.0, 1.3, 1.3],
                1 => [-1.5, -0.25, 0.0, 2.0],
                _ => [-1.5, -0.25, 0.5, 2.0],
            };
            let lv = Levels {
                values,
                thresholds: [0.0; 3],
            };
            let m = PackedMatrix::from_codes(rows, cols, &codes, &[lv]).unwrap();
            let gm = m.int8_gemm();
            let mut b = vec![0x80u8; gm.tile_len()];
            for q in 0..gm.kq {
                for j in 0..width {
                    for i in 0..4.min(cols - 4 * q) {
                        b[(q * TW + j) * 4 + i] = 1 + (next() % 255) as u8;
                    }
                }
            }
            let sc: Vec<f32> = (0..rows).map(|o| 0.5 + o as f32 / 7.0).collect();
            let sh: Vec<f32> = (0..rows).map(|o| o as f32 / 3.0 - 1.0).collect();
            let (floor, ceil) = (-50.0, 1e4);
            let mut want = vec![0f32; rows * TW];
            let f = |dst: &mut Vec<f32>| Affine8 {
                scale: &sc,
                s: 0.25,
                shift: &sh,
                floor,
                ceil,
                dst: dst.as_mut_ptr(),
                stride: TW,
                width,
                stream: false,
            };
            let tot = totals(&gm, &b);
            let mut scratch = vec![0f32; rows * TW];
            let fw = f(&mut scratch);
            for o in 0..rows {
                for j in 0..width {
                    let mut s3 = [0i32; 3];
                    for k in 0..cols {
                        let bit = |pl: &[u8]| (pl[o * m.stride + k / 8] >> (k % 8)) & 1;
                        let (p, n) = (bit(&m.plus), bit(&m.minus));
                        let q = b[((k / 4) * TW + j) * 4 + k % 4] as i32 - 128;
                        s3[0] += p as i32 * q;
                        s3[1] += n as i32 * q;
                        s3[2] += (p & n) as i32 * q;
                    }
                    let t: i32 = (0..cols)
                        .map(|k| b[((k / 4) * TW + j) * 4 + k % 4] as i32 - 128)
                        .sum();
                    assert!(!gm.total || t == tot[j], "total {j}");
                    want[o * TW + j] = epilogue(&gm, &fw, o, s3, t);
                }
            }
            for isa in [
                GemmIsa::Portable,
                GemmIsa::Avx2,
                GemmIsa::AvxVnni,
                GemmIsa::Avx512Vnni,
            ] {
                if !isa.available() {
                    continue;
                }
                let mut got = vec![f32::NAN; rows * TW];
                // SAFETY: `got` has `rows` rows of TW; the ISA was checked.
                unsafe { tile(isa, &gm, &b, &mut part, &f(&mut got)) };
                for o in 0..rows {
                    for j in 0..TW {
                        let (g, w) = (got[o * TW + j], want[o * TW + j]);
                        if j >= width {
                            assert!(g.is_nan(), "{isa:?} wrote past the tile width");
                            continue;
                        }
                        let tol = if isa == GemmIsa::Portable {
                            0.0
                        } else {
                            1e-5 * (1.0 + w.abs())
                        };
                        assert!(
                            (g - w).abs() <= tol,
                            "{isa:?} {rows}x{cols} kind {kind} row {o} pos {j}: {g} vs {w}"
                        );
                    }
                }
                if isa == GemmIsa::Avx512Vnni {
                    // Streaming stores (large outputs) write exactly what the normal ones do.
                    let mut buf = vec![f32::NAN; rows * TW + 16];
                    let at = buf.as_ptr().align_offset(64);
                    let mut unused = Vec::new();
                    let fs = Affine8 {
                        dst: buf[at..].as_mut_ptr(),
                        stream: true,
                        ..f(&mut unused)
                    };
                    // SAFETY: `buf[at..]` has `rows` rows of TW.
                    unsafe { tile(isa, &gm, &b, &mut part, &fs) };
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(
                        bits(&buf[at..at + rows * TW]),
                        bits(&got),
                        "streamed {rows}x{cols}"
                    );
                }
            }
        }
    }
}

mod bench {
    use super::*;
    /// Throughput of one tile call on L1/L2-resident data (`cargo test --release -- --ignored
    /// gemm_tile_speed --nocapture`).
    #[test]
    #[ignore]
    fn gemm_tile_speed() {
        use twobit_quant::Levels;
        for (rows, cols) in [
            (128usize, 1152usize),
            (256, 2304),
            (512, 4608),
            (128, 1152),
            (256, 2304),
        ] {
            let codes: Vec<u8> = (0..(rows * cols).div_ceil(4))
                .map(|i| (i * 37 % 251) as u8 & 0x99)
                .collect();
            let lv = Levels {
                values: [-1.0, 0.0, 0.5, 0.5],
                thresholds: [0.0; 3],
            };
            let m = PackedMatrix::from_codes(rows, cols, &codes, &[lv]).unwrap();
            let gm = m.int8_gemm();
            let b: Vec<u8> = (0..gm.tile_len()).map(|i| (i * 13) as u8).collect();
            let mut out = vec![0f32; rows * TW];
            let (sc, sh) = (vec![1f32; rows], vec![0f32; rows]);
            let f = Affine8 {
                scale: &sc,
                s: 1.0,
                shift: &sh,
                floor: f32::MIN,
                ceil: f32::MAX,
                dst: out.as_mut_ptr(),
                stride: TW,
                width: TW,
                stream: false,
            };
            for isa in [
                GemmIsa::Avx512Vnni,
                GemmIsa::AvxVnni,
                GemmIsa::Avx2,
                GemmIsa::Portable,
            ] {
                if !isa.available() {
                    continue;
                }
                let mut part = Vec::new();
                let mut dt = f64::MAX;
                for _ in 0..if isa == GemmIsa::Portable { 3 } else { 300 } {
                    let t = std::time::Instant::now();
                    // SAFETY: `out` holds `rows` rows of TW; the ISA is available.
                    unsafe { tile(isa, &gm, &b, &mut part, &f) }
                    dt = dt.min(t.elapsed().as_secs_f64());
                }
                let dp = (rows * gm.kq * gm.planes * TW / 16) as f64;
                println!(
                    "{isa:?} {rows}x{cols}: {:.1} us per tile, {:.2} G 512-bit dp/s",
                    dt * 1e6,
                    dp / dt / 1e9
                );
            }
        }
    }
}
