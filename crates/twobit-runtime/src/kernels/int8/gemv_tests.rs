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
                    Isa::Avx512Vnni => x86::gemv_rows::<true>(&m, &q, total, 0.5, 0, &mut y),
                    Isa::Avx512Bw => x86::gemv_rows::<false>(&m, &q, total, 0.5, 0, &mut y),
                    Isa::AvxVnni => gemv_avx2::gemv_rows::<true>(&m, &q, total, 0.5, 0, &mut y),
                    _ => gemv_avx2::gemv_rows::<false>(&m, &q, total, 0.5, 0, &mut y),
                }
            }
            assert_eq!(y, want, "{isa:?} cols {cols}");
        }
    }
}
