//! Normalisation, batch layout and augmentation.
mod common;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use twobit_data::{DataError, Dataset, DatasetKind, CROP_PADDING};
use twobit_format::Normalize;

fn dataset(shape: [usize; 3], n: usize) -> Dataset {
    let len = shape.iter().product::<usize>() * n;
    Dataset {
        shape,
        images: common::bytes(len, 7),
        labels: (0..n).map(|i| (i % 10) as u8).collect(),
    }
}

fn norm_of(d: &DatasetKind) -> Normalize {
    d.normalize()
}

#[test]
fn normalisation_matches_formula_per_channel() {
    for kind in DatasetKind::ALL {
        let norm = norm_of(&kind);
        let ds = dataset(kind.shape(), 5);
        let per = ds.image_len();
        let hw = per / kind.shape()[0];
        let idx = [3, 0, 3, 4];
        let mut out = vec![f32::NAN; idx.len() * per];
        ds.fill_batch(&idx, &norm, None, &mut out);
        for (k, &i) in idx.iter().enumerate() {
            for j in 0..per {
                let c = j / hw;
                let p = ds.images[i * per + j] as f32;
                let want = (p / 255.0 - norm.mean[c]) / norm.std[c];
                assert!(
                    (out[k * per + j] - want).abs() < 1e-5,
                    "{kind:?} img {i} px {j}"
                );
            }
        }
    }
}

#[test]
fn standard_constants() {
    let n = DatasetKind::FashionMnist.normalize();
    assert_eq!(
        (n.mean.as_slice(), n.std.as_slice()),
        (&[0.2860][..], &[0.3530][..])
    );
    let n = DatasetKind::Mnist.normalize();
    assert_eq!(
        (n.mean.as_slice(), n.std.as_slice()),
        (&[0.1307][..], &[0.3081][..])
    );
    let n = DatasetKind::Cifar10.normalize();
    assert_eq!(n.mean, vec![0.4914, 0.4822, 0.4465]);
    assert_eq!(n.std, vec![0.2470, 0.2435, 0.2616]);
    // A black pixel of MNIST normalises to -mean/std.
    let ds = Dataset {
        shape: [1, 1, 1],
        images: vec![0, 255],
        labels: vec![0, 1],
    };
    let mut out = [0.0; 2];
    ds.fill_batch(&[0, 1], &DatasetKind::Mnist.normalize(), None, &mut out);
    assert!((out[0] + 0.1307 / 0.3081).abs() < 1e-6);
    assert!((out[1] - (1.0 - 0.1307) / 0.3081).abs() < 1e-6);
}

/// Independent oracle: build the padded image explicitly, crop, flip.
fn augment_reference(
    src: &[u8],
    [c, h, w]: [usize; 3],
    norm: &Normalize,
    rng: &mut StdRng,
) -> Vec<f32> {
    let p = CROP_PADDING;
    let dy = rng.random_range(0..=2 * p);
    let dx = rng.random_range(0..=2 * p);
    let flip = rng.random_bool(0.5);
    let (ph, pw) = (h + 2 * p, w + 2 * p);
    let mut out = Vec::new();
    for ch in 0..c {
        let mut padded = vec![0u8; ph * pw];
        for y in 0..h {
            for x in 0..w {
                padded[(y + p) * pw + x + p] = src[ch * h * w + y * w + x];
            }
        }
        for y in 0..h {
            for x in 0..w {
                let xx = if flip { w - 1 - x } else { x };
                let v = padded[(y + dy) * pw + xx + dx] as f32 / 255.0;
                out.push((v - norm.mean[ch]) / norm.std[ch]);
            }
        }
    }
    out
}

#[test]
fn augmentation_matches_pad_crop_flip_reference() {
    for kind in [DatasetKind::Cifar10, DatasetKind::FashionMnist] {
        let ds = dataset(kind.shape(), 6);
        let norm = kind.normalize();
        let idx: Vec<usize> = (0..40).map(|k| (k * 7) % 6).collect();
        let per = ds.image_len();
        let mut out = vec![0.0; idx.len() * per];
        let mut rng = StdRng::seed_from_u64(42);
        let mut oracle_rng = rng.clone();
        ds.fill_batch(&idx, &norm, Some(&mut rng), &mut out);
        for (k, &i) in idx.iter().enumerate() {
            let want = augment_reference(ds.image(i).unwrap(), ds.shape, &norm, &mut oracle_rng);
            let got = &out[k * per..(k + 1) * per];
            for (j, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() < 1e-6,
                    "{kind:?} image {k} value {j}: {g} vs {w}"
                );
            }
        }
    }
}

