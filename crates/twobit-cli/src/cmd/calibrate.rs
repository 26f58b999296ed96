//! `compress --calibrate`: post-training quantization that fits each layer's output instead
//! of its weights. The float network runs on calibration images; each quantized layer's
//! input Gram matrix `XᵀX` (convolutions through their im2col view, one matrix per group)
//! is accumulated in f64 batch by batch, and [`twobit_quant::quantize_calibrated`] chooses
//! codes (GPTQ-style) and exact levels for it; the bias then absorbs the mean output shift.
//! Layers go in graph order. Sequential (default): each layer's inputs come from the
//! network with the layers before it already quantized. Independent: every layer sees the
//! float network's inputs.
use anyhow::{anyhow, bail, Context};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use twobit_format::{FloatTensor, Model, Op, Tensor};
use twobit_quant::{CalibOptions, CalibReport, Gram, Granularity, Quantized, Scheme};
use twobit_runtime::Runtime;

/// Calibration settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Dataset name (`--calibrate`).
    pub dataset: String,
    /// Dataset directory.
    pub data_dir: Option<PathBuf>,
    /// Training images used (the first N).
    pub images: usize,
    /// Float inputs for every layer instead of the partly quantized network's.
    pub independent: bool,
    /// Correct each layer's mean output shift through its bias.
    pub bias_correction: bool,
    /// GPTQ's act order (largest-energy inputs rounded first).
    pub act_order: bool,
}

/// One calibrated tensor.
pub struct Calibrated {
    /// Codes and levels.
    pub q: Quantized,
    /// Relative output errors before/after.
    pub report: CalibReport,
    /// Whether its mean output shift was corrected (false when the layer has no bias and
    /// no batch norm of its own after it).
    pub bias_corrected: bool,
}

/// Images per forward pass.
const BATCH: usize = 256;

/// Adds a chunk of rows to `g`: `XᵀX` of the chunk by the fp32 GEMM (summed in f64 across
/// chunks), which is an order of magnitude faster than the f64 loop on wide layers.
fn gram_add(
    g: &mut Gram,
    x: &[f32],
    rows: usize,
    cols: usize,
    xt: &mut Vec<f32>,
    xtx: &mut Vec<f32>,
) {
    // At most this many rows per f32 product, so its sums stay accurate (~1e-6).
    const ROWS: usize = 4096;
    debug_assert_eq!(x.len(), rows * cols);
    for x in x.chunks(ROWS * cols) {
        let rows = x.len() / cols;
        xt.resize(rows * cols, 0.0);
        for (r, row) in x.chunks_exact(cols).enumerate() {
            for (c, &v) in row.iter().enumerate() {
                xt[c * rows + r] = v;
            }
        }
        xtx.resize(cols * cols, 0.0);
        twobit_runtime::fp32::sgemm(cols, cols, rows, xt, x, false, xtx, true);
        g.add_product(x, xtx);
    }
}

