//! Times calibrated quantization on layer sizes of the reference CNN (random data):
//! `cargo run --release -p twobit-quant --example calib_time`.
use std::time::Instant;
use twobit_quant::{quantize_calibrated, CalibOptions, Gram, Granularity, Scheme};

fn main() {
    let mut seed = 1u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 11) as f32 / (1u64 << 53) as f32 - 0.5
    };
    for (rows, n, samples) in [(64usize, 288usize, 124_000usize), (128, 1600, 1024)] {
        let x: Vec<f32> = (0..samples * n).map(|_| rnd().max(0.0)).collect();
        let t = Instant::now();
        let mut g = Gram::new(n);
        for c in x.chunks(256 * n) {
            g.add(c);
        }
        let h = g.matrix();
        println!(
            "{rows}x{n}: gram of {samples} rows {:.2}s",
            t.elapsed().as_secs_f64()
        );
        let w: Vec<f32> = (0..rows * n).map(|_| 0.1 * rnd()).collect();
        for scheme in [Scheme::Tern, Scheme::QuatFree] {
            for gr in [Granularity::Tensor, Granularity::Channel] {
                let t = Instant::now();
                let (_, r) = quantize_calibrated(
                    &w,
                    &[rows, n],
                    scheme,
                    gr,
                    &[&h],
                    &CalibOptions::default(),
                )
                .unwrap();
                println!(
                    "  {scheme} {gr}: {:.2}s, {} rounds, {:.3} -> {:.3}",
                    t.elapsed().as_secs_f64(),
                    r.rounds,
                    r.before,
                    r.after
                );
            }
        }
        let t = Instant::now();
        let hd = twobit_quant::calibrate::damped(&h, n, 0.01);
        let _u = twobit_quant::calibrate::inverse_upper_factor(&hd, n);
        println!("  inverse factor {:.2}s", t.elapsed().as_secs_f64());
    }
}
