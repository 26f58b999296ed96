//! Exact least-squares fits of large groups without sorting them.
//!
//! 1. One pass builds a histogram keyed by the float's bit pattern (sign, exponent and the
//!    top [`MANTISSA_BITS`] mantissa bits, so bucket widths are relative and outliers do not
//!    squeeze the data into one bucket): count, sum and sum of squares per bucket.
//! 2. The buckets are *items* of the ordered partition problem of [`crate::exact`]. The best
//!    partition whose splits lie on item boundaries is achievable, so its gain `G` is a
//!    lower bound of the optimum.
//! 3. An upper bound for any partition with a split *inside* item `b`: by Titu's lemma
//!    (`(x+y)^2/(m+n) <= x^2/m + y^2/n`), the points of `b` contribute at most `q_b`
//!    (their sum of squares) whatever segments they join, so dropping `b` and adding `q_b`
//!    bounds the gain; a relaxed DP (forward and backward, every other split free to lie on
//!    a boundary or inside an item) gives the best such bound for each item and each split.
//!    Items (and boundaries) whose bound is below `G` cannot hold an optimal split.
//! 4. Candidate items are refined (their values gathered, then split into linear
//!    sub-buckets, or into distinct values once few), non-candidate runs are merged into
//!    atoms, and the loop repeats until no item can hold a split: the boundary optimum is
//!    then the exact optimum.
use crate::exact::{all_layers, best_partition, Partition, Prefix};
use crate::solve::{Fit, Sides};
use std::collections::HashMap;

/// Mantissa bits kept in the first-level bucket key (16 buckets per binade).
const MANTISSA_BITS: u32 = 4;
const SHIFT: u32 = 23 - MANTISSA_BITS;
/// Buckets per sign: every finite magnitude's key is below this.
const PER_SIGN: usize = 1 << (8 + MANTISSA_BITS);
/// Sub-buckets a refined item is split into.
const FANOUT: usize = 64;
/// Candidates refined per round (largest spread first).
const REFINE_PER_ROUND: usize = 12;
/// Items with at most this many values are refined straight into distinct values.
const DIRECT: usize = 48;

/// First-level bucket of a weight: magnitude key, plus `PER_SIGN` when the sign bit is set.
#[inline(always)]
fn bucket(x: f32) -> usize {
    let b = x.to_bits();
    (((b & 0x7fff_ffff) >> SHIFT) | ((b >> 31) << (8 + MANTISSA_BITS))) as usize
}

/// Per-bucket count, sum of magnitudes, sum of squares.
fn histogram(w: &[f32]) -> Vec<[f64; 3]> {
    let mut h = vec![[0.0f64; 3]; 2 * PER_SIGN];
    for &x in w {
        let a = x.abs() as f64;
        let e = &mut h[bucket(x)];
        e[0] += 1.0;
        e[1] += a;
        e[2] += a * a;
    }
    h
}

/// A run of values that is either split further (`split`) or kept whole.
#[derive(Clone, Debug)]
struct Item {
    n: f64,
    s: f64,
    q: f64,
    /// Every value lies in `[lo, hi]`.
    lo: f64,
    hi: f64,
    /// May hold more than one distinct value.
    split: bool,
    /// First-level bucket, for items whose values have not been gathered yet.
    key: Option<usize>,
    /// The item's values (in the problem's orientation), once gathered.
    vals: Option<Vec<f32>>,
}

impl Item {
    fn atom(n: f64, s: f64, q: f64) -> Self {
        let v = if n > 0.0 { s / n } else { 0.0 };
        Item {
            n,
            s,
            q,
            lo: v,
            hi: v,
            split: false,
            key: None,
            vals: None,
        }
    }

    fn of_values(vals: Vec<f32>) -> Self {
        let (mut s, mut q) = (0.0f64, 0.0f64);
        let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
        for &v in &vals {
            s += v as f64;
            q += v as f64 * v as f64;
            lo = lo.min(v);
            hi = hi.max(v);
        }
        Item {
            n: vals.len() as f64,
            s,
            q,
            lo: lo as f64,
            hi: hi as f64,
            split: lo < hi,
            key: None,
            vals: Some(vals),
        }
    }
}

