//! A chain space as plain data: a stem, stages of MBConv layers each choosing its kernel and
//! expansion (or to be skipped), a head. Read from `supernets/*.toml` (`[network] kind =
//! "chain"`), validated once, then trusted everywhere.
use super::choice::{Activation, Choice};
use crate::space::spec::in_range;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainSpace {
    pub name: String,
    /// Depthwise kernel sizes a searchable layer chooses from.
    pub kernels: Vec<usize>,
    /// Expansion ratios (expanded channels / input channels) it chooses from.
    pub expansions: Vec<usize>,
    pub network: ChainNetwork,
}

/// The `kind` tag of the `[network]` table; cell networks have their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChainKind {
    Chain,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainNetwork {
    pub kind: ChainKind,
    pub stem: StemSpec,
    pub stages: Vec<StageSpec>,
    pub head: HeadSpec,
}

/// `kernel`x`kernel` convolution at `stride`, BN, activation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StemSpec {
    pub channels: usize,
    #[serde(default = "three")]
    pub kernel: usize,
    #[serde(default = "one")]
    pub stride: usize,
    pub act: Activation,
}

/// `layers` MBConv layers of `channels` outputs; the first has stride `stride`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageSpec {
    pub channels: usize,
    pub layers: usize,
    #[serde(default = "one")]
    pub stride: usize,
    pub act: Activation,
    /// Squeeze-excitation in every block of the stage (MobileNetV3).
    #[serde(default)]
    pub se: bool,
    /// The last `skippable` layers may choose `skip` (depth search).
    #[serde(default)]
    pub skippable: usize,
    /// A stage that is not searched: every layer is this block (e.g. MobileNetV2's and
    /// MobileNetV3's first `mbconv_k3_e1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed: Option<Choice>,
}

/// After the last stage: an optional 1x1 convolution to `channels` (BN, activation), global
/// average pooling, an optional linear layer to `hidden` (activation; MobileNetV3), the
/// classifier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden: Option<usize>,
    pub act: Activation,
}

fn one() -> usize {
    1
}

fn three() -> usize {
    3
}

/// One layer of the chain with its shapes: what the cost model and the network builder both
/// walk.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerPlan {
    pub stage: usize,
    pub c_in: usize,
    pub c_out: usize,
    pub stride: usize,
    pub act: Activation,
    pub se: bool,
    /// Input resolution.
    pub hw: (usize, usize),
    /// Index among the searchable layers (alpha row), `None` for a fixed layer.
    pub searchable: Option<usize>,
    /// What the layer may be: the fixed block, or the space's choices it allows.
    pub choices: Vec<Choice>,
}

impl LayerPlan {
    pub fn out_hw(&self) -> (usize, usize) {
        (
            conv_out(self.hw.0, self.stride),
            conv_out(self.hw.1, self.stride),
        )
    }

    /// Whether `skip` leaves the shapes as they are (no stride, same channels).
    pub fn shape_preserving(&self) -> bool {
        self.stride == 1 && self.c_in == self.c_out
    }
}

/// Output size of a convolution with "same" padding (`kernel / 2`, odd kernel) at `stride`.
pub fn conv_out(size: usize, stride: usize) -> usize {
    (size - 1) / stride + 1
}

/// Kernel sizes and expansions accepted: odd kernels up to 11, expansions up to 16.
pub const MAX_KERNEL: usize = 11;
pub const MAX_EXPANSION: usize = 16;
const MAX_WIDTH: usize = 1 << 16;
const MAX_LAYERS: usize = 1_000;

