//! How a packed tensor is laid out in the file: code packing, table dtype and table layout.
//!
//! In memory a [`PackedTensor`] always holds 2-bit codes (4 per byte) and f32 tables; the
//! encoding is chosen when writing ([`WriteOptions`]) and undone when reading, so the runtime
//! and every other user see the same tensor whatever the file holds. Every encoding is
//! lossless: the writer picks f16 tables only when every value is exactly an f16 (use
//! [`PackedTensor::with_f16_tables`] to round first), the ternary table layout only when the
//! omitted entries hold their implied values, base 3 only when no code is 3.

use crate::{base3, enumerative, pack, rans, FormatError, PackedTensor};

/// How the codes are stored in `W.codes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Packing {
    /// 4 codes per byte, 2 bits each ([`crate::pack`]); `ceil(n/4)` bytes.
    #[default]
    Base2,
    /// 5 codes per byte as base-3 digits ([`crate::base3`]); `ceil(n/5)` bytes; codes 0..=2.
    Base3,
    /// One static rANS stream ([`crate::rans`]).
    Rans,
    /// One exact enumerative code ([`crate::enumerative`]; small tensors, format version 3).
    Enum,
}

impl Packing {
    /// Every packing.
    pub const ALL: [Packing; 4] = [Packing::Base2, Packing::Base3, Packing::Rans, Packing::Enum];

    /// The manifest name: "base2", "base3", "rans", "enum".
    pub fn name(self) -> &'static str {
        match self {
            Packing::Base2 => "base2",
            Packing::Base3 => "base3",
            Packing::Rans => "rans",
            Packing::Enum => "enum",
        }
    }

    /// Whether the packing is an entropy code (chosen by [`WriteOptions::entropy`]).
    pub fn is_entropy_coded(self) -> bool {
        matches!(self, Packing::Rans | Packing::Enum)
    }

    /// Parses a manifest name.
    pub fn from_name(s: &str) -> Option<Packing> {
        Packing::ALL.into_iter().find(|p| p.name() == s)
    }
}

impl std::fmt::Display for Packing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Element type of the level and threshold tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum TableDtype {
    /// f32 (4 bytes a value).
    #[default]
    F32,
    /// IEEE half (2 bytes a value).
    F16,
}

impl TableDtype {
    /// The safetensors / manifest name.
    pub fn name(self) -> &'static str {
        match self {
            TableDtype::F32 => "F32",
            TableDtype::F16 => "F16",
        }
    }

    /// Parses a name.
    pub fn from_name(s: &str) -> Option<TableDtype> {
        [TableDtype::F32, TableDtype::F16]
            .into_iter()
            .find(|d| d.name() == s)
    }

    /// Bytes per value.
    pub fn size(self) -> usize {
        match self {
            TableDtype::F32 => 4,
            TableDtype::F16 => 2,
        }
    }
}

/// Shape of the tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum TableLayout {
    /// `levels [g, 4]`, `thresholds [g, 3]`.
    #[default]
    Full,
    /// `levels [g, 3]`, `thresholds [g, 2]`: the ternary convention's `levels[3] = levels[2]`
    /// and `thresholds[2] = +inf` are implied.
    Ternary,
}

impl TableLayout {
    /// The manifest name: "full" or "ternary".
    pub fn name(self) -> &'static str {
        match self {
            TableLayout::Full => "full",
            TableLayout::Ternary => "ternary",
        }
    }

    /// Parses a name.
    pub fn from_name(s: &str) -> Option<TableLayout> {
        [TableLayout::Full, TableLayout::Ternary]
            .into_iter()
            .find(|d| d.name() == s)
    }

    /// Stored (levels, thresholds) per group.
    pub fn widths(self) -> (usize, usize) {
        match self {
            TableLayout::Full => (4, 3),
            TableLayout::Ternary => (3, 2),
        }
    }
}

/// The complete stored form of one packed tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Encoding {
    /// Code packing.
    pub packing: Packing,
    /// Table element type.
    pub table_dtype: TableDtype,
    /// Table shape.
    pub table_layout: TableLayout,
}

/// What a packed tensor occupies in a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredSize {
    /// The encoding.
    pub encoding: Encoding,
    /// Bytes of `W.codes`.
    pub code_bytes: usize,
    /// Bytes of `W.levels` and `W.thresholds` together.
    pub table_bytes: usize,
}

impl StoredSize {
    /// Codes plus tables.
    pub fn total(&self) -> usize {
        self.code_bytes + self.table_bytes
    }
}

/// Choices the writer makes per packed tensor. The default is the smallest lossless fixed
/// layout: base 3 when no code is 3 (always, for the ternary schemes), f16 tables when every
/// value is exactly an f16, the ternary table layout when it applies; no entropy coding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// Entropy-code every packed tensor whose rANS stream (or, up to
    /// [`enumerative::MAX_WEIGHTS`] weights, enumerative code) is smaller than its fixed
    /// packing; the smallest wins.
    pub entropy: bool,
    /// Force one packing for every tensor (an error if a tensor cannot take it); mainly for
    /// tests and for writing files old readers understand (`Base2` with `F32` tables).
    pub packing: Option<Packing>,
    /// Force one table dtype (`F16` is an error if a value is not exactly an f16).
    pub table_dtype: Option<TableDtype>,
    /// Force the full table layout.
    pub full_tables: bool,
}

impl WriteOptions {
    /// The version-1 layout: base 2, full f32 tables.
    pub const LEGACY: WriteOptions = WriteOptions {
        entropy: false,
        packing: Some(Packing::Base2),
        table_dtype: Some(TableDtype::F32),
        full_tables: true,
    };
}

