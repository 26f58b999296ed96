//! Public API behaviour: validation, round trips, metrics.
mod common;
use common::weights;
use proptest::prelude::*;
use twobit_quant::{
    dequantize, fake_quantize, fit_group, quantize, quantize_after, quantize_with_levels,
    rel_error, sparsity, ttq, Granularity, QuantError, Scheme,
};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Training's fake quantization and the stored file decode to the same bits.
    #[test]
    fn fake_quantize_matches_dequantize(
        d in 0..common::DISTS.len(),
        rows in 1usize..6,
        cols in 1usize..700,
        seed in any::<u64>(),
    ) {
        let w = weights(d, rows * cols, seed);
        let shape = [rows, cols];
        for scheme in Scheme::ALL {
            for g in [Granularity::Tensor, Granularity::Channel] {
                let q = quantize(&w, &shape, scheme, g).unwrap();
                prop_assert_eq!(q.levels.len(), g.groups(&shape));
                prop_assert!(q.codes.iter().all(|&c| (c as usize) < scheme.num_codes()));
                let mut out = vec![f32::NAN; w.len()];
                let levels = fake_quantize(&w, &shape, scheme, g, None, &mut out).unwrap();
                prop_assert_eq!(&levels, &q.levels);
                let deq = dequantize(&q);
                let same = deq.iter().zip(&out).all(|(a, b)| a.to_bits() == b.to_bits());
                prop_assert!(same, "{} {}", scheme, g);
                // The same after a previous fit (another tensor's levels, as in training).
                let prev = quantize(&weights(d + 1, w.len(), seed ^ 1), &shape, scheme, g)
                    .unwrap()
                    .levels;
                let q = quantize_after(&w, &shape, scheme, g, Some(&prev)).unwrap();
                let levels = fake_quantize(&w, &shape, scheme, g, Some(&prev), &mut out).unwrap();
                prop_assert_eq!(&levels, &q.levels);
                let deq = dequantize(&q);
                let same = deq.iter().zip(&out).all(|(a, b)| a.to_bits() == b.to_bits());
                prop_assert!(same, "{} {} after a previous fit", scheme, g);
                for l in &q.levels {
                    prop_assert!(l.values.windows(2).all(|p| p[0] <= p[1]), "{:?}", l);
                    prop_assert!(l.thresholds.windows(2).all(|p| p[0] <= p[1]), "{:?}", l);
                }
            }
        }
    }
}

#[test]
fn per_channel_fits_each_row() {
    let mut w = weights(0, 300, 1);
    w.extend(weights(1, 300, 2).iter().map(|x| x * 10.0));
    let q = quantize(&w, &[2, 300], Scheme::Tern, Granularity::Channel).unwrap();
    assert_eq!(q.levels[0], fit_group(Scheme::Tern, &w[..300]));
    assert_eq!(q.levels[1], fit_group(Scheme::Tern, &w[300..]));
    assert_ne!(q.levels[0], q.levels[1]);
}

