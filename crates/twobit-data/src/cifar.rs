//! CIFAR-10 binary version: files of records `label (1 byte) + R, G, B planes (32x32 each)`.
//! The pixel layout already is CHW, so records are copied as they are.
use std::fs;
use std::path::Path;

use crate::{DataError, Dataset, DatasetKind};

/// Bytes of one image.
const IMAGE_BYTES: usize = 3 * 32 * 32;
/// Bytes of one record (label + image).
pub const RECORD_BYTES: usize = 1 + IMAGE_BYTES;

/// Training files, in the order they are concatenated.
pub const TRAIN_FILES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
/// Test file.
pub const TEST_FILE: &str = "test_batch.bin";

/// Loads and concatenates `files` from `dir`. The official files hold 10000 records each, but
/// any whole number of records is accepted (small files make fast tests).
pub(crate) fn load_files(dir: &Path, files: &[&str]) -> Result<Dataset, DataError> {
    let kind = DatasetKind::Cifar10;
    // Check all files exist first so a missing one is reported before any slow read.
    let paths: Vec<_> = files.iter().map(|f| dir.join(f)).collect();
    if let Some(p) = paths.iter().find(|p| !p.is_file()) {
        return Err(DataError::MissingFile {
            kind,
            looked_for: p.display().to_string(),
        });
    }
    let mut out = Dataset {
        shape: kind.shape(),
        images: Vec::new(),
        labels: Vec::new(),
    };
    for path in &paths {
        // fs::read allocates from the real file size, never from a header.
        let bytes = fs::read(path).map_err(|source| DataError::Io {
            kind,
            path: path.clone(),
            source,
        })?;
        if bytes.is_empty() {
            return Err(DataError::Empty {
                kind,
                path: path.clone(),
            });
        }
        let rem = bytes.len() % RECORD_BYTES;
        if rem != 0 {
            return Err(DataError::Truncated {
                kind,
                path: path.clone(),
                expected: (bytes.len() - rem + RECORD_BYTES) as u64,
                found: bytes.len() as u64,
            });
        }
        let n = bytes.len() / RECORD_BYTES;
        let labels: Vec<u8> = bytes.chunks_exact(RECORD_BYTES).map(|r| r[0]).collect();
        crate::check_labels(kind, path, &labels)?;
        out.labels.extend_from_slice(&labels);
        out.images.reserve(n * IMAGE_BYTES);
        for rec in bytes.chunks_exact(RECORD_BYTES) {
            out.images.extend_from_slice(&rec[1..]);
        }
    }
    Ok(out)
}
