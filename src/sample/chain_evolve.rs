//! `evolve` on a chain run: the SPOS evolution of [`super::evolve`] (the same generations,
//! parents, mutation, crossover and random search) over chain architectures, scored by
//! [`ChainScorer`] under hard limits. Parents are the top-k by accuracy (ties: lower loss,
//! then the text) or, with `pareto`, NSGA-II's selection on accuracy against latency (or
//! multiply-adds without a latency table). Each generation draws from `(seed, generation)`.
use super::breed::{next_generation, Breed};
use super::chain_score::{ChainLimits, ChainScore, ChainScorer};
use super::evolve::store_history;
use super::pareto::{accuracy_cost, nsga2_select, pareto_front};
use super::{check_name, BnMode, EvolveConfig};
use crate::record::Column;
use crate::rng::{Rng, PURPOSE_EVOLVE};
use crate::run::RunDir;
use crate::search::TrainedChain;
use crate::space::chain::{crossover_arch, mutate_arch, uniform_arch, ChainArch};
use crate::{Error, Result};
use std::cmp::Ordering;
use std::collections::HashSet;
use std::path::PathBuf;

/// What `evolve` on a chain run does: the cell search's settings (its `max_params` and
/// `max_macs` are limits here too) plus the latency limit and the selection.
#[derive(Debug, Clone, Default)]
pub struct ChainEvolveConfig {
    pub evolve: EvolveConfig,
    pub latency_table: Option<PathBuf>,
    pub max_latency_ms: Option<f64>,
    /// NSGA-II parents (accuracy up, cost down) instead of the top-k by accuracy.
    pub pareto: bool,
    pub bn: BnMode,
    /// Score on at most this many evaluation batches.
    pub max_batches: Option<usize>,
}

impl ChainEvolveConfig {
    fn limits(&self) -> ChainLimits {
        ChainLimits {
            latency_table: self.latency_table.clone(),
            max_latency_ms: self.max_latency_ms,
            max_macs: self.evolve.max_macs,
            max_params: self.evolve.max_params,
        }
    }
}

#[derive(Debug)]
pub struct ChainEvolveReport {
    /// Every scored candidate with the generation it was scored in (the table's rows).
    pub history: Vec<(usize, ChainScore)>,
    /// Rows on the Pareto front of all candidates scored.
    pub pareto: Vec<bool>,
    /// The front's rows by increasing cost.
    pub front: Vec<usize>,
    /// The most accurate row (ties: lower loss, then the text).
    pub best: usize,
    pub cost_name: &'static str,
    pub rejected: usize,
    pub group: String,
    pub csv: PathBuf,
    pub best_text: PathBuf,
    pub best_json: PathBuf,
}

/// Higher accuracy first, then lower loss, then the text (a total order).
fn better(a: &ChainScore, b: &ChainScore) -> Ordering {
    b.accuracy
        .total_cmp(&a.accuracy)
        .then(a.loss.total_cmp(&b.loss))
        .then_with(|| a.arch.to_text().cmp(&b.arch.to_text()))
}

