//! Calibrated quantization: codes and levels that minimise a layer's **output** error.
//!
//! A conv/linear layer computes `Y = X Wᵀ` (`X`: `[samples, cols]`, the layer's inputs, a
//! convolution through its im2col view; `W`: `[rows, cols]`). Quantizing `W` to `Q` changes
//! the output by `X (W − Q)ᵀ`, whose squared norm is
//! `Σ_r (w_r − q_r)ᵀ H (w_r − q_r)` with the Gram matrix `H = XᵀX` ([`Gram`]). The plain
//! quantizers ([`crate::quantize`]) minimise the weight error (`H = I`); here `H` comes from
//! calibration data, damped as GPTQ does: `H_λ = H + λ·mean(diag H)·I` (λ =
//! [`CalibOptions::damp`]), which keeps every step well-posed when `X` is rank-deficient
//! (dead inputs, fewer samples than columns) and regularises towards the weight error.
//!
//! [`quantize_calibrated`] alternates two exact-or-greedy steps on the damped objective:
//!
//! 1. **Codes** for fixed levels ([`gptq_codes`]): GPTQ / Optimal Brain Compression
//!    sequential rounding. Columns are rounded in order (by default GPTQ's "act order":
//!    descending `H_ii`, see [`CalibOptions::act_order`]) to the nearest level of the group;
//!    each rounding error is spread over the not-yet-rounded columns through the upper
//!    Cholesky factor `U` of `H_λ⁻¹` (`H_λ⁻¹ = UᵀU`): `w_j −= (w_i − q_i)/U_ii · U_ij` for
//!    `j > i`. With `H = I` this is plain nearest-level rounding.
//! 2. **Levels** for fixed codes ([`refit_levels`]): the objective is a quadratic
//!    `vᵀAv − 2bᵀv + c` in the group's 3 or 4 level values `v`, with
//!    `A_ab = Σ_r Σ_{i: c_i = a} Σ_{j: c_j = b} H_ij` and `b_a = Σ_r Σ_{i: c_i = a} (H w_r)_i`.
//!    The scheme's constraints (ascending levels; a level pinned at 0 for ternary and `quat`;
//!    `−a, 0, a` for `twn`) define a polyhedron; the minimiser lies in the relative interior
//!    of one of its faces (a choice of which adjacent levels are tied), where it is the
//!    unconstrained minimiser on the face's affine hull. All `2^(K−1)` faces are solved in
//!    closed form and the best feasible one is kept: the exact optimum.
//!
//! It starts from the scheme's weight-error fit (levels and threshold codes), keeps the best
//! iterate and stops when a round no longer lowers the error, so the result is never worse
//! on the damped objective than the uncalibrated quantizer. [`mean_shift`] gives the bias
//! correction for the mean output shift.
use crate::schemes::{nearest, quat::Side, ternary_nearest};
use crate::{validate, Granularity, Levels, QuantError, Quantized, Scheme};
use rayon::prelude::*;

/// Accumulates `XᵀX` (f64) and the column sums of a layer's input rows, batch by batch.
#[derive(Clone, Debug)]
pub struct Gram {
    cols: usize,
    /// Upper triangle (row-major, full `cols × cols` storage) of `Σ xᵀx`.
    upper: Vec<f64>,
    sum: Vec<f64>,
    rows: u64,
}

/// Rows converted per block in [`Gram::add`].
const BLOCK: usize = 256;

impl Gram {
    /// An empty accumulator for rows of `cols` values.
    pub fn new(cols: usize) -> Gram {
        Gram {
            cols,
            upper: vec![0.0; cols * cols],
            sum: vec![0.0; cols],
            rows: 0,
        }
    }

    /// Columns per row.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Rows accumulated so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Adds the rows of `x` (`[rows, cols]` row-major; `x.len()` must be a multiple of
    /// `cols`). Blocked: each block of rows is transposed to f64 and every upper entry gets
    /// one dot product, in parallel over rows of `H`. [`Gram::add_reference`] is the plain
    /// loop.
    pub fn add(&mut self, x: &[f32]) {
        let n = self.cols;
        assert!(n > 0 && x.len().is_multiple_of(n), "rows of {n} values");
        let mut xt = vec![0.0f64; n * BLOCK];
        for block in x.chunks(n * BLOCK) {
            let b = block.len() / n;
            for (r, row) in block.chunks_exact(n).enumerate() {
                for (i, &v) in row.iter().enumerate() {
                    xt[i * BLOCK + r] = v as f64;
                    self.sum[i] += v as f64;
                }
            }
            let xt = &xt;
            self.upper
                .par_chunks_mut(n)
                .enumerate()
                .for_each(|(i, hrow)| {
                    let xi = &xt[i * BLOCK..i * BLOCK + b];
                    for (j, h) in hrow.iter_mut().enumerate().skip(i) {
                        *h += dot(xi, &xt[j * BLOCK..j * BLOCK + b]);
                    }
                });
            self.rows += b as u64;
        }
    }

