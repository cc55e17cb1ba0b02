//! The candidate operations, named once. Every other module matches on [`OpKind`]; no op
//! name is spelled anywhere else.
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Serialised by [`OpKind::name`] (snake_case, as in the DARTS and NAS-Bench-201 code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "&'static str")]
pub enum OpKind {
    /// The zero operation (DARTS `none`): no connection.
    None,
    MaxPool3x3,
    AvgPool3x3,
    /// Identity, or FactorizedReduce at stride 2.
    SkipConnect,
    SepConv3x3,
    SepConv5x5,
    DilConv3x3,
    DilConv5x5,
    /// NAS-Bench-201's plain ReLU-Conv-BN.
    NorConv1x1,
    NorConv3x3,
}

impl OpKind {
    pub const ALL: [OpKind; 10] = [
        OpKind::None,
        OpKind::MaxPool3x3,
        OpKind::AvgPool3x3,
        OpKind::SkipConnect,
        OpKind::SepConv3x3,
        OpKind::SepConv5x5,
        OpKind::DilConv3x3,
        OpKind::DilConv5x5,
        OpKind::NorConv1x1,
        OpKind::NorConv3x3,
    ];

    /// The name used in space files, genotypes and parameter paths (snake_case).
    pub fn name(self) -> &'static str {
        match self {
            OpKind::None => "none",
            OpKind::MaxPool3x3 => "max_pool_3x3",
            OpKind::AvgPool3x3 => "avg_pool_3x3",
            OpKind::SkipConnect => "skip_connect",
            OpKind::SepConv3x3 => "sep_conv_3x3",
            OpKind::SepConv5x5 => "sep_conv_5x5",
            OpKind::DilConv3x3 => "dil_conv_3x3",
            OpKind::DilConv5x5 => "dil_conv_5x5",
            OpKind::NorConv1x1 => "nor_conv_1x1",
            OpKind::NorConv3x3 => "nor_conv_3x3",
        }
    }

    pub fn is_none(self) -> bool {
        self == OpKind::None
    }

    pub fn is_pool(self) -> bool {
        matches!(self, OpKind::MaxPool3x3 | OpKind::AvgPool3x3)
    }

    /// Operations with no learnable weights at stride 1 (skip, pooling, none): the ones a
    /// collapsing DARTS search drifts towards.
    pub fn is_parameter_free(self) -> bool {
        self.is_none() || self.is_pool() || self == OpKind::SkipConnect
    }

    /// All op names, for error messages.
    pub fn names() -> String {
        OpKind::ALL.map(OpKind::name).join(", ")
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for OpKind {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OpKind::ALL
            .into_iter()
            .find(|op| op.name() == s)
            .ok_or_else(|| {
                crate::Error::invalid(
                    "operation",
                    format!("'{s}'"),
                    format!("one of {}", OpKind::names()),
                )
            })
    }
}

impl From<OpKind> for &'static str {
    fn from(op: OpKind) -> Self {
        op.name()
    }
}

impl TryFrom<String> for OpKind {
    type Error = crate::Error;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}