/// Run the search on the chain supernet `trained`, store `/evolution/<name>` and
/// `DIR/evolution-<name>.csv`, and write the most accurate architecture as
/// `DIR/evolution-<name>-best.{txt,json}`. `progress` sees each scored candidate.
pub fn evolve_chain(
    dir: &RunDir,
    trained: &TrainedChain,
    cfg: &ChainEvolveConfig,
    mut progress: impl FnMut(usize, &ChainScore),
) -> Result<ChainEvolveReport> {
    let ev = &cfg.evolve;
    ev.validate()?;
    if cfg.pareto && ev.random.is_some() {
        return Err(Error::invalid(
            "--pareto",
            "set",
            "left out with --random (it selects parents; random search has none, and its table marks the Pareto front anyway)",
        ));
    }
    let (mode, population, generations) = match (ev.random, cfg.pareto) {
        (Some(n), _) => ("random", n, 1),
        (None, false) => ("evolution", ev.population, ev.generations),
        (None, true) => ("pareto", ev.population, ev.generations),
    };
    let name = ev
        .name
        .clone()
        .unwrap_or_else(|| format!("{mode}-seed{}", ev.seed));
    check_name(&name)?;
    let limits = cfg.limits();
    let scorer = ChainScorer::new(trained, &limits, cfg.bn, cfg.max_batches)?;
    let space = &trained.search.space;
    let breed = Breed {
        uniform: &|rng: &mut Rng| uniform_arch(space, rng),
        mutate: &|a: &ChainArch, rng: &mut Rng| mutate_arch(a, space, ev.mutation_prob, rng),
        crossover: &|a: &ChainArch, b: &ChainArch, rng: &mut Rng| crossover_arch(a, b, rng),
    };
    let mut visited: HashSet<ChainArch> = HashSet::new();
    let mut rejected = 0usize;
    let mut admit = |a: ChainArch| -> Result<Option<ChainArch>> {
        if !visited.insert(a.clone()) {
            return Ok(None);
        }
        if !scorer.within(&a) {
            rejected += 1;
            return Ok(None);
        }
        Ok(Some(a))
    };
    let mut history: Vec<(usize, ChainScore)> = Vec::new();
    for generation in 0..generations {
        let scores: Vec<&ChainScore> = history.iter().map(|(_, s)| s).collect();
        let chosen = match generation {
            0 => Vec::new(),
            _ => parents(&scores, ev.parents, cfg.pareto.then_some(&scorer)),
        };
        let parents: Vec<&ChainArch> = chosen.iter().map(|&i| &scores[i].arch).collect();
        let mut rng = Rng::from_key(&[ev.seed, PURPOSE_EVOLVE, generation as u64]);
        let next = next_generation(&breed, &parents, population, &mut rng, &mut admit)?;
        for arch in next {
            let s = scorer.score(arch)?;
            progress(generation, &s);
            history.push((generation, s));
        }
    }
    let Some(best) = (0..history.len()).min_by(|&a, &b| better(&history[a].1, &history[b].1))
    else {
        return Err(Error::invalid(
            "--max-latency-ms/--max-macs/--max-params",
            format!(
                "{}/{}/{}",
                shown(cfg.max_latency_ms),
                shown(ev.max_macs),
                shown(ev.max_params)
            ),
            format!("limits some architecture meets ({rejected} candidates were over them)"),
        ));
    };

    let acc: Vec<f64> = history.iter().map(|(_, s)| s.accuracy).collect();
    let cost: Vec<f64> = history.iter().map(|(_, s)| scorer.cost(s)).collect();
    let pareto = pareto_front(&acc, &cost);
    let mut front: Vec<usize> = (0..history.len()).filter(|&i| pareto[i]).collect();
    front.sort_by(|&a, &b| cost[a].total_cmp(&cost[b]).then(a.cmp(&b)));

    let rows: Vec<&ChainScore> = history.iter().map(|(_, s)| s).collect();
    let mut columns = scorer.columns(&rows);
    columns.push((
        "generation".into(),
        Column::U64(history.iter().map(|(g, _)| *g as u64).collect()),
    ));
    columns.push((
        "pareto".into(),
        Column::U64(pareto.iter().map(|&p| p as u64).collect()),
    ));
    let best_arch = &history[best].1;
    let mut attrs = vec![
        ("mode".to_string(), mode.to_string()),
        ("seed".into(), ev.seed.to_string()),
        ("population".into(), population.to_string()),
        ("generations".into(), generations.to_string()),
        ("rejected_by_constraints".into(), rejected.to_string()),
    ];
    attrs.extend(scorer.attrs());
    if ev.random.is_none() {
        let selection = if cfg.pareto { "nsga2" } else { "top-k" };
        attrs.push(("selection".into(), selection.into()));
        attrs.push(("mutation_prob".into(), ev.mutation_prob.to_string()));
        attrs.push(("parents".into(), ev.parents.to_string()));
    }
    let front_text: Vec<String> = front.iter().map(|&i| rows[i].arch.to_text()).collect();
    attrs.extend([
        ("best_arch".into(), best_arch.arch.to_text()),
        ("best_accuracy".into(), best_arch.accuracy.to_string()),
        ("pareto_front".into(), front_text.join(";")),
    ]);
    let (group, csv) = store_history(dir, &name, attrs, columns)?;
    let stem = format!("evolution-{name}-best");
    let (best_text, best_json) = dir.write_chain_arch(&stem, &best_arch.arch)?;
    Ok(ChainEvolveReport {
        history,
        pareto,
        front,
        best,
        cost_name: scorer.cost_name(),
        rejected,
        group,
        csv,
        best_text,
        best_json,
    })
}

/// The rows of `scores` that breed the next generation: the `k` most accurate, or with
/// `pareto` (the scorer naming the cost) NSGA-II's `k`.
fn parents(scores: &[&ChainScore], k: usize, pareto: Option<&ChainScorer>) -> Vec<usize> {
    match pareto {
        Some(scorer) => {
            let acc: Vec<f64> = scores.iter().map(|s| s.accuracy).collect();
            let cost: Vec<f64> = scores.iter().map(|s| scorer.cost(s)).collect();
            nsga2_select(&accuracy_cost(&acc, &cost), k)
        }
        None => {
            let mut order: Vec<usize> = (0..scores.len()).collect();
            order.sort_by(|&a, &b| better(scores[a], scores[b]));
            order.truncate(k);
            order
        }
    }
}

/// An optional limit as users write it: the number, or `none`.
fn shown<T: ToString>(limit: Option<T>) -> String {
    limit.map_or("none".into(), |v| v.to_string())
}
