//! Parsing and validation of a file.
use crate::manifest::{Entry, Manifest, PackedEntry};
use crate::validate;
use crate::{
    FloatDtype, FloatTensor, FormatError, Model, PackedTensor, Tensor, CODES_SUFFIX,
    FORMAT_VERSION, KEY_FORMAT, KEY_MANIFEST, KEY_VERSION, LEVELS_SUFFIX, MAGIC, MAX_HEADER_BYTES,
    MAX_TENSORS, PROVENANCE_PREFIX, THRESHOLDS_SUFFIX,
};
use safetensors::tensor::{Dtype, Metadata, SafeTensorError};
use safetensors::SafeTensors;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use twobit_quant::{Granularity, Levels, Scheme};

pub(crate) fn load(path: &Path) -> Result<Model, FormatError> {
    let io = |source| FormatError::Io {
        path: path.display().to_string(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    if len == 0 {
        // Mapping an empty file fails on some platforms; report it as what it is.
        return from_bytes(&[]);
    }
    // SAFETY: the map is read-only and dropped before returning; if another process
    // truncates the file meanwhile we may get SIGBUS, the usual caveat of mmap readers.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
    from_bytes(&map)
}

/// The parsed safetensors header plus the data section it indexes.
struct Container<'a> {
    meta: Metadata,
    data: &'a [u8],
}

/// One stored tensor, validated by the safetensors parser (offsets inside `data`).
struct View<'a> {
    dtype: Dtype,
    shape: &'a [usize],
    data: &'a [u8],
}

impl<'a> Container<'a> {
    fn get(&'a self, name: &str) -> Option<View<'a>> {
        let info = self.meta.info(name)?;
        let (s, e) = info.data_offsets;
        Some(View {
            dtype: info.dtype,
            shape: &info.shape,
            data: self.data.get(s..e)?,
        })
    }
}

/// Every data offset must lie inside the data section. Checked before the safetensors
/// parser sees the header: it adds the offsets to the header length unchecked, which
/// overflows (a panic under overflow checks) for offsets near `usize::MAX`.
fn check_offsets(header: &[u8], data_len: u64) -> Result<(), FormatError> {
    let v: serde_json::Value =
        serde_json::from_slice(header).map_err(|e| FormatError::BadJson {
            what: "header",
            detail: e.to_string(),
        })?;
    let Some(obj) = v.as_object() else {
        return Err(FormatError::BadJson {
            what: "header",
            detail: "not a JSON object".into(),
        });
    };
    let ends = obj
        .iter()
        .filter(|(k, _)| k.as_str() != "__metadata__")
        .filter_map(|(_, t)| t.get("data_offsets")?.as_array().cloned())
        .flat_map(|a| a.into_iter().filter_map(|x| x.as_u64()));
    if let Some(end) = ends.max().filter(|&e| e > data_len) {
        return Err(FormatError::Truncated {
            needed: (header.len() as u64 + 8).saturating_add(end),
            len: header.len() as u64 + 8 + data_len,
        });
    }
    Ok(())
}

/// Checks that `bytes` are a well-formed safetensors container (any file, not only
/// `.twobit`), safely: header length within [`MAX_HEADER_BYTES`], JSON header, offsets inside
/// the file, sizes consistent. Call it before handing untrusted bytes to the `safetensors`
/// crate, whose parser can overflow on hostile offsets.
pub fn check_container(bytes: &[u8]) -> Result<(), FormatError> {
    container(bytes).map(|_| ())
}

/// Header length and container checks that come before trusting any size field.
fn container(bytes: &[u8]) -> Result<Container<'_>, FormatError> {
    let len = bytes.len() as u64;
    let Some(head) = bytes.get(..8) else {
        return Err(FormatError::Truncated { needed: 8, len });
    };
    let n = u64::from_le_bytes(head.try_into().expect("8 bytes"));
    if n > MAX_HEADER_BYTES as u64 {
        return Err(FormatError::HeaderTooLarge {
            len: n,
            max: MAX_HEADER_BYTES,
        });
    }
    if n + 8 > len {
        return Err(FormatError::Truncated { needed: n + 8, len });
    }
    check_offsets(&bytes[8..8 + n as usize], len - 8 - n)?;
    let (n, meta) = SafeTensors::read_metadata(bytes).map_err(|e| match e {
        SafeTensorError::InvalidHeaderDeserialization(j) | SafeTensorError::JsonError(j) => {
            FormatError::BadJson {
                what: "header",
                detail: j.to_string(),
            }
        }
        // Data section shorter than the header's offsets say: the usual truncation.
        SafeTensorError::MetadataIncompleteBuffer => {
            FormatError::NotSafetensors(format!("data section does not match offsets ({e})"))
        }
        other => FormatError::NotSafetensors(other.to_string()),
    })?;
    Ok(Container {
        meta,
        data: &bytes[8 + n..],
    })
}