    /// [`Gram::add`] as a plain triple loop (the reference the tests compare with).
    pub fn add_reference(&mut self, x: &[f32]) {
        let n = self.cols;
        assert!(n > 0 && x.len().is_multiple_of(n), "rows of {n} values");
        for row in x.chunks_exact(n) {
            for i in 0..n {
                self.sum[i] += row[i] as f64;
                for j in i..n {
                    self.upper[i * n + j] += row[i] as f64 * row[j] as f64;
                }
            }
            self.rows += 1;
        }
    }

    /// Adds the rows of `x` given their product `xtx = xᵀx` (`[cols, cols]`, computed by the
    /// caller, e.g. with an f32 GEMM over this chunk): the product is accumulated into the
    /// f64 sums (only its upper triangle is read), the column sums from `x`. A chunk of a
    /// few thousand rows summed in f32 keeps a relative error near 1e-6, far below the
    /// damping.
    pub fn add_product(&mut self, x: &[f32], xtx: &[f32]) {
        let n = self.cols;
        assert!(n > 0 && x.len().is_multiple_of(n), "rows of {n} values");
        assert_eq!(xtx.len(), n * n, "xtx is [cols, cols]");
        for row in x.chunks_exact(n) {
            for (s, &v) in self.sum.iter_mut().zip(row) {
                *s += v as f64;
            }
        }
        for i in 0..n {
            for j in i..n {
                self.upper[i * n + j] += xtx[i * n + j] as f64;
            }
        }
        self.rows += (x.len() / n) as u64;
    }

    /// Adds another accumulator of the same width.
    pub fn merge(&mut self, other: &Gram) {
        assert_eq!(self.cols, other.cols);
        for (a, b) in self.upper.iter_mut().zip(&other.upper) {
            *a += b;
        }
        for (a, b) in self.sum.iter_mut().zip(&other.sum) {
            *a += b;
        }
        self.rows += other.rows;
    }

    /// The full symmetric `XᵀX`, `[cols, cols]` row-major.
    pub fn matrix(&self) -> Vec<f64> {
        let n = self.cols;
        let mut h = self.upper.clone();
        for i in 0..n {
            for j in 0..i {
                h[i * n + j] = h[j * n + i];
            }
        }
        h
    }

    /// Mean input row (zeros when empty).
    pub fn mean(&self) -> Vec<f64> {
        let k = self.rows.max(1) as f64;
        self.sum.iter().map(|s| s / k).collect()
    }
}

/// Dot product with independent accumulators (vectorises).
#[inline]
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0f64; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// Options of [`quantize_calibrated`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CalibOptions {
    /// GPTQ's damping: `λ` in `H + λ·mean(diag H)·I` (default 0.01).
    pub damp: f64,
    /// Most code/level alternations (default 8); it stops earlier once the error stops
    /// falling.
    pub max_rounds: usize,
    /// GPTQ's "act order": round the columns with the largest `H_ii` (the inputs with the
    /// most energy) first, so the most important ones are rounded while every later column
    /// can still compensate them (default true).
    pub act_order: bool,
}

impl Default for CalibOptions {
    fn default() -> Self {
        CalibOptions {
            damp: 0.01,
            max_rounds: 8,
            act_order: true,
        }
    }
}

/// Column order for GPTQ: descending diagonal of `h` (stable), or the identity.
fn column_order(h: &[f64], n: usize, act_order: bool) -> Vec<usize> {
    let mut p: Vec<usize> = (0..n).collect();
    if act_order {
        p.sort_by(|&a, &b| h[b * n + b].total_cmp(&h[a * n + a]));
    }
    p
}

/// What calibration achieved on one tensor, as relative output errors
/// `sqrt(Σ_r d_rᵀ H d_r / Σ_r w_rᵀ H w_r)` (`d = w − q`, undamped `H`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CalibReport {
    /// The scheme's plain weight-error fit.
    pub before: f64,
    /// The calibrated result.
    pub after: f64,
    /// Code/level rounds run.
    pub rounds: usize,
}

/// The damped Gram matrix `H + λ·mean(diag H)·I`; an all-zero diagonal (no signal at all)
/// gives the identity, so the result is always positive definite in exact arithmetic.
pub fn damped(h: &[f64], n: usize, damp: f64) -> Vec<f64> {
    let mean = (0..n).map(|i| h[i * n + i]).sum::<f64>() / n.max(1) as f64;
    let add = if mean > 0.0 {
        damp.max(1e-12) * mean
    } else {
        1.0
    };
    let mut out = h.to_vec();
    for i in 0..n {
        out[i * n + i] += add;
    }
    out
}

/// In-place lower Cholesky factor of a symmetric positive definite `[n, n]` matrix (the
/// upper triangle is zeroed). `None` when a pivot is not positive.
pub fn cholesky(a: &mut [f64], n: usize) -> Option<()> {
    for j in 0..n {
        let (done, rest) = a.split_at_mut(j * n);
        let rowj = &mut rest[..n];
        // L_jk for k < j, then L_jj.
        for k in 0..j {
            let rowk = &done[k * n..k * n + k + 1];
            let s = rowj[k] - dot(&rowj[..k], &rowk[..k]);
            rowj[k] = s / rowk[k];
        }
        let d = rowj[j] - dot(&rowj[..j], &rowj[..j]);
        if d.is_nan() || d <= 0.0 {
            return None;
        }
        rowj[j] = d.sqrt();
        for v in &mut rowj[j + 1..] {
            *v = 0.0;
        }
    }
    Some(())
}

