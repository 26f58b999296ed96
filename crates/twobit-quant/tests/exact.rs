//! The exact schemes against brute force on small inputs.
mod common;
use common::{energy, sse, weights, DISTS};
use proptest::prelude::*;
use twobit_quant::quat::{Side, SIDE_MARGIN};
use twobit_quant::{fit_group, fit_group_after, Levels, Scheme};

/// `s^2/n` of a slice (0 when empty).
fn gain(v: &[f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let s: f64 = v.iter().sum();
    s * s / v.len() as f64
}

/// Ascending magnitudes of one sign.
fn side(w: &[f32], positive: bool) -> Vec<f64> {
    let mut v: Vec<f64> = w
        .iter()
        .filter(|&&x| if positive { x > 0.0 } else { x < 0.0 })
        .map(|&x| (x as f64).abs())
        .collect();
    v.sort_by(f64::total_cmp);
    v
}

/// Best gain of one level plus a pinned zero: every top-k split.
fn brute_one(m: &[f64]) -> f64 {
    (0..=m.len()).map(|i| gain(&m[i..])).fold(0.0, f64::max)
}

/// Best gain of two levels plus a pinned zero: every pair of splits.
fn brute_two(m: &[f64]) -> f64 {
    let n = m.len();
    let mut best = 0.0f64;
    for i in 0..=n {
        for j in i..=n {
            best = best.max(gain(&m[i..j]) + gain(&m[j..]));
        }
    }
    best
}

/// Best gain of four free contiguous clusters of the sorted values.
fn brute_free4(w: &[f32]) -> f64 {
    let mut v: Vec<f64> = w.iter().map(|&x| x as f64).collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let mut best = 0.0f64;
    for a in 0..=n {
        for b in a..=n {
            for c in b..=n {
                let g = gain(&v[..a]) + gain(&v[a..b]) + gain(&v[b..c]) + gain(&v[c..]);
                best = best.max(g);
            }
        }
    }
    best
}

/// The brute-force optimal squared error of a scheme.
fn brute_sse(scheme: Scheme, w: &[f32]) -> f64 {
    let (p, n) = (side(w, true), side(w, false));
    let g = match scheme {
        Scheme::Tern => brute_one(&p) + brute_one(&n),
        Scheme::Quat => (brute_two(&p) + brute_one(&n)).max(brute_one(&p) + brute_two(&n)),
        Scheme::QuatFree => brute_free4(w),
        _ => unreachable!("only exact schemes"),
    };
    (energy(w) - g).max(0.0)
}

fn check_exact(scheme: Scheme, w: &[f32]) -> Result<(), TestCaseError> {
    let l = fit_group(scheme, w);
    prop_assert!(l.values.windows(2).all(|p| p[0] <= p[1]), "{l:?}");
    prop_assert!(l.thresholds.windows(2).all(|p| p[0] <= p[1]), "{l:?}");
    let got = sse(w, &l);
    let best = brute_sse(scheme, w);
    // Relative tolerance for summation order and f32 levels; never level equality.
    let tol = 1e-5 * best + 1e-9 * energy(w) + 1e-30;
    prop_assert!(
        got <= best + tol,
        "{scheme}: sse {got} > brute {best} for {w:?} -> {l:?}"
    );
    // The brute force is a true optimum: nothing beats it by more than rounding.
    prop_assert!(
        got >= best - tol,
        "{scheme}: brute force {best} beaten by {got}"
    );
    Ok(())
}

/// A `quat` level table with two levels on `side` (only its side matters to a refit).
fn table(side: Side) -> Levels {
    let l = match side {
        Side::Positive => fit_group(Scheme::Quat, &[-1.0, 1.0, 2.0, 2.0, 3.0, 3.0]),
        Side::Negative => fit_group(Scheme::Quat, &[1.0, -1.0, -2.0, -2.0, -3.0, -3.0]),
    };
    assert_eq!(Side::of(&l), Some(side), "{l:?}");
    l
}

/// A refit after a previous table keeps its side unless the other side's brute-force gain
/// beats it by more than the margin, and is then exact for the side it keeps.
fn check_refit(w: &[f32]) -> Result<(), TestCaseError> {
    let (p, n) = (side(w, true), side(w, false));
    let gain_of = |s: Side| match s {
        Side::Positive => brute_two(&p) + brute_one(&n),
        Side::Negative => brute_one(&p) + brute_two(&n),
    };
    let tol = 1e-5 * energy(w) + 1e-30;
    for (prev, other) in [
        (Side::Positive, Side::Negative),
        (Side::Negative, Side::Positive),
    ] {
        let (g_prev, g_other) = (gain_of(prev), gain_of(other));
        let edge = g_prev * (1.0 + SIDE_MARGIN);
        if (g_other - edge).abs() <= tol {
            continue; // On the margin: either answer is right up to rounding.
        }
        let want = if g_other > edge { g_other } else { g_prev };
        let l = fit_group_after(Scheme::Quat, w, Some(&table(prev)));
        let got = energy(w) - sse(w, &l);
        prop_assert!(
            (got - want).abs() <= tol,
            "after {prev:?}: gain {got}, want {want} (prev side {g_prev}, other {g_other}) \
             for {w:?} -> {l:?}"
        );
    }
    Ok(())
}

#[test]
fn quat_side_of_reads_the_zero_code() {
    let l = |values: [f32; 4]| Levels {
        values,
        thresholds: [0.0; 3],
    };
    assert_eq!(Side::of(&l([-1.0, 0.0, 1.0, 2.0])), Some(Side::Positive));
    assert_eq!(Side::of(&l([0.0, 0.0, 1.0, 2.0])), Some(Side::Positive));
    assert_eq!(Side::of(&l([-2.0, -1.0, 0.0, 1.0])), Some(Side::Negative));
    assert_eq!(Side::of(&l([-2.0, -1.0, 0.0, 0.0])), Some(Side::Negative));
    // One sign empty on the one-level side: the zero sits at codes 1 and 2.
    assert_eq!(Side::of(&l([-1.0, 0.0, 0.0, 0.0])), None);
    assert_eq!(Side::of(&l([-2.0, -1.0, 1.0, 2.0])), None);
}

#[test]
fn quat_refit_of_symmetric_weights_keeps_either_side_exactly() {
    // Mirror-symmetric weights: both sides are equally good, so a refit keeps whichever it
    // had, and the two answers mirror each other. 3000 weights take the histogram path.
    for n in [300usize, 3000] {
        let half = weights(0, n / 2, 11);
        let w: Vec<f32> = half.iter().flat_map(|&x| [x, -x]).collect();
        let pos = fit_group(Scheme::Quat, &w);
        assert_eq!(Side::of(&pos), Some(Side::Positive), "ties go positive");
        let after_pos = fit_group_after(Scheme::Quat, &w, Some(&table(Side::Positive)));
        assert_eq!(after_pos, pos);
        let neg = fit_group_after(Scheme::Quat, &w, Some(&table(Side::Negative)));
        assert_eq!(Side::of(&neg), Some(Side::Negative), "{neg:?}");
        for (a, b) in neg.values.iter().zip(pos.values.iter().rev()) {
            assert!(
                (a + b).abs() <= 1e-6 * b.abs(),
                "{neg:?} vs mirrored {pos:?}"
            );
        }
    }
}

#[test]
fn quat_refit_switches_when_the_other_side_is_clearly_better() {
    // "skewed": positives three times wider than negatives.
    let w = weights(2, 5000, 3);
    let best = fit_group(Scheme::Quat, &w);
    assert_eq!(Side::of(&best), Some(Side::Positive));
    let after = fit_group_after(Scheme::Quat, &w, Some(&table(Side::Negative)));
    assert_eq!(after, best);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(600))]

    #[test]
    fn quat_refit_follows_the_margin_rule(
        d in 0..DISTS.len(),
        n in 1usize..32,
        seed in any::<u64>(),
        scale in 0.5f32..1.5,
    ) {
        // `scale` on the negatives moves the two sides' gains across the margin.
        let w: Vec<f32> = weights(d, n, seed)
            .into_iter()
            .map(|x| if x < 0.0 { x * scale } else { x })
            .collect();
        check_refit(&w)?;
    }

    #[test]
    fn tern_is_optimal(d in 0..DISTS.len(), n in 1usize..40, seed in any::<u64>()) {
        check_exact(Scheme::Tern, &weights(d, n, seed))?;
    }

    #[test]
    fn quat_is_optimal(d in 0..DISTS.len(), n in 1usize..32, seed in any::<u64>()) {
        check_exact(Scheme::Quat, &weights(d, n, seed))?;
    }

    #[test]
    fn quat_free_is_optimal(d in 0..DISTS.len(), n in 1usize..24, seed in any::<u64>()) {
        check_exact(Scheme::QuatFree, &weights(d, n, seed))?;
    }

    #[test]
    fn tiny_groups_are_optimal(n in 1usize..=3, v in prop::collection::vec(-4.0f32..4.0, 3)) {
        for s in [Scheme::Tern, Scheme::Quat, Scheme::QuatFree] {
            check_exact(s, &v[..n])?;
        }
    }
}

#[test]
fn constant_and_zero_groups_decode_exactly() {
    for s in [Scheme::Tern, Scheme::Quat, Scheme::QuatFree] {
        for c in [3.0f32, -2.5, 0.0] {
            for n in [1usize, 5, 3000] {
                let w = vec![c; n];
                let l = fit_group(s, &w);
                for &x in &w {
                    assert_eq!(l.value(l.code(x)), c, "{s} on {n} x {c}: {l:?}");
                }
            }
        }
    }
}

#[test]
fn quat_keeps_zeros_and_uses_four_codes() {
    let w = weights(0, 1000, 7);
    let mut w2 = w.clone();
    w2.extend([0.0; 50]);
    let l = fit_group(Scheme::Quat, &w2);
    assert!(l.values.contains(&0.0));
    let mut used = [false; 4];
    for &x in &w2 {
        used[l.code(x) as usize] = true;
        if x == 0.0 {
            assert_eq!(l.value(l.code(x)), 0.0);
        }
    }
    assert_eq!(used, [true; 4]);
}
