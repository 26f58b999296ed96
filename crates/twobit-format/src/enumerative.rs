//! Exact enumerative coding of a small tensor's codes: the best a per-tensor entropy coder
//! can do where rANS's fixed costs (a frequency table and a 32-bit final state, 50-90 bits)
//! are a visible fraction of the tensor.
//!
//! A sequence of `n` codes from an alphabet of `k` (3 for the ternary schemes, 4 otherwise)
//! is identified by its histogram `c` and its rank among the `M = n! / (c_0! ... c_{k-1}!)`
//! sequences with that histogram (lexicographic order). Both go into one integer
//!
//! ```text
//! V = h + C * r        C = binomial(n + k - 1, k - 1)  (number of histograms of n codes)
//!                      h = rank of c among them (combinatorial number system over the
//!                          k - 1 bar positions p_j = c_0 + ... + c_j + j: h = sum C(p_j, j+1))
//!                      r = rank of the sequence, 0 <= r < M
//! ```
//!
//! stored as its minimal little-endian bytes (no zero top byte; `V = 0` is no bytes). The
//! length is `ceil(log2(C M) / 8)` at most: `n·H + (k-1)/2·log2 n + O(1)` bits, within a few
//! bytes of the zero-order entropy for any `n`. Encoding and decoding take `O(n^2 k / 32)`
//! word operations on a big integer, so the writer uses it only up to [`MAX_WEIGHTS`] codes
//! (where it matters; rANS's overhead is under 0.03 bits per weight above it); the reader
//! refuses larger tensors before doing any work. At the limit a tensor encodes in about 9 ms
//! and decodes in about 11 ms (1 KiB of stream).

/// Most codes an enumerative stream may hold (bounds the reader's work to a few ms).
pub const MAX_WEIGHTS: usize = 4096;

/// Why a stream does not decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnumError {
    /// More than [`MAX_WEIGHTS`] codes.
    TooMany,
    /// The stream is longer than any valid one for `n` codes, or ends in a zero byte.
    Length,
    /// The rank is not below the number of sequences with the decoded histogram.
    Rank,
}

/// Little-endian base-2^32 natural number: just the operations the coder needs.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Big(Vec<u32>);

impl Big {
    fn small(v: u128) -> Big {
        let mut b = Big(vec![
            v as u32,
            (v >> 32) as u32,
            (v >> 64) as u32,
            (v >> 96) as u32,
        ]);
        b.trim();
        b
    }

    fn trim(&mut self) {
        while self.0.last() == Some(&0) {
            self.0.pop();
        }
    }

    fn is_zero(&self) -> bool {
        self.0.is_empty()
    }

    fn mul_small(&mut self, m: u64) {
        let mut carry = 0u128;
        for limb in &mut self.0 {
            let v = u128::from(*limb) * u128::from(m) + carry;
            *limb = v as u32;
            carry = v >> 32;
        }
        while carry > 0 {
            self.0.push(carry as u32);
            carry >>= 32;
        }
        self.trim();
    }

    /// Divides in place, returning the remainder.
    fn divmod_small(&mut self, d: u64) -> u64 {
        let mut rem = 0u128;
        for limb in self.0.iter_mut().rev() {
            let v = (rem << 32) | u128::from(*limb);
            *limb = (v / u128::from(d)) as u32;
            rem = v % u128::from(d);
        }
        self.trim();
        rem as u64
    }

    fn add(&mut self, o: &Big) {
        if self.0.len() < o.0.len() {
            self.0.resize(o.0.len(), 0);
        }
        let mut carry = 0u64;
        for (i, limb) in self.0.iter_mut().enumerate() {
            let v = u64::from(*limb) + u64::from(o.0.get(i).copied().unwrap_or(0)) + carry;
            *limb = v as u32;
            carry = v >> 32;
        }
        if carry > 0 {
            self.0.push(carry as u32);
        }
    }

    /// `self -= o`; requires `self >= o`.
    fn sub(&mut self, o: &Big) {
        let mut borrow = 0i64;
        for (i, limb) in self.0.iter_mut().enumerate() {
            let v = i64::from(*limb) - i64::from(o.0.get(i).copied().unwrap_or(0)) - borrow;
            (*limb, borrow) = if v < 0 {
                ((v + (1 << 32)) as u32, 1)
            } else {
                (v as u32, 0)
            };
        }
        debug_assert_eq!(borrow, 0);
        self.trim();
    }

    fn lt(&self, o: &Big) -> bool {
        if self.0.len() != o.0.len() {
            return self.0.len() < o.0.len();
        }
        self.0.iter().rev().cmp(o.0.iter().rev()) == std::cmp::Ordering::Less
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut b: Vec<u8> = self.0.iter().flat_map(|l| l.to_le_bytes()).collect();
        while b.last() == Some(&0) {
            b.pop();
        }
        b
    }

