//! Architecture search on a trained supernet with inherited-weight fitness (validation
//! accuracy of the sub-network, higher is better; ties: lower loss): SPOS-style
//! evolutionary search (the top-k candidates seen so far are the parents; half of each
//! new generation by mutation, half by crossover; constraint filtering) and random search.
use super::breed::{next_generation, Breed};
use super::scorer::{ArchScore, Scorer};
use super::{check_name, score_attrs, score_columns, store_table};
use crate::record::{Column, Table};
use crate::rng::{Rng, PURPOSE_EVOLVE};
use crate::run::RunDir;
use crate::space::Genotype;
use crate::space::{crossover, mutate, uniform_genotype};
use crate::{Error, Result};
use std::collections::HashSet;
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct EvolveConfig {
    pub population: usize,
    pub generations: usize,
    /// Probability that each choice (a node's inputs, an edge's op) is re-drawn.
    pub mutation_prob: f64,
    /// The best this many candidates seen so far breed the next generation.
    pub parents: usize,
    /// Constraints: candidates above them are never scored.
    pub max_params: Option<u64>,
    pub max_macs: Option<u64>,
    pub seed: u64,
    /// Random search instead: this many distinct uniform candidates, one generation.
    pub random: Option<usize>,
    /// Table name: `/evolution/<name>`, `DIR/evolution-<name>.csv`.
    pub name: Option<String>,
}

impl Default for EvolveConfig {
    fn default() -> Self {
        EvolveConfig {
            population: 50,
            generations: 20,
            mutation_prob: 0.1,
            parents: 10,
            max_params: None,
            max_macs: None,
            seed: 0,
            random: None,
            name: None,
        }
    }
}

impl EvolveConfig {
    pub(super) fn validate(&self) -> Result<()> {
        let at_least_1 = |flag: &str, v: usize| {
            if v == 0 {
                Err(Error::invalid(flag, 0, "at least 1"))
            } else {
                Ok(())
            }
        };
        if let Some(n) = self.random {
            return at_least_1("--random", n);
        }
        at_least_1("--population", self.population)?;
        at_least_1("--generations", self.generations)?;
        at_least_1("--parents", self.parents)?;
        if self.parents > self.population {
            return Err(Error::invalid(
                "--parents",
                self.parents,
                format!("at most --population = {}", self.population),
            ));
        }
        if !(0.0..=1.0).contains(&self.mutation_prob) {
            return Err(Error::invalid(
                "--mutation-prob",
                self.mutation_prob,
                "a probability in [0, 1]",
            ));
        }
        Ok(())
    }
}

#[derive(Debug)]
pub struct EvolveReport {
    /// Every scored candidate with the generation it was scored in.
    pub history: Vec<(usize, ArchScore)>,
    pub best: ArchScore,
    pub group: String,
    pub csv: PathBuf,
    pub best_text: PathBuf,
    pub best_json: PathBuf,
}

/// Higher fitness (accuracy or proxy) first, then lower loss, then the text (a total,
/// seed-free order; NaN proxy values rank last).
fn better(a: &ArchScore, b: &ArchScore) -> std::cmp::Ordering {
    let key = |s: &ArchScore| (!s.fitness().is_nan(), s.fitness());
    let (ka, kb) = (key(a), key(b));
    kb.0.cmp(&ka.0)
        .then(kb.1.total_cmp(&ka.1))
        .then(a.loss.total_cmp(&b.loss))
        .then(a.text.cmp(&b.text))
}