fn dtype_name(d: Dtype) -> String {
    d.to_string()
}

/// A stored tensor that must exist with the given dtype.
fn stored<'a>(
    st: &'a Container<'a>,
    used: &mut HashSet<String>,
    name: String,
    dtype: Dtype,
) -> Result<View<'a>, FormatError> {
    let view = st
        .get(&name)
        .ok_or_else(|| FormatError::MissingTensor(name.clone()))?;
    if view.dtype != dtype {
        return Err(FormatError::DtypeMismatch {
            tensor: name,
            expected: dtype_name(dtype),
            actual: dtype_name(view.dtype),
        });
    }
    if !used.insert(name.clone()) {
        return Err(FormatError::NameCollision(name));
    }
    Ok(view)
}

fn f32s(data: &[u8]) -> impl Iterator<Item = f32> + '_ {
    data.chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Reads a `[groups, width]` F32 table.
fn table<'a>(
    st: &'a Container<'a>,
    used: &mut HashSet<String>,
    tensor: &str,
    suffix: &str,
    which: &'static str,
    groups: usize,
    width: usize,
) -> Result<View<'a>, FormatError> {
    let view = stored(st, used, format!("{tensor}{suffix}"), Dtype::F32)?;
    if view.shape != [groups, width] {
        return Err(FormatError::LevelTableShape {
            tensor: tensor.to_string(),
            table: which,
            expected: vec![groups, width],
            actual: view.shape.to_vec(),
        });
    }
    Ok(view)
}

fn packed(
    st: &Container<'_>,
    used: &mut HashSet<String>,
    name: &str,
    e: PackedEntry,
) -> Result<PackedTensor, FormatError> {
    let PackedEntry {
        scheme,
        granularity,
        shape,
        origin_dtype,
        groups,
        codes_used: _,
    } = e;
    let (scheme, granularity, origin_dtype) = (&scheme, &granularity, &origin_dtype);
    let scheme: Scheme = scheme.parse().map_err(|_| FormatError::UnknownScheme {
        tensor: name.to_string(),
        scheme: scheme.to_string(),
    })?;
    let granularity: Granularity =
        granularity
            .parse()
            .map_err(|_| FormatError::UnknownGranularity {
                tensor: name.to_string(),
                granularity: granularity.to_string(),
            })?;
    let origin_dtype =
        FloatDtype::from_name(origin_dtype).ok_or_else(|| FormatError::UnsupportedDtype {
            tensor: name.to_string(),
            dtype: origin_dtype.to_string(),
        })?;
    let n = validate::numel(name, &shape, 1)?;
    let want_groups = granularity.groups(&shape);
    if groups != want_groups {
        return Err(FormatError::LevelTableShape {
            tensor: name.to_string(),
            table: "levels",
            expected: vec![want_groups, 4],
            actual: vec![groups, 4],
        });
    }
    let codes = stored(st, used, format!("{name}{CODES_SUFFIX}"), Dtype::U8)?;
    let expected = crate::pack::packed_len(n);
    if codes.data.len() != expected || codes.shape.len() != 1 {
        return Err(FormatError::CodesLengthMismatch {
            tensor: name.to_string(),
            n,
            expected,
            actual: codes.data.len(),
        });
    }
    let lv = table(st, used, name, LEVELS_SUFFIX, "levels", groups, 4)?;
    let th = table(st, used, name, THRESHOLDS_SUFFIX, "thresholds", groups, 3)?;
    let levels = f32s(lv.data)
        .collect::<Vec<_>>()
        .chunks_exact(4)
        .zip(f32s(th.data).collect::<Vec<_>>().chunks_exact(3))
        .map(|(v, t)| Levels {
            values: [v[0], v[1], v[2], v[3]],
            thresholds: [t[0], t[1], t[2]],
        })
        .collect();
    let p = PackedTensor {
        scheme,
        granularity,
        shape,
        codes: codes.data.to_vec(),
        levels,
        origin_dtype,
    };
    validate::packed(name, &p)?;
    Ok(p)
}

