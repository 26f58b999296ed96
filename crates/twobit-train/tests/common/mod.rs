//! Shared helpers: synthetic datasets.
#![allow(dead_code)]
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use twobit_data::{Dataset, DatasetKind, Splits};
use twobit_train::TrainData;

/// Random images whose label is encoded in the mean brightness, so a model can learn it.
pub fn synthetic(kind: DatasetKind, n_train: usize, n_test: usize, seed: u64) -> TrainData {
    let shape = kind.shape();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut make = |n: usize| {
        let len: usize = shape.iter().product();
        let mut images = Vec::with_capacity(n * len);
        let mut labels = Vec::with_capacity(n);
        for _ in 0..n {
            let label: u8 = rng.random_range(0..10);
            let base = label as u32 * 20;
            for _ in 0..len {
                images.push((base + rng.random_range(0..60u32)).min(255) as u8);
            }
            labels.push(label);
        }
        Dataset {
            shape,
            images,
            labels,
        }
    };
    let train = make(n_train);
    let test = make(n_test);
    TrainData::new(kind, Splits { train, test })
}
