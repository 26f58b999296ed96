//! `quantize` (fit + encode) per scheme on 1M and 16M weights, normal and Laplace, single
//! thread. `cargo bench -p twobit-quant` (the ratio table: `--example ratios`).
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;
use twobit_quant::{quantize, Granularity, Scheme};

#[path = "common/weights.rs"]
mod gen;
use gen::weights;

fn bench(c: &mut Criterion) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("thread pool");
    for n in [1usize << 20, 16 << 20] {
        for laplace in [false, true] {
            let w = weights(n, laplace, 0x9e37_79b9_7f4a_7c15 ^ n as u64);
            let dist = if laplace { "laplace" } else { "normal" };
            let mut g = c.benchmark_group(format!("quantize/{}M/{dist}", n >> 20));
            g.throughput(Throughput::Elements(n as u64));
            g.sample_size(10);
            g.warm_up_time(Duration::from_millis(500));
            g.measurement_time(Duration::from_secs(if n > 4_000_000 { 6 } else { 2 }));
            for s in Scheme::ALL {
                g.bench_function(BenchmarkId::from_parameter(s.name()), |b| {
                    b.iter(|| {
                        pool.install(|| {
                            quantize(black_box(&w), &[n], s, Granularity::Tensor)
                                .expect("finite input")
                        })
                    })
                });
            }
            g.finish();
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
