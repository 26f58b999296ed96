//! Test helpers: seeded weight generators for several distributions.
#![allow(dead_code)]
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The distributions the property tests draw from.
pub const DISTS: [&str; 10] = [
    "normal", "laplace", "skewed", "bimodal", "outliers", "positive", "ties", "constant", "zero",
    "sparse",
];

fn normal(r: &mut StdRng) -> f32 {
    // Box-Muller: rand_distr is not a dependency.
    let u1: f64 = r.random_range(f64::EPSILON..1.0);
    let u2: f64 = r.random();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

fn laplace(r: &mut StdRng) -> f32 {
    let u: f64 = r.random_range(-0.5..0.5);
    (-u.signum() * (1.0 - 2.0 * u.abs()).max(f64::MIN_POSITIVE).ln()) as f32
}

/// `n` weights from distribution `dist` (an index into [`DISTS`]).
pub fn weights(dist: usize, n: usize, seed: u64) -> Vec<f32> {
    let mut r = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| match DISTS[dist % DISTS.len()] {
            "normal" => 0.05 * normal(&mut r),
            "laplace" => 0.05 * laplace(&mut r),
            "skewed" => {
                let x = normal(&mut r);
                if x > 0.0 {
                    x * 3.0
                } else {
                    x * 0.3
                }
            }
            "bimodal" => {
                let c = if r.random::<bool>() { 1.5 } else { -0.7 };
                c + 0.2 * normal(&mut r)
            }
            "outliers" => {
                let x = normal(&mut r);
                if r.random_range(0..50) == 0 {
                    x * 100.0
                } else {
                    x
                }
            }
            "positive" => normal(&mut r).abs() + 0.01,
            "ties" => (r.random_range(-3i32..=4) as f32) * 0.25,
            "constant" => 3.0,
            "zero" => 0.0,
            _ => {
                if r.random_range(0..4) == 0 {
                    normal(&mut r)
                } else {
                    0.0
                }
            }
        })
        .collect()
}

/// Squared error of a level table applied to `w` (nearest by its thresholds).
pub fn sse(w: &[f32], l: &twobit_quant::Levels) -> f64 {
    w.iter()
        .map(|&x| {
            let e = x as f64 - l.value(l.code(x)) as f64;
            e * e
        })
        .sum()
}

/// `sum w^2`.
pub fn energy(w: &[f32]) -> f64 {
    w.iter().map(|&x| x as f64 * x as f64).sum()
}