/// Run the search on the supernet in `scorer`, record the history in the run file of
/// `dir` (attached: held from before the first score to the last write) and write the best
/// genotype next to it. `progress` sees each scored candidate.
pub fn evolve(
    dir: &RunDir,
    scorer: &Scorer,
    cfg: &EvolveConfig,
    mut progress: impl FnMut(usize, &ArchScore),
) -> Result<EvolveReport> {
    cfg.validate()?;
    let (mode, population, generations) = match cfg.random {
        Some(n) => ("random", n, 1),
        None => ("evolution", cfg.population, cfg.generations),
    };
    let name = cfg
        .name
        .clone()
        .unwrap_or_else(|| format!("{mode}-seed{}", cfg.seed));
    check_name(&name)?;
    let space = &scorer.space;
    let mut rng = Rng::from_key(&[cfg.seed, PURPOSE_EVOLVE]);
    let mut visited: HashSet<String> = HashSet::new();
    let mut rejected = 0usize;
    // A candidate is new and meets the constraints (costs are counted without a forward).
    let mut admit = |g: Genotype, visited: &mut HashSet<String>| -> Result<Option<Genotype>> {
        if !visited.insert(g.to_text()) {
            return Ok(None);
        }
        if cfg.max_params.is_none() && cfg.max_macs.is_none() {
            return Ok(Some(g));
        }
        let (params, macs) = scorer.cost(&g)?;
        if cfg.max_params.is_some_and(|m| params > m) || cfg.max_macs.is_some_and(|m| macs > m) {
            rejected += 1;
            return Ok(None);
        }
        Ok(Some(g))
    };
    let breed = Breed {
        uniform: &|rng: &mut Rng| uniform_genotype(space, rng),
        mutate: &|g: &Genotype, rng: &mut Rng| mutate(g, space, cfg.mutation_prob, rng),
        crossover: &|a: &Genotype, b: &Genotype, rng: &mut Rng| crossover(a, b, rng),
    };
    let mut history: Vec<(usize, ArchScore)> = Vec::new();
    let mut ranked: Vec<ArchScore> = Vec::new();
    for generation in 0..generations {
        let parents: Vec<&Genotype> = match generation {
            0 => Vec::new(),
            _ => ranked[..cfg.parents.min(ranked.len())]
                .iter()
                .map(|s| &s.genotype)
                .collect(),
        };
        let next = next_generation(&breed, &parents, population, &mut rng, &mut |g| {
            admit(g, &mut visited)
        })?;
        for s in scorer.score_all(&next, |_, s| progress(generation, s))? {
            ranked.push(s.clone());
            history.push((generation, s));
        }
        ranked.sort_by(better);
    }
    let Some(best) = ranked.first().cloned() else {
        return Err(Error::invalid(
            "--max-params/--max-macs",
            format!("{}/{}", shown(cfg.max_params), shown(cfg.max_macs)),
            format!("constraints some architecture meets ({rejected} candidates were over them)"),
        ));
    };

    let mut columns = vec![(
        "generation".to_string(),
        Column::U64(history.iter().map(|(g, _)| *g as u64).collect()),
    )];
    columns.extend(score_columns(
        &history.iter().map(|(_, s)| s).collect::<Vec<_>>(),
        scorer.score,
    ));
    let opt = |v: Option<u64>| v.map_or("none".to_string(), |v| v.to_string());
    let mut attrs = vec![
        ("mode".to_string(), mode.to_string()),
        ("seed".into(), cfg.seed.to_string()),
        ("population".into(), population.to_string()),
        ("generations".into(), generations.to_string()),
        ("max_params".into(), opt(cfg.max_params)),
        ("max_macs".into(), opt(cfg.max_macs)),
        ("rejected_by_constraints".into(), rejected.to_string()),
    ];
    attrs.extend(score_attrs(scorer));
    attrs.extend([
        ("val_images".into(), scorer.val_images().to_string()),
        ("best_text".into(), best.text.clone()),
        ("best_json".into(), best.genotype.to_json()),
    ]);
    match best.proxy {
        None => attrs.push(("best_accuracy".into(), best.accuracy.to_string())),
        Some(v) => attrs.push((
            format!("best_{}", scorer.score.name().replace('-', "_")),
            v.to_string(),
        )),
    }
    if cfg.random.is_none() {
        attrs.push(("mutation_prob".into(), cfg.mutation_prob.to_string()));
        attrs.push(("parents".into(), cfg.parents.to_string()));
    }
    let (group, csv) = store_history(dir, &name, attrs, columns)?;
    let stem = format!("evolution-{name}-best");
    let (best_text, best_json) = dir.write_genotype(&stem, &best.genotype)?;
    Ok(EvolveReport {
        history,
        best,
        group,
        csv,
        best_text,
        best_json,
    })
}

/// Store an evolution history as `/evolution/<name>` and `DIR/evolution-<name>.csv`;
/// the group and the CSV path.
pub(super) fn store_history(
    dir: &RunDir,
    name: &str,
    attrs: Vec<(String, String)>,
    columns: Vec<(String, Column)>,
) -> Result<(String, PathBuf)> {
    let group = format!("evolution/{name}");
    let table = Table {
        group: group.clone(),
        attrs,
        columns,
    };
    let csv = store_table(dir, table, &format!("evolution-{name}"))?;
    Ok((group, csv))
}

/// An optional limit as users write it: the number, or `none`.
fn shown(limit: Option<u64>) -> String {
    limit.map_or("none".into(), |v| v.to_string())
}
