//! CIFAR-10 binary loading and its failure modes.
mod common;

use std::fs;

use common::{cifar_records, write_cifar};
use twobit_data::{DataError, DatasetKind};

#[test]
fn loads_six_files_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (train, test) = write_cifar(dir.path(), 3);
    let s = DatasetKind::Cifar10.load(Some(dir.path())).unwrap();
    assert_eq!(s.train.shape, [3, 32, 32]);
    assert_eq!(s.train.len(), 15);
    assert_eq!(s.test.len(), 3);
    assert_eq!(s.train.images, train.images);
    assert_eq!(s.train.labels, train.labels);
    assert_eq!(s.test.images, test.images);
    assert_eq!(s.test.labels, test.labels);
    // CHW: byte 1024 of a record's image is the first green pixel.
    assert_eq!(s.test.image(1).unwrap()[1024], test.images[3072 + 1024]);
}

#[test]
fn missing_batch_file() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar(dir.path(), 1);
    let p = dir.path().join("data_batch_4.bin");
    fs::remove_file(&p).unwrap();
    let err = DatasetKind::Cifar10.load(Some(dir.path())).unwrap_err();
    assert!(matches!(err, DataError::MissingFile { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&p.display().to_string()), "{msg}");
    assert!(msg.contains("cifar-10-binary.tar.gz"), "{msg}");
    // evaluation reads the test batch only, so a missing training batch does not stop it
    let test = DatasetKind::Cifar10.load_test(Some(dir.path())).unwrap();
    assert_eq!(test.len(), 1);
    fs::remove_file(dir.path().join("test_batch.bin")).unwrap();
    let err = DatasetKind::Cifar10
        .load_test(Some(dir.path()))
        .unwrap_err();
    assert!(err.to_string().contains("test_batch.bin"), "{err}");
}

#[test]
fn missing_dir_has_download_hint() {
    let dir = tempfile::tempdir().unwrap();
    let err = DatasetKind::Cifar10
        .load(Some(&dir.path().join("x")))
        .unwrap_err();
    assert!(matches!(err, DataError::MissingDir { .. }), "{err:?}");
    assert!(err.to_string().contains("data_batch_1.bin"), "{err}");
}

#[test]
fn truncated_record() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar(dir.path(), 2);
    let p = dir.path().join("test_batch.bin");
    let data = fs::read(&p).unwrap();
    fs::write(&p, &data[..data.len() - 1]).unwrap();
    match DatasetKind::Cifar10.load(Some(dir.path())).unwrap_err() {
        DataError::Truncated {
            expected, found, ..
        } => assert_eq!((expected, found), (6146, 6145)),
        e => panic!("{e:?}"),
    }
}

#[test]
fn bad_label() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar(dir.path(), 2);
    let (mut file, _) = cifar_records(2, 5);
    file[3073] = 200;
    fs::write(dir.path().join("data_batch_2.bin"), file).unwrap();
    match DatasetKind::Cifar10.load(Some(dir.path())).unwrap_err() {
        DataError::BadLabel { index, label, .. } => assert_eq!((index, label), (1, 200)),
        e => panic!("{e:?}"),
    }
}

#[test]
fn empty_file() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar(dir.path(), 1);
    fs::write(dir.path().join("data_batch_1.bin"), []).unwrap();
    let err = DatasetKind::Cifar10.load(Some(dir.path())).unwrap_err();
    assert!(matches!(err, DataError::Empty { .. }), "{err:?}");
}
