//! How the choices of a searchable chain layer hold their weights, and what that costs in
//! parameters.
use super::choice::Choice;
use super::cost::{fixed_cost, layer_cost, ImageShape};
use super::spec::ChainSpace;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum WeightSharing {
    /// One MBConv block per choice (ProxylessNAS, FBNet).
    #[default]
    Separate,
    /// Once-for-All (Cai et al. 2020): one block per layer at the largest kernel and
    /// expansion; a choice uses the first channels of it and the centre of its kernel
    /// through learnt kernel transformation matrices.
    Elastic,
}

impl WeightSharing {
    pub fn is_separate(&self) -> bool {
        *self == WeightSharing::Separate
    }

    pub fn name(self) -> &'static str {
        match self {
            WeightSharing::Separate => "separate",
            WeightSharing::Elastic => "elastic",
        }
    }

    /// Whether `space` can be built this way: elastic weights nest every expansion in the
    /// largest, which needs a 1x1 expansion convolution in every choice (no expansion 1).
    pub fn check(self, space: &ChainSpace) -> Result<()> {
        if self == WeightSharing::Elastic && space.expansions.contains(&1) {
            return Err(Error::invalid(
                format!("expansions of the chain space '{}'", space.name),
                "1",
                "expansions of at least 2 with elastic weights (expansion 1 has no 1x1 expansion convolution to slice)",
            ));
        }
        Ok(())
    }
}

/// The largest block of the space: the largest kernel and the largest expansion.
pub fn largest_choice(space: &ChainSpace) -> Choice {
    Choice::MbConv {
        kernel: *space.kernels.iter().max().expect("validated: a kernel"),
        expand: *space
            .expansions
            .iter()
            .max()
            .expect("validated: an expansion"),
    }
}

/// The kernel transformations of an elastic layer, largest first: `(from, to)` for each
/// pair of consecutive kernel sizes of the space (7 -> 5, 5 -> 3).
pub fn kernel_transforms(space: &ChainSpace) -> Vec<(usize, usize)> {
    let mut ks = space.kernels.clone();
    ks.sort_unstable();
    ks.dedup();
    ks.windows(2).rev().map(|w| (w[1], w[0])).collect()
}

/// Parameters of the supernet with elastic weights: per searchable layer the largest block
/// and one `(k*k) x (k*k)` matrix per kernel transformation `-> k`, plus the fixed parts.
pub fn elastic_supernet_params(space: &ChainSpace, input: ImageShape) -> u64 {
    let largest = largest_choice(space);
    let matrices: u64 = kernel_transforms(space)
        .iter()
        .map(|&(_, to)| (to * to * to * to) as u64)
        .sum();
    let layers: u64 = space
        .plan(input.hw)
        .iter()
        .filter(|l| l.searchable.is_some())
        .map(|l| layer_cost(l, largest).params + matrices)
        .sum();
    fixed_cost(space, input).params + layers
}