#[test]
fn augmentation_covers_all_offsets_and_both_flips() {
    // A single bright pixel at the centre reveals the crop offset and flip of each draw.
    let (h, w) = (32, 32);
    let mut images = vec![0u8; h * w];
    images[16 * w + 10] = 255;
    let ds = Dataset {
        shape: [1, h, w],
        images,
        labels: vec![0],
    };
    let norm = Normalize {
        mean: vec![0.0],
        std: vec![1.0],
    };
    let mut rng = StdRng::seed_from_u64(1);
    let n = 2000;
    let mut out = vec![0.0; n * h * w];
    ds.fill_batch(&vec![0; n], &norm, Some(&mut rng), &mut out);
    let mut rows = [0usize; 9];
    let (mut flipped, mut straight) = (0, 0);
    for img in out.chunks_exact(h * w) {
        let pos = img
            .iter()
            .position(|&v| v == 1.0)
            .expect("pixel stays in the crop");
        assert_eq!(img.iter().filter(|&&v| v != 0.0).count(), 1);
        let (y, x) = (pos / w, pos % w);
        rows[y + CROP_PADDING - 16] += 1; // y = 16 + P - dy
                                          // Unflipped x = 10 + P - dx in 6..=14; flipped x = 31 - that, in 17..=25.
        if x <= 14 {
            straight += 1
        } else {
            flipped += 1
        }
    }
    assert!(rows.iter().all(|&r| r > 100), "row offsets {rows:?}");
    assert!(
        flipped > 850 && straight > 850,
        "flips {flipped}/{straight}"
    );
}

#[test]
fn same_seed_same_batch() {
    let ds = dataset([3, 32, 32], 4);
    let norm = DatasetKind::Cifar10.normalize();
    let run = |seed| {
        let mut out = vec![0.0; 4 * 3072];
        ds.fill_batch(
            &[0, 1, 2, 3],
            &norm,
            Some(&mut StdRng::seed_from_u64(seed)),
            &mut out,
        );
        out
    };
    assert_eq!(run(5), run(5));
    assert_ne!(run(5), run(6));
}

#[test]
fn bad_arguments_are_errors() {
    let ds = dataset([3, 32, 32], 2);
    let norm = DatasetKind::Cifar10.normalize();
    let mut out = vec![0.0; 3072];
    let e = ds
        .try_fill_batch(&[0, 1], &norm, None, &mut out)
        .unwrap_err();
    assert!(
        matches!(
            e,
            DataError::BatchSize {
                expected: 6144,
                found: 3072,
                ..
            }
        ),
        "{e:?}"
    );
    let e = ds.try_fill_batch(&[2], &norm, None, &mut out).unwrap_err();
    assert!(
        matches!(e, DataError::IndexOutOfRange { index: 2, len: 2 }),
        "{e:?}"
    );
    let e = ds
        .try_fill_batch(&[0], &DatasetKind::Mnist.normalize(), None, &mut out)
        .unwrap_err();
    assert!(
        matches!(
            e,
            DataError::NormalizeChannels {
                channels: 3,
                means: 1,
                stds: 1
            }
        ),
        "{e:?}"
    );
    let bad = Normalize {
        mean: vec![0.0; 3],
        std: vec![1.0, 0.0, 1.0],
    };
    let e = ds.try_fill_batch(&[0], &bad, None, &mut out).unwrap_err();
    assert!(
        matches!(e, DataError::BadNormalize { channel: 1, .. }),
        "{e:?}"
    );
    let bad = Normalize {
        mean: vec![0.0, f32::NAN, 0.0],
        std: vec![1.0; 3],
    };
    let e = ds.try_fill_batch(&[0], &bad, None, &mut out).unwrap_err();
    assert!(
        matches!(e, DataError::BadNormalize { channel: 1, .. }),
        "{e:?}"
    );
}

#[test]
#[should_panic(expected = "fill_batch: image index 9 out of range")]
fn fill_batch_panics_with_message_on_caller_bug() {
    let ds = dataset([1, 28, 28], 2);
    let mut out = vec![0.0; 784];
    ds.fill_batch(&[9], &DatasetKind::Mnist.normalize(), None, &mut out);
}

