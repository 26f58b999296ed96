//! Int8 activations against fp32 activations (2-bit) and fp32 `gemm`, interleaved in one
//! run (best of N each): `int8_kernels [ITERS]`. The 4096x4096 GEMV at batch 1 (ternary,
//! 60 % zeros), vgg7's 3x3 convolutions (the int8 tile, the int8 GEMM and the `vpermw`
//! kernel, and the sum of the best int8 path per layer, as a runtime's measured choice
//! takes it) and its fc1 at batch 64. `int8_kernels ITERS FILTER` runs the rows whose name
//! contains FILTER.
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::hint::black_box;
use twobit_quant::Levels;
use twobit_runtime::fp32::sgemm;
use twobit_runtime::kernels::int8::{int8_isa_name, quantize};
use twobit_runtime::ops::{
    conv2d_f32, conv2d_packed, conv2d_packed_i8_gemm, conv2d_packed_i8_perm, conv2d_packed_i8_with,
    ConvGeom,
};
use twobit_runtime::{Kernel, PackedMatrix};

#[path = "common/clock.rs"]
mod clock;
use clock::now;

/// Ternary `{-a, 0, b}` codes with 60 % zeros, per-row levels.
fn matrix(rng: &mut StdRng, rows: usize, cols: usize) -> PackedMatrix {
    let n = rows * cols;
    let mut codes = vec![0u8; n.div_ceil(4)];
    for i in 0..n {
        let c: u8 = [0, 1, 1, 1, 2][rng.random_range(0..5)];
        codes[i / 4] |= c << (2 * (i % 4));
    }
    let levels: Vec<Levels> = (0..rows)
        .map(|_| Levels {
            values: [-rng.random_range(0.1..1.0f32), 0.0, 0.5, 0.5],
            thresholds: [-0.5, 0.0, 0.5],
        })
        .collect();
    PackedMatrix::from_codes(rows, cols, &codes, &levels).unwrap()
}

/// Best time in ms of each closure, run in turn `iters` times.
fn race(iters: usize, fs: &mut [&mut dyn FnMut()]) -> Vec<f64> {
    let mut best = vec![f64::MAX; fs.len()];
    // `ONLY=i` runs only path i (0 fp32, 1 2-bit f32, 2 2-bit int8, 3 GEMM, 4 perm), for
    // `perf stat`.
    let only: Option<usize> = std::env::var("ONLY").ok().and_then(|v| v.parse().ok());
    let run = |i: usize| only.is_none_or(|o| o == i);
    for (i, f) in fs.iter_mut().enumerate() {
        if run(i) {
            f(); // warm-up
        }
    }
    for _ in 0..iters {
        for (i, f) in fs.iter_mut().enumerate().filter(|(i, _)| run(*i)) {
            let t = now();
            f();
            best[i] = best[i].min((now() - t) * 1e3);
        }
    }
    best
}

fn report(name: &str, t: &[f64]) {
    println!(
        "{name:<28} fp32 {:>9.3} ms  2bit-f32 {:>9.3} ms  2bit-int8 {:>9.3} ms  int8 vs fp32 {:>5.2}x  vs 2bit-f32 {:>5.2}x",
        t[0], t[1], t[2], t[0] / t[2], t[1] / t[2]
    );
    for (name, &g) in ["int8 GEMM", "int8 perm", "int8 best"]
        .iter()
        .zip(t.iter().skip(3))
    {
        println!(
            "{:<28} {name} {:>9.3} ms  vs fp32 {:>5.2}x  vs 2bit-f32 {:>5.2}x  vs int8 tile {:>5.2}x",
            "", g, t[0] / g, t[1] / g, t[2] / g
        );
    }
}

