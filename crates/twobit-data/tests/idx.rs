//! MNIST / Fashion-MNIST IDX loading and every failure mode.
mod common;

use std::fs;

use common::{gzip, idx, write, write_mnist};
use twobit_data::{DataError, DatasetKind};

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn loads_gzip_and_plain_identically() {
    for gz in [true, false] {
        let dir = tmp();
        let (train, test) = write_mnist(dir.path(), 7, 3, gz);
        let s = DatasetKind::Mnist.load(Some(dir.path())).unwrap();
        assert_eq!(s.train.shape, [1, 28, 28]);
        assert_eq!(s.train.len(), 7);
        assert_eq!(s.test.len(), 3);
        assert_eq!(s.train.images, train.images, "gz={gz}");
        assert_eq!(s.train.labels, train.labels, "gz={gz}");
        assert_eq!(s.test.images, test.images, "gz={gz}");
        assert_eq!(s.test.labels, test.labels, "gz={gz}");
        assert_eq!(s.train.image(6).unwrap(), &train.images[6 * 784..]);
        assert!(s.train.image(7).is_none());
    }
}

#[test]
fn gz_file_is_preferred_and_plain_is_a_fallback() {
    let dir = tmp();
    let (train, _) = write_mnist(dir.path(), 4, 2, false);
    // A gzip copy next to the plain test labels, with different labels: .gz wins.
    let other = [9u8, 8];
    write(
        dir.path(),
        "t10k-labels-idx1-ubyte",
        &idx(0x801, &[2], &other),
        true,
    );
    let s = DatasetKind::FashionMnist.load(Some(dir.path())).unwrap();
    assert_eq!(s.test.labels, other);
    assert_eq!(s.train.labels, train.labels);
}

#[test]
fn missing_dir_names_path_and_install_hint() {
    let dir = tmp();
    let missing = dir.path().join("nope");
    let err = DatasetKind::FashionMnist.load(Some(&missing)).unwrap_err();
    assert!(matches!(err, DataError::MissingDir { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&missing.display().to_string()), "{msg}");
    assert!(
        msg.contains("apt-get install dataset-fashion-mnist"),
        "{msg}"
    );
    assert!(msg.contains("--data-dir"), "{msg}");
    assert!(!msg.contains('\n'), "one line: {msg}");

    let msg = DatasetKind::Mnist
        .load(Some(&missing))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("t10k-labels-idx1-ubyte.gz") && msg.contains("--data-dir"),
        "{msg}"
    );
}

#[test]
fn relative_dir_is_reported_as_absolute_path() {
    let err = DatasetKind::Mnist
        .load(Some(std::path::Path::new("no/such/twobit-dir")))
        .unwrap_err();
    let DataError::MissingDir { dir, .. } = err else {
        panic!("{err:?}")
    };
    assert!(dir.is_absolute(), "{}", dir.display());
    assert!(dir.ends_with("no/such/twobit-dir"));
}

#[test]
fn missing_file_lists_both_names_tried() {
    let dir = tmp();
    write_mnist(dir.path(), 2, 2, true);
    fs::remove_file(dir.path().join("t10k-images-idx3-ubyte.gz")).unwrap();
    let err = DatasetKind::Mnist.load(Some(dir.path())).unwrap_err();
    assert!(matches!(err, DataError::MissingFile { .. }), "{err:?}");
    let msg = err.to_string();
    let base = dir.path().join("t10k-images-idx3-ubyte");
    assert!(msg.contains(&format!("{}.gz", base.display())), "{msg}");
    assert!(msg.contains(&format!(" and {};", base.display())), "{msg}");
}

