//! What `train`, `eval`, `compress` and `export` share about a user's network: reading it
//! from a `.twobit` file or an ONNX model, and the `--mean/--std` input normalisation.
use anyhow::{bail, Context};
use std::path::Path;
use twobit_format::{Model, Normalize};

/// `--mean` and `--std`: the normalisation the model expects, for pixels scaled to [0, 1].
#[derive(clap::Args, Clone, Debug, Default)]
pub struct NormArgs {
    /// Per-channel mean subtracted from pixels in [0, 1] (one value, or one per channel).
    #[arg(
        long,
        value_name = "M[,M...]",
        value_delimiter = ',',
        allow_hyphen_values = true
    )]
    pub mean: Option<Vec<f32>>,
    /// Per-channel standard deviation the pixels are divided by (one value, or one per
    /// channel).
    #[arg(long, value_name = "S[,S...]", value_delimiter = ',')]
    pub std: Option<Vec<f32>>,
}

impl NormArgs {
    /// Whether either flag was given.
    pub fn given(&self) -> bool {
        self.mean.is_some() || self.std.is_some()
    }

    /// The normalisation for `channels` input channels: the flags where given (a single
    /// value applies to every channel), the rest from `base`.
    pub fn resolve(&self, channels: usize, base: &Normalize) -> anyhow::Result<Normalize> {
        let expand = |flag: &str, v: &Option<Vec<f32>>, base: &[f32]| -> anyhow::Result<Vec<f32>> {
            match v {
                None => Ok(base.to_vec()),
                Some(v) if v.len() == 1 => Ok(vec![v[0]; channels]),
                Some(v) if v.len() == channels => Ok(v.clone()),
                Some(v) => bail!(
                    "--{flag} has {} values; the model has {channels} input channels (give 1 or {channels})",
                    v.len()
                ),
            }
        };
        let mean = expand("mean", &self.mean, &base.mean)?;
        let std = expand("std", &self.std, &base.std)?;
        if mean.iter().any(|m| !m.is_finite()) {
            bail!("--mean must be finite");
        }
        if std.iter().any(|s| !s.is_finite() || *s <= 0.0) {
            bail!("--std must be finite and positive");
        }
        Ok(Normalize { mean, std })
    }
}

/// Whether `path` names an ONNX model (by its extension).
pub fn is_onnx(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
}

/// Reads a network: an ONNX model (imported into twobit's graph, float weights) or a
/// `.twobit` file. The result has an architecture; `norm` overrides its normalisation.
pub fn load(path: &Path, norm: &NormArgs) -> anyhow::Result<Model> {
    crate::util::check_input(path)?;
    let mut model = if is_onnx(path) {
        let bytes = crate::util::read_file(path)?;
        // The ONNX graph's own name is often generic (PyTorch writes `main_graph`).
        let opts = twobit_onnx::ImportOptions {
            name: path.file_stem().map(|s| s.to_string_lossy().into_owned()),
            ..Default::default()
        };
        twobit_onnx::import(&bytes, &opts)
            .with_context(|| format!("cannot import {}", path.display()))?
    } else {
        Model::load(path).with_context(|| format!("cannot read {}", path.display()))?
    };
    let Some(arch) = model.arch.as_mut() else {
        bail!(
            "{} has no network (architecture): only files written by `twobit train`, \
             `twobit compress` of an ONNX model, or ONNX models can be run",
            path.display()
        );
    };
    arch.normalize = norm.resolve(arch.input[0], &arch.normalize)?;
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_flags() {
        let base = Normalize::identity(3);
        let n = NormArgs {
            mean: Some(vec![0.5]),
            std: None,
        };
        let r = n.resolve(3, &base).unwrap();
        assert_eq!(r.mean, vec![0.5; 3]);
        assert_eq!(r.std, vec![1.0; 3]);
        let n = NormArgs {
            mean: Some(vec![0.1, 0.2, 0.3]),
            std: Some(vec![0.5, 0.5, 0.25]),
        };
        assert_eq!(n.resolve(3, &base).unwrap().std, vec![0.5, 0.5, 0.25]);
        let two = NormArgs {
            mean: Some(vec![0.1, 0.2]),
            std: None,
        };
        assert!(two.resolve(3, &base).is_err());
        let zero = NormArgs {
            mean: None,
            std: Some(vec![0.0]),
        };
        assert!(zero.resolve(3, &base).is_err());
        assert!(!NormArgs::default().given());
    }
}
