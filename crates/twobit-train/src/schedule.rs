//! Learning-rate schedules.
use crate::config::ScheduleKind;

/// The learning rate for iteration `iter` (0-based) of epoch `epoch` (0-based).
///
/// - `cosine`: per iteration, `lr * (1 + cos(pi * t / T)) / 2` with `t` the global iteration and
///   `T = epochs * iters_per_epoch`, reaching 0 after the last step.
/// - `step`: per epoch, `lr`, then `lr / 10` from epoch `floor(epochs / 2)` and `lr / 100`
///   from epoch `floor(3 * epochs / 4)` (0-based).
pub fn learning_rate(
    kind: ScheduleKind,
    base: f64,
    epoch: usize,
    iter: usize,
    iters_per_epoch: usize,
    epochs: usize,
) -> f64 {
    match kind {
        ScheduleKind::Cosine => {
            let total = (epochs * iters_per_epoch).max(1) as f64;
            let t = (epoch * iters_per_epoch + iter) as f64;
            base * 0.5 * (1.0 + (std::f64::consts::PI * t / total).cos())
        }
        ScheduleKind::Step => {
            let milestones = [epochs / 2, epochs * 3 / 4];
            let passed = milestones.iter().filter(|&&m| m > 0 && epoch >= m).count();
            base * 0.1f64.powi(passed as i32)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_starts_at_base_and_decreases() {
        let lr = |e, i| learning_rate(ScheduleKind::Cosine, 0.1, e, i, 10, 4);
        assert_eq!(lr(0, 0), 0.1);
        assert!((lr(2, 0) - 0.05).abs() < 1e-12);
        assert!(lr(3, 9) < lr(3, 8));
        assert!(lr(3, 9) > 0.0);
    }

    #[test]
    fn step_divides_by_ten_at_half_and_three_quarters() {
        let lr = |e| learning_rate(ScheduleKind::Step, 1.0, e, 0, 10, 8);
        assert_eq!(lr(3), 1.0);
        assert!((lr(4) - 0.1).abs() < 1e-12);
        assert!((lr(6) - 0.01).abs() < 1e-12);
    }
}
