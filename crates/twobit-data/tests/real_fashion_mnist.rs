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
