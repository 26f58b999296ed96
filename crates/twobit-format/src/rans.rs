//! Entropy-coded codes: a small static rANS coder over 2-bit codes, one stream per tensor.
//!
//! The model is the tensor's own code histogram, quantized to frequencies summing to
//! [`TOTAL`] (`2^12`; every code that occurs gets at least 1). The state is 32 bits, kept in
//! `[L, 256 L)` with `L = 2^23` and renormalised a byte at a time (Duda's rANS in the form of
//! Giesen's `rans_byte`), with one change: the encoder starts from state 0 instead of `L`,
//! and the decoder reads a byte only while its state is below `L` *and* bytes remain. That
//! saves the ~3 bytes a fixed initial state wastes, which matters for small tensors, and gives
//! a check for free: a valid stream ends exactly at its last byte with the state back at 0.
//!
//! Stream layout (all of it is the `W.codes` tensor's bytes):
//!
//! ```text
//! byte 0      bits 0-3: mask of the codes that occur (bit c = code c)
//!             bits 4-5: k - 1, the number of bytes of the final state (1..=4)
//!             bits 6-7: zero
//! then        the 12-bit frequency of every present code except the last present one,
//!             packed least significant bit first, zero bits to a whole byte; the last present
//!             code gets 4096 minus their sum (so at least 1)
//! then        the encoder's final state, k bytes little endian, minimal (top byte non-zero
//!             when k > 1), below 2^31
//! then        the renormalisation bytes in the order the decoder reads them
//! ```
//!
//! Decoding code `i`: `slot = x mod 4096`, `c` = the code whose cumulative range holds `slot`,
//! `x = freq[c] * (x >> 12) + slot - cum[c]`, then while `x < 2^23` and bytes remain,
//! `x = (x << 8) | next byte`. An empty tensor has an empty stream.
//!
//! A stream of `b` bytes may declare at most [`MAX_CODES_PER_BYTE`]` * b` codes, which bounds
//! what decoding allocates by a fixed multiple of the file (a writer whose stream would be
//! denser uses a fixed packing instead).

/// log2 of [`TOTAL`].
pub const SCALE_BITS: u32 = 12;
/// Sum of the quantized frequencies.
pub const TOTAL: u32 = 1 << SCALE_BITS;
/// Lower bound of the normalised state.
pub const STATE_LOW: u32 = 1 << 23;
/// Exclusive upper bound of the state (`256 * STATE_LOW`).
pub const STATE_HIGH: u32 = 1 << 31;
/// Most codes a stream may declare per byte it holds (bounds decoding memory to 64 times the
/// stream, as 2-bit codes).
pub const MAX_CODES_PER_BYTE: usize = 256;

/// Why a stream does not decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RansError {
    /// More codes than [`MAX_CODES_PER_BYTE`] times the stream length (or a non-empty stream
    /// for no codes).
    TooDense,
    /// The header (mask, frequencies, state length) is malformed.
    Header(&'static str),
    /// The final state is not below [`STATE_HIGH`].
    State,
    /// Decoding did not end at the last byte with the state back at 0: the stream is corrupt.
    End,
}

impl std::fmt::Display for RansError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RansError::TooDense => f.write_str("declares more codes than its length allows"),
            RansError::Header(why) => write!(f, "bad header: {why}"),
            RansError::State => f.write_str("initial decoder state out of range"),
            RansError::End => f.write_str(
                "does not decode to the declared codes (bytes left over, or the state does not return to 0)",
            ),
        }
    }
}

/// Histogram of `n` 2-bit packed codes.
pub fn counts(packed2: &[u8], n: usize) -> [u64; 4] {
    let mut c = [0u64; 4];
    let full = n / 4;
    // Whole bytes through a 256-entry histogram, then the tail.
    let mut bytes = [0u64; 256];
    for &b in &packed2[..full.min(packed2.len())] {
        bytes[usize::from(b)] += 1;
    }
    for (b, &k) in bytes.iter().enumerate() {
        if k != 0 {
            for j in 0..4 {
                c[(b >> (2 * j)) & 3] += k;
            }
        }
    }
    for i in full * 4..n {
        let b = packed2.get(i / 4).copied().unwrap_or(0);
        c[usize::from((b >> (2 * (i % 4))) & 3)] += 1;
    }
    c
}

/// Zero-order empirical entropy of a histogram, in bits per code.
pub fn entropy(counts: &[u64; 4]) -> f64 {
    let n: u64 = counts.iter().sum();
    if n == 0 {
        return 0.0;
    }
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n as f64;
            -p * p.log2()
        })
        .sum()
}

