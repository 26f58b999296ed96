//! Times `Runtime::forward` on a model file: `time_model FILE BATCH ITERS`. Three paths,
//! interleaved pass by pass (so machine load hits them alike): the dequantized fp32
//! network, the 2-bit runtime with fp32 activations, and with int8 activations.
use std::time::Instant;
use twobit_runtime::{Activations, Runtime};

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let rt = Runtime::load(std::path::Path::new(&a[1])).unwrap();
    let batch: usize = a[2].parse().unwrap();
    let iters: usize = a[3].parse().unwrap();
    let x: Vec<f32> = (0..batch * rt.input_len())
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0)
        .collect();
    let mut int8 = Runtime::load(std::path::Path::new(&a[1])).unwrap();
    int8.set_activations(Activations::Int8);
    let paths = [
        ("fp32", rt.dequantized()),
        ("2-bit f32-act", rt),
        ("2-bit int8", int8),
    ];
    let mut best = [f64::MAX; 3];
    let mut sum = [0f64; 3];
    let y0: Vec<Vec<f32>> = paths
        .iter()
        .map(|(_, r)| r.forward_raw(&x, batch))
        .collect();
    for _ in 0..iters {
        for (i, (_, r)) in paths.iter().enumerate() {
            let t = Instant::now();
            let y = r.forward_raw(&x, batch);
            let dt = t.elapsed().as_secs_f64() * 1e6;
            std::hint::black_box(&y);
            best[i] = best[i].min(dt);
            sum[i] += dt;
        }
    }
    println!("{} batch {batch}, {iters} passes each:", a[1]);
    for (i, (name, _)) in paths.iter().enumerate() {
        println!(
            "  {name:<14} best {:>10.1} us  mean {:>10.1} us  (fp32 best / this best {:.2}x, logit0 {})",
            best[i],
            sum[i] / iters as f64,
            best[0] / best[i],
            y0[i][0]
        );
    }
}