/// Is `v` exactly an f16 (including ±inf)?
pub(crate) fn exact_f16(v: f32) -> bool {
    half::f16::from_f32(v).to_f32().to_bits() == v.to_bits()
}

/// The encoded code bytes and the encoding chosen for `p` under `opts`.
pub(crate) fn choose(
    name: &str,
    p: &PackedTensor,
    opts: &WriteOptions,
) -> Result<(Encoding, Vec<u8>), FormatError> {
    let n = p.numel();
    // Encoders index the codes up to n: refuse a tensor whose codes are short (the writer
    // validates first; this guards direct callers of `stored_size`).
    if p.codes.len() != pack::packed_len(n) {
        return Err(FormatError::CodesLengthMismatch {
            tensor: name.to_string(),
            n,
            expected: pack::packed_len(n),
            actual: p.codes.len(),
        });
    }
    let unsupported =
        |packing: &'static str, reason: &'static str| FormatError::EncodingUnsupported {
            tensor: name.to_string(),
            encoding: packing.to_string(),
            reason,
        };
    let all_f16 = p
        .levels
        .iter()
        .all(|l| l.values.iter().chain(&l.thresholds).all(|&v| exact_f16(v)));
    let table_dtype = match opts.table_dtype {
        Some(TableDtype::F16) if !all_f16 => {
            return Err(unsupported(
                "F16",
                "a level or threshold is not exactly an f16",
            ))
        }
        Some(d) => d,
        None if all_f16 => TableDtype::F16,
        None => TableDtype::F32,
    };
    let ternary = p.levels.iter().all(|l| {
        l.values[3].to_bits() == l.values[2].to_bits() && l.thresholds[2] == f32::INFINITY
    });
    let table_layout = if ternary && !opts.full_tables {
        TableLayout::Ternary
    } else {
        TableLayout::Full
    };
    let base3 = || base3::from_base2(&p.codes, n);
    let enum_code = || {
        (n <= enumerative::MAX_WEIGHTS)
            .then(|| enumerative::encode(&pack::unpack(&p.codes, n), p.scheme.num_codes()))
            .flatten()
    };
    let (packing, codes) = match opts.packing {
        Some(Packing::Base2) => (Packing::Base2, p.codes.clone()),
        Some(Packing::Base3) => (
            Packing::Base3,
            base3().ok_or_else(|| unsupported("base3", "a code is 3"))?,
        ),
        Some(Packing::Rans) => {
            let s = rans::encode(&p.codes, n);
            if n > rans::MAX_CODES_PER_BYTE.saturating_mul(s.len()) {
                return Err(unsupported(
                    "rans",
                    "the stream would be denser than the reader allows",
                ));
            }
            (Packing::Rans, s)
        }
        Some(Packing::Enum) => (
            Packing::Enum,
            enum_code().ok_or_else(|| {
                unsupported(
                    "enum",
                    "more weights than enumerative::MAX_WEIGHTS, or a code the scheme never emits",
                )
            })?,
        ),
        None => {
            let fixed = match base3() {
                Some(b) => (Packing::Base3, b),
                None => (Packing::Base2, p.codes.clone()),
            };
            if opts.entropy && n > 0 {
                let mut best = fixed;
                let s = rans::encode(&p.codes, n);
                if s.len() < best.1.len() && n <= rans::MAX_CODES_PER_BYTE.saturating_mul(s.len()) {
                    best = (Packing::Rans, s);
                }
                if let Some(e) = enum_code().filter(|e| e.len() < best.1.len()) {
                    best = (Packing::Enum, e);
                }
                best
            } else {
                fixed
            }
        }
    };
    Ok((
        Encoding {
            packing,
            table_dtype,
            table_layout,
        },
        codes,
    ))
}

/// Bytes of both tables for `groups` groups.
pub fn table_bytes(groups: usize, dtype: TableDtype, layout: TableLayout) -> usize {
    let (l, t) = layout.widths();
    groups.saturating_mul((l + t) * dtype.size())
}

/// Code bytes of `n` weights under a fixed packing (base 2 or 3; rANS depends on the data).
pub fn fixed_code_bytes(n: usize, ternary: bool) -> usize {
    if ternary {
        base3::packed_len(n)
    } else {
        pack::packed_len(n)
    }
}

/// The tiny-channel rule: does per-channel granularity pay for its tables?
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChannelRule {
    /// Weights per channel.
    pub per_channel: usize,
    /// Table bits per weight at per-channel granularity.
    pub channel_table_bits: f64,
    /// Code bits per weight (1.6 ternary, 2 otherwise).
    pub code_bits: f64,
    /// Per channel is kept only when its tables cost no more bits than the codes they
    /// describe (`channel_table_bits <= code_bits`); otherwise per tensor.
    pub keep_channel: bool,
}

/// Applies the tiny-channel rule to a `shape` (`shape[0]` channels) for a scheme with
/// `num_codes` codes (3: ternary tables and base 3) and tables of `dtype`.
pub fn channel_rule(shape: &[usize], num_codes: usize, dtype: TableDtype) -> ChannelRule {
    let n: usize = shape.iter().product();
    let ch = shape.first().copied().unwrap_or(1).max(1);
    let per = (n / ch).max(1);
    let ternary = num_codes == 3;
    let layout = if ternary {
        TableLayout::Ternary
    } else {
        TableLayout::Full
    };
    let group_bits = 8.0 * table_bytes(1, dtype, layout) as f64;
    let channel_table_bits = group_bits / per as f64;
    let code_bits = if ternary { 1.6 } else { 2.0 };
    ChannelRule {
        per_channel: per,
        channel_table_bits,
        code_bits,
        keep_channel: channel_table_bits <= code_bits,
    }
}