/// Frequencies summing to [`TOTAL`], at least 1 for every code that occurs, 0 otherwise.
/// All zero for an empty histogram.
pub fn quantize_freqs(counts: &[u64; 4]) -> [u32; 4] {
    let n: u64 = counts.iter().sum();
    let mut f = [0u32; 4];
    if n == 0 {
        return f;
    }
    for (fi, &c) in f.iter_mut().zip(counts) {
        if c > 0 {
            // round(c * TOTAL / n), at least 1; u128: c * 4096 cannot overflow.
            let q = (u128::from(c) * u128::from(TOTAL) * 2 + u128::from(n)) / (2 * u128::from(n));
            *fi = (q as u32).max(1);
        }
    }
    // Rounding and the minimum of 1 leave the sum within a few units of TOTAL; the largest
    // frequency (at least TOTAL/4) absorbs the difference.
    let sum: u32 = f.iter().sum();
    let big = (0..4)
        .max_by_key(|&i| (f[i], std::cmp::Reverse(i)))
        .unwrap_or(0);
    f[big] = f[big] + TOTAL - sum;
    f
}

fn cumulative(f: &[u32; 4]) -> [u32; 4] {
    [0, f[0], f[0] + f[1], f[0] + f[1] + f[2]]
}

/// Encodes `n` 2-bit packed codes (see [`crate::pack`]) into a stream.
pub fn encode(packed2: &[u8], n: usize) -> Vec<u8> {
    if n == 0 {
        return Vec::new();
    }
    let f = quantize_freqs(&counts(packed2, n));
    let cum = cumulative(&f);
    let mut rev = Vec::with_capacity(n / 4 + 16);
    let mut x: u64 = 0;
    for i in (0..n).rev() {
        let s = usize::from((packed2[i / 4] >> (2 * (i % 4))) & 3);
        let fs = u64::from(f[s]);
        let x_max = u64::from(STATE_LOW >> SCALE_BITS) * 256 * fs;
        while x >= x_max {
            rev.push(x as u8);
            x >>= 8;
        }
        x = (x / fs) * u64::from(TOTAL) + u64::from(cum[s]) + x % fs;
    }
    debug_assert!(x < u64::from(STATE_HIGH));
    let state_len = (((64 - x.leading_zeros()) as usize).div_ceil(8)).max(1);
    let mask = (0..4).filter(|&c| f[c] > 0).fold(0u8, |m, c| m | 1 << c);
    let mut out = vec![mask | ((state_len as u8 - 1) << 4)];
    let present: Vec<usize> = (0..4).filter(|&c| f[c] > 0).collect();
    let mut bits = 0u64;
    let mut nbits = 0;
    for &c in &present[..present.len() - 1] {
        bits |= u64::from(f[c]) << nbits;
        nbits += SCALE_BITS;
    }
    out.extend_from_slice(&bits.to_le_bytes()[..(nbits as usize).div_ceil(8)]);
    out.extend_from_slice(&x.to_le_bytes()[..state_len]);
    out.extend(rev.iter().rev());
    out
}

/// The parsed header: frequencies, and where the state and the renormalisation bytes start.
struct Header {
    freqs: [u32; 4],
    state: u32,
    body: usize,
}

fn header(stream: &[u8], n: usize) -> Result<Header, RansError> {
    if n > MAX_CODES_PER_BYTE.saturating_mul(stream.len()) {
        return Err(RansError::TooDense);
    }
    let b0 = stream[0];
    if b0 >> 6 != 0 {
        return Err(RansError::Header("reserved bits are set"));
    }
    let mask = b0 & 15;
    if mask == 0 {
        return Err(RansError::Header("no code occurs"));
    }
    let state_len = usize::from((b0 >> 4) & 3) + 1;
    let present: Vec<usize> = (0..4).filter(|&c| mask >> c & 1 == 1).collect();
    let nbits = (present.len() - 1) * SCALE_BITS as usize;
    let freq_bytes = nbits.div_ceil(8);
    let body = 1 + freq_bytes + state_len;
    let Some(rest) = stream.get(1..body) else {
        return Err(RansError::Header("truncated"));
    };
    let mut raw = [0u8; 8];
    raw[..freq_bytes].copy_from_slice(&rest[..freq_bytes]);
    let bits = u64::from_le_bytes(raw);
    if bits >> nbits != 0 {
        return Err(RansError::Header("padding bits are set"));
    }
    let mut freqs = [0u32; 4];
    let mut sum = 0u32;
    for (j, &c) in present[..present.len() - 1].iter().enumerate() {
        let v = ((bits >> (j * SCALE_BITS as usize)) & u64::from(TOTAL - 1)) as u32;
        if v == 0 {
            return Err(RansError::Header("a present code has frequency 0"));
        }
        freqs[c] = v;
        sum += v;
    }
    if sum >= TOTAL {
        return Err(RansError::Header("frequencies exceed the total"));
    }
    freqs[present[present.len() - 1]] = TOTAL - sum;
    let st = &rest[freq_bytes..];
    if state_len > 1 && st[state_len - 1] == 0 {
        return Err(RansError::Header(
            "the state is not stored in its fewest bytes",
        ));
    }
    let mut s = [0u8; 4];
    s[..state_len].copy_from_slice(st);
    let state = u32::from_le_bytes(s);
    if state >= STATE_HIGH {
        return Err(RansError::State);
    }
    Ok(Header { freqs, state, body })
}