/// Calibrates the weight tensors named in `quantize` (float in `model`, which must have a
/// network) in graph order, each with the granularity `granularity` gives for its shape,
/// and writes the corrected biases (or batch-norm running means) into `model`. Returns the
/// quantized tensors; `model`'s weight tensors are left as they were.
pub fn calibrate(
    model: &mut Model,
    quantize: &BTreeSet<String>,
    scheme: Scheme,
    granularity: &dyn Fn(&[usize]) -> Granularity,
    s: &Settings,
) -> anyhow::Result<BTreeMap<String, Calibrated>> {
    let arch = model.arch.clone().context("calibration needs a network")?;
    let kind = super::dataset::kind(&s.dataset)?;
    let loaded = super::dataset::load(kind, s.data_dir.as_deref(), arch.input)?;
    let train = &loaded.splits.train;
    let n = s.images.min(train.len());
    if n == 0 {
        bail!(
            "--calib-images must be at least 1 (the training split has {} images)",
            train.len()
        );
    }
    let img_len = train.image_len();
    let pixels: Vec<f32> = train.images[..n * img_len]
        .iter()
        .map(|&p| p as f32 / 255.0)
        .collect();
    let batches: Vec<(&[f32], usize)> = pixels
        .chunks(BATCH * img_len)
        .map(|c| (c, c.len() / img_len))
        .collect();
    // Each layer and where its mean output shift goes: its bias (+shift), or, without one,
    // the running mean of a batch norm that alone reads its output (−shift, the same
    // correction after normalisation).
    let layers: Vec<(String, Option<(String, f32)>)> = arch
        .weight_nodes()
        .filter_map(|node| {
            let (Op::Conv { weight, bias, .. } | Op::Linear { weight, bias }) = &node.op else {
                return None;
            };
            if !quantize.contains(weight) {
                return None;
            }
            let readers: Vec<_> = arch
                .nodes
                .iter()
                .filter(|n| n.inputs.contains(&node.output))
                .collect();
            let target = match (bias, readers.as_slice()) {
                (Some(b), _) => Some((b.clone(), 1.0)),
                (None, [n]) if arch.output != node.output => match &n.op {
                    Op::BatchNorm { running_mean, .. } => Some((running_mean.clone(), -1.0)),
                    _ => None,
                },
                _ => None,
            };
            Some((weight.clone(), target))
        })
        .collect();

    // Mean input of every calibrated layer in the float network (bias correction's target).
    let float_rt = Runtime::from_model(model).map_err(|e| anyhow!("{e}"))?;
    let mut sums: BTreeMap<String, (Vec<f64>, u64)> = BTreeMap::new();
    for &(x, b) in &batches {
        float_rt
            .layer_inputs_raw(x, b, None, |li| {
                let e = sums
                    .entry(li.weight.to_string())
                    .or_insert_with(|| (vec![0.0; li.groups * li.cols], 0));
                let off = li.group * li.cols;
                for row in li.x.chunks_exact(li.cols) {
                    for (a, &v) in e.0[off..off + li.cols].iter_mut().zip(row) {
                        *a += v as f64;
                    }
                }
                if li.group == 0 {
                    e.1 += li.rows as u64;
                }
            })
            .map_err(|e| anyhow!("{e}"))?;
    }
    let float_mean = |name: &str| -> Vec<f64> {
        let (s, k) = &sums[name];
        s.iter().map(|v| v / (*k).max(1) as f64).collect()
    };

    let opts = CalibOptions {
        act_order: s.act_order,
        ..CalibOptions::default()
    };
    let mut out = BTreeMap::new();
    let mut originals = Vec::new();
    let mut rt = float_rt;
    for (name, bias) in &layers {
        // Gram matrices of this layer's input, one per conv group.
        let mut grams: Vec<Gram> = Vec::new();
        let (mut xt, mut xtx) = (Vec::new(), Vec::new());
        for &(x, b) in &batches {
            rt.layer_inputs_raw(x, b, Some(name), |li| {
                if grams.is_empty() {
                    grams = (0..li.groups).map(|_| Gram::new(li.cols)).collect();
                }
                gram_add(
                    &mut grams[li.group],
                    li.x,
                    li.rows,
                    li.cols,
                    &mut xt,
                    &mut xtx,
                );
            })
            .map_err(|e| anyhow!("{e}"))?;
        }
        if grams.is_empty() {
            bail!("layer `{name}` was not reached when running the network");
        }
        let Some(Tensor::Float(wt)) = model.tensors.get(name) else {
            bail!("tensor `{name}` is not a float tensor");
        };
        let (dtype, shape) = (wt.dtype, wt.shape.clone());
        let w = wt.to_f32();
        let mats: Vec<Vec<f64>> = grams.iter().map(Gram::matrix).collect();
        let refs: Vec<&[f64]> = mats.iter().map(Vec::as_slice).collect();
        let (q, report) = twobit_quant::quantize_calibrated(
            &w,
            &shape,
            scheme,
            granularity(&shape),
            &refs,
            &opts,
        )
        .with_context(|| format!("cannot quantize tensor '{name}'"))?;
        let deq = twobit_quant::dequantize(&q);
        let mut bias_corrected = false;
        if let (true, Some((bname, sign))) = (s.bias_correction, bias) {
            let cols = w.len() / shape[0];
            let mean_q: Vec<f64> = grams.iter().flat_map(Gram::mean).collect();
            let mean_f = if s.independent {
                mean_q.clone()
            } else {
                float_mean(name)
            };
            let shift = twobit_quant::calibrate::mean_shift(&w, &deq, cols, &mean_f, &mean_q);
            if let Some(Tensor::Float(bt)) = model.tensors.get(bname) {
                let b: Vec<f32> = (bt.to_f32().iter().zip(&shift))
                    .map(|(b, d)| b + sign * d)
                    .collect();
                let nb = FloatTensor::from_f32_as(bt.dtype, bt.shape.clone(), &b);
                model.tensors.insert(bname.clone(), Tensor::Float(nb));
                bias_corrected = true;
            }
        }
        if !s.independent {
            // The next layers see this one quantized (and its corrected bias).
            let t = FloatTensor::from_f32_as(dtype, shape.clone(), &deq);
            originals.push((
                name.clone(),
                model.tensors.insert(name.clone(), Tensor::Float(t)),
            ));
            rt = Runtime::from_model(model).map_err(|e| anyhow!("{e}"))?;
        }
        out.insert(
            name.clone(),
            Calibrated {
                q,
                report,
                bias_corrected,
            },
        );
    }
    for (name, t) in originals {
        if let Some(t) = t {
            model.tensors.insert(name, t);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Accuracy of `model` on the first `limit` test images.
    fn accuracy(model: &Model, limit: usize) -> f64 {
        let rt = Runtime::from_model(model).unwrap();
        let arch = model.arch.clone().unwrap();
        let kind = crate::cmd::dataset::kind("fashion-mnist").unwrap();
        let test = crate::cmd::dataset::load(kind, None, arch.input)
            .unwrap()
            .splits
            .test;
        let n = limit.min(test.len());
        let len = test.image_len();
        let mut right = 0;
        for start in (0..n).step_by(500) {
            let b = (n - start).min(500);
            let x: Vec<f32> = test.images[start * len..(start + b) * len]
                .iter()
                .map(|&p| p as f32 / 255.0)
                .collect();
            let y = rt.forward_raw(&x, b);
            for (i, row) in y.chunks(arch.classes).enumerate() {
                let arg = (0..row.len())
                    .max_by(|&a, &c| row[a].total_cmp(&row[c]))
                    .unwrap();
                right += (arg == test.labels[start + i] as usize) as usize;
            }
        }
        100.0 * right as f64 / n as f64
    }

    /// The reference CNN, every scheme: uncalibrated vs calibrated accuracy (manual run:
    /// `cargo test --release -p twobit-cli calibrate::tests::cnn -- --ignored --nocapture`).
    #[test]
    #[ignore = "needs reference/onnx/cnn.onnx and Fashion-MNIST; prints a table"]
    fn cnn_table() {
        // CALIB_MODEL: another float network (its stored normalisation is used).
        let (path, norm) = match std::env::var("CALIB_MODEL") {
            Ok(p) => (std::path::PathBuf::from(p), Default::default()),
            Err(_) => (
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../../reference/onnx/cnn.onnx"),
                crate::cmd::network::NormArgs {
                    mean: Some(vec![0.2860]),
                    std: Some(vec![0.3530]),
                },
            ),
        };
        let base = crate::cmd::network::load(&path, &norm).unwrap();
        let all = std::env::var("CALIB_ALL").is_ok();
        let names: Vec<String> = base
            .arch
            .as_ref()
            .unwrap()
            .weight_nodes()
            .map(|n| n.op.weight().unwrap().to_string())
            .collect();
        let quantize: BTreeSet<String> = names
            .iter()
            .enumerate()
            .filter(|(i, _)| all || (*i != 0 && i + 1 != names.len()))
            .map(|(_, n)| n.clone())
            .collect();
        println!("float {:.2}", accuracy(&base, 10000));
        let only = std::env::var("CALIB_ONLY").unwrap_or_default(); // e.g. "channel tern"
        for g in [Granularity::Tensor, Granularity::Channel] {
            for scheme in [
                Scheme::Twn,
                Scheme::Atn,
                Scheme::Tern,
                Scheme::Quat,
                Scheme::QuatFree,
            ] {
                if !only.is_empty() && only != format!("{g} {scheme}") {
                    continue;
                }
                let mut plain = base.clone();
                for n in &quantize {
                    let Some(Tensor::Float(t)) = plain.tensors.get(n) else {
                        panic!()
                    };
                    let q = twobit_quant::quantize(&t.to_f32(), &t.shape, scheme, g).unwrap();
                    plain.tensors.insert(
                        n.clone(),
                        Tensor::Packed(twobit_format::PackedTensor::from_quantized(&q)),
                    );
                }
                let mut line = format!("{g} {scheme}: plain {:.2}", accuracy(&plain, 10000));
                for independent in [false, true] {
                    let mut m = base.clone();
                    let t0 = std::time::Instant::now();
                    let s = Settings {
                        dataset: "fashion-mnist".into(),
                        data_dir: None,
                        images: 1024,
                        independent,
                        bias_correction: std::env::var("CALIB_NO_BIAS").is_err(),
                        act_order: std::env::var("CALIB_NO_ACT").is_err(),
                    };
                    let out = calibrate(&mut m, &quantize, scheme, &|_| g, &s).unwrap();
                    let dt = t0.elapsed().as_secs_f64();
                    for (n, c) in &out {
                        m.tensors.insert(
                            n.clone(),
                            Tensor::Packed(twobit_format::PackedTensor::from_quantized(&c.q)),
                        );
                    }
                    let errs: Vec<String> = out
                        .values()
                        .map(|c| format!("{:.3}->{:.3}", c.report.before, c.report.after))
                        .collect();
                    line += &format!(
                        "  {} {:.2} ({dt:.1}s; {})",
                        if independent { "indep" } else { "seq" },
                        accuracy(&m, 10000),
                        errs.join(" ")
                    );
                }
                println!("{line}");
            }
        }
    }
}
