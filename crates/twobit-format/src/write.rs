//! Serialisation and atomic save.
use crate::manifest::{Entry, Manifest, PackedEntry};
use crate::{
    FormatError, Model, Tensor, CODES_SUFFIX, FORMAT_VERSION, KEY_FORMAT, KEY_MANIFEST,
    KEY_PRODUCER, KEY_VERSION, LEVELS_SUFFIX, MAGIC, MAX_HEADER_BYTES, MAX_TENSORS,
    PROVENANCE_PREFIX, THRESHOLDS_SUFFIX,
};
use safetensors::tensor::{Dtype, View};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;
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

fn f32_bytes(values: impl Iterator<Item = f32>) -> Vec<u8> {
    values.flat_map(|v| v.to_le_bytes()).collect()
}

pub(crate) fn to_bytes(m: &Model) -> Result<Vec<u8>, FormatError> {
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
    for (name, t) in &m.tensors {
        match t {
            Tensor::Packed(p) => {
                let g = p.levels.len();
                put(
                    &mut stored,
                    format!("{name}{CODES_SUFFIX}"),
                    Stored {
                        dtype: Dtype::U8,
                        shape: vec![p.codes.len()],
                        data: Cow::Borrowed(&p.codes),
                    },
                )?;
                put(
                    &mut stored,
                    format!("{name}{LEVELS_SUFFIX}"),
                    Stored {
                        dtype: Dtype::F32,
                        shape: vec![g, 4],
                        data: Cow::Owned(f32_bytes(p.levels.iter().flat_map(|l| l.values))),
                    },
                )?;
                put(
                    &mut stored,
                    format!("{name}{THRESHOLDS_SUFFIX}"),
                    Stored {
                        dtype: Dtype::F32,
                        shape: vec![g, 3],
                        data: Cow::Owned(f32_bytes(p.levels.iter().flat_map(|l| l.thresholds))),
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
                    }),
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
    meta.insert(KEY_VERSION.to_string(), FORMAT_VERSION.to_string());
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
        return Err(FormatError::HeaderTooLarge {
            len: header,
            max: MAX_HEADER_BYTES,
        });
    }
    Ok(bytes)
}

/// Encodes first, then writes a temporary sibling and renames it over `path`, so a failure at
/// any point leaves no partial file (and an existing file at `path` untouched).
pub(crate) fn save(m: &Model, path: &Path) -> Result<(), FormatError> {
    let bytes = to_bytes(m)?;
    write_atomic(path, &bytes)
}

/// Writes `bytes` to `path` through a temporary file in the same directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), FormatError> {
    let io = |source| FormatError::Io {
        path: path.display().to_string(),
        source,
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| io(std::io::Error::other("not a file path")))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
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
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(e));
    }
    Ok(())
}