/// Decodes `n` codes into the 2-bit packed layout (`ceil(n/4)` bytes, zero padding). Never
/// panics; allocates `ceil(n/4)` bytes only after checking [`MAX_CODES_PER_BYTE`].
pub fn decode(stream: &[u8], n: usize) -> Result<Vec<u8>, RansError> {
    if n == 0 {
        return if stream.is_empty() {
            Ok(Vec::new())
        } else {
            Err(RansError::TooDense)
        };
    }
    let h = header(stream, n)?;
    let cum = cumulative(&h.freqs);
    // One entry per slot: frequency (bits 0-12), slot - cum (bits 13-24), code (bits 25-26).
    let mut table = vec![0u32; TOTAL as usize];
    for (c, (&f, &base)) in h.freqs.iter().zip(&cum).enumerate() {
        for slot in base..base + f {
            table[slot as usize] = f | (slot - base) << 13 | (c as u32) << 25;
        }
    }
    let table: &[u32; TOTAL as usize] = table.as_slice().try_into().expect("TOTAL entries");
    let mut out = vec![0u8; crate::pack::packed_len(n)];
    let mut x = h.state;
    let mut pos = h.body;
    let body = stream;
    // Invariants: x < 2^31, so f * (x >> 12) <= x and (x << 8) | byte < 2^31 when x < 2^23.
    // From a normalised state (x >= 2^23) a step leaves x >= 2^11, so two bytes refill it:
    // read them without branches while two remain, then finish with the general loop (which
    // only runs near the end of the stream or on a state that started below 2^23).
    let step = |x: &mut u32, pos: &mut usize| -> u8 {
        let e = table[(*x & (TOTAL - 1)) as usize];
        *x = (e & 0x1FFF) * (*x >> SCALE_BITS) + ((e >> 13) & 0xFFF);
        if let Some(&[b0, b1]) = body.get(*pos..*pos + 2) {
            let n1 = *x < STATE_LOW;
            *x = if n1 { (*x << 8) | u32::from(b0) } else { *x };
            *pos += usize::from(n1);
            let n2 = *x < STATE_LOW;
            *x = if n2 { (*x << 8) | u32::from(b1) } else { *x };
            *pos += usize::from(n2);
        }
        while *x < STATE_LOW {
            let Some(&b) = body.get(*pos) else { break };
            *x = (*x << 8) | u32::from(b);
            *pos += 1;
        }
        (e >> 25) as u8
    };
    let full = n / 4;
    for o in out[..full].iter_mut() {
        let c0 = step(&mut x, &mut pos);
        let c1 = step(&mut x, &mut pos);
        let c2 = step(&mut x, &mut pos);
        let c3 = step(&mut x, &mut pos);
        *o = c0 | c1 << 2 | c2 << 4 | c3 << 6;
    }
    for i in full * 4..n {
        let c = step(&mut x, &mut pos);
        out[i / 4] |= c << (2 * (i % 4));
    }
    if pos != stream.len() || x != 0 {
        return Err(RansError::End);
    }
    Ok(out)
}