impl ChainSpace {
    /// Read and validate a chain space file; errors name the file, the field and the value.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_toml(&text).map_err(|e| match e {
            Error::BadFile { message, .. } => Error::bad_file(path, message),
            other => Error::bad_file(path, other.to_string()),
        })
    }

    pub fn from_toml(text: &str) -> Result<Self> {
        let space: ChainSpace =
            toml::from_str(text).map_err(|e| Error::bad_file("<space>", e.to_string()))?;
        space.validate()?;
        Ok(space)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a ChainSpace always serialises")
    }

    /// The alpha columns: every kernel x expansion (kernel-major), then `skip` when some
    /// layer may be skipped.
    pub fn choices(&self) -> Vec<Choice> {
        let mut all: Vec<Choice> = self
            .kernels
            .iter()
            .flat_map(|&kernel| {
                self.expansions
                    .iter()
                    .map(move |&expand| Choice::MbConv { kernel, expand })
            })
            .collect();
        if self.network.stages.iter().any(|s| s.skippable > 0) {
            all.push(Choice::Skip);
        }
        all
    }

    pub fn column_of(&self, c: Choice) -> Option<usize> {
        self.choices().iter().position(|&x| x == c)
    }

    /// Every layer after the stem, in order, at input resolution `hw`.
    pub fn plan(&self, hw: (usize, usize)) -> Vec<LayerPlan> {
        let net = &self.network;
        let searched: Vec<Choice> = self
            .choices()
            .into_iter()
            .filter(|c| !c.is_skip())
            .collect();
        let mut hw = (
            conv_out(hw.0, net.stem.stride),
            conv_out(hw.1, net.stem.stride),
        );
        let mut c_in = net.stem.channels;
        let mut searchable = 0;
        let mut layers = Vec::new();
        for (s, stage) in net.stages.iter().enumerate() {
            for i in 0..stage.layers {
                let mut plan = LayerPlan {
                    stage: s,
                    c_in,
                    c_out: stage.channels,
                    stride: if i == 0 { stage.stride } else { 1 },
                    act: stage.act,
                    se: stage.se,
                    hw,
                    searchable: None,
                    choices: Vec::new(),
                };
                match stage.fixed {
                    Some(c) => plan.choices = vec![c],
                    None => {
                        plan.searchable = Some(searchable);
                        searchable += 1;
                        plan.choices = searched.clone();
                        if i >= stage.layers - stage.skippable {
                            plan.choices.push(Choice::Skip);
                        }
                    }
                }
                hw = plan.out_hw();
                c_in = stage.channels;
                layers.push(plan);
            }
        }
        layers
    }

    /// Searchable layers (alpha rows); input independent.
    pub fn num_searchable(&self) -> usize {
        self.network
            .stages
            .iter()
            .filter(|s| s.fixed.is_none())
            .map(|s| s.layers)
            .sum()
    }

    /// Channels entering the head.
    pub fn last_channels(&self) -> usize {
        self.network
            .stages
            .last()
            .map_or(self.network.stem.channels, |s| s.channels)
    }

    /// The features the classifier reads.
    pub fn feature_channels(&self) -> usize {
        let head = &self.network.head;
        head.hidden
            .or(head.channels)
            .unwrap_or_else(|| self.last_channels())
    }

    /// A stable 64-bit fingerprint (FNV-1a of the TOML form), as for cell spaces.
    pub fn fingerprint(&self) -> u64 {
        crate::space::spec::fnv1a(&self.to_toml())
    }

    pub fn validate(&self) -> Result<()> {
        if self.kernels.is_empty() {
            return Err(Error::invalid("kernels", "[]", "at least one kernel size"));
        }
        for (i, &k) in self.kernels.iter().enumerate() {
            check_kernel("kernels", k)?;
            if self.kernels[..i].contains(&k) {
                return Err(Error::invalid(
                    "kernels",
                    k,
                    "each kernel size at most once",
                ));
            }
        }
        if self.expansions.is_empty() {
            return Err(Error::invalid(
                "expansions",
                "[]",
                "at least one expansion ratio",
            ));
        }
        for (i, &e) in self.expansions.iter().enumerate() {
            check_expansion("expansions", e)?;
            if self.expansions[..i].contains(&e) {
                return Err(Error::invalid(
                    "expansions",
                    e,
                    "each expansion ratio at most once",
                ));
            }
        }
        let net = &self.network;
        in_range("network.stem.channels", net.stem.channels, MAX_WIDTH)?;
        check_kernel("network.stem.kernel", net.stem.kernel)?;
        in_range("network.stem.stride", net.stem.stride, 2)?;
        if net.stages.is_empty() {
            return Err(Error::invalid("network.stages", "[]", "at least one stage"));
        }
        for (s, stage) in net.stages.iter().enumerate() {
            let field = |f: &str| format!("network.stages[{s}].{f}");
            in_range(&field("channels"), stage.channels, MAX_WIDTH)?;
            in_range(&field("layers"), stage.layers, MAX_LAYERS)?;
            in_range(&field("stride"), stage.stride, 2)?;
            if stage.skippable > stage.layers {
                return Err(Error::invalid(
                    field("skippable"),
                    stage.skippable,
                    format!("at most the stage's {} layers", stage.layers),
                ));
            }
            match stage.fixed {
                Some(Choice::Skip) => return Err(Error::invalid(
                    field("fixed"),
                    "skip",
                    "an MBConv block (mbconv_k<kernel>_e<expansion>); leave a skipped stage out",
                )),
                Some(Choice::MbConv { kernel, expand }) => {
                    check_kernel(&field("fixed"), kernel)?;
                    check_expansion(&field("fixed"), expand)?;
                    if stage.skippable > 0 {
                        return Err(Error::invalid(
                            field("skippable"),
                            stage.skippable,
                            "0 in a fixed stage (nothing is searched there)",
                        ));
                    }
                }
                None => {}
            }
        }
        for layer in self.plan((1, 1)) {
            if layer.choices.contains(&Choice::Skip) && !layer.shape_preserving() {
                let stage = &net.stages[layer.stage];
                return Err(Error::invalid(
                    format!("network.stages[{}].skippable", layer.stage),
                    stage.skippable,
                    format!(
                        "at most {}: a skipped layer must keep its input's shape, and the stage's first layer changes it ({} -> {} channels, stride {})",
                        stage.layers - 1,
                        layer.c_in,
                        layer.c_out,
                        layer.stride
                    ),
                ));
            }
        }
        if let Some(c) = net.head.channels {
            in_range("network.head.channels", c, MAX_WIDTH)?;
        }
        if let Some(h) = net.head.hidden {
            in_range("network.head.hidden", h, MAX_WIDTH)?;
        }
        Ok(())
    }
}

fn check_kernel(field: &str, k: usize) -> Result<()> {
    if k % 2 == 1 && k <= MAX_KERNEL {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            k,
            format!("an odd kernel size from 1 to {MAX_KERNEL} (e.g. 3, 5, 7)"),
        ))
    }
}

fn check_expansion(field: &str, e: usize) -> Result<()> {
    in_range(field, e, MAX_EXPANSION)
}