/// The group's values, gathered by first-level bucket on demand (one pass per request).
struct Source<'a> {
    w: &'a [f32],
    /// Values per first-level bucket (sizes the gathered vectors).
    counts: Vec<usize>,
    cache: HashMap<usize, Vec<f32>>,
}

impl<'a> Source<'a> {
    fn new(w: &'a [f32], h: &[[f64; 3]]) -> Self {
        Source {
            w,
            counts: h.iter().map(|e| e[0] as usize).collect(),
            cache: HashMap::new(),
        }
    }

    /// Gathers every bucket in `keys` not gathered yet, in a single pass.
    fn fetch(&mut self, keys: &[usize]) {
        let mut slot = vec![u16::MAX; 2 * PER_SIGN];
        let mut want: Vec<usize> = Vec::new();
        for &k in keys {
            if !self.cache.contains_key(&k) && slot[k] == u16::MAX {
                slot[k] = want.len() as u16;
                want.push(k);
            }
        }
        if want.is_empty() {
            return;
        }
        // Branch-free compaction (write always, advance only on a hit), then distribute the
        // few hits: a data-dependent branch per weight costs more than the whole pass.
        let total: usize = want.iter().map(|&k| self.counts[k]).sum();
        let mut vals = vec![0.0f32; total + 1];
        let mut slots = vec![0u16; total + 1];
        let mut len = 0usize;
        for &x in self.w {
            let s = slot[bucket(x)];
            // The histogram counted exactly `total` hits, so `len <= total` always.
            let i = len.min(total);
            vals[i] = x;
            slots[i] = s;
            len += (s != u16::MAX) as usize;
        }
        let mut out: Vec<Vec<f32>> = want
            .iter()
            .map(|&k| Vec::with_capacity(self.counts[k]))
            .collect();
        for (&x, &s) in vals[..len.min(total)].iter().zip(&slots) {
            out[s as usize].push(x);
        }
        for (k, v) in want.into_iter().zip(out) {
            self.cache.insert(k, v);
        }
    }
}

/// One partition problem: ordered items, `segs` segments, the first pinned at 0 or not.
/// `flip` negates gathered values (the negative side works on magnitudes).
struct Problem {
    items: Vec<Item>,
    segs: usize,
    pinned: bool,
    flip: bool,
}

/// What one round of bounds found.
struct Analysis {
    best: Partition,
    prefix: Prefix,
    cand_item: Vec<bool>,
    cand_bound: Vec<bool>,
}

impl Problem {
    /// Boundary optimum plus, for every item and boundary, whether a split there could
    /// reach it.
    fn analyse(&self) -> Analysis {
        let items = &self.items;
        let m = items.len();
        let k = self.segs;
        let prefix = Prefix::new(items.iter().map(|it| (it.n, it.s)));
        let best = best_partition(&prefix, k, self.pinned);
        let qtot: f64 = items.iter().map(|it| it.q).sum();
        // Slack for summation order; a partition within it of the optimum counts as optimal.
        let thr = best.gain - 1e-13 * qtot;
        // Spread every splittable item to its extreme mean-preserving form (points at lo
        // and hi, one in between). The best gain is convex in the data, so the spread data's
        // optimum with a split at a given place bounds the real one there.
        let mut atoms: Vec<(f64, f64)> = Vec::with_capacity(3 * m);
        let mut start = Vec::with_capacity(m + 1);
        for it in items {
            start.push(atoms.len());
            spread(it, &mut atoms);
        }
        start.push(atoms.len());
        let sp = Prefix::new(atoms.iter().copied());
        let big = sp.len();
        let fwd = all_layers(&sp, k, self.pinned);
        // Backward layers on the reversed atoms: gains are sign-symmetric, and the pinned
        // segment (segment 0) is never needed on the right of a split.
        let rev = Prefix::new(atoms.iter().rev().map(|&(n, s)| (n, -s)));
        let bwd = all_layers(&rev, k.saturating_sub(1).max(1), false);
        // Bound with split l-1|l exactly at atom position p.
        let at = |p: usize| -> f64 {
            (1..k)
                .map(|l| fwd[l - 1][p] + bwd[k - 1 - l][big - p])
                .fold(f64::NEG_INFINITY, f64::max)
        };
        let cand_item = (0..m)
            .map(|b| items[b].split && (start[b] + 1..start[b + 1]).any(|p| at(p) >= thr))
            .collect();
        let cand_bound = (0..=m).map(|e| at(start[e]) >= thr).collect();
        Analysis {
            best,
            prefix,
            cand_item,
            cand_bound,
        }
    }