// The allocator and settings of the `twobit` binary (as in benches/kernels.rs): freed
// memory is kept, so layer outputs are not page-faulted in again on every call.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` of mimalloc 3 (as in the CLI).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() {
    // SAFETY: sets an integer allocator option before any thread starts.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    let iters: usize = std::env::args().nth(1).map_or(10, |a| a.parse().unwrap());
    // Only the rows whose name contains this (all when absent).
    let only = std::env::args().nth(2).unwrap_or_default();
    let want = |name: &str| name.contains(&only);
    // `KERNEL=avx2|portable` forces a kernel choice (default: the best this CPU runs).
    let k = match std::env::var("KERNEL").as_deref() {
        Ok("avx2") => Kernel::Avx2,
        Ok("portable") => Kernel::Portable,
        _ => Kernel::detect(),
    };
    println!("kernel {} / int8 {}", k.name(), int8_isa_name(k));
    let mut rng = StdRng::seed_from_u64(7);
    let n = 4096;
    let m = matrix(&mut rng, n, n);
    let w = m.dequantize();
    let x: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    let (mut y0, mut y1, mut y2) = (vec![0f32; n], vec![0f32; n], vec![0f32; n]);
    let mut q = vec![0i8; m.gemv_i8_len()];
    if want("gemv") {
        let t = race(
            iters * 10,
            &mut [
                &mut || sgemm(n, 1, n, black_box(&w), &x, false, &mut y0, true),
                &mut || m.gemv(k, black_box(&x), &mut y1),
                // Quantization included: it is part of every call.
                &mut || {
                    let s = quantize(black_box(&x), &mut q[..n]);
                    m.gemv_i8(k, &q, s, &mut y2)
                },
            ],
        );
        report("gemv 4096x4096 b1", &t);
    }
    // `BATCH=n` changes the conv/fc1 batch (64): with `BATCH=1 RAYON_NUM_THREADS=1` and
    // many iterations, the best times are per-image costs that a loaded machine's
    // preemptions do not reach.
    let batch: usize = std::env::var("BATCH")
        .ok()
        .and_then(|b| b.parse().ok())
        .unwrap_or(64);
    // fp32, 2-bit fp32, int8 tile, GEMM, perm, and the best int8 path per layer (what a
    // runtime's measured choice takes).
    let mut sums = [0.0; 6];
    for &(cin, o, hw) in &[
        (3, 128, 32),
        (128, 128, 32),
        (128, 256, 16),
        (256, 256, 16),
        (256, 512, 8),
        (512, 512, 8),
    ] {
        let name = format!("conv {cin}-{o}@{hw} b{batch}");
        if !want(&name) {
            continue;
        }
        let g = ConvGeom::square(cin, (hw, hw), 3, 1, 1);
        let m = [matrix(&mut rng, o, g.k())];
        let w = m[0].dequantize();
        let x: Vec<f32> = (0..batch * cin * hw * hw)
            .map(|_| rng.random_range(0.0..1.0))
            .collect();
        let (sc, sh) = (vec![1.0f32; o], vec![0.0f32; o]);
        let offs = [m[0].int8_offsets()];
        let gm = [m[0].int8_gemm()];
        let pm = m[0]
            .int8_perm(cin, 3, 3)
            .expect("ternary levels have a zero code");
        let open = (f32::NEG_INFINITY, f32::INFINITY);
        let t = race(
            iters,
            &mut [
                &mut || drop(black_box(conv2d_f32(&w, o, &g, &x, batch, &sc, &sh, open))),
                &mut || {
                    drop(black_box(conv2d_packed(
                        &m, &g, k, &x, batch, &sc, &sh, open,
                    )))
                },
                // With the offsets built once, as `Runtime::set_activations` does.
                &mut || {
                    drop(black_box(conv2d_packed_i8_with(
                        &m, &offs, &g, k, &x, batch, &sc, &sh, open,
                    )))
                },
                &mut || {
                    drop(black_box(conv2d_packed_i8_gemm(
                        &gm, &g, k, &x, batch, &sc, &sh, open,
                    )))
                },
                &mut || {
                    drop(black_box(conv2d_packed_i8_perm(
                        &pm, &g, k, &x, batch, &sc, &sh, open,
                    )))
                },
            ],
        );
        report(&name, &t);
        let best = t[2].min(t[3]).min(t[4]);
        for (s, v) in sums.iter_mut().zip(t.iter().chain([&best])) {
            *s += v;
        }
    }
    if sums[0] > 0.0 {
        report(&format!("vgg7 6 convs b{batch} (sum)"), &sums);
    }
    if !want("fc1") {
        return;
    }
    let (rows, cols) = (1024, 8192);
    let m = matrix(&mut rng, rows, cols);
    let w = m.dequantize();
    let x: Vec<f32> = (0..batch * cols)
        .map(|_| rng.random_range(0.0..1.0))
        .collect();
    let offs = m.int8_offsets();
    let mut y0 = vec![0f32; batch * rows];
    let (mut y1, mut y2) = (y0.clone(), y0.clone());
    let t = race(
        iters,
        &mut [
            &mut || sgemm(batch, rows, cols, black_box(&x), &w, true, &mut y0, true),
            &mut || m.matmul(k, black_box(&x), batch, &mut y1),
            &mut || m.matmul_i8_with(Some(&offs), 8, k, black_box(&x), batch, &mut y2),
        ],
    );
    report("fc1 8192x1024 b64", &t);
    // The int8 layer as one GEMV per sample (its path under 8 samples) in the last column.
    let t = race(
        iters,
        &mut [
            &mut || sgemm(batch, rows, cols, black_box(&x), &w, true, &mut y0, true),
            &mut || m.matmul_i8_with(Some(&offs), 8, k, black_box(&x), batch, &mut y1),
            &mut || {
                for (xs, ys) in x.chunks(cols).zip(y2.chunks_mut(rows)) {
                    m.matmul_i8(k, xs, 1, ys);
                }
            },
        ],
    );
    report("fc1 b64 tile | GEMV/sample", &t);
    println!(
        "fc1: one GEMV per sample measured faster below {} samples",
        m.measure_gemv_below(k, &offs)
    );
}
