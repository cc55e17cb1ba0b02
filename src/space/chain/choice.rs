//! What one layer of a chain space can be: an MBConv block of some kernel and expansion,
//! or skipped; and the activations the blocks use. Named once here.
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// One layer's choice. Serialised by its name: `mbconv_k{kernel}_e{expansion}` or `skip`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Choice {
    /// Inverted residual: 1x1 expansion (absent when `expand` is 1), depthwise
    /// `kernel`x`kernel`, optional squeeze-excitation, 1x1 projection.
    MbConv { kernel: usize, expand: usize },
    /// The layer is left out (depth search); only where input and output shapes agree.
    Skip,
}

impl Choice {
    pub fn is_skip(self) -> bool {
        self == Choice::Skip
    }

    /// The name in space files, architectures and parameter paths.
    pub fn name(self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Choice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Choice::MbConv { kernel, expand } => write!(f, "mbconv_k{kernel}_e{expand}"),
            Choice::Skip => f.write_str("skip"),
        }
    }
}

impl FromStr for Choice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "skip" {
            return Ok(Choice::Skip);
        }
        let expected = || {
            format!("unknown layer choice '{s}': expected mbconv_k<kernel>_e<expansion> (e.g. mbconv_k3_e6) or skip")
        };
        let rest = s.strip_prefix("mbconv_k").ok_or_else(expected)?;
        let (k, e) = rest.split_once("_e").ok_or_else(expected)?;
        let kernel: usize = k.parse().map_err(|_| expected())?;
        let expand: usize = e.parse().map_err(|_| expected())?;
        Ok(Choice::MbConv { kernel, expand })
    }
}

impl TryFrom<String> for Choice {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Choice> for String {
    fn from(c: Choice) -> String {
        c.to_string()
    }
}

/// Activations of MobileNet blocks: ReLU (MobileNetV3's early stages), ReLU6
/// (MobileNetV2), h-swish `x * relu6(x + 3) / 6` (MobileNetV3's later stages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    Relu,
    Relu6,
    Hswish,
}

impl Activation {
    pub fn name(self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::Relu6 => "relu6",
            Activation::Hswish => "hswish",
        }
    }
}
