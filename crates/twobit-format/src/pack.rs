//! 2-bit packing: 4 codes per byte, weight `i` in bits `2*(i%4)` of byte `i/4`.

/// Packs codes (each 0..=3) four per byte.
pub fn pack(codes: &[u8]) -> Vec<u8> {
    let _ = codes;
    todo!("format work")
}

/// Unpacks `n` codes.
pub fn unpack(packed: &[u8], n: usize) -> Vec<u8> {
    let _ = (packed, n);
    todo!("format work")
}
