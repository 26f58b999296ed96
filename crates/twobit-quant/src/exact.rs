//! Exact optimal contiguous partition of ordered, weighted items (1-D k-means).
//!
//! An *item* is a run of values that must stay together (one distinct value, or a whole
//! histogram bucket): it carries a count `n` and a sum `s`. Splitting the ordered items
//! into contiguous segments and giving every segment its mean costs
//! `sum w^2 - sum_seg s_seg^2 / n_seg`, so minimising the squared error is maximising the
//! *gain* `sum_seg s^2/n`. A *pinned* first segment has its level fixed at 0 (gain 0): that
//! is how the zero level of `tern` / `quat` enters.
//!
//! The gain of a segment satisfies the inverse quadrangle inequality (it is a sum of squares
//! minus the segment's SSE, and SSE is Monge on sorted data), so the best previous split is
//! monotone in the segment end and each DP layer is solved by divide and conquer in
//! `O(m log m)`.

/// Prefix sums of item counts and sums; `n[i]`, `s[i]` cover items `0..i`.
#[derive(Clone, Debug, Default)]
pub(crate) struct Prefix {
    pub n: Vec<f64>,
    pub s: Vec<f64>,
}

impl Prefix {
    /// Builds prefix sums from `(count, sum)` items.
    pub fn new(items: impl IntoIterator<Item = (f64, f64)>) -> Self {
        let (mut n, mut s) = (vec![0.0], vec![0.0]);
        let (mut cn, mut cs) = (0.0, 0.0);
        for (a, b) in items {
            cn += a;
            cs += b;
            n.push(cn);
            s.push(cs);
        }
        Prefix { n, s }
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.n.len() - 1
    }

    /// `s^2/n` of items `i..j` (0 when empty).
    #[inline]
    pub fn gain(&self, i: usize, j: usize) -> f64 {
        let n = self.n[j] - self.n[i];
        if n <= 0.0 {
            return 0.0;
        }
        let s = self.s[j] - self.s[i];
        s * s / n
    }

    /// Mean of items `i..j`, or `None` when empty.
    pub fn mean(&self, i: usize, j: usize) -> Option<f64> {
        let n = self.n[j] - self.n[i];
        (n > 0.0).then(|| (self.s[j] - self.s[i]) / n)
    }
}

/// The best partition: its gain and the segment boundaries `b[0]=0 <= ... <= b[k]=m`.
#[derive(Clone, Debug)]
pub(crate) struct Partition {
    pub gain: f64,
    pub bounds: Vec<usize>,
}

/// Best split of all items into `segments` contiguous (possibly empty) segments; when
/// `pinned`, the first segment has level 0 and contributes no gain.
pub(crate) fn best_partition(p: &Prefix, segments: usize, pinned: bool) -> Partition {
    let m = p.len();
    assert!(segments >= 1);
    let mut prev: Vec<f64> = (0..=m)
        .map(|j| if pinned { 0.0 } else { p.gain(0, j) })
        .collect();
    let mut args: Vec<Vec<usize>> = Vec::with_capacity(segments - 1);
    for l in 1..segments {
        let mut cur = vec![f64::NEG_INFINITY; m + 1];
        let mut arg = vec![0usize; m + 1];
        // Only the end point `m` of the last layer is read back: computing just that point is
        // one O(m) scan instead of the whole O(m log m) layer (the bulk of a small group's
        // cost, e.g. per channel).
        let jlo = if l + 1 == segments { m } else { 0 };
        layer(p, &prev, &mut cur, &mut arg, jlo, m, 0, m);
        prev = cur;
        args.push(arg);
    }
    let mut bounds = vec![0; segments + 1];
    bounds[segments] = m;
    let mut j = m;
    for l in (1..segments).rev() {
        j = args[l - 1][j];
        bounds[l] = j;
    }
    Partition {
        gain: prev[m],
        bounds,
    }
}

/// Every layer of the DP: `out[l][j]` = best gain of segments `0..=l` over items `0..j`.
pub(crate) fn all_layers(p: &Prefix, segments: usize, pinned: bool) -> Vec<Vec<f64>> {
    let m = p.len();
    let mut out: Vec<Vec<f64>> = Vec::with_capacity(segments);
    out.push(
        (0..=m)
            .map(|j| if pinned { 0.0 } else { p.gain(0, j) })
            .collect(),
    );
    let mut arg = vec![0usize; m + 1];
    for l in 1..segments {
        let mut cur = vec![f64::NEG_INFINITY; m + 1];
        layer(p, &out[l - 1], &mut cur, &mut arg, 0, m, 0, m);
        out.push(cur);
    }
    out
}

/// Fills `cur[j] = max_{i<=j} prev[i] + gain(i, j)` for `j in jlo..=jhi`, knowing the
/// argmax lies in `ilo..=ihi` (divide and conquer on the monotone argmax).
#[allow(clippy::too_many_arguments)]
fn layer(
    p: &Prefix,
    prev: &[f64],
    cur: &mut [f64],
    arg: &mut [usize],
    jlo: usize,
    jhi: usize,
    ilo: usize,
    ihi: usize,
) {
    if jlo > jhi {
        return;
    }
    let mid = jlo + (jhi - jlo) / 2;
    let (mut best, mut besti) = (f64::NEG_INFINITY, ilo);
    for (i, &pv) in prev.iter().enumerate().take(ihi.min(mid) + 1).skip(ilo) {
        let v = pv + p.gain(i, mid);
        if v > best {
            best = v;
            besti = i;
        }
    }
    cur[mid] = best;
    arg[mid] = besti;
    if mid > jlo {
        layer(p, prev, cur, arg, jlo, mid - 1, ilo, besti);
    }
    layer(p, prev, cur, arg, mid + 1, jhi, besti, ihi);
}

/// Collapses sorted values into `(count, sum)` items, one per distinct value, so ties can
/// never be split between segments.
pub(crate) fn distinct_items(sorted: &[f32]) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::new();
    let mut last = f32::NAN;
    for &v in sorted {
        if v == last {
            let it = out.last_mut().expect("a previous item exists");
            it.0 += 1.0;
            it.1 += v as f64;
        } else {
            out.push((1.0, v as f64));
            last = v;
        }
    }
    out
}
