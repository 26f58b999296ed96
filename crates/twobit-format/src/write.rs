//! Serialisation and atomic save.
use crate::encoding::{TableDtype, WriteOptions};
use crate::manifest::{Entry, Manifest, PackedEntry};
use crate::{
    FormatError, Model, Tensor, CODES_SUFFIX, FORMAT_VERSION, GRAPH_FORMAT_VERSION, KEY_FORMAT,
    KEY_MANIFEST, KEY_PRODUCER, KEY_VERSION, LEVELS_SUFFIX, MAGIC, MAX_HEADER_BYTES, MAX_TENSORS,
    PROVENANCE_PREFIX, THRESHOLDS_SUFFIX,
};
use safetensors::tensor::{Dtype, View};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// One stored tensor, borrowed or built, for the safetensors encoder.
struct Stored<'a> {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Cow<'a, [u8]>,
}

impl View for &Stored<'_> {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

pub(crate) fn float_dtype(d: crate::FloatDtype) -> Dtype {
    match d {
        crate::FloatDtype::F16 => Dtype::F16,
        crate::FloatDtype::BF16 => Dtype::BF16,
        crate::FloatDtype::F32 => Dtype::F32,
        crate::FloatDtype::F64 => Dtype::F64,
    }
}

/// Little-endian table bytes (f16 values are exact: [`crate::encoding`] checks it).
fn table_bytes(values: impl Iterator<Item = f32>, dtype: TableDtype) -> Vec<u8> {
    match dtype {
        TableDtype::F32 => values.flat_map(|v| v.to_le_bytes()).collect(),
        TableDtype::F16 => values
            .flat_map(|v| half::f16::from_f32(v).to_le_bytes())
            .collect(),
    }
}

