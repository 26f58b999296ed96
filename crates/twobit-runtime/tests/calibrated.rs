//! Int8 activations with calibrated per-layer scales (`Activations::Int8Calibrated`): the
//! stored input range sets one scale per layer (values beyond it saturate); layers without
//! a range quantize per image.
mod common;

use common::conv_net as nets;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use twobit_format::Model;
use twobit_runtime::kernels::int8::{quantize_with, ConvPath};
use twobit_runtime::{Activations, Kernel, Runtime};

/// Each layer's largest |input| over the batch, by node name (as `twobit calibrate` does).
fn ranges(m: &Model, x: &[f32], batch: usize) -> BTreeMap<String, f32> {
    let rt = Runtime::from_model(m).unwrap();
    let arch = m.arch.as_ref().unwrap();
    let mut r = BTreeMap::new();
    rt.layer_inputs(x, batch, None, |l| {
        let node = arch
            .weight_nodes()
            .find(|n| n.op.weight() == Some(l.weight))
            .unwrap();
        let v = r.entry(node.name.clone()).or_insert(0f32);
        *v = l.x.iter().fold(*v, |a, b| a.max(b.abs()));
    })
    .unwrap();
    r
}

fn with_ranges(m: &Model, r: BTreeMap<String, f32>) -> Model {
    let mut m = m.clone();
    m.arch.as_mut().unwrap().input_ranges = r;
    m.validate().unwrap();
    m
}

#[test]
fn one_fixed_scale_per_layer_with_saturation() {
    let mut rng = StdRng::seed_from_u64(5);
    let (first, _) = nets(&mut rng);
    let batch = 6;
    // Images of very different ranges, so a per-layer scale differs from each image's.
    let x: Vec<f32> = (0..batch * 300)
        .map(|i| rng.random_range(-1.0..1.0) * (1 + i / 300) as f32)
        .collect();
    let range = ranges(&first, &x, batch)["n_a"];
    assert_eq!(range, x.iter().fold(0f32, |m, v| m.max(v.abs())));
    for r in [range, range / 2.0] {
        let cal = with_ranges(&first, [("n_a".to_string(), r)].into());
        // The fp32 runtime on the input quantized with the one scale r/127 (clamped).
        let s = r / 127.0;
        let mut q = vec![0i8; x.len()];
        quantize_with(&x, s, &mut q);
        let xd: Vec<f32> = q.iter().map(|&v| v as f32 * s).collect();
        for (k, path) in Kernel::all_available()
            .into_iter()
            .flat_map(|k| [ConvPath::Tile, ConvPath::Gemm, ConvPath::Perm].map(|p| (k, p)))
        {
            let mut rt = Runtime::from_model(&cal).unwrap();
            rt.set_kernel(k);
            rt.set_int8_conv_path(Some(path));
            let want = rt.forward(&xd, batch);
            rt.set_activations(Activations::Int8Calibrated);
            assert_eq!(rt.activations().name(), "int8-calibrated");
            assert_eq!(rt.int8_conv_paths()[0].1, path.name());
            let got = rt.forward(&x, batch);
            common::close(&got, &want, 1e-5, &format!("{k:?} {path:?} range {r}"));
            // ... and not what per-image scales give
            rt.set_activations(Activations::Int8);
            assert_ne!(rt.forward(&x, batch), got, "{k:?} {path:?}");
        }
    }
}

#[test]
fn calibrated_network_stays_close_and_missing_ranges_fall_back() {
    let mut rng = StdRng::seed_from_u64(9);
    let (_, whole) = nets(&mut rng);
    let batch = 32;
    let x: Vec<f32> = (0..batch * 300)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let r = ranges(&whole, &x, batch);
    assert_eq!(r.len(), 3);
    let cal = with_ranges(&whole, r);
    let mut rt = Runtime::from_model(&cal).unwrap();
    let want = rt.forward(&x, batch);
    rt.set_activations(Activations::Int8Calibrated);
    let got = rt.forward(&x, batch);
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let err = got
        .iter()
        .zip(&want)
        .fold(0f32, |m, (g, w)| m.max((g - w).abs()));
    assert!(err <= 0.03 * scale, "max error {err} of {scale}");
}

#[test]
fn a_layer_without_a_range_quantizes_per_image() {
    let mut rng = StdRng::seed_from_u64(11);
    let (first, _) = nets(&mut rng);
    let batch = 4;
    let x: Vec<f32> = (0..batch * 300)
        .map(|i| rng.random_range(-1.0..1.0) * (1 + i / 300) as f32)
        .collect();
    // Each image quantized with its own scale, as per-image int8 does.
    let mut xd = vec![0f32; x.len()];
    for (xs, ds) in x.chunks(300).zip(xd.chunks_mut(300)) {
        let s = xs.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
        let mut q = vec![0i8; 300];
        quantize_with(xs, s, &mut q);
        for (d, &v) in ds.iter_mut().zip(&q) {
            *d = v as f32 * s;
        }
    }
    for path in [ConvPath::Tile, ConvPath::Gemm, ConvPath::Perm] {
        let mut rt = Runtime::from_model(&first).unwrap();
        rt.set_int8_conv_path(Some(path));
        let want = rt.forward(&xd, batch);
        rt.set_activations(Activations::Int8Calibrated);
        let what = format!("no range, {path:?}: per image");
        common::close(&rt.forward(&x, batch), &want, 1e-5, &what);
    }
}