fn float(
    st: &Container<'_>,
    used: &mut HashSet<String>,
    name: &str,
    dtype: &str,
    shape: Vec<usize>,
) -> Result<FloatTensor, FormatError> {
    let dtype = FloatDtype::from_name(dtype).ok_or_else(|| FormatError::UnsupportedDtype {
        tensor: name.to_string(),
        dtype: dtype.to_string(),
    })?;
    validate::numel(name, &shape, 0)?;
    let view = stored(st, used, name.to_string(), crate::write::float_dtype(dtype))?;
    if view.shape != shape.as_slice() {
        return Err(FormatError::ShapeMismatch {
            tensor: name.to_string(),
            expected: shape,
            actual: view.shape.to_vec(),
        });
    }
    let f = FloatTensor {
        dtype,
        shape,
        data: view.data.to_vec(),
    };
    validate::float(name, &f)?;
    Ok(f)
}

pub(crate) fn from_bytes(bytes: &[u8]) -> Result<Model, FormatError> {
    let st = container(bytes)?;
    let names = st.meta.offset_keys();
    if names.len() > MAX_TENSORS {
        return Err(FormatError::TooManyTensors {
            count: names.len(),
            max: MAX_TENSORS,
        });
    }
    let empty = Default::default();
    let meta = st.meta.metadata().as_ref().unwrap_or(&empty);
    let get = |k: &'static str| meta.get(k).ok_or(FormatError::MissingMetadata(k));
    let magic = get(KEY_FORMAT)?;
    if magic != MAGIC {
        return Err(FormatError::WrongMagic(magic.clone()));
    }
    let version = get(KEY_VERSION)?;
    if version.parse::<u32>() != Ok(FORMAT_VERSION) {
        return Err(FormatError::UnsupportedVersion {
            found: version.clone(),
            supported: FORMAT_VERSION,
        });
    }
    let manifest: Manifest =
        serde_json::from_str(get(KEY_MANIFEST)?).map_err(|e| FormatError::BadJson {
            what: "manifest",
            detail: e.to_string(),
        })?;
    if manifest.tensors.len() > MAX_TENSORS {
        return Err(FormatError::TooManyTensors {
            count: manifest.tensors.len(),
            max: MAX_TENSORS,
        });
    }
    let mut used = HashSet::new();
    let mut tensors = BTreeMap::new();
    for (name, entry) in manifest.tensors {
        let t = match entry {
            Entry::Packed(e) => Tensor::Packed(packed(&st, &mut used, &name, e)?),
            Entry::Float { dtype, shape } => {
                Tensor::Float(float(&st, &mut used, &name, &dtype, shape)?)
            }
        };
        tensors.insert(name, t);
    }
    if let Some(extra) = names.into_iter().find(|n| !used.contains(n)) {
        return Err(FormatError::UnexpectedTensor(extra));
    }
    let provenance = meta
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(PROVENANCE_PREFIX)?.to_string(), v.clone())))
        .collect();
    let model = Model {
        tensors,
        arch: manifest.arch,
        provenance,
    };
    if let Some(a) = &model.arch {
        validate::arch(a, &model)?;
    }
    Ok(model)
}
