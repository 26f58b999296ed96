//! Tests of the GEMV variants (`PackedMatrix::gemv_i8`'s x86 kernels against the portable
//! one).
use super::*;
use twobit_quant::Levels;

/// Every x86 GEMV variant this CPU runs (AVX-512 BW and VNNI, AVX2 and AVX-VNNI, each
/// forced here directly) against the portable kernel, on ragged widths and all code
/// patterns: the integer sums are exact, so the results are equal.
#[test]
fn gemv_variants_agree() {
    let mut s = 1u64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    for cols in [1, 8, 31, 32, 33, 63, 64, 65, 129, 200, 1000] {
        let rows: usize = 13;
        let codes: Vec<u8> = (0..(rows * cols).div_ceil(4))
            .map(|_| next() as u8)
            .collect();
        let lv = Levels {
            values: [-1.5, -0.25, 0.5, 2.0],
            thresholds: [0.0; 3],
        };
        let m = PackedMatrix::from_codes(rows, cols, &codes, &[lv]).unwrap();
        let mut q = vec![0i8; m.gemv_i8_len()];
        for v in &mut q[..cols] {
            *v = (next() % 255) as i8;
            *v = (*v).max(-127);
        }
        let total = q.iter().map(|&v| v as i32).sum();
        let mut want = vec![0f32; rows];
        portable::gemv_rows(&m, &q, total, 0.5, 0, &mut want);
        #[cfg(target_arch = "x86_64")]
        for isa in [Isa::Avx512Bw, Isa::Avx512Vnni, Isa::Avx2, Isa::AvxVnni] {
            let has = |f: &[&str]| {
                f.iter().all(|f| match *f {
                    "avx512" => {
                        is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw")
                    }
                    "avx512vnni" => is_x86_feature_detected!("avx512vnni"),
                    "avx2" => is_x86_feature_detected!("avx2"),
                    _ => is_x86_feature_detected!("avxvnni"),
                })
            };
            let needs: &[&str] = match isa {
                Isa::Avx512Bw => &["avx512"],
                Isa::Avx512Vnni => &["avx512", "avx512vnni"],
                Isa::Avx2 => &["avx2"],
                _ => &["avx2", "avxvnni"],
            };
            if !has(needs) {
                continue;
            }
            let mut y = vec![0f32; rows];
            // SAFETY: the ISA's features were detected above; `q` is padded with zeros.
            unsafe {
                match isa {
                    Isa::Avx512Vnni => gemv_x86::gemv_rows::<true>(&m, &q, total, 0.5, 0, &mut y),
                    Isa::Avx512Bw => gemv_x86::gemv_rows::<false>(&m, &q, total, 0.5, 0, &mut y),
                    Isa::AvxVnni => gemv_avx2::gemv_rows::<true>(&m, &q, total, 0.5, 0, &mut y),
                    _ => gemv_avx2::gemv_rows::<false>(&m, &q, total, 0.5, 0, &mut y),
                }
            }
            assert_eq!(y, want, "{isa:?} cols {cols}");
        }
    }
}

/// The AVX-512 builds of the quantization loops (`row_scale`, `quantize_with`,
/// `quantize_padded` dispatch to them on this CPU) equal the baseline ones, on ragged
/// lengths with NaN, infinities, ties and values beyond the range.
#[test]
#[cfg(target_arch = "x86_64")]
fn quantization_builds_agree() {
    if !std::arch::is_x86_feature_detected!("avx512bw") {
        eprintln!("SKIPPED quantization_builds_agree: no AVX-512 here");
        return;
    }
    let mut s = 5u64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    for n in [0usize, 1, 15, 16, 17, 63, 200, 1001] {
        let x: Vec<f32> = (0..n)
            .map(|i| match next() % 13 {
                0 => f32::NAN,
                1 if i % 3 == 0 => f32::INFINITY,
                2 => 2.5,
                3 => -0.5,
                _ => (next() % 20001) as f32 / 100.0 - 100.0,
            })
            .collect();
        let finite: Vec<f32> = x
            .iter()
            .map(|v| if v.is_infinite() { 7.0 } else { *v })
            .collect();
        for v in [&x, &finite] {
            // SAFETY: AVX-512BW checked above.
            let wide = unsafe { absmax_avx512(v) };
            assert_eq!(absmax(v).to_bits(), wide.to_bits(), "absmax n {n}");
            for inv in [0.0, 1.0, 0.5, 3.7] {
                let (mut a, mut b) = (vec![0i8; n], vec![0i8; n]);
                quantize_inv((v, inv, &mut a));
                // SAFETY: as above.
                unsafe { quantize_inv_avx512((v, inv, &mut b)) };
                assert_eq!(a, b, "quantize n {n} inv {inv}");
            }
        }
    }
    // Padded planes: every byte written (pads zero), both builds alike.
    for (w, h, wp, pt, pl, extra) in [
        (1, 1, 3, 1, 1, 3),
        (8, 8, 10, 1, 1, 10),
        (13, 5, 16, 2, 0, 0),
    ] {
        let x: Vec<f32> = (0..w * h)
            .map(|_| (next() % 2001) as f32 / 10.0 - 100.0)
            .collect();
        let len = (pt + h) * wp + extra;
        let (mut a, mut b) = (vec![9i8; len], vec![9i8; len]);
        pad_plane((&x, w, 0.9, &mut a, wp, pt, pl));
        // SAFETY: AVX-512BW checked above.
        unsafe { pad_plane_avx512((&x, w, 0.9, &mut b, wp, pt, pl)) };
        assert_eq!(a, b, "padded {w}x{h}");
        assert!(
            a[..pt * wp]
                .iter()
                .chain(&a[(pt + h) * wp..])
                .all(|&v| v == 0),
            "pads"
        );
    }
}
