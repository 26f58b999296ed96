//! Helpers shared by the file subcommands: reading float tensors, formatting.
use anyhow::{bail, Context};
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use std::path::Path;
use twobit_format::{FloatDtype, FloatTensor};

/// The safetensors dtype of a float tensor, or `None` for integer/bool/fp8 dtypes.
pub fn float_dtype(d: Dtype) -> Option<FloatDtype> {
    match d {
        Dtype::F16 => Some(FloatDtype::F16),
        Dtype::BF16 => Some(FloatDtype::BF16),
        Dtype::F32 => Some(FloatDtype::F32),
        Dtype::F64 => Some(FloatDtype::F64),
        _ => None,
    }
}

/// Maps a format dtype back to safetensors'.
pub fn st_dtype(d: FloatDtype) -> Dtype {
    match d {
        FloatDtype::F16 => Dtype::F16,
        FloatDtype::BF16 => Dtype::BF16,
        FloatDtype::F32 => Dtype::F32,
        FloatDtype::F64 => Dtype::F64,
    }
}

/// Copies a float tensor view as it came.
pub fn float_tensor(dtype: FloatDtype, view: &TensorView<'_>) -> FloatTensor {
    FloatTensor {
        dtype,
        shape: view.shape().to_vec(),
        data: view.data().to_vec(),
    }
}

/// `path` with `suffix` appended to its file name (`a.twobit` → `a.twobit.ckpt`).
pub fn with_suffix(path: &Path, suffix: &str) -> std::path::PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    std::path::PathBuf::from(s)
}

/// Reads a whole input file (so writing the output over it later is safe).
pub fn read_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Refuses an output path whose directory does not exist, before any work is done.
pub fn check_output_dir(path: &Path) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        bail!(
            "cannot write {}: directory {} does not exist",
            path.display(),
            dir.display()
        );
    }
    if path.is_dir() {
        bail!("cannot write {}: it is a directory", path.display());
    }
    Ok(())
}

/// `[6, 1, 5, 5]` as `6x1x5x5` (`scalar` for rank 0).
pub fn shape_str(shape: &[usize]) -> String {
    if shape.is_empty() {
        return "scalar".into();
    }
    shape
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("x")
}

/// Bytes with a binary unit.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

/// Parses `bytes` (read from `path`) as safetensors, after our own container checks (which
/// catch offsets the safetensors crate would overflow on).
pub fn parse_safetensors<'a>(
    bytes: &'a [u8],
    path: &Path,
) -> anyhow::Result<safetensors::SafeTensors<'a>> {
    let bad = |e: &dyn std::fmt::Display| {
        anyhow::anyhow!("{}: not a valid safetensors file: {e}", path.display())
    };
    twobit_format::check_container(bytes).map_err(|e| bad(&e))?;
    safetensors::SafeTensors::deserialize(bytes).map_err(|e| bad(&e))
}

/// The float tensors of any safetensors file (a plain one, or a `.twobit` file's float
/// tensors), as they are stored; integer tensors are skipped.
pub fn read_float_tensors(
    path: &Path,
) -> anyhow::Result<std::collections::BTreeMap<String, FloatTensor>> {
    let bytes = read_file(path)?;
    let st = parse_safetensors(&bytes, path)?;
    Ok(st
        .iter()
        .filter_map(|(name, v)| {
            float_dtype(v.dtype()).map(|d| (name.to_string(), float_tensor(d, &v)))
        })
        .collect())
}