    fn from_bytes(b: &[u8]) -> Big {
        let mut v = Big(b
            .chunks(4)
            .map(|c| {
                let mut w = [0u8; 4];
                w[..c.len()].copy_from_slice(c);
                u32::from_le_bytes(w)
            })
            .collect());
        v.trim();
        v
    }
}

/// binomial(n, r) for the small `r` (< 4) used here; exact in u128 for n < 2^32.
fn binomial(n: u64, r: usize) -> u128 {
    if (n as u128) < r as u128 {
        return 0;
    }
    let mut v = 1u128;
    for i in 0..r as u64 {
        v = v * u128::from(n - i) / u128::from(i + 1);
    }
    v
}

/// `n! / prod(c!)`.
fn multinomial(counts: &[usize]) -> Big {
    let mut m = Big::small(1);
    let mut total = 0u64;
    for &c in counts {
        for j in 1..=c as u64 {
            total += 1;
            // Exact at every step: each partial product is itself a multinomial.
            m.mul_small(total);
            m.divmod_small(j);
        }
    }
    m
}

/// Histogram rank (combinatorial number system over the bar positions).
fn histogram_rank(counts: &[usize]) -> u128 {
    let mut p = 0u64;
    let mut h = 0u128;
    for (j, &c) in counts[..counts.len() - 1].iter().enumerate() {
        p += c as u64 + u64::from(j > 0);
        h += binomial(p, j + 1);
    }
    h
}

