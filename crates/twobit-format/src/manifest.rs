//! The JSON manifest stored under the `twobit.manifest` metadata key.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `{"tensors": {NAME: Entry}, "arch": Arch | null}`.
/// `A` is [`crate::Arch`] when writing and its stored form `ArchWire` when reading (a
/// version-1 layer list needs the tensors to become a graph).
#[derive(Serialize, Deserialize)]
pub(crate) struct Manifest<A> {
    pub tensors: BTreeMap<String, Entry>,
    pub arch: Option<A>,
}

/// What a model tensor is and where its stored parts are.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Entry {
    /// `NAME.codes`, `NAME.levels`, `NAME.thresholds`.
    Packed(PackedEntry),
    /// Stored under NAME as it came.
    Float { dtype: String, shape: Vec<usize> },
    /// Stored under NAME as it came (version 3 on).
    Int { dtype: String, shape: Vec<usize> },
}

/// The manifest entry of a packed tensor.
#[derive(Serialize, Deserialize)]
pub(crate) struct PackedEntry {
    pub scheme: String,
    pub granularity: String,
    pub shape: Vec<usize>,
    /// Float dtype the weights were quantized from.
    pub origin_dtype: String,
    /// Rows of the level tables (1, or shape[0] per channel).
    pub groups: usize,
    /// Number of distinct codes the scheme emits (3 or 4); informational.
    pub codes_used: usize,
    /// "base2" | "base3" | "rans"; absent (version 1): "base2".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packing: Option<String>,
    /// "F32" | "F16"; absent: "F32".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_dtype: Option<String>,
    /// "full" | "ternary"; absent: "full".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_layout: Option<String>,
}
