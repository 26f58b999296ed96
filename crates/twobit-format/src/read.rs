//! Parsing and validation of a file.
use crate::arch::ArchWire;
use crate::encoding::{Encoding, Packing, StoredSize, TableDtype, TableLayout};
use crate::manifest::{Entry, Manifest, PackedEntry};
use crate::validate;
use crate::{base3, rans, Layout};
use crate::{
    Arch, FloatDtype, FloatTensor, FormatError, IntDtype, IntTensor, Model, PackedTensor, Tensor,
    CODES_SUFFIX, FORMAT_VERSION, KEY_FORMAT, KEY_MANIFEST, KEY_VERSION, LEVELS_SUFFIX, MAGIC,
    MAX_HEADER_BYTES, MAX_TENSORS, MIN_FORMAT_VERSION, PROVENANCE_PREFIX, THRESHOLDS_SUFFIX,
};
use safetensors::tensor::{Dtype, Metadata, SafeTensorError};
use safetensors::SafeTensors;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use twobit_quant::{Granularity, Levels, Scheme};

pub(crate) fn load(path: &Path) -> Result<(Model, Layout), FormatError> {
    let io = |source| FormatError::Io {
        path: path.display().to_string(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    if len == 0 {
        // Mapping an empty file fails on some platforms; report it as what it is.
        return from_bytes_with_layout(&[]);
    }
    // SAFETY: the map is read-only and dropped before returning; if another process
    // truncates the file meanwhile we may get SIGBUS, the usual caveat of mmap readers.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
    from_bytes_with_layout(&map)
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

/// Reads a `[groups, width]` table of `dtype` as f32 values.
fn table(
    st: &Container<'_>,
    used: &mut HashSet<String>,
    tensor: &str,
    suffix: &str,
    which: &'static str,
    [groups, width]: [usize; 2],
    dtype: TableDtype,
) -> Result<Vec<f32>, FormatError> {
    let sdt = match dtype {
        TableDtype::F32 => Dtype::F32,
        TableDtype::F16 => Dtype::F16,
    };
    let view = stored(st, used, format!("{tensor}{suffix}"), sdt)?;
    if view.shape != [groups, width] {
        return Err(FormatError::LevelTableShape {
            tensor: tensor.to_string(),
            table: which,
            expected: vec![groups, width],
            actual: view.shape.to_vec(),
        });
    }
    Ok(match dtype {
        TableDtype::F32 => f32s(view.data).collect(),
        TableDtype::F16 => view
            .data
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
    })
}

/// Parses one optional encoding field of the manifest.
fn field<T>(
    name: &str,
    field: &'static str,
    value: Option<String>,
    parse: impl Fn(&str) -> Option<T>,
    default: T,
) -> Result<T, FormatError> {
    match value {
        None => Ok(default),
        Some(v) => parse(&v).ok_or_else(|| FormatError::UnknownEncoding {
            tensor: name.to_string(),
            field,
            value: v,
        }),
    }
}

/// The 2-bit codes from `W.codes` stored with `packing`; `k` codes in the scheme's alphabet.
fn decode_codes(
    name: &str,
    packing: Packing,
    data: &[u8],
    n: usize,
    k: usize,
) -> Result<Vec<u8>, FormatError> {
    let tensor = || name.to_string();
    match packing {
        Packing::Enum => crate::enumerative::decode(data, n, k)
            .map(|codes| crate::pack::pack(&codes))
            .map_err(|e| FormatError::EnumCorrupt {
                tensor: tensor(),
                detail: match e {
                    crate::enumerative::EnumError::TooMany => "more weights than it may hold",
                    crate::enumerative::EnumError::Length => "wrong length",
                    crate::enumerative::EnumError::Rank => "rank out of range",
                },
            }),
        Packing::Base2 => Ok(data.to_vec()),
        Packing::Base3 => {
            base3::check(data, n).map_err(|e| match e {
                base3::Base3Error::Length => FormatError::CodesLengthMismatch {
                    tensor: tensor(),
                    n,
                    expected: base3::packed_len(n),
                    actual: data.len(),
                },
                base3::Base3Error::ByteRange { index, byte } => FormatError::Base3ByteRange {
                    tensor: tensor(),
                    index,
                    byte,
                },
                base3::Base3Error::Padding => FormatError::CodesPadding { tensor: tensor() },
            })?;
            Ok(base3::to_base2(data, n))
        }
        Packing::Rans => rans::decode(data, n).map_err(|e| match e {
            rans::RansError::TooDense => FormatError::RansTooDense {
                tensor: tensor(),
                n,
                bytes: data.len(),
            },
            rans::RansError::Header(detail) => FormatError::RansHeader {
                tensor: tensor(),
                detail,
            },
            rans::RansError::State => FormatError::RansState { tensor: tensor() },
            rans::RansError::End => FormatError::RansCorrupt {
                tensor: tensor(),
                n,
            },
        }),
    }
}

fn packed(
    st: &Container<'_>,
    used: &mut HashSet<String>,
    name: &str,
    e: PackedEntry,
    version: u32,
) -> Result<(PackedTensor, StoredSize), FormatError> {
    let PackedEntry {
        scheme,
        granularity,
        shape,
        origin_dtype,
        groups,
        codes_used: _,
        packing,
        table_dtype,
        table_layout,
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
    let encoding = Encoding {
        packing: field(name, "packing", packing, Packing::from_name, Packing::Base2)?,
        table_dtype: field(
            name,
            "table_dtype",
            table_dtype,
            TableDtype::from_name,
            TableDtype::F32,
        )?,
        table_layout: field(
            name,
            "table_layout",
            table_layout,
            TableLayout::from_name,
            TableLayout::Full,
        )?,
    };
    if version < 2 && encoding != Encoding::default() {
        return Err(FormatError::EncodingNeedsVersion2 {
            tensor: name.to_string(),
            encoding: format!(
                "{}/{}/{}",
                encoding.packing,
                encoding.table_dtype.name(),
                encoding.table_layout.name()
            ),
        });
    }
    if version < 3 && encoding.packing == Packing::Enum {
        return Err(FormatError::EncodingNeedsVersion3 {
            tensor: name.to_string(),
            encoding: encoding.packing.name(),
        });
    }
    let n = validate::numel(name, &shape, 1)?;
    let want_groups = granularity.groups(&shape);
    let (lw, tw) = encoding.table_layout.widths();
    if groups != want_groups {
        return Err(FormatError::LevelTableShape {
            tensor: name.to_string(),
            table: "levels",
            expected: vec![want_groups, lw],
            actual: vec![groups, lw],
        });
    }
    let codes = stored(st, used, format!("{name}{CODES_SUFFIX}"), Dtype::U8)?;
    let expected = match encoding.packing {
        Packing::Base2 => Some(crate::pack::packed_len(n)),
        Packing::Base3 => Some(base3::packed_len(n)),
        Packing::Rans | Packing::Enum => None,
    };
    if codes.shape.len() != 1 || expected.is_some_and(|e| e != codes.data.len()) {
        return Err(FormatError::CodesLengthMismatch {
            tensor: name.to_string(),
            n,
            expected: expected.unwrap_or(codes.data.len()),
            actual: codes.data.len(),
        });
    }
    let lv = table(
        st,
        used,
        name,
        LEVELS_SUFFIX,
        "levels",
        [groups, lw],
        encoding.table_dtype,
    )?;
    let th = table(
        st,
        used,
        name,
        THRESHOLDS_SUFFIX,
        "thresholds",
        [groups, tw],
        encoding.table_dtype,
    )?;
    let code_bytes = codes.data.len();
    let table_bytes =
        crate::encoding::table_bytes(groups, encoding.table_dtype, encoding.table_layout);
    let codes = decode_codes(name, encoding.packing, codes.data, n, scheme.num_codes())?;
    let levels = lv
        .chunks_exact(lw)
        .zip(th.chunks_exact(tw))
        .map(|(v, t)| match encoding.table_layout {
            TableLayout::Full => Levels {
                values: [v[0], v[1], v[2], v[3]],
                thresholds: [t[0], t[1], t[2]],
            },
            TableLayout::Ternary => Levels {
                values: [v[0], v[1], v[2], v[2]],
                thresholds: [t[0], t[1], f32::INFINITY],
            },
        })
        .collect();
    let p = PackedTensor {
        scheme,
        granularity,
        shape,
        codes,
        levels,
        origin_dtype,
    };
    validate::packed(name, &p)?;
    Ok((
        p,
        StoredSize {
            encoding,
            code_bytes,
            table_bytes,
        },
    ))
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
    let data = raw(st, used, name, crate::write::float_dtype(dtype), &shape)?;
    let f = FloatTensor { dtype, shape, data };
    validate::float(name, &f)?;
    Ok(f)
}

/// The bytes of a tensor stored as it came, with the manifest's dtype and shape.
fn raw(
    st: &Container<'_>,
    used: &mut HashSet<String>,
    name: &str,
    dtype: Dtype,
    shape: &[usize],
) -> Result<Vec<u8>, FormatError> {
    validate::numel(name, shape, 0)?;
    let view = stored(st, used, name.to_string(), dtype)?;
    if view.shape != shape {
        return Err(FormatError::ShapeMismatch {
            tensor: name.to_string(),
            expected: shape.to_vec(),
            actual: view.shape.to_vec(),
        });
    }
    Ok(view.data.to_vec())
}

fn int(
    st: &Container<'_>,
    used: &mut HashSet<String>,
    name: &str,
    dtype: &str,
    shape: Vec<usize>,
) -> Result<IntTensor, FormatError> {
    let dtype = IntDtype::from_name(dtype).ok_or_else(|| FormatError::UnsupportedDtype {
        tensor: name.to_string(),
        dtype: dtype.to_string(),
    })?;
    let data = raw(st, used, name, dtype.safetensors(), &shape)?;
    let t = IntTensor { dtype, shape, data };
    validate::int(name, &t)?;
    Ok(t)
}

pub(crate) fn from_bytes(bytes: &[u8]) -> Result<Model, FormatError> {
    from_bytes_with_layout(bytes).map(|(m, _)| m)
}

/// Parses and validates; also returns how each packed tensor was stored.
pub(crate) fn from_bytes_with_layout(bytes: &[u8]) -> Result<(Model, Layout), FormatError> {
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
    let version_text = get(KEY_VERSION)?;
    let Some(version) = version_text
        .parse::<u32>()
        .ok()
        .filter(|v| (MIN_FORMAT_VERSION..=FORMAT_VERSION).contains(v))
    else {
        return Err(FormatError::UnsupportedVersion {
            found: version_text.clone(),
            supported: FORMAT_VERSION,
        });
    };
    let manifest: Manifest<ArchWire> =
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
    let mut layout = Layout::new();
    for (name, entry) in manifest.tensors {
        let t = match entry {
            Entry::Packed(e) => {
                let (p, size) = packed(&st, &mut used, &name, e, version)?;
                layout.insert(name.clone(), size);
                Tensor::Packed(p)
            }
            Entry::Float { dtype, shape } => {
                Tensor::Float(float(&st, &mut used, &name, &dtype, shape)?)
            }
            Entry::Int { dtype, shape } => {
                if version < 3 {
                    return Err(FormatError::IntTensorVersion {
                        tensor: name,
                        version,
                    });
                }
                Tensor::Int(int(&st, &mut used, &name, &dtype, shape)?)
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
    let arch = match manifest.arch {
        Some(w) => {
            let shape = |n: &str| tensors.get(n).map(|t: &Tensor| t.shape().to_vec());
            Some(Arch::from_wire(w, &shape).map_err(FormatError::ArchInvalid)?)
        }
        None => None,
    };
    let model = Model {
        tensors,
        arch,
        provenance,
    };
    if let Some(a) = &model.arch {
        validate::arch(a, &model)?;
    }
    Ok((model, layout))
}
