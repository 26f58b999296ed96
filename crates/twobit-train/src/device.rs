//! Which device training runs on (`twobit train --device cpu|cuda|wgpu`), checked before any
//! work: a backend this build lacks, or a GPU backend that finds no device, is a one-line
//! error instead of a panic deep inside the backend at the first tensor.
use burn::tensor::{Device, Tensor, TensorData};
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

/// A training device, by backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    /// burn's flex CPU backend, with twobit's own operations ([`crate::fast`]).
    Cpu,
    /// burn's CUDA backend (cargo feature `cuda`), GPU 0.
    Cuda,
    /// burn's wgpu backend (cargo feature `wgpu`; Vulkan, Metal or DirectX), wgpu's default
    /// adapter.
    Wgpu,
}

impl DeviceKind {
    /// Every kind, in the order `--device` lists them.
    pub const ALL: [DeviceKind; 3] = [DeviceKind::Cpu, DeviceKind::Cuda, DeviceKind::Wgpu];

    /// The name used on the command line, in JSON and in provenance.
    pub fn name(self) -> &'static str {
        match self {
            DeviceKind::Cpu => "cpu",
            DeviceKind::Cuda => "cuda",
            DeviceKind::Wgpu => "wgpu",
        }
    }

    /// Whether this build has the backend.
    pub fn compiled(self) -> bool {
        match self {
            DeviceKind::Cpu => true,
            DeviceKind::Cuda => cfg!(feature = "cuda"),
            DeviceKind::Wgpu => cfg!(feature = "wgpu"),
        }
    }

    /// The build's default: `cuda` when compiled in (it wins over `wgpu` when both are),
    /// else `wgpu` when compiled in, else `cpu`.
    pub fn default_for_build() -> DeviceKind {
        if DeviceKind::Cuda.compiled() {
            DeviceKind::Cuda
        } else if DeviceKind::Wgpu.compiled() {
            DeviceKind::Wgpu
        } else {
            DeviceKind::Cpu
        }
    }

    /// The device, without checking that it works (see [`DeviceKind::open`]); flex when the
    /// backend is not compiled in.
    pub(crate) fn unchecked(self) -> Device {
        self.device().unwrap_or_else(Device::flex)
    }

    /// The device, without checking that it works; `None` when the backend is not compiled in.
    fn device(self) -> Option<Device> {
        match self {
            DeviceKind::Cpu => Some(Device::flex()),
            #[cfg(feature = "cuda")]
            DeviceKind::Cuda => Some(Device::cuda(0)),
            #[cfg(feature = "wgpu")]
            DeviceKind::Wgpu => Some(Device::wgpu(Default::default())),
            #[allow(unreachable_patterns)] // reachable when a GPU feature is off
            _ => None,
        }
    }

    /// The device, checked: a backend this build lacks is an error, and a GPU device must run
    /// a small tensor operation (a backend that finds no driver or adapter panics there; the
    /// panic is caught, with the panic message kept for the error, not printed).
    pub fn open(self) -> Result<Device, DeviceError> {
        let Some(device) = self.device() else {
            return Err(DeviceError::NotCompiled(self));
        };
        if self != DeviceKind::Cpu {
            probe(&device).map_err(|why| DeviceError::NotFound(self, why))?;
        }
        Ok(device)
    }
}

impl fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DeviceKind {
    type Err = DeviceError;
    fn from_str(s: &str) -> Result<Self, DeviceError> {
        DeviceKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| DeviceError::Unknown(s.to_string()))
    }
}

/// Why a device cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceError {
    /// Not one of `cpu`, `cuda`, `wgpu`.
    Unknown(String),
    /// The backend is not compiled into this build.
    NotCompiled(DeviceKind),
    /// The backend is compiled in but found no usable device (the backend's message).
    NotFound(DeviceKind, String),
    /// Another device was selected earlier in this process.
    AlreadySelected(DeviceKind),
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceError::Unknown(s) => write!(f, "unknown device '{s}' (expected cpu, cuda or wgpu)"),
            DeviceError::NotCompiled(k) => write!(
                f,
                "this twobit was built without the {k} backend (rebuild with: cargo build --release -p twobit-cli --features {k})"
            ),
            DeviceError::NotFound(k, why) => write!(f, "no usable {k} device: {why}"),
            DeviceError::AlreadySelected(k) => {
                write!(f, "the {k} device is already selected in this process")
            }
        }
    }
}