/// Inverse of a lower triangular `[n, n]` matrix (lower triangular), row by row.
fn invert_lower(l: &[f64], n: usize) -> Vec<f64> {
    let mut x = vec![0.0f64; n * n];
    for i in 0..n {
        // Row i of X = (e_i − Σ_{k<i} L_ik X_k) / L_ii.
        let (done, rest) = x.split_at_mut(i * n);
        let xi = &mut rest[..n];
        xi[i] = 1.0;
        for k in 0..i {
            let lik = l[i * n + k];
            if lik != 0.0 {
                for (a, &b) in xi[..=k].iter_mut().zip(&done[k * n..k * n + k + 1]) {
                    *a -= lik * b;
                }
            }
        }
        let d = l[i * n + i];
        for v in &mut xi[..=i] {
            *v /= d;
        }
    }
    x
}

/// The upper Cholesky factor `U` of `H⁻¹` (`H⁻¹ = UᵀU`) for symmetric positive definite
/// `H`, as GPTQ uses it. Computed as `U = P·chol(P H P)⁻¹·P` with the reversal permutation
/// `P`: one factorisation and one triangular inverse. Retries with 10x more diagonal
/// loading (up to 6 times) when rounding makes a pivot non-positive.
pub fn inverse_upper_factor(h: &[f64], n: usize) -> Vec<f64> {
    let mean = ((0..n).map(|i| h[i * n + i]).sum::<f64>() / n.max(1) as f64).max(1e-300);
    let mut extra = 0.0;
    for _ in 0..7 {
        let mut r = vec![0.0f64; n * n];
        for i in 0..n {
            for j in 0..n {
                r[i * n + j] = h[(n - 1 - i) * n + (n - 1 - j)];
            }
            r[i * n + i] += extra;
        }
        if cholesky(&mut r, n).is_some() {
            let li = invert_lower(&r, n);
            let mut u = vec![0.0f64; n * n];
            for i in 0..n {
                for j in 0..n {
                    u[i * n + j] = li[(n - 1 - i) * n + (n - 1 - j)];
                }
            }
            return u;
        }
        extra = if extra == 0.0 {
            1e-10 * mean
        } else {
            extra * 10.0
        };
    }
    // Unreachable for a damped Gram matrix; fall back to the weight error (H = I).
    let mut u = vec![0.0f64; n * n];
    for i in 0..n {
        u[i * n + i] = 1.0;
    }
    u
}

/// Index of the nearest of `k` ascending `values` (ties to the lower one).
#[inline]
fn nearest_code(x: f64, values: &[f64]) -> u8 {
    let mut c = 0;
    for i in 1..values.len() {
        if x > 0.5 * (values[i - 1] + values[i]) {
            c = i;
        }
    }
    c as u8
}

/// GPTQ codes of one row `w` (`cols` values) for the ascending `values`, with `u` from
/// [`inverse_upper_factor`] of the (damped) Gram matrix. Columns are rounded in order and
/// each error is compensated on the columns after it.
pub fn gptq_codes(w: &[f32], values: &[f64], u: &[f64], codes: &mut [u8]) {
    let n = w.len();
    let mut x: Vec<f64> = w.iter().map(|&v| v as f64).collect();
    for i in 0..n {
        let c = nearest_code(x[i], values);
        codes[i] = c;
        let e = (x[i] - values[c as usize]) / u[i * n + i];
        if e != 0.0 {
            let row = &u[i * n + i + 1..(i + 1) * n];
            for (xj, &uj) in x[i + 1..].iter_mut().zip(row) {
                *xj -= e * uj;
            }
        }
    }
}

/// Weight rows handled together by the blocked loops: each pass over `U` or `H` (too
/// large for the cache on wide layers) serves the whole block.
const ROWS: usize = 8;

/// [`gptq_codes`] for a block of rows sharing `u` (`w`, `codes`: `[b, n]`; `values[r]`
/// per row): the same arithmetic in the same order per row, one pass over `U` per block.
pub fn gptq_codes_block(w: &[f32], n: usize, values: &[Vec<f64>], u: &[f64], codes: &mut [u8]) {
    let b = w.len() / n;
    let mut x: Vec<f64> = w.iter().map(|&v| v as f64).collect();
    for i in 0..n {
        let (d, row) = (u[i * n + i], &u[i * n + i + 1..(i + 1) * n]);
        for r in 0..b {
            let xr = &mut x[r * n..(r + 1) * n];
            let c = nearest_code(xr[i], &values[r]);
            codes[r * n + i] = c;
            let e = (xr[i] - values[r][c as usize]) / d;
            if e != 0.0 {
                for (xj, &uj) in xr[i + 1..].iter_mut().zip(row) {
                    *xj -= e * uj;
                }
            }
        }
    }
}

