//! Drawing chain architectures.
use super::arch::ChainArch;
use super::spec::ChainSpace;
use crate::rng::Rng;

/// Every searchable layer's choice drawn uniformly from those it allows (SPOS).
pub fn uniform_arch(space: &ChainSpace, rng: &mut Rng) -> ChainArch {
    let layers = space
        .plan((1, 1))
        .iter()
        .filter(|l| l.searchable.is_some())
        .map(|l| l.choices[rng.below(l.choices.len())])
        .collect();
    ChainArch { layers }
}
