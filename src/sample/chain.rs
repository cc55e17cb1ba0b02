//! `sample` on a chain run: uniformly drawn architectures under hard limits (latency from a
//! lookup table, exact multiply-adds, parameters), scored with inherited weights by
//! [`ChainScorer`], and the Pareto front of accuracy against latency (or multiply-adds
//! without a table) marked in the table.
use super::chain_score::{ChainLimits, ChainScore, ChainScorer};
use super::pareto::pareto_front;
use super::{check_name, store_table, BnMode};
use crate::record::{Column, Table};
use crate::rng::Rng;
use crate::run::RunDir;
use crate::search::TrainedChain;
use crate::space::chain::uniform_arch;
use crate::Result;
use std::collections::HashSet;
use std::path::PathBuf;

#[derive(Debug)]
pub struct ChainSampleReport {
    pub scores: Vec<ChainScore>,
    /// Rows on the Pareto front (accuracy up, latency or MACs down).
    pub pareto: Vec<bool>,
    pub rejected: usize,
    pub group: String,
    pub csv: PathBuf,
}

/// Draw up to `n` distinct architectures within `limits` (at most `20 n` draws, from
/// `(seed, i)`), score them and store `/samples/<name>` and `DIR/samples-<name>.csv`.
#[allow(clippy::too_many_arguments)]
pub fn sample_chain(
    dir: &RunDir,
    trained: &TrainedChain,
    n: usize,
    seed: u64,
    limits: &ChainLimits,
    bn: BnMode,
    max_batches: Option<usize>,
    name: &str,
) -> Result<ChainSampleReport> {
    check_name(name)?;
    let space = &trained.search.space;
    let scorer = ChainScorer::new(trained, limits, bn, max_batches)?;
    let mut seen = HashSet::new();
    let mut archs = Vec::new();
    let mut rejected = 0;
    for i in 0..20 * n as u64 {
        if archs.len() == n {
            break;
        }
        let a = uniform_arch(space, &mut Rng::from_key(&[seed, i]));
        if !seen.insert(a.clone()) {
            continue;
        }
        if scorer.within(&a) {
            archs.push(a);
        } else {
            rejected += 1;
        }
    }
    let scores = archs
        .into_iter()
        .map(|a| scorer.score(a))
        .collect::<Result<Vec<_>>>()?;
    let acc: Vec<f64> = scores.iter().map(|s| s.accuracy).collect();
    let cost: Vec<f64> = scores.iter().map(|s| scorer.cost(s)).collect();
    let pareto = pareto_front(&acc, &cost);
    let group = format!("samples/{name}");
    let mut columns = scorer.columns(&scores.iter().collect::<Vec<_>>());
    columns.push((
        "pareto".into(),
        Column::U64(pareto.iter().map(|&p| p as u64).collect()),
    ));
    let mut attrs = scorer.attrs();
    attrs.push(("seed".into(), seed.to_string()));
    let table = Table {
        group: group.clone(),
        attrs,
        columns,
    };
    let csv = store_table(dir, table, &format!("samples-{name}"))?;
    Ok(ChainSampleReport {
        scores,
        pareto,
        rejected,
        group,
        csv,
    })
}
