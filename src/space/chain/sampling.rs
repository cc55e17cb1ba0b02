//! Drawing chain architectures: uniformly (SPOS), and the mutation and crossover of
//! evolutionary search.
use super::arch::ChainArch;
use super::choice::Choice;
use super::spec::ChainSpace;
use crate::rng::Rng;

/// Per searchable layer, the choices it allows.
fn allowed(space: &ChainSpace) -> Vec<Vec<Choice>> {
    space
        .plan((1, 1))
        .into_iter()
        .filter(|l| l.searchable.is_some())
        .map(|l| l.choices)
        .collect()
}

/// Every searchable layer's choice drawn uniformly from those it allows (SPOS).
pub fn uniform_arch(space: &ChainSpace, rng: &mut Rng) -> ChainArch {
    let layers = allowed(space)
        .iter()
        .map(|c| c[rng.below(c.len())])
        .collect();
    ChainArch { layers }
}

/// Each layer's choice re-drawn uniformly from those it allows with probability `p` (it
/// may draw its old choice again), as SPOS mutates.
pub fn mutate_arch(arch: &ChainArch, space: &ChainSpace, p: f64, rng: &mut Rng) -> ChainArch {
    let layers = arch
        .layers
        .iter()
        .zip(allowed(space))
        .map(|(&c, choices)| {
            if rng.unit() < p {
                choices[rng.below(choices.len())]
            } else {
                c
            }
        })
        .collect();
    ChainArch { layers }
}

/// Each layer's choice from `a` or `b` with equal probability (uniform crossover).
pub fn crossover_arch(a: &ChainArch, b: &ChainArch, rng: &mut Rng) -> ChainArch {
    let layers = a
        .layers
        .iter()
        .zip(&b.layers)
        .map(|(&x, &y)| if rng.coin() { x } else { y })
        .collect();
    ChainArch { layers }
}
