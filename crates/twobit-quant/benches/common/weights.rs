//! Seeded synthetic weights shared by the benchmark and the `ratios` example.

/// Seeded normal / Laplace weights (xorshift + Box-Muller).
pub fn weights(n: usize, laplace: bool, mut seed: u64) -> Vec<f32> {
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        ((seed >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    (0..n)
        .map(|_| {
            let (u1, u2) = (next(), next());
            let x = if laplace {
                let u = u1 - 0.5;
                -u.signum() * (1.0 - 2.0 * u.abs()).max(1e-300).ln()
            } else {
                (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
            };
            (0.02 * x) as f32
        })
        .collect()
}