pub(crate) fn to_bytes(m: &Model, opts: &WriteOptions) -> Result<Vec<u8>, FormatError> {
    m.validate()?;
    let mut stored: BTreeMap<String, Stored> = BTreeMap::new();
    let mut entries = BTreeMap::new();
    fn put<'a>(
        stored: &mut BTreeMap<String, Stored<'a>>,
        name: String,
        s: Stored<'a>,
    ) -> Result<(), FormatError> {
        // "__metadata__" is the safetensors header's own key: a tensor of that name would
        // be indistinguishable from it.
        if stored.contains_key(&name) || name == "__metadata__" {
            return Err(FormatError::NameCollision(name));
        }
        stored.insert(name, s);
        Ok(())
    }
    // Integer tensors and the `enum` packing are version 3.
    let mut needs_v3 = false;
    for (name, t) in &m.tensors {
        match t {
            Tensor::Packed(p) => {
                let g = p.levels.len();
                let (enc, codes) = crate::encoding::choose(name, p, opts)?;
                needs_v3 |= enc.packing == crate::Packing::Enum;
                put(
                    &mut stored,
                    format!("{name}{CODES_SUFFIX}"),
                    Stored {
                        dtype: Dtype::U8,
                        shape: vec![codes.len()],
                        data: Cow::Owned(codes),
                    },
                )?;
                let (lw, tw) = enc.table_layout.widths();
                let dtype = match enc.table_dtype {
                    TableDtype::F32 => Dtype::F32,
                    TableDtype::F16 => Dtype::F16,
                };
                put(
                    &mut stored,
                    format!("{name}{LEVELS_SUFFIX}"),
                    Stored {
                        dtype,
                        shape: vec![g, lw],
                        data: Cow::Owned(table_bytes(
                            p.levels.iter().flat_map(|l| l.values[..lw].to_vec()),
                            enc.table_dtype,
                        )),
                    },
                )?;
                put(
                    &mut stored,
                    format!("{name}{THRESHOLDS_SUFFIX}"),
                    Stored {
                        dtype,
                        shape: vec![g, tw],
                        data: Cow::Owned(table_bytes(
                            p.levels.iter().flat_map(|l| l.thresholds[..tw].to_vec()),
                            enc.table_dtype,
                        )),
                    },
                )?;
                entries.insert(
                    name.clone(),
                    Entry::Packed(PackedEntry {
                        scheme: p.scheme.name().to_string(),
                        granularity: p.granularity.name().to_string(),
                        shape: p.shape.clone(),
                        origin_dtype: p.origin_dtype.name().to_string(),
                        groups: g,
                        codes_used: p.scheme.num_codes(),
                        packing: Some(enc.packing.name().to_string()),
                        table_dtype: Some(enc.table_dtype.name().to_string()),
                        table_layout: Some(enc.table_layout.name().to_string()),
                    }),
                );
            }
            Tensor::Int(t) => {
                needs_v3 = true;
                put(
                    &mut stored,
                    name.clone(),
                    Stored {
                        dtype: t.dtype.safetensors(),
                        shape: t.shape.clone(),
                        data: Cow::Borrowed(&t.data),
                    },
                )?;
                entries.insert(
                    name.clone(),
                    Entry::Int {
                        dtype: t.dtype.name().to_string(),
                        shape: t.shape.clone(),
                    },
                );
            }
            Tensor::Float(f) => {
                put(
                    &mut stored,
                    name.clone(),
                    Stored {
                        dtype: float_dtype(f.dtype),
                        shape: f.shape.clone(),
                        data: Cow::Borrowed(&f.data),
                    },
                )?;
                entries.insert(
                    name.clone(),
                    Entry::Float {
                        dtype: f.dtype.name().to_string(),
                        shape: f.shape.clone(),
                    },
                );
            }
        }
    }
    if stored.len() > MAX_TENSORS {
        return Err(FormatError::TooManyTensors {
            count: stored.len(),
            max: MAX_TENSORS,
        });
    }
    let manifest = Manifest {
        tensors: entries,
        arch: m.arch.clone(),
    };
    let manifest =
        serde_json::to_string(&manifest).map_err(|e| FormatError::Encode(e.to_string()))?;
    let mut meta = HashMap::new();
    meta.insert(KEY_FORMAT.to_string(), MAGIC.to_string());
    // The lowest version that can hold the model, so older readers open every file they can.
    let version = if needs_v3 {
        FORMAT_VERSION
    } else {
        GRAPH_FORMAT_VERSION
    };
    meta.insert(KEY_VERSION.to_string(), version.to_string());
    meta.insert(
        KEY_PRODUCER.to_string(),
        format!("twobit-format {}", env!("CARGO_PKG_VERSION")),
    );
    meta.insert(KEY_MANIFEST.to_string(), manifest);
    for (k, v) in &m.provenance {
        meta.insert(format!("{PROVENANCE_PREFIX}{k}"), v.clone());
    }
    let bytes = safetensors::serialize(stored.iter().map(|(k, v)| (k.as_str(), v)), Some(meta))
        .map_err(|e| FormatError::Encode(e.to_string()))?;
    // Never write a file this crate would refuse to read back.
    let header = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    if header > MAX_HEADER_BYTES as u64 {
        return Err(FormatError::Encode(format!(
            "the header would be {header} bytes, over the limit of {MAX_HEADER_BYTES}"
        )));
    }
    Ok(bytes)
}

/// Encodes first, then writes a temporary sibling and renames it over `path`, so a failure at
/// any point leaves no partial file (and an existing file at `path` untouched).
pub(crate) fn save(m: &Model, path: &Path, opts: &WriteOptions) -> Result<(), FormatError> {
    let bytes = to_bytes(m, opts)?;
    write_atomic(path, &bytes)
}

