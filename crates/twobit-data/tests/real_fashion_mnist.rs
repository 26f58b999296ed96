//! The real Fashion-MNIST from the Debian package. Deliberately not skipped when absent:
//! CI installs `dataset-fashion-mnist`, and a missing package must show up as a failure
//! carrying the install hint.
use std::path::Path;

use twobit_data::DatasetKind;

#[test]
fn real_fashion_mnist_loads_with_standard_statistics() {
    let dir = Path::new("/usr/share/datasets/fashion-mnist");
    let s = DatasetKind::FashionMnist
        .load(Some(dir))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.train.len(), 60_000);
    assert_eq!(s.test.len(), 10_000);
    assert_eq!(s.train.images.len(), 60_000 * 784);
    // Fashion-MNIST is balanced: 6000 training and 1000 test images per class.
    for (split, per_class) in [(&s.train, 6000), (&s.test, 1000)] {
        let mut counts = [0usize; 10];
        for &l in &split.labels {
            counts[l as usize] += 1;
        }
        assert_eq!(counts, [per_class; 10]);
    }
    // The standard normalisation constants are the training set's pixel statistics.
    let n = s.train.images.len() as f64;
    let mean = s
        .train
        .images
        .iter()
        .map(|&p| p as f64 / 255.0)
        .sum::<f64>()
        / n;
    let var = s
        .train
        .images
        .iter()
        .map(|&p| (p as f64 / 255.0 - mean).powi(2))
        .sum::<f64>()
        / n;
    let norm = DatasetKind::FashionMnist.normalize();
    assert!((mean - norm.mean[0] as f64).abs() < 1e-3, "mean {mean}");
    assert!(
        (var.sqrt() - norm.std[0] as f64).abs() < 1e-3,
        "std {}",
        var.sqrt()
    );
}

/// `scripts/fashion-as-cifar.py` writes the real Fashion-MNIST as CIFAR-10 files that the
/// CIFAR loader reads back: the first 50,000 training images and all test images, each
/// centred in 32x32 with a zero border and repeated over the three planes, labels kept.
#[test]
fn fashion_as_cifar_script_round_trips() {
    let src = Path::new("/usr/share/datasets/fashion-mnist");
    let out = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/fashion-as-cifar.py");
    let status = std::process::Command::new("python3")
        .arg(&script)
        .arg(src)
        .arg(out.path())
        .status()
        .unwrap_or_else(|e| panic!("python3 {}: {e}", script.display()));
    assert!(status.success(), "{} failed", script.display());
    let fm = DatasetKind::FashionMnist
        .load(Some(src))
        .unwrap_or_else(|e| panic!("{e}"));
    let c = DatasetKind::Cifar10
        .load(Some(out.path()))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((c.train.len(), c.test.len()), (50_000, 10_000));
    assert_eq!(c.train.labels[..], fm.train.labels[..50_000]);
    assert_eq!(c.test.labels, fm.test.labels);
    for (cs, fs, i) in [
        (&c.train, &fm.train, 0usize),
        (&c.train, &fm.train, 49_999),
        (&c.test, &fm.test, 1234),
    ] {
        let img = &cs.images[i * 3072..(i + 1) * 3072];
        let want = &fs.images[i * 784..(i + 1) * 784];
        for p in 0..3 {
            for y in 0..32 {
                for x in 0..32 {
                    let v = img[p * 1024 + y * 32 + x];
                    let inside = (2..30).contains(&y) && (2..30).contains(&x);
                    let w = if inside {
                        want[(y - 2) * 28 + x - 2]
                    } else {
                        0
                    };
                    assert_eq!(v, w, "image {i} plane {p} ({y}, {x})");
                }
            }
        }
    }
}