    /// First-level buckets the next round would need.
    fn wanted_keys(&self, a: &Analysis) -> Vec<usize> {
        (0..self.items.len())
            .filter(|&b| a.cand_item[b] && self.items[b].vals.is_none())
            .filter_map(|b| self.items[b].key)
            .collect()
    }

    /// Refines until no item can hold a split; returns the exact fit.
    fn solve(mut self, src: &mut Source) -> Fit {
        loop {
            let a = self.analyse();
            if !a.cand_item.iter().any(|&c| c) {
                let first = self.pinned as usize;
                let b = &a.best.bounds;
                return Fit {
                    gain: a.best.gain,
                    means: (first..self.segs)
                        .map(|k| a.prefix.mean(b[k], b[k + 1]))
                        .collect(),
                };
            }
            src.fetch(&self.wanted_keys(&a));
            self.items = self.next_items(a, src);
        }
    }

    /// Replaces candidate items by finer ones and merges the rest into atoms.
    fn next_items(&mut self, a: Analysis, src: &Source) -> Vec<Item> {
        // Refine only the candidates whose spread loosens the bounds most: the others often
        // stop being candidates once those are resolved, and refining them all at once
        // multiplies the item count.
        let mut cands: Vec<(f64, usize)> = (0..self.items.len())
            .filter(|&b| a.cand_item[b])
            .map(|b| {
                let it = &self.items[b];
                (it.n * (it.hi - it.lo) * (it.hi - it.lo), b)
            })
            .collect();
        cands.sort_unstable_by(|x, y| y.0.total_cmp(&x.0));
        let mut refine = vec![false; self.items.len()];
        for &(_, b) in cands.iter().take(REFINE_PER_ROUND) {
            refine[b] = true;
        }
        let mut out: Vec<Item> = Vec::with_capacity(self.items.len());
        let mut last_atom = false;
        for (b, it) in std::mem::take(&mut self.items).into_iter().enumerate() {
            if a.cand_item[b] && !refine[b] {
                out.push(it);
                last_atom = false;
            } else if a.cand_item[b] {
                let subs = match &it.vals {
                    Some(v) => split_values(v, false),
                    None => {
                        let key = it.key.expect("ungathered items have a key");
                        split_values(&src.cache[&key], self.flip)
                    }
                };
                out.extend(subs);
                last_atom = false;
            } else if last_atom && !a.cand_bound[b] {
                let prev = out.last_mut().expect("an atom precedes");
                prev.n += it.n;
                prev.s += it.s;
                prev.q += it.q;
            } else {
                out.push(Item::atom(it.n, it.s, it.q));
                last_atom = true;
            }
        }
        out
    }
}

/// Splits one item's values (negated when `flip`) into ordered finer items: distinct
/// values when few, one atom when all equal, else `FANOUT` linear sub-buckets.
fn split_values(vals: &[f32], flip: bool) -> Vec<Item> {
    let get = |x: f32| if flip { -x } else { x };
    if vals.len() <= DIRECT {
        let mut v: Vec<f32> = vals.iter().map(|&x| get(x)).collect();
        v.sort_unstable_by(f32::total_cmp);
        return crate::exact::distinct_items(&v)
            .into_iter()
            .map(|(n, s)| {
                let v = s / n;
                Item::atom(n, s, n * v * v)
            })
            .collect();
    }
    let (lo, hi) = vals
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &x| {
            let v = get(x);
            (l.min(v), h.max(v))
        });
    if lo == hi {
        let n = vals.len() as f64;
        return vec![Item::atom(n, n * lo as f64, n * lo as f64 * lo as f64)];
    }
    // Monotone map of [lo, hi] onto 0..FANOUT keeps the sub-buckets ordered; counting
    // first sizes every sub-bucket exactly.
    let scale = FANOUT as f64 / (hi as f64 - lo as f64);
    let idx = |v: f32| (((v as f64 - lo as f64) * scale) as usize).min(FANOUT - 1);
    let mut count = [0usize; FANOUT];
    for &x in vals {
        count[idx(get(x))] += 1;
    }
    let mut subs: Vec<Vec<f32>> = count.iter().map(|&c| Vec::with_capacity(c)).collect();
    for &x in vals {
        let v = get(x);
        subs[idx(v)].push(v);
    }
    subs.into_iter()
        .filter(|s| !s.is_empty())
        .map(Item::of_values)
        .collect()
}