impl std::error::Error for DeviceError {}

/// Runs `x + 1` on a two-element tensor and reads it back; a panic (no driver, no adapter)
/// becomes `Err` with the first line of its message.
fn probe(device: &Device) -> Result<(), String> {
    let data = quiet(|| {
        let t = Tensor::<1>::from_data(TensorData::new(vec![1.0f32, 2.0], [2]), device);
        t.add_scalar(1.0)
            .try_into_data()
            .map_err(|e| first_line(&format!("{e:?}")))
    })??;
    match data.convert::<f32>().try_into_vec::<f32>() {
        Ok(v) if v == [2.0, 3.0] => Ok(()),
        Ok(v) => Err(format!("a test addition gave {v:?} instead of [2.0, 3.0]")),
        Err(e) => Err(first_line(&format!("{e:?}"))),
    }
}

/// Runs `f`; a panic in it becomes `Err` with the first line of the first panic message
/// (a backend may panic first in a thread of its own, then here on a closed channel), and is
/// not printed: the default hook would print the backend's panic (and a backtrace) before we
/// can say what it means. The hook is process-wide; the probe runs before training starts
/// any thread of its own.
fn quiet<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    let first = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
    let hook = std::panic::take_hook();
    let seen = first.clone();
    std::panic::set_hook(Box::new(move |info| {
        let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.is_none() {
            *seen = info.payload_as_str().map(first_line);
        }
    }));
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(hook);
    run.map_err(|_| {
        let msg = first.lock().unwrap_or_else(|e| e.into_inner()).take();
        msg.filter(|m| !m.is_empty())
            .unwrap_or_else(|| "the backend panicked".into())
    })
}

/// The first non-empty line of `s`, at most 300 characters: errors are one line.
fn first_line(s: &str) -> String {
    let line = s
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    line.chars().take(300).collect()
}

static SELECTED: OnceLock<(DeviceKind, Device)> = OnceLock::new();

/// Opens `kind` ([`DeviceKind::open`]) and makes it the device [`crate::default_device`]
/// returns for the rest of the process (so training, evaluation and export all use it).
/// Selecting the same kind again is a no-op; another kind is an error.
pub fn select(kind: DeviceKind) -> Result<Device, DeviceError> {
    if let Some((k, d)) = SELECTED.get() {
        return if *k == kind {
            Ok(d.clone())
        } else {
            Err(DeviceError::AlreadySelected(*k))
        };
    }
    let device = kind.open()?;
    // A concurrent `select` may have won the race: report what is in effect.
    let (k, d) = SELECTED.get_or_init(|| (kind, device));
    if *k == kind {
        Ok(d.clone())
    } else {
        Err(DeviceError::AlreadySelected(*k))
    }
}

/// The device selected by [`select`], if any.
pub fn selected() -> Option<(DeviceKind, Device)> {
    SELECTED.get().cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in DeviceKind::ALL {
            assert_eq!(k.name().parse::<DeviceKind>(), Ok(k));
        }
        assert_eq!(
            "gpu".parse::<DeviceKind>(),
            Err(DeviceError::Unknown("gpu".into()))
        );
    }

    #[test]
    fn cpu_opens_and_missing_backends_say_so() {
        assert!(DeviceKind::Cpu.open().is_ok());
        for k in [DeviceKind::Cuda, DeviceKind::Wgpu] {
            if !k.compiled() {
                let e = k.open().unwrap_err();
                assert_eq!(e, DeviceError::NotCompiled(k));
                let line = e.to_string();
                assert!(!line.contains('\n') && line.contains(&format!("--features {k}")));
            }
        }
    }

    #[test]
    fn a_panic_in_the_probe_is_one_line() {
        let r: Result<(), String> =
            quiet(|| panic!("\n  Unable to find libcuda.so\nstack backtrace: ..."));
        assert_eq!(r, Err("Unable to find libcuda.so".to_string()));
        let r: Result<(), String> = quiet(|| std::panic::panic_any(7u8));
        assert_eq!(r, Err("the backend panicked".to_string()));
        assert_eq!(quiet(|| 3), Ok(3));
    }

    #[test]
    fn first_line_is_one_trimmed_line() {
        assert_eq!(first_line("\n  no driver \nbacktrace"), "no driver");
        assert_eq!(first_line(&"x".repeat(1000)).len(), 300);
    }
}