/// The histogram of rank `h` for `n` codes over `k` symbols.
fn histogram(mut h: u128, n: usize, k: usize) -> Vec<usize> {
    let top = (n + k - 2) as u64;
    let mut pos = vec![0u64; k - 1];
    for j in (0..k - 1).rev() {
        // Largest p with C(p, j+1) <= h (p < the previous bar).
        let hi_bound = if j + 2 < k { pos[j + 1] } else { top + 1 };
        let (mut lo, mut hi) = (j as u64, hi_bound);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if binomial(mid, j + 1) <= h {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        pos[j] = lo;
        h -= binomial(lo, j + 1);
    }
    let mut counts = Vec::with_capacity(k);
    let mut prev: Option<u64> = None;
    for &p in &pos {
        counts.push(match prev {
            None => p as usize,
            Some(q) => (p - q - 1) as usize,
        });
        prev = Some(p);
    }
    counts.push((top - prev.unwrap_or(0)) as usize);
    counts
}

/// Encodes `codes` (one per weight, each `< k`) into the stream; `None` if a code is `>= k`
/// or there are more than [`MAX_WEIGHTS`].
pub fn encode(codes: &[u8], k: usize) -> Option<Vec<u8>> {
    let n = codes.len();
    if n > MAX_WEIGHTS || !(2..=4).contains(&k) || codes.iter().any(|&c| usize::from(c) >= k) {
        return None;
    }
    let mut counts = vec![0usize; k];
    for &c in codes {
        counts[usize::from(c)] += 1;
    }
    let h = histogram_rank(&counts);
    let mut m = multinomial(&counts);
    let mut rank = Big::small(0);
    let mut remaining = counts.clone();
    for (i, &c) in codes.iter().enumerate() {
        let r = (n - i) as u64;
        let below: usize = remaining[..usize::from(c)].iter().sum();
        if below > 0 {
            let mut t = m.clone();
            t.mul_small(below as u64);
            t.divmod_small(r);
            rank.add(&t);
        }
        m.mul_small(remaining[usize::from(c)] as u64);
        m.divmod_small(r);
        remaining[usize::from(c)] -= 1;
    }
    let mut v = rank;
    let c = binomial((n + k - 1) as u64, k - 1);
    v.mul_small(c as u64);
    v.add(&Big::small(h));
    Some(v.to_bytes())
}

/// Longest valid stream for `n` codes over `k` symbols: `ceil(log2(C · k^n) / 8)` bytes.
pub fn max_len(n: usize, k: usize) -> usize {
    let c = binomial((n + k - 1) as u64, k - 1);
    let bits = n as f64 * (k as f64).log2() + (c as f64).log2().max(0.0);
    bits.ceil() as usize / 8 + 2
}

/// Decodes `n` codes over `k` symbols.
pub fn decode(data: &[u8], n: usize, k: usize) -> Result<Vec<u8>, EnumError> {
    if n > MAX_WEIGHTS || !(2..=4).contains(&k) {
        return Err(EnumError::TooMany);
    }
    if data.len() > max_len(n, k) || data.last() == Some(&0) {
        return Err(EnumError::Length);
    }
    let mut v = Big::from_bytes(data);
    let c = binomial((n + k - 1) as u64, k - 1);
    let h = u128::from(v.divmod_small(c as u64));
    let mut rank = v;
    let mut counts = histogram(h, n, k);
    let mut m = multinomial(&counts);
    if !rank.lt(&m) {
        return Err(EnumError::Rank);
    }
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let r = (n - i) as u64;
        let mut chosen = None;
        for (s, &c) in counts.iter().enumerate() {
            if c == 0 {
                continue;
            }
            let mut t = m.clone();
            t.mul_small(c as u64);
            t.divmod_small(r);
            if rank.lt(&t) {
                chosen = Some((s, t));
                break;
            }
            rank.sub(&t);
        }
        // rank < m holds throughout, so some symbol is always chosen.
        let (s, t) = chosen.ok_or(EnumError::Rank)?;
        out.push(s as u8);
        counts[s] -= 1;
        m = t;
    }
    debug_assert!(rank.is_zero());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64*: uniform in [0, 1).
    struct Rng(u64);
    impl Rng {
        fn uniform(&mut self) -> f64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    #[test]
    fn histograms_rank_and_unrank_for_every_histogram() {
        for k in 2..=4 {
            for n in 0..12usize {
                let total = binomial((n + k - 1) as u64, k - 1);
                for h in 0..total {
                    let c = histogram(h, n, k);
                    assert_eq!(c.len(), k);
                    assert_eq!(c.iter().sum::<usize>(), n, "k {k} n {n} h {h}: {c:?}");
                    assert_eq!(histogram_rank(&c), h, "k {k} n {n}: {c:?}");
                }
            }
        }
    }

    #[test]
    fn every_sequence_of_a_small_alphabet_round_trips_with_distinct_ranks() {
        // All 3^6 ternary sequences: distinct streams, each decoding to itself.
        let mut seen = std::collections::HashSet::new();
        for i in 0..3usize.pow(6) {
            let codes: Vec<u8> = (0..6).map(|d| (i / 3usize.pow(d) % 3) as u8).collect();
            let s = encode(&codes, 3).unwrap();
            assert_eq!(decode(&s, 6, 3).unwrap(), codes);
            assert!(seen.insert(s));
        }
    }

    #[test]
    fn random_tensors_round_trip_near_the_entropy() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for (n, k, p) in [
            (1, 3, [1.0, 0.0, 0.0, 0.0]),
            (500, 4, [0.37, 0.3, 0.2, 0.13]),
            (500, 3, [0.35, 0.35, 0.3, 0.0]),
            (4096, 3, [0.2, 0.6, 0.2, 0.0]),
            (777, 4, [0.0, 1.0, 0.0, 0.0]),
        ] {
            let codes: Vec<u8> = (0..n)
                .map(|_| {
                    let u = rng.uniform();
                    let mut acc = 0.0;
                    (0..k)
                        .find(|&s| {
                            acc += p[s];
                            u < acc
                        })
                        .unwrap_or(k - 1) as u8
                })
                .collect();
            let s = encode(&codes, k).unwrap();
            assert!(s.len() <= max_len(n, k));
            assert_eq!(decode(&s, n, k).unwrap(), codes, "n {n} k {k}");
            let mut cnt = [0f64; 4];
            codes.iter().for_each(|&c| cnt[usize::from(c)] += 1.0);
            let h: f64 = cnt
                .iter()
                .filter(|&&c| c > 0.0)
                .map(|&c| -c * (c / n as f64).log2())
                .sum();
            // The two-part code's excess over n·H: about (k-1)/2·log2 n + the histogram.
            let excess = s.len() as f64 * 8.0 - h;
            assert!(
                excess <= 2.0 * k as f64 * (n as f64).log2() + 8.0,
                "{excess}"
            );
        }
    }

    #[test]
    fn corrupt_streams_are_errors() {
        let codes = vec![0u8, 1, 2, 2, 1, 0, 3, 3, 1];
        let s = encode(&codes, 4).unwrap();
        assert_eq!(decode(&s, 9, 4).unwrap(), codes);
        // A zero top byte is not the canonical form.
        let mut z = s.clone();
        z.push(0);
        assert_eq!(decode(&z, 9, 4), Err(EnumError::Length));
        // Too long for 9 codes.
        assert_eq!(decode(&[0xff; 64], 9, 4), Err(EnumError::Length));
        // A rank past the histogram's sequences.
        let big = vec![0xff; max_len(9, 4)];
        assert!(decode(&big, 9, 4).is_err());
        assert_eq!(decode(&[], MAX_WEIGHTS + 1, 3), Err(EnumError::TooMany));
        assert_eq!(encode(&[3], 3), None, "code 3 in a ternary alphabet");
        // Every byte string up to 2 bytes either decodes to codes that re-encode to it, or
        // is an error: never a panic.
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                for d in [vec![a], vec![a, b]] {
                    if let Ok(c) = decode(&d, 5, 3) {
                        assert_eq!(encode(&c, 3).unwrap(), d);
                    }
                }
            }
        }
    }
}