/// The level constraints of a scheme family, with `k` used codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// `{−a, 0, a}`, `a ≥ 0` (`twn`).
    Symmetric,
    /// `k` ascending levels, the one at `zero` pinned to 0 (ternary: `k = 3, zero = 1`;
    /// `quat`: `k = 4`, zero at 1 or 2).
    Pinned {
        /// Number of levels.
        k: usize,
        /// Index of the zero level.
        zero: usize,
    },
    /// `k` free ascending levels (`quat-free`).
    Free {
        /// Number of levels.
        k: usize,
    },
}

impl Family {
    /// Number of codes used.
    pub fn k(self) -> usize {
        match self {
            Family::Symmetric => 3,
            Family::Pinned { k, .. } | Family::Free { k } => k,
        }
    }

    /// The family of `scheme`, given a level table of it (for `quat`'s side).
    pub fn of(scheme: Scheme, l: &Levels) -> Family {
        match scheme {
            Scheme::Twn => Family::Symmetric,
            Scheme::Atn | Scheme::Tern | Scheme::Ttq => Family::Pinned { k: 3, zero: 1 },
            Scheme::Quat => {
                let zero = match Side::of(l) {
                    Some(Side::Negative) => 2,
                    _ => 1,
                };
                Family::Pinned { k: 4, zero }
            }
            Scheme::QuatFree => Family::Free { k: 4 },
        }
    }
}

/// `vᵀAv − 2bᵀv` for `k` levels.
pub fn quadratic(a: &[f64], b: &[f64], v: &[f64]) -> f64 {
    let k = v.len();
    let mut s = 0.0;
    for i in 0..k {
        for j in 0..k {
            s += v[i] * a[i * k + j] * v[j];
        }
        s -= 2.0 * b[i] * v[i];
    }
    s
}

/// Solves the small symmetric system `m u = r` (`[d, d]`) by Gaussian elimination with
/// partial pivoting, after a tiny ridge so an unused level cannot make it singular.
fn solve_small(m: &mut [f64], r: &mut [f64], d: usize) -> Vec<f64> {
    let tr = (0..d).map(|i| m[i * d + i].abs()).sum::<f64>() / d.max(1) as f64;
    let ridge = 1e-12 * tr.max(1e-300);
    for i in 0..d {
        m[i * d + i] += ridge;
    }
    for c in 0..d {
        let p = (c..d)
            .max_by(|&x, &y| m[x * d + c].abs().total_cmp(&m[y * d + c].abs()))
            .unwrap_or(c);
        if p != c {
            for j in 0..d {
                m.swap(c * d + j, p * d + j);
            }
            r.swap(c, p);
        }
        let piv = m[c * d + c];
        if piv == 0.0 {
            continue;
        }
        for i in c + 1..d {
            let f = m[i * d + c] / piv;
            for j in c..d {
                m[i * d + j] -= f * m[c * d + j];
            }
            r[i] -= f * r[c];
        }
    }
    let mut u = vec![0.0; d];
    for c in (0..d).rev() {
        let s = r[c] - (c + 1..d).map(|j| m[c * d + j] * u[j]).sum::<f64>();
        let piv = m[c * d + c];
        u[c] = if piv == 0.0 { 0.0 } else { s / piv };
    }
    u
}

/// The exact minimiser of `vᵀAv − 2bᵀv` (`A`: `[k, k]`, positive semidefinite) over the
/// family's level sets: every face of the constraint polyhedron (which adjacent levels are
/// tied; the block holding a pinned zero is 0) is solved in closed form and the best
/// feasible point kept.
pub fn best_levels(family: Family, a: &[f64], b: &[f64]) -> Vec<f64> {
    let k = family.k();
    if family == Family::Symmetric {
        // v = a·(−1, 0, 1): scalar problem, a ≥ 0.
        let d = [-1.0, 0.0, 1.0];
        let num: f64 = (0..3).map(|i| d[i] * b[i]).sum();
        let den = quadratic(a, &[0.0; 3], &d);
        let s = if den > 0.0 { (num / den).max(0.0) } else { 0.0 };
        return d.iter().map(|x| x * s).collect();
    }
    let zero = match family {
        Family::Pinned { zero, .. } => Some(zero),
        _ => None,
    };
    let mut best: Option<(f64, Vec<f64>)> = None;
    for mask in 0u32..(1 << (k - 1)) {
        // Blocks of tied levels: level i+1 joins level i's block when bit i is set.
        let mut block = vec![0usize; k];
        for i in 1..k {
            block[i] = block[i - 1] + (mask >> (i - 1) & 1 == 0) as usize;
        }
        let blocks = block[k - 1] + 1;
        let pinned = zero.map(|z| block[z]);
        // Free variables: blocks other than the pinned one.
        let var: Vec<Option<usize>> = (0..blocks)
            .scan(0usize, |next, bl| {
                Some(if Some(bl) == pinned {
                    None
                } else {
                    *next += 1;
                    Some(*next - 1)
                })
            })
            .collect();
        let d = var.iter().flatten().count();
        let mut m = vec![0.0f64; d * d];
        let mut r = vec![0.0f64; d];
        for i in 0..k {
            let Some(vi) = var[block[i]] else { continue };
            r[vi] += b[i];
            for j in 0..k {
                if let Some(vj) = var[block[j]] {
                    m[vi * d + vj] += a[i * k + j];
                }
            }
        }
        let u = solve_small(&mut m, &mut r, d);
        let v: Vec<f64> = (0..k)
            .map(|i| var[block[i]].map_or(0.0, |x| u[x]))
            .collect();
        let tol = 1e-12 * v.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        if v.windows(2).any(|p| p[0] > p[1] + tol) || v.iter().any(|x| !x.is_finite()) {
            continue;
        }
        let f = quadratic(a, b, &v);
        if best.as_ref().is_none_or(|(bf, _)| f < *bf) {
            best = Some((f, v));
        }
    }
    let mut v = best.map(|(_, v)| v).unwrap_or_else(|| vec![0.0; k]);
    // Remove sub-tolerance inversions.
    for i in 1..k {
        if v[i] < v[i - 1] {
            v[i] = v[i - 1];
        }
    }
    v
}

