/// One group's quantizer: four ascending levels and three ascending thresholds.
///
/// `code(w) = #{ i : w > thresholds[i] }`, so codes are ordered by level (code 0 = smallest).
/// Ternary schemes use codes 0..=2 and set `thresholds[2] = +inf`, `values[3] = values[2]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Levels {
    /// Level values, ascending; `values[c]` decodes code `c`.
    pub values: [f32; 4],
    /// Decision thresholds, ascending.
    pub thresholds: [f32; 3],
}

impl Levels {
    /// The 2-bit code of one weight.
    #[inline]
    pub fn code(&self, w: f32) -> u8 {
        // wrapping_add: cannot overflow (at most 3), and keeps callers' loops vectorisable
        // in release builds with overflow checks.
        ((w > self.thresholds[0]) as u8)
            .wrapping_add((w > self.thresholds[1]) as u8)
            .wrapping_add((w > self.thresholds[2]) as u8)
    }

    /// The decoded value of one code.
    #[inline]
    pub fn value(&self, code: u8) -> f32 {
        self.values[code as usize & 3]
    }
}
