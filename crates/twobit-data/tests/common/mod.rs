//! Writers for tiny dataset files in each on-disk format.
#![allow(dead_code)] // each test binary uses a subset

use std::fs;
use std::io::Write;
use std::path::Path;

use flate2::write::GzEncoder;
use flate2::Compression;

/// Deterministic pseudo-random bytes (no rand dependency needed for fixtures).
pub fn bytes(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(12345);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 8) as u8
        })
        .collect()
}

/// An IDX file body: magic, big-endian dims, data.
pub fn idx(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = magic.to_be_bytes().to_vec();
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// Writes `name` (plus `.gz` and compressed when `gz`) into `dir`.
pub fn write(dir: &Path, name: &str, data: &[u8], gz: bool) {
    if gz {
        fs::write(dir.join(format!("{name}.gz")), gzip(data)).unwrap();
    } else {
        fs::write(dir.join(name), data).unwrap();
    }
}

/// One split's expected content.
pub struct Split {
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
}

/// Writes a complete MNIST-style directory with `n_train` / `n_test` 28x28 images.
pub fn write_mnist(dir: &Path, n_train: usize, n_test: usize, gz: bool) -> (Split, Split) {
    let mut splits = Vec::new();
    for (prefix, n, seed) in [("train", n_train, 1), ("t10k", n_test, 2)] {
        let images = bytes(n * 784, seed);
        let labels: Vec<u8> = bytes(n, seed + 10).iter().map(|b| b % 10).collect();
        write(
            dir,
            &format!("{prefix}-images-idx3-ubyte"),
            &idx(0x803, &[n as u32, 28, 28], &images),
            gz,
        );
        write(
            dir,
            &format!("{prefix}-labels-idx1-ubyte"),
            &idx(0x801, &[n as u32], &labels),
            gz,
        );
        splits.push(Split { images, labels });
    }
    let test = splits.pop().unwrap();
    (splits.pop().unwrap(), test)
}

/// CIFAR-10 binary records: label byte then 3072 CHW pixel bytes each.
pub fn cifar_records(n: usize, seed: u32) -> (Vec<u8>, Split) {
    let images = bytes(n * 3072, seed);
    let labels: Vec<u8> = bytes(n, seed + 100).iter().map(|b| b % 10).collect();
    let mut file = Vec::with_capacity(n * 3073);
    for i in 0..n {
        file.push(labels[i]);
        file.extend_from_slice(&images[i * 3072..(i + 1) * 3072]);
    }
    (file, Split { images, labels })
}

/// Writes the six CIFAR-10 files with `per_file` records each; returns (train, test).
pub fn write_cifar(dir: &Path, per_file: usize) -> (Split, Split) {
    let mut train = Split {
        images: Vec::new(),
        labels: Vec::new(),
    };
    for k in 1..=5 {
        let (file, split) = cifar_records(per_file, k);
        fs::write(dir.join(format!("data_batch_{k}.bin")), file).unwrap();
        train.images.extend(split.images);
        train.labels.extend(split.labels);
    }
    let (file, test) = cifar_records(per_file, 99);
    fs::write(dir.join("test_batch.bin"), file).unwrap();
    (train, test)
}