/// Appends the extreme mean-preserving spread of an item: `a` points at `lo`, one at `v`,
/// `b` at `hi` (zero-count atoms skipped); atoms and unsplittable items stay whole.
fn spread(it: &Item, out: &mut Vec<(f64, f64)>) {
    let c = it.n;
    if !it.split || c < 2.0 || it.hi <= it.lo {
        out.push((it.n, it.s));
        return;
    }
    let j = ((c * it.hi - it.s) / (it.hi - it.lo))
        .floor()
        .clamp(0.0, c - 1.0);
    let b = c - j - 1.0;
    let v = (it.s - j * it.lo - b * it.hi).clamp(it.lo, it.hi);
    if j > 0.0 {
        out.push((j, j * it.lo));
    }
    out.push((1.0, v));
    if b > 0.0 {
        out.push((b, b * it.hi));
    }
}

/// Items of one sign's magnitudes, ascending (`neg` selects the negative side).
fn side_items(h: &[[f64; 3]], neg: bool) -> Vec<Item> {
    let base = if neg { PER_SIGN } else { 0 };
    (0..PER_SIGN)
        .filter(|&k| h[base + k][0] > 0.0)
        .map(|k| {
            let [n, s, q] = h[base + k];
            // Magnitudes in this bucket lie in [lo, hi) by construction of the key.
            let lo = f32::from_bits((k as u32) << SHIFT) as f64;
            let hi = (f32::from_bits(((k as u32) + 1) << SHIFT) as f64).min(f32::MAX as f64);
            Item {
                n,
                s,
                q,
                lo,
                hi,
                split: n > 1.0,
                key: Some(base + k),
                vals: None,
            }
        })
        .collect()
}

/// Exact per-sign fits (see [`Sides`]) via the histogram.
pub(crate) fn sides(w: &[f32], max_free: usize) -> Sides {
    let h = histogram(w);
    let mut src = Source::new(w, &h);
    let mut probs: Vec<(bool, Problem)> = Vec::new();
    for neg in [false, true] {
        for free in 1..=max_free {
            probs.push((
                neg,
                Problem {
                    items: side_items(&h, neg),
                    segs: free + 1,
                    pinned: true,
                    flip: neg,
                },
            ));
        }
    }
    // One gather pass serves every problem's first refinement.
    let keys: Vec<usize> = probs
        .iter()
        .flat_map(|(_, p)| p.wanted_keys(&p.analyse()))
        .collect();
    src.fetch(&keys);
    let (mut pos, mut neg) = (Vec::new(), Vec::new());
    for (is_neg, p) in probs {
        let f = p.solve(&mut src);
        if is_neg {
            neg.push(f);
        } else {
            pos.push(f);
        }
    }
    Sides { pos, neg }
}

