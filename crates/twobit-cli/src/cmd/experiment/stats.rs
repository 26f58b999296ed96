//! Mean, sample standard deviation, and the "is this difference bigger than the noise" test the
//! report uses.

/// Mean and sample standard deviation (n - 1; 0 for a single value).
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    if v.len() < 2 {
        return (mean, 0.0);
    }
    let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// Difference of means `a - b` and its standard error `sqrt(sa²/na + sb²/nb)`.
pub fn diff(a: &[f64], b: &[f64]) -> (f64, f64) {
    let (ma, sa) = mean_std(a);
    let (mb, sb) = mean_std(b);
    let se = (sa * sa / a.len().max(1) as f64 + sb * sb / b.len().max(1) as f64).sqrt();
    (ma - mb, se)
}

/// How a difference compares with its noise: "better" / "worse" when it exceeds two standard
/// errors (and there are at least two seeds on each side), "tie" otherwise.
pub fn verdict(a: &[f64], b: &[f64]) -> &'static str {
    let (d, se) = diff(a, b);
    if a.len() < 2 || b.len() < 2 || d.abs() <= 2.0 * se {
        "tie"
    } else if d > 0.0 {
        "better"
    } else {
        "worse"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_std_matches_hand_values() {
        let (m, s) = mean_std(&[0.90, 0.92, 0.94]);
        assert!((m - 0.92).abs() < 1e-12);
        assert!((s - 0.02).abs() < 1e-12);
        assert_eq!(mean_std(&[0.5]), (0.5, 0.0));
        assert!(mean_std(&[]).0.is_nan());
    }

    #[test]
    fn verdict_needs_two_standard_errors() {
        let a = [0.910, 0.912, 0.911];
        let b = [0.900, 0.901, 0.902];
        assert_eq!(verdict(&a, &b), "better");
        assert_eq!(verdict(&b, &a), "worse");
        let noisy = [0.88, 0.93, 0.90];
        assert_eq!(verdict(&noisy, &b), "tie");
        assert_eq!(verdict(&[0.99], &b), "tie", "one seed cannot win");
    }
}
