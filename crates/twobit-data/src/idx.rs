//! IDX files (MNIST, Fashion-MNIST): big-endian header `magic, dims...` then `u8` data.
//! Each file may be gzip (detected from its first two bytes) or plain.
use std::fs::File;
use std::io::{self, BufRead, BufReader, ErrorKind, Read};
use std::path::{Path, PathBuf};

use flate2::bufread::MultiGzDecoder;

use crate::{DataError, Dataset, DatasetKind};

/// Magic number of an IDX file of unsigned bytes with 3 dimensions (images).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned bytes with 1 dimension (labels).
pub const LABELS_MAGIC: u32 = 0x0000_0801;

/// Upper bound of deflate's compression ratio (~1032:1), used to cap the initial buffer of a
/// gzip file so that a lying header cannot make us allocate more than the data could hold.
const MAX_DEFLATE_RATIO: u64 = 1032;

/// Loads one split (`prefix` = `train` or `t10k`) from `dir`.
pub(crate) fn load_split(
    kind: DatasetKind,
    dir: &Path,
    prefix: &str,
) -> Result<Dataset, DataError> {
    let [_, h, w] = kind.shape();
    let img_path = find(kind, dir, &format!("{prefix}-images-idx3-ubyte"))?;
    let lbl_path = find(kind, dir, &format!("{prefix}-labels-idx1-ubyte"))?;

    let images = read_idx(kind, &img_path, IMAGES_MAGIC, 3)?;
    let (rows, cols) = (images.dims[1], images.dims[2]);
    if rows as usize != h || cols as usize != w {
        return Err(DataError::BadDims {
            kind,
            path: img_path,
            rows,
            cols,
            expected_rows: h as u32,
            expected_cols: w as u32,
        });
    }
    let labels = read_idx(kind, &lbl_path, LABELS_MAGIC, 1)?;
    let (n_images, n_labels) = (images.dims[0], labels.dims[0]);
    if n_images != n_labels {
        return Err(DataError::CountMismatch {
            kind,
            images: img_path,
            n_images: n_images.into(),
            labels: lbl_path,
            n_labels: n_labels.into(),
        });
    }
    crate::check_labels(kind, &lbl_path, &labels.data)?;
    Ok(Dataset {
        shape: kind.shape(),
        images: images.data,
        labels: labels.data,
    })
}

/// Returns `dir/name.gz` or `dir/name`, whichever exists first.
fn find(kind: DatasetKind, dir: &Path, name: &str) -> Result<PathBuf, DataError> {
    let candidates = [dir.join(format!("{name}.gz")), dir.join(name)];
    if let Some(p) = candidates.iter().find(|p| p.is_file()) {
        return Ok(p.clone());
    }
    let looked_for = candidates
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(" and ");
    Err(DataError::MissingFile { kind, looked_for })
}

/// A decoded IDX file.
struct Idx {
    dims: Vec<u32>,
    data: Vec<u8>,
}

/// Reads an IDX file, checking its magic number and that its length matches its header.
fn read_idx(kind: DatasetKind, path: &Path, magic: u32, ndims: usize) -> Result<Idx, DataError> {
    let io_err = |source: io::Error| DataError::Io {
        kind,
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io_err)?;
    let file_len = file.metadata().map_err(io_err)?.len();
    let mut buffered = BufReader::new(file);
    let gzip = buffered
        .fill_buf()
        .map_err(io_err)?
        .starts_with(&[0x1f, 0x8b]);
    let (mut reader, bound): (Box<dyn Read>, u64) = if gzip {
        let bound = file_len.saturating_mul(MAX_DEFLATE_RATIO);
        (Box::new(MultiGzDecoder::new(buffered)), bound)
    } else {
        (Box::new(buffered), file_len)
    };
    // Classifies a read error: a gzip stream that ends early is a truncated file.
    let classify = |e: io::Error, found: u64, expected: u64| match e.kind() {
        ErrorKind::UnexpectedEof => DataError::Truncated {
            kind,
            path: path.to_path_buf(),
            expected,
            found,
        },
        ErrorKind::InvalidInput | ErrorKind::InvalidData if gzip => DataError::Corrupt {
            kind,
            path: path.to_path_buf(),
            source: e,
        },
        _ => io_err(e),
    };

    let header_len = 4 * (1 + ndims);
    let mut header = Vec::with_capacity(header_len);
    let got = (&mut reader)
        .take(header_len as u64)
        .read_to_end(&mut header)
        .map_err(|e| classify(e, 0, header_len as u64))?;
    if got < 4 {
        return Err(truncated(kind, path, header_len as u64, got as u64));
    }
    let words: Vec<u32> = header
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if words[0] != magic {
        return Err(DataError::BadMagic {
            kind,
            path: path.to_path_buf(),
            found: words[0],
            expected: magic,
        });
    }
    if got < header_len {
        return Err(truncated(kind, path, header_len as u64, got as u64));
    }
    let dims = words[1..].to_vec();
    if dims[0] == 0 {
        return Err(DataError::Empty {
            kind,
            path: path.to_path_buf(),
        });
    }
    // At most 2^32 * 2^32 * 2^32 would overflow; saturate instead and let the length check fail.
    let body_len = dims
        .iter()
        .fold(1u64, |acc, &d| acc.saturating_mul(u64::from(d)));
    let expected = body_len.saturating_add(header_len as u64);
    if !gzip && file_len < expected {
        return Err(truncated(kind, path, expected, file_len));
    }

    // Reserve no more than the file could possibly decode to: the header count is unchecked.
    let reserve = body_len.min(bound) as usize;
    let mut data = Vec::with_capacity(reserve);
    let res = (&mut reader).take(body_len).read_to_end(&mut data);
    // On error `data` still holds what was decoded, which tells how short the file is.
    let found = (header_len + data.len()) as u64;
    res.map_err(|e| classify(e, found, expected))?;
    if found < expected {
        return Err(truncated(kind, path, expected, found));
    }
    let extra =
        io::copy(&mut reader, &mut io::sink()).map_err(|e| classify(e, expected, expected))?;
    if extra > 0 {
        return Err(DataError::TrailingData {
            kind,
            path: path.to_path_buf(),
            expected,
            found: expected + extra,
        });
    }
    Ok(Idx { dims, data })
}

fn truncated(kind: DatasetKind, path: &Path, expected: u64, found: u64) -> DataError {
    DataError::Truncated {
        kind,
        path: path.to_path_buf(),
        expected,
        found,
    }
}