/// Plain decoder (u64 state, linear search of the cumulative table, one code per element)
/// the optimised [`decode`] is tested against.
pub fn decode_reference(stream: &[u8], n: usize) -> Result<Vec<u8>, RansError> {
    if n == 0 {
        return if stream.is_empty() {
            Ok(Vec::new())
        } else {
            Err(RansError::TooDense)
        };
    }
    let h = header(stream, n)?;
    let cum = cumulative(&h.freqs);
    let mut x = u64::from(h.state);
    let mut rest = stream[h.body..].iter();
    let mut out = Vec::new();
    for _ in 0..n {
        let slot = x % u64::from(TOTAL);
        let c = (0..4)
            .rev()
            .find(|&c| h.freqs[c] > 0 && u64::from(cum[c]) <= slot)
            .unwrap_or(0);
        x = u64::from(h.freqs[c]) * (x / u64::from(TOTAL)) + slot - u64::from(cum[c]);
        while x < u64::from(STATE_LOW) {
            match rest.next() {
                Some(&b) => x = (x << 8) | u64::from(b),
                None => break,
            }
        }
        out.push(c as u8);
    }
    if rest.next().is_some() || x != 0 {
        return Err(RansError::End);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pack::{pack, unpack};
    use proptest::prelude::*;

    fn skewed(n: usize, seed: u64) -> Vec<u8> {
        let mut s = seed | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                match s % 100 {
                    0..=24 => 0,
                    25..=79 => 1,
                    80..=98 => 2,
                    _ => 3,
                }
            })
            .collect()
    }

    #[test]
    fn frequencies_sum_to_the_total_and_keep_every_code() {
        for c in [
            [1, 0, 0, 0],
            [1, 1_000_000, 1, 0],
            [3, 3, 3, 3],
            [0, 0, 0, 7],
        ] {
            let f = quantize_freqs(&c);
            assert_eq!(f.iter().sum::<u32>(), TOTAL, "{c:?}");
            for j in 0..4 {
                assert_eq!(f[j] > 0, c[j] > 0, "{c:?} {f:?}");
            }
        }
    }

    #[test]
    fn single_code_and_tiny_streams() {
        for n in 1..=20 {
            for code in 0..4u8 {
                let codes = vec![code; n];
                let s = encode(&pack(&codes), n);
                assert_eq!(s.len(), 2, "one header byte and the state 0");
                assert_eq!(unpack(&decode(&s, n).unwrap(), n), codes);
            }
        }
        assert_eq!(encode(&[], 0), Vec::<u8>::new());
        assert_eq!(decode(&[], 0), Ok(vec![]));
        assert_eq!(decode(&[1], 0), Err(RansError::TooDense));
        assert_eq!(decode(&[0x01, 0x00], 513), Err(RansError::TooDense));
        assert_eq!(
            decode(&[0x00, 0x00], 1),
            Err(RansError::Header("no code occurs"))
        );
        assert_eq!(
            decode(&[0x41, 0x00], 1),
            Err(RansError::Header("reserved bits are set"))
        );
        assert_eq!(decode(&[0x31, 0, 0, 0, 0x80], 1), Err(RansError::State));
        assert_eq!(
            decode(&[0x11, 0, 0], 1).unwrap_err(),
            RansError::Header("the state is not stored in its fewest bytes")
        );
        assert_eq!(decode(&[0x01, 0x00, 0x07], 1), Err(RansError::End));
        assert_eq!(decode(&[0x03], 1), Err(RansError::Header("truncated")));
    }

    #[test]
    fn within_a_few_bytes_of_the_entropy() {
        for n in [1000usize, 2400, 25_000, 400_000] {
            let codes = skewed(n, n as u64);
            let p = pack(&codes);
            let s = encode(&p, n);
            let h = entropy(&counts(&p, n)) * n as f64 / 8.0;
            // header (at most 6 bytes) + about 1 byte of final state + frequency rounding
            let over = s.len() as f64 - h;
            assert!(over < 12.0, "{n}: {} bytes, entropy {h:.1}", s.len());
            assert!(
                n < 2400 || over * 8.0 / (n as f64) < 0.03,
                "{n}: {over} bytes over"
            );
            assert_eq!(decode(&s, n).unwrap(), p);
        }
    }

    #[test]
    fn corrupt_streams_are_errors_not_panics() {
        let n = 3000;
        let p = pack(&skewed(n, 9));
        let s = encode(&p, n);
        let mut rejected = 0;
        for i in 0..s.len() {
            for m in [1u8, 0x10, 0x80] {
                let mut b = s.clone();
                b[i] ^= m;
                let fast = decode(&b, n);
                let slow = decode_reference(&b, n).map(|c| pack(&c));
                assert_eq!(fast, slow, "byte {i} mask {m}");
                rejected += usize::from(fast.is_err());
            }
        }
        assert!(rejected * 10 > 9 * 3 * s.len(), "{rejected}");
        for cut in 0..s.len() {
            assert!(decode(&s[..cut], n).is_err());
        }
    }

    proptest! {
        #[test]
        fn round_trip_and_reference_agree(
            codes in proptest::collection::vec(prop_oneof![4 => Just(1u8), 2 => 0u8..4], 0..700)
        ) {
            let n = codes.len();
            let p = pack(&codes);
            let s = encode(&p, n);
            prop_assert_eq!(decode(&s, n).unwrap(), p);
            prop_assert_eq!(decode_reference(&s, n).unwrap(), codes);
        }
    }
}