/// Accumulates the refit system `A` (`[k, k]`) and `b` of one row `w` with codes `c`:
/// `A_ab += Σ_{i: c_i=a} Σ_{j: c_j=b} H_ij`, `b_a += Σ_{i: c_i=a} (H w)_i`. The plain
/// reference of [`accumulate_fast`].
fn accumulate_system(w: &[f32], h: &[f64], codes: &[u8], k: usize, a: &mut [f64], b: &mut [f64]) {
    let n = w.len();
    for i in 0..n {
        let hi = &h[i * n..(i + 1) * n];
        let mut s = [0.0f64; 4];
        let mut hw = 0.0f64;
        for j in 0..n {
            s[codes[j] as usize] += hi[j];
            hw += hi[j] * w[j] as f64;
        }
        let ci = codes[i] as usize;
        for (bb, sb) in s.iter().enumerate().take(k) {
            a[ci * k + bb] += sb;
        }
        b[ci] += hw;
    }
}

/// [`accumulate_system`] for a block of rows sharing a **symmetric** `h`, given `hw[r] =
/// H w_r` (`codes`: `[b, n]`, `k[r]` per row). `(H e_b)_i = Σ_{j: c_j=b} H_ji`, so the rows
/// of `H` are summed per code (vectorised adds, no scatter in the inner loop), then
/// `A_ab = Σ_{i: c_i=a} (H e_b)_i`; one pass over `H` serves the block. Returns `(A, b)` per
/// row.
fn accumulate_block(
    h: &[f64],
    hw: &[Vec<f64>],
    codes: &[u8],
    k: &[usize],
) -> Vec<(Vec<f64>, Vec<f64>)> {
    let n = hw[0].len();
    let rows = hw.len();
    let mut acc: Vec<Vec<f64>> = k.iter().map(|&k| vec![0.0f64; k * n]).collect();
    let mut out: Vec<(Vec<f64>, Vec<f64>)> = k
        .iter()
        .map(|&k| (vec![0.0; k * k], vec![0.0; k]))
        .collect();
    for j in 0..n {
        let hj = &h[j * n..(j + 1) * n];
        for r in 0..rows {
            let c = codes[r * n + j] as usize;
            for (x, &y) in acc[r][c * n..(c + 1) * n].iter_mut().zip(hj) {
                *x += y;
            }
            out[r].1[c] += hw[r][j];
        }
    }
    for r in 0..rows {
        let kr = k[r];
        for i in 0..n {
            let ci = codes[r * n + i] as usize;
            for bb in 0..kr {
                out[r].0[ci * kr + bb] += acc[r][bb * n + i];
            }
        }
    }
    out
}

/// `H x_r` for a block of vectors, one pass over `H` (`[n, n]`).
fn matvecs(h: &[f64], x: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let n = h.len() / x.first().map_or(1, |v| v.len().max(1));
    let mut out = vec![vec![0.0f64; n]; x.len()];
    for i in 0..n {
        let hi = &h[i * n..(i + 1) * n];
        for (o, xr) in out.iter_mut().zip(x) {
            o[i] = dot(hi, xr);
        }
    }
    out
}

/// `d_rᵀ H d_r` for a block of vectors, one pass over `H` (the blocked [`row_error`]).
fn quad_forms(h: &[f64], d: &[Vec<f64>]) -> Vec<f64> {
    matvecs(h, d)
        .iter()
        .zip(d)
        .map(|(hd, d)| dot(hd, d))
        .collect()
}

#[cfg(test)]
/// `H w` for symmetric `H` (`[n, n]`).
fn matvec(h: &[f64], w: &[f32]) -> Vec<f64> {
    let n = w.len();
    let w64: Vec<f64> = w.iter().map(|&x| x as f64).collect();
    (0..n).map(|i| dot(&h[i * n..(i + 1) * n], &w64)).collect()
}

