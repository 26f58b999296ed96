use crate::QuantError;
use std::fmt;
use std::str::FromStr;

/// A quantization scheme. Its [`name`](Scheme::name) is the stable CLI and file name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// TWN baseline: delta = 0.7·mean|w|, levels {-a, 0, a}.
    Twn,
    /// Heuristic asymmetric ternary baseline (per-sign TWN rule).
    Atn,
    /// Exact least-squares asymmetric ternary {-a_n, 0, a_p}.
    Tern,
    /// Exact least-squares quaternary: 0 plus three non-zero levels split 2+1 between signs.
    Quat,
    /// Exact least-squares 4 free levels (1-D 4-means).
    QuatFree,
    /// Trained Ternary Quantization (Zhu et al. 2017): thresholds ±0.05·max|w|. Its scales are
    /// learned in training; [`crate::fit_group`] gives the least-squares scales for that
    /// threshold (TTQ's initialisation), which is what `compress` uses.
    Ttq,
}

impl Scheme {
    /// Every scheme, in table order.
    pub const ALL: [Scheme; 6] = [
        Scheme::Twn,
        Scheme::Atn,
        Scheme::Ttq,
        Scheme::Tern,
        Scheme::Quat,
        Scheme::QuatFree,
    ];

    /// The stable name used on the command line and in files.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Twn => "twn",
            Scheme::Atn => "atn",
            Scheme::Tern => "tern",
            Scheme::Quat => "quat",
            Scheme::QuatFree => "quat-free",
            Scheme::Ttq => "ttq",
        }
    }

    /// Number of distinct codes the scheme can emit (3 for ternary, 4 for quaternary).
    pub fn num_codes(self) -> usize {
        match self {
            Scheme::Twn | Scheme::Atn | Scheme::Tern | Scheme::Ttq => 3,
            Scheme::Quat | Scheme::QuatFree => 4,
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scheme {
    type Err = QuantError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scheme::ALL
            .into_iter()
            .find(|x| x.name() == s)
            .ok_or_else(|| QuantError::UnknownName {
                kind: "scheme",
                name: s.to_string(),
                expected: Scheme::ALL.map(Scheme::name).join(", "),
            })
    }
}

/// How weights are grouped for one level table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Granularity {
    /// One level table for the whole tensor.
    #[default]
    Tensor,
    /// One level table per output channel (index of axis 0).
    Channel,
}

impl Granularity {
    /// The stable name.
    pub fn name(self) -> &'static str {
        match self {
            Granularity::Tensor => "tensor",
            Granularity::Channel => "channel",
        }
    }

    /// Number of groups for a shape.
    pub fn groups(self, shape: &[usize]) -> usize {
        match self {
            Granularity::Tensor => 1,
            Granularity::Channel => shape.first().copied().unwrap_or(1),
        }
    }
}

impl fmt::Display for Granularity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Granularity {
    type Err = QuantError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "tensor" => Ok(Granularity::Tensor),
            "channel" => Ok(Granularity::Channel),
            _ => Err(QuantError::UnknownName {
                kind: "granularity",
                name: s.to_string(),
                expected: "tensor, channel".into(),
            }),
        }
    }
}
