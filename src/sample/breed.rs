//! One generation of SPOS-style evolutionary search, for any kind of architecture: half
//! of it mutations of parents, the rest crossovers of two parents, and whatever breeding
//! could not fill (and the whole first generation) uniform draws. Every candidate passes
//! `admit` (new, within the constraints) before it counts.
use crate::rng::Rng;
use crate::Result;

/// How architectures of one kind are drawn and bred.
pub(super) struct Breed<'a, G> {
    pub uniform: &'a dyn Fn(&mut Rng) -> G,
    pub mutate: &'a dyn Fn(&G, &mut Rng) -> G,
    pub crossover: &'a dyn Fn(&G, &G, &mut Rng) -> G,
}

/// Up to `population` admitted candidates bred from `parents` (none: all uniform), each
/// way given at most `50 population` tries.
pub(super) fn next_generation<G>(
    breed: &Breed<G>,
    parents: &[&G],
    population: usize,
    rng: &mut Rng,
    admit: &mut dyn FnMut(G) -> Result<Option<G>>,
) -> Result<Vec<G>> {
    let tries = 50 * population.max(1);
    let mut next: Vec<G> = Vec::new();
    if !parents.is_empty() {
        let n_mutation = population / 2;
        for _ in 0..tries {
            if next.len() >= n_mutation {
                break;
            }
            let p = parents[rng.below(parents.len())];
            next.extend(admit((breed.mutate)(p, rng))?);
        }
        for _ in 0..tries {
            if next.len() >= population || parents.len() < 2 {
                break;
            }
            let a = parents[rng.below(parents.len())];
            let b = parents[rng.below(parents.len())];
            next.extend(admit((breed.crossover)(a, b, rng))?);
        }
    }
    for _ in 0..tries {
        if next.len() >= population {
            break;
        }
        next.extend(admit((breed.uniform)(rng))?);
    }
    Ok(next)
}