/// Exact levels for fixed codes over a group of rows (each with its own Gram matrix `h`,
/// possibly damped): the family's level set minimising `Σ_r (w_r − q_r)ᵀ H (w_r − q_r)`.
/// `rows` are `(w_r, codes_r, h_r)`; every code must be `< family.k()`.
pub fn refit_levels(family: Family, rows: &[(&[f32], &[u8], &[f64])]) -> Vec<f64> {
    let k = family.k();
    let parts: Vec<(Vec<f64>, Vec<f64>)> = rows
        .par_iter()
        .map(|&(w, c, h)| {
            let mut a = vec![0.0f64; k * k];
            let mut b = vec![0.0f64; k];
            accumulate_system(w, h, c, k, &mut a, &mut b);
            (a, b)
        })
        .collect();
    // Summed in row order, so the result does not depend on the thread schedule.
    let (mut a, mut b) = (vec![0.0f64; k * k], vec![0.0f64; k]);
    for (x, y) in &parts {
        a.iter_mut().zip(x).for_each(|(p, q)| *p += q);
        b.iter_mut().zip(y).for_each(|(p, q)| *p += q);
    }
    best_levels(family, &a, &b)
}

/// `dᵀ H d` for `d = w − values[codes]`.
pub fn row_error(w: &[f32], codes: &[u8], values: &[f64], h: &[f64]) -> f64 {
    let n = w.len();
    let d: Vec<f64> = w
        .iter()
        .zip(codes)
        .map(|(&x, &c)| x as f64 - values[c as usize])
        .collect();
    let mut s = 0.0;
    for i in 0..n {
        if d[i] != 0.0 {
            s += d[i] * dot(&h[i * n..(i + 1) * n], &d);
        }
    }
    s
}

/// Level table of `family` with the given values (thresholds: midpoints, informational:
/// calibrated codes are not a threshold rule).
fn to_levels(family: Family, v: &[f64]) -> Levels {
    let f = |x: f64| x as f32;
    match family {
        Family::Symmetric | Family::Pinned { k: 3, .. } => ternary_nearest(-f(v[0]), f(v[2])),
        _ if v.len() == 4 => nearest([f(v[0]), f(v[1]), f(v[2]), f(v[3])]),
        // A 3-level free family (not produced by any scheme): pad the unused code.
        _ => nearest([f(v[0]), f(v[1]), f(v[2]), f(v[2])]),
    }
}

/// The values of a level table as the family's `k` levels in f64.
fn values_of(family: Family, l: &Levels) -> Vec<f64> {
    l.values[..family.k()].iter().map(|&x| x as f64).collect()
}

