//! Base-3 packing of ternary codes: 5 codes per byte (`3^5 = 243 <= 256`), 1.6 bits per
//! weight before tables.
//!
//! Byte `k` holds codes `5k .. 5k+5` as base-3 digits, code `5k` least significant:
//! `byte = c[5k] + 3*c[5k+1] + 9*c[5k+2] + 27*c[5k+3] + 81*c[5k+4]`, so code `i` is
//! `(byte[i/5] / 3^(i%5)) % 3` (still addressable by index). Every byte is below 243, and the
//! digits past the last weight are zero (the last byte is below `3^(n%5)` when `n%5 != 0`).
//!
//! The file stores this layout; in memory a [`crate::PackedTensor`] keeps the 2-bit layout of
//! [`crate::pack`] (what the runtime computes on), so these functions convert between the two.
//! The `*_reference` functions are the plain definitions the table-driven ones are tested
//! against.

/// Codes per byte.
pub const CODES_PER_BYTE: usize = 5;
/// Number of distinct byte values (`3^5`); bytes at or above it are invalid.
pub const BYTE_VALUES: u8 = 243;
const POW3: [u8; 5] = [1, 3, 9, 27, 81];

/// Number of bytes for `n` codes: `ceil(n/5)`.
pub fn packed_len(n: usize) -> usize {
    n.div_ceil(CODES_PER_BYTE)
}

/// Largest valid value of the last byte plus one: `3^(n%5)`, or 243 when `n%5 == 0`.
pub fn last_byte_limit(n: usize) -> u16 {
    match n % CODES_PER_BYTE {
        0 => u16::from(BYTE_VALUES),
        r => 3u16.pow(r as u32),
    }
}

/// Reference packing of one code per element (each `< 3`, else `None`).
pub fn pack_reference(codes: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(packed_len(codes.len()));
    for chunk in codes.chunks(CODES_PER_BYTE) {
        let mut b = 0u8;
        for (j, &c) in chunk.iter().enumerate() {
            if c >= 3 {
                return None;
            }
            b += c * POW3[j];
        }
        out.push(b);
    }
    Some(out)
}

/// Reference unpacking of `n` codes, one per element (`None` if a byte is `>= 243` or the
/// length is not `ceil(n/5)`).
pub fn unpack_reference(packed: &[u8], n: usize) -> Option<Vec<u8>> {
    if packed.len() != packed_len(n) || packed.iter().any(|&b| b >= BYTE_VALUES) {
        return None;
    }
    Some((0..n).map(|i| (packed[i / 5] / POW3[i % 5]) % 3).collect())
}

/// 2-bit packed codes (see [`crate::pack`], `ceil(n/4)` bytes) to base 3. `None` if a code
/// is 3 (not representable) or the input is shorter than `ceil(n/4)`.
pub fn from_base2(packed2: &[u8], n: usize) -> Option<Vec<u8>> {
    if packed2.len() < crate::pack::packed_len(n) {
        return None;
    }
    let mut out = Vec::with_capacity(packed_len(n));
    let mut acc = 0u8;
    let mut digit = 0usize;
    let mut bad = false;
    for i in 0..n {
        let c = (packed2[i / 4] >> (2 * (i % 4))) & 3;
        bad |= c == 3;
        // c <= 3 and POW3 <= 81: at most 242 + 81*3 with a bad code, so wrap instead of
        // overflow; a bad code discards the result anyway.
        acc = acc.wrapping_add(c.wrapping_mul(POW3[digit]));
        digit += 1;
        if digit == CODES_PER_BYTE {
            out.push(acc);
            acc = 0;
            digit = 0;
        }
    }
    if digit != 0 {
        out.push(acc);
    }
    (!bad).then_some(out)
}

/// One base-3 byte to its five codes in 2-bit layout: `(low byte, high 2 bits)` where the
/// low byte holds codes 0..4 and the 2 bits hold code 4.
const fn digits_table() -> [u16; 256] {
    let mut t = [0u16; 256];
    let mut b = 0;
    while b < 243 {
        let mut v = b;
        let mut word = 0u16;
        let mut j = 0;
        while j < 5 {
            word |= ((v % 3) as u16) << (2 * j);
            v /= 3;
            j += 1;
        }
        t[b] = word;
        b += 1;
    }
    t
}
static DIGITS: [u16; 256] = digits_table();

