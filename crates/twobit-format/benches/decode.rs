//! Load-time decoding speed of the stored code packings, in MB/s of decoded weights (one
//! weight = one code; throughput is reported per weight as 1 byte, so MB/s = M weights/s).
//! `cargo bench -p twobit-format --bench decode`.
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use twobit_format::{base3, pack, rans};

/// Trained-ternary-like codes: 25 % -a, 55 % zero, 20 % +a (entropy about 1.44 bits).
fn codes(n: usize) -> Vec<u8> {
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            match s % 100 {
                0..=24 => 0,
                25..=79 => 1,
                _ => 2,
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    for n in [400_000usize, 4_000_000] {
        let p2 = pack::pack(&codes(n));
        let p3 = base3::from_base2(&p2, n).unwrap();
        let r = rans::encode(&p2, n);
        g.throughput(Throughput::Bytes(n as u64));
        g.bench_with_input(BenchmarkId::new("base3", n), &p3, |b, p3| {
            b.iter(|| base3::to_base2(black_box(p3), n))
        });
        g.bench_with_input(BenchmarkId::new("rans", n), &r, |b, r| {
            b.iter(|| rans::decode(black_box(r), n).unwrap())
        });
        g.bench_with_input(BenchmarkId::new("rans_reference", n), &r, |b, r| {
            b.iter(|| rans::decode_reference(black_box(r), n).unwrap())
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