/// Quantizes a conv/linear weight `[rows, …]` to minimise its output error given the Gram
/// matrices of its inputs: `grams` holds one `[cols, cols]` matrix (`cols` = weights per
/// row) per convolution group, the rows split evenly between them (one matrix for a
/// linear or ungrouped conv). See the module docs for the algorithm.
///
/// Errors as [`crate::quantize`], and with [`QuantError::ShapeMismatch`] when a Gram matrix
/// has the wrong size or the rows do not split between the groups.
pub fn quantize_calibrated(
    w: &[f32],
    shape: &[usize],
    scheme: Scheme,
    granularity: Granularity,
    grams: &[&[f64]],
    opts: &CalibOptions,
) -> Result<(Quantized, CalibReport), QuantError> {
    let group = validate(w, shape, granularity)?;
    let rows = shape[0];
    let n = w.len() / rows;
    let g = grams.len();
    if g == 0 || !rows.is_multiple_of(g) || grams.iter().any(|h| h.len() != n * n) {
        return Err(QuantError::ShapeMismatch {
            shape: vec![g, n, n],
            expected: n * n,
            actual: grams.first().map_or(0, |h| h.len()),
        });
    }
    let per = rows / g;
    let damped_h: Vec<Vec<f64>> = grams.iter().map(|h| damped(h, n, opts.damp)).collect();
    // Per conv group: the column order and U of the permuted damped H.
    let orders: Vec<Vec<usize>> = damped_h
        .iter()
        .map(|h| column_order(h, n, opts.act_order))
        .collect();
    let us: Vec<Vec<f64>> = damped_h
        .par_iter()
        .zip(&orders)
        .map(|(h, p)| {
            let hp: Vec<f64> = (0..n * n).map(|x| h[p[x / n] * n + p[x % n]]).collect();
            inverse_upper_factor(&hp, n)
        })
        .collect();
    let wrow = |r: usize| &w[r * n..(r + 1) * n];
    let row_groups = group / n; // rows per level group
                                // Blocks of at most ROWS rows within one conv group (they share H and U).
    let blocks: Vec<std::ops::Range<usize>> = (0..g)
        .flat_map(|gi| {
            let end = (gi + 1) * per;
            (gi * per..end)
                .step_by(ROWS)
                .map(move |s| s..(s + ROWS).min(end))
        })
        .collect();

    // Start: the plain weight-error fit with its threshold codes.
    let plain = crate::quantize(w, shape, scheme, granularity)?;
    let mut levels = plain.levels.clone();
    let mut codes = plain.codes.clone();
    let families: Vec<Family> = levels.iter().map(|l| Family::of(scheme, l)).collect();
    // Ternary codes of the plain fit are 0..=2 already; clamp defensively to k-1.
    for (gi, fam) in families.iter().enumerate() {
        let k = fam.k() as u8;
        for c in &mut codes[gi * group..(gi + 1) * group] {
            *c = (*c).min(k - 1);
        }
    }
    // Undamped relative output error, for the report.
    let signal: f64 = blocks
        .par_iter()
        .map(|rg| {
            let d: Vec<Vec<f64>> = rg
                .clone()
                .map(|r| wrow(r).iter().map(|&x| x as f64).collect())
                .collect();
            quad_forms(grams[rg.start / per], &d).iter().sum::<f64>()
        })
        .collect::<Vec<f64>>()
        .iter()
        .sum();
    let rel = |codes: &[u8], levels: &[Levels]| -> f64 {
        let e: f64 = blocks
            .par_iter()
            .map(|rg| {
                let d: Vec<Vec<f64>> = rg
                    .clone()
                    .map(|r| {
                        let v = values_of(families[r / row_groups], &levels[r / row_groups]);
                        let c = &codes[r * n..(r + 1) * n];
                        wrow(r)
                            .iter()
                            .zip(c)
                            .map(|(&x, &c)| x as f64 - v[c as usize])
                            .collect()
                    })
                    .collect();
                quad_forms(grams[rg.start / per], &d).iter().sum::<f64>()
            })
            .collect::<Vec<f64>>()
            .iter()
            .sum();
        if signal > 0.0 {
            (e / signal).sqrt()
        } else {
            0.0
        }
    };
    let before = rel(&codes, &levels);
    // Damped objective: Σ_r (vᵀA_r v − 2b_rᵀv + w_rᵀH w_r), with `H w_r` computed once.
    let hw: Vec<Vec<f64>> = blocks
        .par_iter()
        .flat_map_iter(|rg| {
            let x: Vec<Vec<f64>> = rg
                .clone()
                .map(|r| wrow(r).iter().map(|&x| x as f64).collect())
                .collect();
            matvecs(&damped_h[rg.start / per], &x)
        })
        .collect();
    let whw: f64 = (0..rows)
        .map(|r| {
            dot(
                &hw[r],
                &wrow(r).iter().map(|&x| x as f64).collect::<Vec<_>>(),
            )
        })
        .sum();
    let systems = |codes: &[u8]| -> Vec<(Vec<f64>, Vec<f64>)> {
        let per_row: Vec<(Vec<f64>, Vec<f64>)> = blocks
            .par_iter()
            .flat_map_iter(|rg| {
                let k: Vec<usize> = rg.clone().map(|r| families[r / row_groups].k()).collect();
                let c = &codes[rg.start * n..rg.end * n];
                accumulate_block(&damped_h[rg.start / per], &hw[rg.clone()], c, &k)
            })
            .collect();
        per_row
            .chunks(row_groups)
            .map(|g| {
                let mut sum = g[0].clone();
                for (a, b) in &g[1..] {
                    sum.0.iter_mut().zip(a).for_each(|(p, q)| *p += q);
                    sum.1.iter_mut().zip(b).for_each(|(p, q)| *p += q);
                }
                sum
            })
            .collect()
    };
    // Objective of `levels` for the codes the systems came from.
    let objective = |sys: &[(Vec<f64>, Vec<f64>)], levels: &[Levels]| -> f64 {
        sys.iter()
            .zip(levels)
            .zip(&families)
            .map(|(((a, b), l), &f)| quadratic(a, b, &values_of(f, l)))
            .sum::<f64>()
            + whw
    };
    let refit = |sys: &[(Vec<f64>, Vec<f64>)]| -> Vec<Levels> {
        sys.par_iter()
            .zip(&families)
            .map(|((a, b), &f)| to_levels(f, &best_levels(f, a, b)))
            .collect()
    };
    let sys = systems(&codes);
    let mut best_err = objective(&sys, &levels);
    // The plain codes with refitted levels.
    let l0 = refit(&sys);
    let e0 = objective(&sys, &l0);
    if e0 < best_err {
        best_err = e0;
        levels = l0;
    }
    let mut cur_levels = levels.clone();
    let mut rounds = 0;
    let mut new_codes = vec![0u8; w.len()];
    for _ in 0..opts.max_rounds {
        rounds += 1;
        let mut parts: Vec<&mut [u8]> = Vec::with_capacity(blocks.len());
        let mut rest = &mut new_codes[..];
        for rg in &blocks {
            let (head, tail) = rest.split_at_mut(rg.len() * n);
            parts.push(head);
            rest = tail;
        }
        parts.into_par_iter().zip(&blocks).for_each(|(c, rg)| {
            let v: Vec<Vec<f64>> = rg
                .clone()
                .map(|r| values_of(families[r / row_groups], &cur_levels[r / row_groups]))
                .collect();
            let p = &orders[rg.start / per];
            let wb: Vec<f32> = rg
                .clone()
                .flat_map(|r| p.iter().map(move |&i| w[r * n + i]))
                .collect();
            let mut cp = vec![0u8; c.len()];
            gptq_codes_block(&wb, n, &v, &us[rg.start / per], &mut cp);
            for (cr, cpr) in c.chunks_mut(n).zip(cp.chunks(n)) {
                for (k, &i) in p.iter().enumerate() {
                    cr[i] = cpr[k];
                }
            }
        });
        let sys = systems(&new_codes);
        let l = refit(&sys);
        let e = objective(&sys, &l);
        cur_levels = l;
        if e < best_err * (1.0 - 1e-9) {
            best_err = e;
            codes.copy_from_slice(&new_codes);
            levels = cur_levels.clone();
        } else {
            break;
        }
    }
    let after = rel(&codes, &levels);
    let q = Quantized {
        scheme,
        granularity,
        shape: shape.to_vec(),
        codes,
        levels,
    };
    Ok((
        q,
        CalibReport {
            before,
            after,
            rounds,
        },
    ))
}