#[test]
fn bad_input_is_an_error() {
    let s = Scheme::Tern;
    let t = Granularity::Tensor;
    assert!(matches!(
        quantize(&[1.0, f32::NAN], &[2], s, t),
        Err(QuantError::NonFinite { index: 1, .. })
    ));
    assert!(matches!(
        quantize(&[1.0, f32::INFINITY], &[2], s, t),
        Err(QuantError::NonFinite { index: 1, .. })
    ));
    assert!(matches!(
        quantize(&[1.0, 2.0], &[3], s, t),
        Err(QuantError::ShapeMismatch {
            expected: 3,
            actual: 2,
            ..
        })
    ));
    assert!(matches!(
        quantize(&[], &[0], s, t),
        Err(QuantError::Empty(_))
    ));
    assert!(matches!(
        quantize(&[1.0], &[], s, t),
        Err(QuantError::Empty(_))
    ));
    let mut out = vec![0.0; 1];
    assert!(matches!(
        fake_quantize(&[1.0, 2.0], &[2], s, t, None, &mut out),
        Err(QuantError::OutputLength { .. })
    ));
    let l = fit_group(s, &[1.0, 2.0]);
    assert!(matches!(
        quantize_with_levels(&[1.0, 2.0], &[2, 1], s, Granularity::Channel, vec![l]),
        Err(QuantError::LevelCount {
            expected: 2,
            actual: 1
        })
    ));
    assert!(matches!(
        quantize_after(&[1.0, 2.0], &[2, 1], s, Granularity::Channel, Some(&[l])),
        Err(QuantError::LevelCount {
            expected: 2,
            actual: 1
        })
    ));
    let mut out = vec![0.0; 2];
    assert!(matches!(
        fake_quantize(&[1.0, 2.0], &[2], s, t, Some(&[l, l]), &mut out),
        Err(QuantError::LevelCount {
            expected: 1,
            actual: 2
        })
    ));
    let mut bad = l;
    bad.values[0] = f32::NAN;
    assert!(matches!(
        quantize_with_levels(&[1.0, 2.0], &[2], s, t, vec![bad]),
        Err(QuantError::BadLevels { group: 0 })
    ));
    assert!("nope".parse::<Scheme>().is_err());
    assert!("row".parse::<Granularity>().is_err());
}

#[test]
fn twn_follows_its_rule() {
    let w = [-1.0f32, -0.1, 0.0, 0.2, 0.5, 2.0];
    let l = fit_group(Scheme::Twn, &w);
    let delta = 0.7 * (3.8 / 6.0);
    assert!((l.thresholds[1] - delta).abs() < 1e-6);
    assert_eq!(l.thresholds[0], -l.thresholds[1]);
    // |w| > delta: 1.0, 0.5, 2.0.
    assert!((l.values[2] - 3.5 / 3.0).abs() < 1e-6);
    assert_eq!(l.values[0], -l.values[2]);
}

#[test]
fn atn_and_ttq_follow_their_rules() {
    let w = [-3.0f32, -1.0, 0.0, 0.2, 0.4, 4.0];
    let l = fit_group(Scheme::Atn, &w);
    // Positive: mean 1.533.., delta_p = 1.0733; a_p = 4. Negative: mean 2, delta_n 1.4; a_n 3.
    assert!((l.thresholds[1] - 0.7 * 4.6 / 3.0).abs() < 1e-6);
    assert!((l.thresholds[0] + 1.4).abs() < 1e-6);
    assert_eq!(l.values[2], 4.0);
    assert_eq!(l.values[0], -3.0);
    let l = fit_group(Scheme::Ttq, &w);
    assert!((ttq::threshold(&w) - 0.2).abs() < 1e-7);
    // w > 0.2: 0.4, 4.0; w < -0.2: -3, -1.
    assert!((l.values[2] - 2.2).abs() < 1e-6);
    assert_eq!(l.values[0], -2.0);
    let learned = ttq::levels(&w, 1.5, 0.5);
    assert_eq!(learned.values[..3], [-0.5, 0.0, 1.5]);
    assert_eq!(learned.code(0.1), 1);
    assert_eq!(learned.code(0.3), 2);
}

#[test]
fn metrics_make_sense() {
    let w = weights(0, 5000, 3);
    let q = quantize(&w, &[5000], Scheme::Tern, Granularity::Tensor).unwrap();
    let e = rel_error(&w, &q);
    assert!(e > 0.0 && e < 1.0, "{e}");
    let z = sparsity(&q);
    let expect = q.codes.iter().filter(|&&c| c == 1).count() as f64 / 5000.0;
    assert_eq!(z, expect);
    let qf = quantize(&w, &[5000], Scheme::QuatFree, Granularity::Tensor).unwrap();
    assert!(rel_error(&w, &qf) < e, "four free levels beat ternary");
    let zero = quantize(&[0.0; 4], &[4], Scheme::Tern, Granularity::Tensor).unwrap();
    assert_eq!(rel_error(&[0.0; 4], &zero), 0.0);
    assert_eq!(sparsity(&zero), 1.0);
}
