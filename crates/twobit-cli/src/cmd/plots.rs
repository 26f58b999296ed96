//! Weight histograms of a file's layers with the quantizer's levels and thresholds marked
//! (`twobit inspect --plot`, and the experiment report).
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use twobit_format::{Model, Tensor};
use twobit_plot::Marks;
use twobit_quant::{Levels, Scheme};

/// The marks of one level table: levels of reachable codes (ternary tables repeat their top
/// level in the unused code 3) and finite thresholds.
pub fn marks(l: &Levels) -> Marks {
    let mut levels = vec![l.values[0]];
    for k in 1..4 {
        if l.thresholds[k - 1].is_finite() {
            levels.push(l.values[k]);
        }
    }
    Marks {
        levels,
        thresholds: l
            .thresholds
            .iter()
            .copied()
            .filter(|t| t.is_finite())
            .collect(),
    }
}

fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The weight tensors to draw (packed, or float of rank ≥ 2): all of them, or at most `max`
/// spread evenly from first to last.
fn chosen(model: &Model, max: Option<usize>) -> Vec<&String> {
    let all: Vec<&String> = model
        .tensors
        .iter()
        .filter(|(_, t)| match t {
            Tensor::Packed(_) => true,
            Tensor::Float(f) => f.shape.len() >= 2,
            Tensor::Int(_) => false,
        })
        .map(|(n, _)| n)
        .collect();
    match max {
        Some(m) if m > 0 && all.len() > m => {
            let mut picked: Vec<&String> = (0..m)
                .map(|i| all[i * (all.len() - 1) / (m - 1).max(1)])
                .collect();
            picked.dedup();
            picked
        }
        _ => all,
    }
}

/// One histogram per weight layer of `file`, written as `DIR/PREFIX-LAYER.{png,svg}`.
/// - Packed layers: the float weights from `latent` (any safetensors file with the same tensor
///   names: train's shadow weights, or the float model that was compressed) under the
///   stored levels and thresholds (per-channel files: channel 0's weights and levels).
/// - Float weight tensors (rank ≥ 2) when `scheme` is given: the weights under the levels that
///   scheme fits per tensor.
pub fn histograms(
    file: &Path,
    latent: Option<&Path>,
    scheme: Option<Scheme>,
    dir: &Path,
    prefix: &str,
    max_layers: Option<usize>,
) -> anyhow::Result<Vec<PathBuf>> {
    crate::util::check_input(file)?;
    let model = Model::load(file).with_context(|| format!("cannot read {}", file.display()))?;
    // Any safetensors file will do: train's `.latent.safetensors`, or the float model that was
    // compressed (same tensor names).
    let latent = latent.map(crate::util::read_float_tensors).transpose()?;
    let mut out = Vec::new();
    let mut missing = Vec::new();
    let names = chosen(&model, max_layers);
    for (name, t) in model.tensors.iter().filter(|(n, _)| names.contains(n)) {
        let (values, levels, title) = match t {
            Tensor::Packed(p) => {
                let Some(f) = latent.as_ref().and_then(|l| l.get(name)) else {
                    missing.push(name.clone());
                    continue;
                };
                if f.shape != p.shape {
                    bail!(
                        "{name}: float weights have shape {:?}, the file {:?}",
                        f.shape,
                        p.shape
                    );
                }
                // Per channel, each output channel has its own levels: draw channel 0's
                // weights under channel 0's levels (all weights under one channel's levels
                // would misrepresent the fit), and say so in the title.
                let groups = p.levels.len();
                let all = f.to_f32();
                let (values, which) = if groups > 1 {
                    let per = all.len() / groups;
                    (
                        all[..per].to_vec(),
                        format!(", channel 0 of {groups} ({per} weights)"),
                    )
                } else {
                    (all, String::new())
                };
                let title = format!(
                    "{name} — {} per {}{which}, sparsity {:.2}",
                    p.scheme.name(),
                    p.granularity.name(),
                    p.sparsity()
                );
                (values, p.levels[0], title)
            }
            // not chosen (see `chosen`), never plotted
            Tensor::Int(_) => continue,
            Tensor::Float(f) => {
                let Some(s) = scheme else { continue };
                if f.shape.len() < 2 {
                    continue;
                }
                let w = f.to_f32();
                if w.iter().any(|v| !v.is_finite()) {
                    bail!("{name}: weights are not all finite");
                }
                let levels = twobit_quant::fit_group(s, &w);
                (
                    w,
                    levels,
                    format!("{name} — float weights, {} levels per tensor", s.name()),
                )
            }
        };
        let stem = dir.join(format!(
            "{prefix}-{}",
            file_safe(name.trim_end_matches(".weight"))
        ));
        out.extend(twobit_plot::histogram(
            &stem,
            &title,
            &values,
            80,
            &marks(&levels),
        )?);
    }
    if !missing.is_empty() && out.is_empty() {
        bail!(
            "{} holds packed codes only; its float weights are needed for a histogram: pass --latent FILE (`twobit train --save-latent` writes FILE.latent.safetensors), or --scheme S for a float file",
            file.display()
        );
    }
    if !missing.is_empty() {
        eprintln!(
            "warning: no float weights for {}: skipped",
            missing.join(", ")
        );
    }
    if out.is_empty() {
        bail!(
            "{} has no weight tensor to plot (float files need --scheme S)",
            file.display()
        );
    }
    Ok(out)
}