/// Base-3 bytes to the 2-bit layout (`ceil(n/4)` bytes, zero padding), table driven. The
/// caller validates first (length `ceil(n/5)`, bytes `< 243`, zero padding digits; see
/// [`check`]); invalid bytes decode to code 0 here rather than panic.
pub fn to_base2(packed3: &[u8], n: usize) -> Vec<u8> {
    let mut out = vec![0u8; crate::pack::packed_len(n)];
    // 20 codes = 4 base-3 bytes = 5 base-2 bytes: whole groups go through a u64.
    let groups = n / 20;
    for g in 0..groups {
        let mut bits = 0u64;
        for j in 0..4 {
            let b = packed3.get(g * 4 + j).copied().unwrap_or(0);
            bits |= u64::from(DIGITS[usize::from(b)]) << (10 * j);
        }
        out[g * 5..g * 5 + 5].copy_from_slice(&bits.to_le_bytes()[..5]);
    }
    for i in groups * 20..n {
        let b = packed3.get(i / 5).copied().unwrap_or(0);
        let c = ((DIGITS[usize::from(b)] >> (2 * (i % 5))) & 3) as u8;
        out[i / 4] |= c << (2 * (i % 4));
    }
    out
}

/// Why a base-3 code string is invalid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Base3Error {
    /// Not `ceil(n/5)` bytes.
    Length,
    /// Byte `index` is 243 or more.
    ByteRange {
        /// Its index.
        index: usize,
        /// Its value.
        byte: u8,
    },
    /// A digit past the last weight is not zero.
    Padding,
}

/// Validates a base-3 code string for `n` codes.
pub fn check(packed3: &[u8], n: usize) -> Result<(), Base3Error> {
    if packed3.len() != packed_len(n) {
        return Err(Base3Error::Length);
    }
    if let Some(index) = packed3.iter().position(|&b| b >= BYTE_VALUES) {
        return Err(Base3Error::ByteRange {
            index,
            byte: packed3[index],
        });
    }
    if let Some(&last) = packed3.last() {
        if u16::from(last) >= last_byte_limit(n) {
            return Err(Base3Error::Padding);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn digit_positions_match_the_spec() {
        // 1 + 2*3 + 0*9 + 1*27 + 2*81 = 196; then code 2 alone
        assert_eq!(pack_reference(&[1, 2, 0, 1, 2, 2]).unwrap(), vec![196, 2]);
        assert_eq!(
            unpack_reference(&[196, 2], 6).unwrap(),
            vec![1, 2, 0, 1, 2, 2]
        );
        assert_eq!(pack_reference(&[3]), None);
        assert_eq!(unpack_reference(&[243], 5), None);
        assert_eq!(check(&[242], 5), Ok(()));
        assert_eq!(check(&[9], 2), Err(Base3Error::Padding));
        assert_eq!(check(&[8], 2), Ok(()));
        assert_eq!(
            check(&[0, 250], 10),
            Err(Base3Error::ByteRange {
                index: 1,
                byte: 250
            })
        );
        assert_eq!(check(&[0], 10), Err(Base3Error::Length));
    }

    #[test]
    fn the_table_matches_the_reference_on_every_byte() {
        for b in 0..243u8 {
            let want = unpack_reference(&[b], 5).unwrap();
            assert_eq!(crate::pack::unpack(&to_base2(&[b], 5), 5), want, "{b}");
        }
    }

    #[test]
    fn code_3_is_refused() {
        let p2 = crate::pack::pack(&[0, 1, 2, 3, 0]);
        assert_eq!(from_base2(&p2, 5), None);
        assert_eq!(from_base2(&p2, 3).unwrap(), vec![3 + 2 * 9]);
    }

    proptest! {
        #[test]
        fn optimised_equals_reference_on_ragged_lengths(
            codes in proptest::collection::vec(0u8..3, 0..300)
        ) {
            let n = codes.len();
            let p3 = pack_reference(&codes).unwrap();
            prop_assert_eq!(p3.len(), packed_len(n));
            prop_assert!(check(&p3, n).is_ok());
            let p2 = crate::pack::pack(&codes);
            prop_assert_eq!(from_base2(&p2, n).unwrap(), p3.clone());
            prop_assert_eq!(to_base2(&p3, n), p2);
            prop_assert_eq!(unpack_reference(&p3, n).unwrap(), codes);
        }
    }
}