#[test]
fn truncate_keeps_prefix() {
    let mut ds = dataset([1, 28, 28], 5);
    let first = ds.image(1).unwrap().to_vec();
    ds.truncate(2);
    assert_eq!((ds.len(), ds.images.len()), (2, 2 * 784));
    assert_eq!(ds.image(1).unwrap(), first.as_slice());
    ds.truncate(10);
    assert_eq!(ds.len(), 2);
    ds.truncate(0);
    assert!(ds.is_empty() && ds.images.is_empty());
}

#[test]
fn names_round_trip() {
    for kind in DatasetKind::ALL {
        assert_eq!(DatasetKind::from_name(kind.name()), Some(kind));
        assert_eq!(kind.name().parse::<DatasetKind>().unwrap(), kind);
        assert_eq!(kind.classes(), 10);
    }
    assert_eq!(
        DatasetKind::from_name("Fashion_MNIST"),
        Some(DatasetKind::FashionMnist)
    );
    assert_eq!(DatasetKind::from_name("imagenet"), None);
    let e = "imagenet".parse::<DatasetKind>().unwrap_err();
    assert!(e.to_string().contains("imagenet"), "{e}");
    assert_eq!(DatasetKind::Cifar10.shape(), [3, 32, 32]);
    assert_eq!(DatasetKind::Mnist.shape(), [1, 28, 28]);
}

#[test]
fn default_dirs() {
    // Only meaningful without the override; the override itself is a one-line join.
    if std::env::var_os(twobit_data::DATA_DIR_ENV).is_none() {
        assert_eq!(
            DatasetKind::FashionMnist.default_dir(),
            std::path::Path::new("/usr/share/datasets/fashion-mnist")
        );
        assert_eq!(
            DatasetKind::Mnist.default_dir(),
            std::path::Path::new("data/mnist")
        );
        assert_eq!(
            DatasetKind::Cifar10.default_dir(),
            std::path::Path::new("data/cifar-10-batches-bin")
        );
    }
}

/// `--augment crop` / `flip` / `none`: each image is either the plain one, its mirror, or a
/// shifted crop, as chosen; disabled augmentations never happen.
#[test]
fn augment_choices() {
    use twobit_data::Augment;
    assert_eq!(Augment::parse("crop,flip"), Some(Augment::CROP_FLIP));
    assert_eq!(Augment::parse("none"), Some(Augment::NONE));
    assert_eq!(
        Augment::parse("flip"),
        Some(Augment {
            crop: false,
            flip: true
        })
    );
    assert_eq!(Augment::parse("rotate"), None);
    let ds = dataset([1, 6, 5], 40);
    let norm = Normalize::identity(1);
    let idx: Vec<usize> = (0..40).collect();
    let per = ds.image_len();
    let mut plain = vec![0.0; idx.len() * per];
    ds.fill_batch(&idx, &norm, None, &mut plain);
    let run = |aug: Augment| {
        let mut out = vec![0.0; idx.len() * per];
        let mut rng = StdRng::seed_from_u64(5);
        ds.try_fill_batch_with(&idx, &norm, Some(&mut rng), aug, &mut out)
            .unwrap();
        out
    };
    assert_eq!(run(Augment::NONE), plain);
    let mirror = |img: &[f32]| -> Vec<f32> {
        img.chunks(5)
            .flat_map(|r| r.iter().rev().copied())
            .collect()
    };
    let flipped = run(Augment {
        crop: false,
        flip: true,
    });
    let mut mirrored = 0;
    for (a, b) in flipped.chunks(per).zip(plain.chunks(per)) {
        if a != b {
            assert_eq!(a, mirror(b).as_slice());
            mirrored += 1;
        }
    }
    assert!((5..35).contains(&mirrored), "{mirrored} of 40 flipped");
    let cropped = run(Augment {
        crop: true,
        flip: false,
    });
    let shifted = cropped
        .chunks(per)
        .zip(plain.chunks(per))
        .filter(|(a, b)| a != b)
        .count();
    assert!(shifted > 20, "{shifted} of 40 shifted");
    // Same draws whatever is enabled: crop+flip equals crop of the flip decisions' images.
    assert_eq!(run(Augment::CROP_FLIP).len(), cropped.len());
}
