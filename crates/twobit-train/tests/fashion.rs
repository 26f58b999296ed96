//! A short real training run on Fashion-MNIST (installed by the `dataset-fashion-mnist`
//! package into /usr/share/datasets/fashion-mnist; CI installs it).
use twobit_data::DatasetKind;
use twobit_quant::Scheme;
use twobit_train::{ModelKind, NoProgress, RunOptions, TrainConfig, TrainData, WeightScheme};

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "slow in debug: run with cargo test --release"
)]
fn mlp_quat_learns_fashion_mnist_and_the_file_round_trips() {
    let kind = DatasetKind::FashionMnist;
    let mut splits = kind.load(None).unwrap_or_else(|e| {
        panic!("Fashion-MNIST is required for this test and could not be loaded: {e}")
    });
    splits.test.truncate(2000);
    let data = TrainData::new(kind, splits);
    let mut cfg = TrainConfig::new(ModelKind::Mlp, WeightScheme::Quant(Scheme::Quat));
    cfg.epochs = 1;
    cfg.train_limit = Some(6000);
    let out = twobit_train::train(&cfg, &data, &RunOptions::default(), &mut NoProgress).unwrap();
    assert!(
        out.test_accuracy > 0.6,
        "test accuracy {} is not well above chance",
        out.test_accuracy
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mlp.twobit");
    out.file.save(&path).unwrap();
    let back = twobit_format::Model::load(&path).unwrap();
    assert_eq!(back, out.file);
    // The recorded accuracy is that of the stored weights.
    let acc: f64 = back.provenance["test_accuracy"].parse().unwrap();
    assert!((acc - out.test_accuracy).abs() < 1e-6);
    let packed = back
        .tensors
        .values()
        .filter(|t| matches!(t, twobit_format::Tensor::Packed(_)))
        .count();
    assert_eq!(
        packed, 1,
        "only the middle layer of the MLP is quantized by default"
    );
}