/// Bias correction: the per-output-channel shift `W μ_w − Q μ_q` that moves the quantized
/// layer's mean output back to the float layer's (`μ_w`: mean input row of the float
/// network; `μ_q`: of the network being quantized, the same in the independent variant).
/// `w`, `q`: `[rows, cols]` with rows split evenly over `mean_w.len() / cols` conv groups
/// (the means are concatenated per group). Add the result to the layer's bias.
pub fn mean_shift(w: &[f32], q: &[f32], cols: usize, mean_w: &[f64], mean_q: &[f64]) -> Vec<f32> {
    let rows = w.len() / cols;
    let g = (mean_w.len() / cols).max(1);
    let per = rows / g;
    (0..rows)
        .map(|r| {
            let off = (r / per) * cols;
            let (mw, mq) = (&mean_w[off..off + cols], &mean_q[off..off + cols]);
            let s: f64 = (0..cols)
                .map(|i| w[r * cols + i] as f64 * mw[i] - q[r * cols + i] as f64 * mq[i])
                .sum();
            s as f32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The blocked refit system equals the plain loop.
    #[test]
    fn block_system_matches_reference() {
        let n = 23;
        let mut h = vec![0.0f64; n * n];
        for i in 0..n {
            for j in 0..=i {
                let v = ((i * 7 + j * 3) % 11) as f64 - 4.0 + if i == j { 30.0 } else { 0.0 };
                h[i * n + j] = v;
                h[j * n + i] = v;
            }
        }
        let w: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
        let w2: Vec<f32> = w.iter().map(|x| -2.0 * x).collect();
        for k in [3usize, 4] {
            let codes: Vec<u8> = (0..n).map(|i| ((i * 5) % k) as u8).collect();
            let codes2: Vec<u8> = codes.iter().rev().copied().collect();
            let both: Vec<u8> = codes.iter().chain(&codes2).copied().collect();
            let blk = accumulate_block(&h, &[matvec(&h, &w), matvec(&h, &w2)], &both, &[k, k]);
            for (r, (w, c)) in [(&w, &codes), (&w2, &codes2)].into_iter().enumerate() {
                let (mut a, mut b) = (vec![0.0; k * k], vec![0.0; k]);
                accumulate_system(w, &h, c, k, &mut a, &mut b);
                for (x, y) in a.iter().zip(&blk[r].0).chain(b.iter().zip(&blk[r].1)) {
                    assert!((x - y).abs() < 1e-9 * (1.0 + x.abs()), "{x} vs {y}");
                }
            }
        }
    }
}

#[cfg(test)]
mod block_tests {
    use super::*;

    /// Blocked GPTQ equals the row-by-row reference bit for bit.
    #[test]
    fn gptq_block_matches_rows() {
        let n = 31;
        let mut h = vec![0.0f64; n * n];
        for i in 0..n {
            for j in 0..n {
                h[i * n + j] =
                    1.0 / (1.0 + (i as f64 - j as f64).abs()) + if i == j { 1.0 } else { 0.0 };
            }
        }
        let u = inverse_upper_factor(&h, n);
        let w: Vec<f32> = (0..3 * n).map(|i| (i as f32 * 0.71).sin() * 0.1).collect();
        let values = vec![
            vec![-0.08, 0.0, 0.07],
            vec![-0.05, 0.0, 0.1],
            vec![-0.1, -0.02, 0.0, 0.06],
        ];
        let mut blk = vec![0u8; 3 * n];
        gptq_codes_block(&w, n, &values, &u, &mut blk);
        for r in 0..3 {
            let mut c = vec![0u8; n];
            gptq_codes(&w[r * n..(r + 1) * n], &values[r], &u, &mut c);
            assert_eq!(&blk[r * n..(r + 1) * n], &c[..]);
        }
    }
}