#[test]
fn truncated_plain_images_file() {
    let dir = tmp();
    write_mnist(dir.path(), 3, 2, false);
    let p = dir.path().join("train-images-idx3-ubyte");
    let data = fs::read(&p).unwrap();
    fs::write(&p, &data[..data.len() - 100]).unwrap();
    match DatasetKind::Mnist.load(Some(dir.path())).unwrap_err() {
        DataError::Truncated {
            expected,
            found,
            path,
            ..
        } => {
            assert_eq!(expected, 16 + 3 * 784);
            assert_eq!(found, 16 + 3 * 784 - 100);
            assert_eq!(path, p);
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn truncated_gzip_file() {
    let dir = tmp();
    write_mnist(dir.path(), 20, 2, true);
    let p = dir.path().join("train-images-idx3-ubyte.gz");
    let data = fs::read(&p).unwrap();
    fs::write(&p, &data[..data.len() / 2]).unwrap();
    let err = DatasetKind::Mnist.load(Some(dir.path())).unwrap_err();
    assert!(matches!(err, DataError::Truncated { .. }), "{err:?}");
}

#[test]
fn truncated_header() {
    let dir = tmp();
    write_mnist(dir.path(), 2, 2, false);
    let p = dir.path().join("train-labels-idx1-ubyte");
    fs::write(&p, [0u8, 0, 8, 1, 0, 0]).unwrap();
    let err = DatasetKind::Mnist.load(Some(dir.path())).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::Truncated {
                expected: 8,
                found: 6,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn huge_header_count_is_rejected_without_allocating() {
    // u32::MAX images of 28x28 would be 3.4 TB: must fail on length, not abort on allocation.
    for gz in [true, false] {
        let dir = tmp();
        write_mnist(dir.path(), 2, 2, gz);
        write(
            dir.path(),
            "train-images-idx3-ubyte",
            &idx(0x803, &[u32::MAX, 28, 28], &[0; 784]),
            gz,
        );
        let err = DatasetKind::Mnist.load(Some(dir.path())).unwrap_err();
        assert!(
            matches!(err, DataError::Truncated { .. }),
            "gz={gz}: {err:?}"
        );
    }
}

#[test]
fn bad_magic_when_files_are_swapped() {
    let dir = tmp();
    write_mnist(dir.path(), 2, 2, true);
    let img = dir.path().join("train-images-idx3-ubyte.gz");
    let lbl = dir.path().join("train-labels-idx1-ubyte.gz");
    fs::copy(&lbl, &img).unwrap();
    match DatasetKind::Mnist.load(Some(dir.path())).unwrap_err() {
        DataError::BadMagic {
            found,
            expected,
            path,
            ..
        } => {
            assert_eq!((found, expected), (0x801, 0x803));
            assert_eq!(path, img);
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn non_idx_file_is_bad_magic() {
    let dir = tmp();
    write_mnist(dir.path(), 2, 2, false);
    fs::write(
        dir.path().join("train-labels-idx1-ubyte"),
        b"<html>not found</html>",
    )
    .unwrap();
    let err = DatasetKind::Mnist.load(Some(dir.path())).unwrap_err();
    assert!(matches!(err, DataError::BadMagic { .. }), "{err:?}");
    assert!(err.to_string().contains("0x3c68746d"), "{err}");
}

#[test]
fn wrong_image_size() {
    let dir = tmp();
    write_mnist(dir.path(), 2, 2, false);
    write(
        dir.path(),
        "train-images-idx3-ubyte",
        &idx(0x803, &[2, 32, 32], &[0; 2048]),
        false,
    );
    let err = DatasetKind::Mnist.load(Some(dir.path())).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::BadDims {
                rows: 32,
                cols: 32,
                expected_rows: 28,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn count_mismatch() {
    let dir = tmp();
    write_mnist(dir.path(), 5, 2, true);
    write(
        dir.path(),
        "train-labels-idx1-ubyte",
        &idx(0x801, &[4], &[1, 2, 3, 4]),
        true,
    );
    match DatasetKind::Mnist.load(Some(dir.path())).unwrap_err() {
        DataError::CountMismatch {
            n_images, n_labels, ..
        } => assert_eq!((n_images, n_labels), (5, 4)),
        e => panic!("{e:?}"),
    }
}

#[test]
fn label_out_of_range() {
    let dir = tmp();
    write_mnist(dir.path(), 2, 3, false);
    write(
        dir.path(),
        "t10k-labels-idx1-ubyte",
        &idx(0x801, &[3], &[0, 9, 10]),
        false,
    );
    match DatasetKind::Mnist.load(Some(dir.path())).unwrap_err() {
        DataError::BadLabel { index, label, .. } => assert_eq!((index, label), (2, 10)),
        e => panic!("{e:?}"),
    }
}

#[test]
fn trailing_data_is_rejected() {
    for gz in [true, false] {
        let dir = tmp();
        write_mnist(dir.path(), 2, 2, gz);
        write(
            dir.path(),
            "t10k-labels-idx1-ubyte",
            &idx(0x801, &[2], &[1, 2, 3]),
            gz,
        );
        let err = DatasetKind::Mnist.load(Some(dir.path())).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::TrailingData {
                    expected: 10,
                    found: 11,
                    ..
                }
            ),
            "{err:?}"
        );
    }
}

#[test]
fn empty_file_is_rejected() {
    let dir = tmp();
    write_mnist(dir.path(), 2, 2, false);
    write(
        dir.path(),
        "train-images-idx3-ubyte",
        &idx(0x803, &[0, 28, 28], &[]),
        false,
    );
    write(
        dir.path(),
        "train-labels-idx1-ubyte",
        &idx(0x801, &[0], &[]),
        false,
    );
    let err = DatasetKind::Mnist.load(Some(dir.path())).unwrap_err();
    assert!(matches!(err, DataError::Empty { .. }), "{err:?}");
}

#[test]
fn corrupt_gzip_checksum() {
    let dir = tmp();
    write_mnist(dir.path(), 2, 2, false);
    let mut gz = gzip(&idx(0x801, &[2], &[1, 2]));
    let n = gz.len();
    gz[n - 8] ^= 0xff; // CRC32 of the member
    fs::write(dir.path().join("train-labels-idx1-ubyte.gz"), gz).unwrap();
    let err = DatasetKind::Mnist.load(Some(dir.path())).unwrap_err();
    assert!(matches!(err, DataError::Corrupt { .. }), "{err:?}");
}
