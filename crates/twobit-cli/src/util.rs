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

/// Refuses an input path that is missing or not a file, in one line, before any work is
/// done (a directory would otherwise fail later with the mapper's "No such device").
pub fn check_input(path: &Path) -> anyhow::Result<()> {
    match std::fs::metadata(path) {
        Err(e) => bail!("cannot read {}: {e}", path.display()),
        Ok(m) if m.is_dir() => bail!(
            "cannot read {}: it is a directory, not a file",
            path.display()
        ),
        Ok(_) => Ok(()),
    }
}

/// Reads a whole input file (so writing the output over it later is safe).
pub fn read_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    check_input(path)?;
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Applies the output policy every command shares ([`twobit_format::output_target`]): a
/// symlink is written through to its target, an existing non-regular file (directory, device,
/// FIFO, socket) is refused, and the directory must exist (nothing creates it). Called before
/// any work is done.
pub fn check_output(path: &Path) -> anyhow::Result<()> {
    let target = twobit_format::output_target(path)?;
    // A read-only directory would otherwise only fail at the end (after hours of training):
    // create and remove a probe file where the temporary file will go.
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let probe = dir.join(format!(".twobit-probe-{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => bail!("cannot write {}: {e}", path.display()),
    }
}

/// Writes an output under the shared policy, atomically, with Ctrl-C deferred until the file
/// is complete.
pub fn write_output(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    crate::signals::deferred(|| twobit_format::write_atomic(path, bytes))?;
    Ok(())
}

/// A directory to write into (`--plot DIR`, `--results DIR`): created if missing, but its
/// parent must exist, as for a file output; an existing non-directory is refused.
pub fn output_dir(dir: &Path) -> anyhow::Result<()> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(_) => bail!("cannot write into {}: it is not a directory", dir.display()),
        Err(_) => {}
    }
    let parent = match dir.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        bail!(
            "cannot write into {}: directory {} does not exist",
            dir.display(),
            parent.display()
        );
    }
    std::fs::create_dir(dir).with_context(|| format!("cannot create {}", dir.display()))
}

/// `n thing`/`n things`.
pub fn plural(n: usize, thing: &str) -> String {
    if n == 1 {
        format!("{n} {thing}")
    } else {
        format!("{n} {thing}s")
    }
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
    // The container check's errors say what is wrong in their own words ("not a safetensors
    // or .twobit file ..."); the safetensors crate's do not.
    twobit_format::check_container(bytes)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    safetensors::SafeTensors::deserialize(bytes).map_err(|e| {
        anyhow::anyhow!(
            "cannot read {}: not a valid safetensors file: {e}",
            path.display()
        )
    })
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

/// Bytes of memory available to this process (`MemAvailable`), if the system says.
fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Refuses a batch size whose activations alone would not fit in memory: the kernel would
/// otherwise kill the process with no message. Every value of the graph is counted once per
/// image (f32), plus the input batch, which is what a forward pass holds at most.
pub fn check_batch_memory(model: &twobit_format::Model, batch: usize) -> anyhow::Result<()> {
    let Some(arch) = &model.arch else {
        return Ok(());
    };
    let shapes = arch
        .shapes(|t| model.tensors.get(t).map(|t| t.shape()))
        .unwrap_or_default();
    let per_image: u64 = arch.input.iter().product::<usize>() as u64
        + shapes
            .values()
            .map(|s| s.iter().product::<usize>() as u64)
            .sum::<u64>();
    check_batch_bytes(batch, (per_image * 4).saturating_mul(batch as u64))
}

/// Refuses `--batch-size batch` when its activations need more than the available memory.
pub fn check_batch_bytes(batch: usize, need: u64) -> anyhow::Result<()> {
    if let Some(avail) = available_memory() {
        if need > avail {
            bail!(
                "--batch-size {batch} needs at least {} for activations, more than the {} of memory available",
                human_bytes(need),
                human_bytes(avail)
            );
        }
    }
    Ok(())
}

/// How a file of `bytes` compares with `reference` bytes, in words that stay true when it
/// is larger: "12.9x smaller", "same size", "1.02x larger".
pub fn size_ratio(bytes: u64, reference: u64) -> String {
    let (b, r) = (bytes.max(1) as f64, reference.max(1) as f64);
    if (r / b - 1.0).abs() < 0.005 {
        "same size".into()
    } else if r > b {
        format!("{:.1}x smaller", r / b)
    } else {
        format!("{:.2}x larger", b / r)
    }
}

/// The `--act` values of `eval` and `bench`.
pub const ACT_VALUES: [&str; 3] = ["f32", "int8", "int8-calibrated"];

/// Parses `--act` for a network: `int8-calibrated` needs the ranges `twobit calibrate`
/// stores.
pub fn activations(
    act: &str,
    model: &twobit_format::Model,
    file: &Path,
) -> anyhow::Result<twobit_runtime::Activations> {
    use twobit_runtime::Activations;
    Ok(match act {
        "int8" => Activations::Int8,
        "int8-calibrated" => {
            if model
                .arch
                .as_ref()
                .is_none_or(|a| a.input_ranges.is_empty())
            {
                bail!(
                    "{} has no calibrated input ranges: run `twobit calibrate {} OUT --dataset D` first, or use --act int8",
                    file.display(),
                    file.display()
                );
            }
            Activations::Int8Calibrated
        }
        _ => Activations::F32,
    })
}

/// Warns about each `--keep` pattern that matches no tensor name (a typo would otherwise
/// silently quantize the layer it meant to keep).
pub fn warn_unmatched_keep<'a>(
    patterns: &[String],
    keep: &[regex::Regex],
    names: impl Iterator<Item = &'a str> + Clone,
) {
    for (p, r) in patterns.iter().zip(keep) {
        if !names.clone().any(|n| r.is_match(n)) {
            eprintln!("warning: --keep '{p}' matches no tensor");
        }
    }
}

/// When stderr is not a terminal (a log file, CI), progress bars draw nothing; this says when
/// to print a plain progress line instead: every few seconds.
pub struct Ticker {
    on: bool,
    last: std::time::Instant,
    every: std::time::Duration,
}

impl Ticker {
    /// Seconds between lines, unless `TWOBIT_PROGRESS_SECONDS` says otherwise (tests set 0
    /// to see the lines without waiting).
    const EVERY: std::time::Duration = std::time::Duration::from_secs(5);

    /// Active only when stderr is not a terminal.
    pub fn new() -> Self {
        use std::io::IsTerminal;
        let every = std::env::var("TWOBIT_PROGRESS_SECONDS")
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map_or(Self::EVERY, std::time::Duration::from_secs_f64);
        Ticker {
            on: !std::io::stderr().is_terminal(),
            last: std::time::Instant::now(),
            every,
        }
    }

    /// Whether a line is due now (then the next one is due a few seconds later).
    pub fn due(&mut self) -> bool {
        if self.on && self.last.elapsed() >= self.every {
            self.last = std::time::Instant::now();
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{plural, size_ratio};

    #[test]
    fn sizes_and_counts_read_right() {
        assert_eq!(size_ratio(100, 1290), "12.9x smaller");
        assert_eq!(size_ratio(1000, 1001), "same size");
        assert_eq!(size_ratio(1100, 1000), "1.10x larger");
        assert_eq!(plural(1, "epoch"), "1 epoch");
        assert_eq!(plural(2, "epoch"), "2 epochs");
    }
}