/// The file an output path really names, after the checks every writer applies:
/// - a symbolic link is followed (to any depth) and its target is written, so the link stays
///   a link;
/// - an existing target that is not a regular file (directory, character or block device,
///   FIFO, socket) is refused: replacing `/dev/null` or a named pipe by a regular file is never
///   what was meant;
/// - the target's directory must exist (no command creates missing parent directories).
///
/// Commands call this before any expensive work, so a bad output fails at once.
pub fn output_target(path: &Path) -> Result<PathBuf, FormatError> {
    let bad = |p: &Path, reason: String| FormatError::BadOutput {
        path: p.display().to_string(),
        reason,
    };
    let mut target = path.to_path_buf();
    // 40 is the kernel's own limit on nested links (ELOOP).
    for _ in 0..40 {
        match std::fs::symlink_metadata(&target) {
            Ok(m) if m.file_type().is_symlink() => {
                let link = std::fs::read_link(&target).map_err(|e| bad(path, e.to_string()))?;
                target = match target.parent() {
                    Some(dir) if link.is_relative() => dir.join(link),
                    _ => link,
                };
            }
            Ok(m) => {
                let kind = non_regular_kind(&m.file_type());
                if let Some(kind) = kind {
                    let via = if target == path {
                        String::new()
                    } else {
                        format!(" (the link's target {})", target.display())
                    };
                    return Err(bad(
                        path,
                        format!("it is {kind}{via}, not a regular file; refusing to replace it"),
                    ));
                }
                return check_dir(path, target);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return check_dir(path, target),
            Err(e) => return Err(bad(path, e.to_string())),
        }
    }
    Err(bad(path, "too many levels of symbolic links".into()))
}

/// Names a file type that is not a regular file ("a directory", "a FIFO", ...).
fn non_regular_kind(t: &std::fs::FileType) -> Option<&'static str> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_char_device() {
            return Some("a character device");
        }
        if t.is_block_device() {
            return Some("a block device");
        }
        if t.is_fifo() {
            return Some("a FIFO (named pipe)");
        }
        if t.is_socket() {
            return Some("a socket");
        }
    }
    if t.is_dir() {
        Some("a directory")
    } else if t.is_file() {
        None
    } else {
        Some("not a regular file")
    }
}

/// `target` if its directory exists.
fn check_dir(path: &Path, target: PathBuf) -> Result<PathBuf, FormatError> {
    if target.file_name().is_none() {
        return Err(FormatError::BadOutput {
            path: path.display().to_string(),
            reason: "not a file path".into(),
        });
    }
    let dir = parent_dir(&target);
    if !dir.is_dir() {
        return Err(FormatError::BadOutput {
            path: path.display().to_string(),
            reason: format!("directory {} does not exist", dir.display()),
        });
    }
    Ok(target)
}

/// The directory holding `path` (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Writes `bytes` to `path` through a temporary file in the target's directory, then renames it
/// into place, after the checks of [`output_target`] (a symlink's target is written; a
/// non-regular file is refused). On any failure the temporary file is removed and an existing
/// file is left untouched. A replaced file keeps its permissions.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), FormatError> {
    let target = output_target(path)?;
    let io = |source| FormatError::Io {
        path: path.display().to_string(),
        source,
    };
    let file_name = target.file_name().expect("output_target checks the name");
    let dir = parent_dir(&target);
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    // pid + counter: unique across processes and across threads of this one.
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let k = COUNTER.fetch_add(1, Ordering::Relaxed);
    tmp_name.push(format!(".tmp{}.{k}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        if let Ok(m) = std::fs::metadata(&target) {
            f.set_permissions(m.permissions())?;
        }
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &target)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(e));
    }
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn symlink_target_is_written_and_the_link_kept() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.bin");
        std::fs::write(&real, b"old").unwrap();
        let link = dir.path().join("link.bin");
        std::os::unix::fs::symlink("real.bin", &link).unwrap();
        write_atomic(&link, b"new").unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read(&real).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn non_regular_outputs_are_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("s.sock");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        for p in [dir.path().to_path_buf(), sock.clone()] {
            let e = write_atomic(&p, b"x").unwrap_err().to_string();
            assert!(e.contains("not a regular file"), "{e}");
        }
        use std::os::unix::fs::FileTypeExt;
        let kept = std::fs::symlink_metadata(&sock).unwrap().file_type();
        assert!(kept.is_socket());
        let missing = dir.path().join("no/such/file");
        let e = write_atomic(&missing, b"x").unwrap_err().to_string();
        assert!(e.contains("does not exist"), "{e}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
