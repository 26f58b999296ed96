//! 2-bit packing: 4 codes per byte, weight `i` in bits `2*(i%4)` of byte `i/4`.
//!
//! Little-endian within the byte (weight 0 in the low bits) so that a decoder can extract
//! code `i` with `(byte[i/4] >> (2*(i%4))) & 3` without knowing the tensor length.

/// Number of bytes needed for `n` packed codes: `ceil(n/4)`.
pub fn packed_len(n: usize) -> usize {
    n.div_ceil(4)
}

/// Packs codes (each 0..=3) four per byte. Bits above the low two of each code are ignored,
/// and the unused high bits of the last byte are zero.
pub fn pack(codes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(packed_len(codes.len()));
    for chunk in codes.chunks(4) {
        let mut b = 0u8;
        for (j, &c) in chunk.iter().enumerate() {
            b |= (c & 3) << (2 * j);
        }
        out.push(b);
    }
    out
}

/// Unpacks `n` codes. Missing bytes (a `packed` shorter than `ceil(n/4)`) decode as code 0;
/// callers that need strictness check the length first (the file reader does).
pub fn unpack(packed: &[u8], n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n.min(packed.len().saturating_mul(4)));
    for i in 0..n {
        let b = packed.get(i / 4).copied().unwrap_or(0);
        out.push((b >> (2 * (i % 4))) & 3);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_positions_match_the_spec() {
        // weight i sits in bits 2*(i%4) of byte i/4
        assert_eq!(pack(&[1, 2, 3, 0, 3]), vec![0b00_11_10_01, 0b11]);
        assert_eq!(unpack(&[0b00_11_10_01, 0b11], 5), vec![1, 2, 3, 0, 3]);
    }

    #[test]
    fn round_trip_all_lengths() {
        for n in 0..40 {
            let codes: Vec<u8> = (0..n).map(|i| ((i * 7 + 3) % 4) as u8).collect();
            let p = pack(&codes);
            assert_eq!(p.len(), packed_len(n));
            assert_eq!(unpack(&p, n), codes);
        }
    }
}