/// Exact 4-means via the histogram.
pub(crate) fn free4(w: &[f32]) -> Fit {
    let h = histogram(w);
    let mut items: Vec<Item> = side_items(&h, false);
    let mut negs = side_items(&h, true);
    negs.reverse();
    for it in &mut negs {
        it.s = -it.s;
        (it.lo, it.hi) = (-it.hi, -it.lo);
    }
    negs.append(&mut items);
    let p = Problem {
        items: negs,
        segs: 4,
        pinned: false,
        flip: false,
    };
    p.solve(&mut Source::new(w, &h))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::solve::free4_by_sorting;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// Large inputs of several shapes, incl. heavy ties, outliers and exact zeros.
    fn sample(kind: usize, n: usize, seed: u64) -> Vec<f32> {
        let mut r = StdRng::seed_from_u64(seed);
        let mut normal = move || {
            let u1: f64 = r.random_range(f64::EPSILON..1.0);
            let u2: f64 = r.random();
            let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
            (z, u2)
        };
        (0..n)
            .map(|i| {
                let (z, u) = normal();
                let v = match kind {
                    0 => z,
                    1 => (u - 0.5).signum() * -(1.0 - (2.0 * u - 1.0).abs()).max(1e-300).ln(),
                    2 => (z * 4.0).round() / 4.0,
                    3 if i % 997 == 0 => z * 1e4,
                    3 => z,
                    4 if i % 3 == 0 => 0.0,
                    4 => z.abs() * 2.0 + 1.0,
                    _ => (z * 0.3).exp() - 0.8,
                };
                (v * 0.02) as f32
            })
            .collect()
    }

    fn close(a: f64, b: f64, scale: f64) -> bool {
        (a - b).abs() <= 1e-9 * scale.max(1e-300)
    }

    #[test]
    #[cfg_attr(
        debug_assertions,
        ignore = "slow in debug: run with cargo test --release"
    )]
    fn fast_matches_sort_path() {
        for kind in 0..6 {
            for (n, seed) in [(100_000, 1u64), (250_000, 2)] {
                let w = sample(kind, n, seed + kind as u64);
                let q: f64 = w.iter().map(|&x| x as f64 * x as f64).sum();
                let fast = sides(&w, 2);
                let slow = Sides::by_sorting(&w, 2);
                for (f, s) in fast
                    .pos
                    .iter()
                    .chain(&fast.neg)
                    .zip(slow.pos.iter().chain(&slow.neg))
                {
                    assert!(close(f.gain, s.gain, q), "kind {kind}: {f:?} vs {s:?}");
                }
                let (f, s) = (free4(&w), free4_by_sorting(&w));
                assert!(close(f.gain, s.gain, q), "kind {kind}: {f:?} vs {s:?}");
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(
            if cfg!(debug_assertions) { 8 } else { 120 }
        ))]

        /// Mid-size groups (just above the sort cut-off) of every shape, incl. scaled and
        /// shifted data, agree with the sort path.
        #[test]
        fn fast_matches_sort_path_mid_size(
            kind in 0usize..6,
            n in 2048usize..12_000,
            seed in proptest::prelude::any::<u64>(),
            scale in -6i32..6,
            shift in -2.0f32..2.0,
        ) {
            let f = 10f32.powi(scale);
            let w: Vec<f32> = sample(kind, n, seed).iter().map(|x| x * f + shift * f * 0.01).collect();
            let q: f64 = w.iter().map(|&x| x as f64 * x as f64).sum();
            let fast = sides(&w, 2);
            let slow = Sides::by_sorting(&w, 2);
            for (a, b) in fast.pos.iter().chain(&fast.neg).zip(slow.pos.iter().chain(&slow.neg)) {
                proptest::prop_assert!(close(a.gain, b.gain, q), "{:?} vs {:?}", a, b);
            }
            let (a, b) = (free4(&w), free4_by_sorting(&w));
            proptest::prop_assert!(close(a.gain, b.gain, q), "{:?} vs {:?}", a, b);
        }
    }

    #[test]
    fn fast_handles_degenerate_groups() {
        for w in [vec![0.0f32; 5000], vec![3.0; 5000], vec![-1.0; 4000]] {
            let q: f64 = w.iter().map(|&x| x as f64 * x as f64).sum();
            let (f, s) = (free4(&w), free4_by_sorting(&w));
            assert!(close(f.gain, s.gain, q.max(1.0)));
            let (f, s) = (sides(&w, 2), Sides::by_sorting(&w, 2));
            assert!(close(f.pos[1].gain, s.pos[1].gain, q.max(1.0)));
            assert!(close(f.neg[0].gain, s.neg[0].gain, q.max(1.0)));
        }
    }
}
