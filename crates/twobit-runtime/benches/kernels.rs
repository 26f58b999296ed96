//! Packed 2-bit kernels vs fp32 `gemm`, same process and thread pool:
//! 4096x4096 GEMV at batch 1, vgg7's 3x3 convolutions and its fc1 at batch 64; with fp32
//! activations and with int8 activations (`int8_*` rows, `kernels::int8`).
//!
//! The packed path runs with the kernel chosen at run time and, when that is AVX-512, also
//! with the AVX2 kernel: the `gemm` crate's fp32 GEMM uses AVX2+FMA on stable Rust, so the
//! AVX2 row is the same-vector-width comparison.
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::hint::black_box;
use std::time::Duration;
use twobit_quant::Levels;
use twobit_runtime::fp32::sgemm;
use twobit_runtime::kernels::int8::quantize;
use twobit_runtime::ops::{conv2d_f32, conv2d_packed, conv2d_packed_i8, ConvGeom};
use twobit_runtime::{Kernel, PackedMatrix};

fn matrix(rng: &mut StdRng, rows: usize, cols: usize, quat: bool) -> PackedMatrix {
    let n = rows * cols;
    let mut codes = vec![0u8; n.div_ceil(4)];
    for i in 0..n {
        let c: u8 = rng.random_range(0..if quat { 4 } else { 3 });
        codes[i / 4] |= c << (2 * (i % 4));
    }
    let levels: Vec<Levels> = (0..rows)
        .map(|_| {
            let (a, b) = (rng.random_range(0.1..1.0f32), rng.random_range(0.1..1.0f32));
            let values = if quat {
                [-a - b, -a, b, a + b]
            } else {
                [-a, 0.0, b, b]
            };
            Levels {
                values,
                thresholds: [-0.5, 0.0, 0.5],
            }
        })
        .collect();
    PackedMatrix::from_codes(rows, cols, &codes, &levels).expect("valid matrix")
}

/// The detected kernel, then AVX2 when the detected one is wider.
fn packed_kernels() -> Vec<(Kernel, &'static str)> {
    let best = Kernel::detect();
    let mut ks = vec![(best, "")];
    if best == Kernel::Avx512 {
        ks.push((Kernel::Avx2, "_avx2"));
    }
    ks
}

fn gemv(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(7);
    let n = 4096;
    let x: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    let mut g = c.benchmark_group("gemv_4096x4096_batch1");
    for quat in [false, true] {
        let m = matrix(&mut rng, n, n, quat);
        let mut y = vec![0f32; n];
        for (kernel, suffix) in packed_kernels() {
            let name = if quat {
                format!("packed_quaternary{suffix}")
            } else {
                format!("packed_ternary{suffix}")
            };
            g.bench_function(name, |b| b.iter(|| m.gemv(kernel, black_box(&x), &mut y)));
        }
        // Int8 activations (quantized in each call, as the runtime does).
        let kernel = Kernel::detect();
        let mut q = vec![0i8; m.gemv_i8_len()];
        let name = if quat {
            "int8_quaternary"
        } else {
            "int8_ternary"
        };
        g.bench_function(name, |b| {
            b.iter(|| {
                let s = quantize(black_box(&x), &mut q[..n]);
                m.gemv_i8(kernel, &q, s, &mut y)
            })
        });
        if !quat {
            let w = m.dequantize();
            g.bench_function("fp32_gemm", |b| {
                b.iter(|| sgemm(n, 1, n, black_box(&w), &x, false, &mut y, true))
            });
        }
    }
    g.finish();
}

/// No clamp after the affine.
const OPEN: (f32, f32) = (f32::NEG_INFINITY, f32::INFINITY);

fn vgg7_convs(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(8);
    let batch = 64;
    let mut g = c.benchmark_group("vgg7_conv3x3_batch64");
    for &(cin, o, hw) in &[
        (3, 128, 32),
        (128, 128, 32),
        (128, 256, 16),
        (256, 256, 16),
        (256, 512, 8),
        (512, 512, 8),
    ] {
        let geom = ConvGeom::square(cin, (hw, hw), 3, 1, 1);
        let m = [matrix(&mut rng, o, geom.k(), false)];
        let w = m[0].dequantize();
        let x: Vec<f32> = (0..batch * cin * hw * hw)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let (scale, shift) = (vec![1.0f32; o], vec![0.0f32; o]);
        let id = format!("{cin}-{o}@{hw}");
        for (kernel, suffix) in packed_kernels() {
            let name = format!("packed_ternary{suffix}");
            g.bench_with_input(BenchmarkId::new(name, &id), &x, |b, x| {
                b.iter(|| conv2d_packed(&m, &geom, kernel, x, batch, &scale, &shift, OPEN))
            });
        }
        let k = Kernel::detect();
        g.bench_with_input(BenchmarkId::new("int8_ternary", &id), &x, |b, x| {
            b.iter(|| conv2d_packed_i8(&m, &geom, k, x, batch, &scale, &shift, OPEN))
        });
        g.bench_with_input(BenchmarkId::new("fp32_im2col_gemm", &id), &x, |b, x| {
            b.iter(|| conv2d_f32(&w, o, &geom, x, batch, &scale, &shift, OPEN))
        });
    }
    g.finish();
}

/// vgg7's fc1 (8192 -> 1024) at batch 64: two 32-sample tiles, the layer where the 2-bit
/// path has been slowest against fp32.
fn vgg7_fc1(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(9);
    let (rows, cols, batch) = (1024, 8192, 64);
    let m = matrix(&mut rng, rows, cols, false);
    let w = m.dequantize();
    let x: Vec<f32> = (0..batch * cols)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let mut y = vec![0f32; batch * rows];
    let mut g = c.benchmark_group("vgg7_fc1_8192x1024_batch64");
    for (kernel, suffix) in packed_kernels() {
        g.bench_function(format!("packed_ternary{suffix}"), |b| {
            b.iter(|| m.matmul(kernel, black_box(&x), batch, &mut y))
        });
    }
    g.bench_function("int8_ternary", |b| {
        b.iter(|| m.matmul_i8(Kernel::detect(), black_box(&x), batch, &mut y))
    });
    g.bench_function("fp32_gemm", |b| {
        b.iter(|| sgemm(batch, rows, cols, black_box(&x), &w, true, &mut y, true))
    });
    g.finish();
}

// The allocator and settings of the `twobit` binary (crates/twobit-cli/src/main.rs): freed
// memory is kept, so a layer's output buffer is not page-faulted in again on every call.
// Under glibc, both paths spent about a sixth of a convolution in the kernel's page-fault
// handler, which `twobit bench` never sees.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` of mimalloc 3 (as in the CLI; a CLI test checks the index).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn config() -> Criterion {
    // SAFETY: sets an integer allocator option before the benchmarks start threads.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    // Shared machines: few short samples keep a full run to a couple of minutes.
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
}

criterion_group!(name = benches; config = config(); targets = gemv, vgg7_convs, vgg7_fc1);
criterion_main!(benches);
