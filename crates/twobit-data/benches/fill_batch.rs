//! Batch assembly throughput (runs every training step): plain normalisation for 28x28x1 and
//! 32x32x3, and CIFAR pad/crop/flip augmentation, batch 128.
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::rngs::StdRng;
use rand::SeedableRng;
use twobit_data::{Dataset, DatasetKind};

fn dataset(kind: DatasetKind, n: usize) -> Dataset {
    let shape = kind.shape();
    let len = shape.iter().product::<usize>() * n;
    Dataset {
        shape,
        images: (0..len).map(|i| (i * 31 % 251) as u8).collect(),
        labels: vec![0; n],
    }
}

fn bench(c: &mut Criterion) {
    const BATCH: usize = 128;
    let mut group = c.benchmark_group("fill_batch");
    group.throughput(Throughput::Elements(BATCH as u64));
    let indices: Vec<usize> = (0..BATCH).map(|i| (i * 97) % 1000).collect();
    for (kind, augment) in [
        (DatasetKind::FashionMnist, false),
        (DatasetKind::Cifar10, false),
        (DatasetKind::Cifar10, true),
    ] {
        let ds = dataset(kind, 1000);
        let norm = kind.normalize();
        let mut out = vec![0f32; BATCH * ds.image_len()];
        let mut rng = StdRng::seed_from_u64(0);
        let name = format!("{}{}", kind.name(), if augment { "+augment" } else { "" });
        group.bench_function(name, |b| {
            b.iter(|| {
                ds.fill_batch(&indices, &norm, augment.then_some(&mut rng), &mut out);
                std::hint::black_box(&out);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
