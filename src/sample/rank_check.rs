//! `supernet rank-check`: how far inherited-weight scores can be trusted. K sub-networks of
//! a sample table, spread over its score range, are trained on their own for a short fixed
//! budget; Kendall's tau-b, sparse Kendall tau, Spearman's rho, the top-k overlap and the
//! top-k Kendall tau (over the best k stand-alone) between the two accuracies go into the run file (`/rank_check/<name>`) and a CSV.
//!
//! Each stand-alone training is an ordinary `supernet train` run in
//! `DIR/rank-check/<name>/<i>` (seed s > 0 of `--seeds`: `<i>-seed<s>`), so an
//! interrupted rank-check continues where it stopped. With several seeds the stand-alone
//! accuracy is their mean, and the seed-vs-seed agreement ([`Ceiling`]) bounds what any
//! scorer can reach.
use super::proxy::{Proxy, ScoreKind};
use super::rank::{Ceiling, Fidelity};
use super::scorer::{BnMode, Scorer};
use super::{check_name, store_table};
use crate::record::{read_run, Column, Table, RUN_FILE};
use crate::run::RunDir;
use crate::search::SearchConfig;
use crate::space::Genotype;
use crate::supernet::OpStyle;
use crate::train::{self, AugmentOverrides, TrainConfig, MODEL_DIR};
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// What `supernet rank-check` does.
#[derive(Debug, Clone)]
pub struct RankCheckConfig {
    /// Sub-networks trained on their own (at least 3).
    pub k: usize,
    /// The sample table to draw them from (`/samples/<name>`); the run's only one if absent.
    pub samples: Option<String>,
    /// Size of the top sets compared by the overlap.
    pub top: usize,
    /// The stand-alone training budget and network size.
    pub epochs: usize,
    pub subset: Option<usize>,
    pub test_subset: Option<usize>,
    pub batch_size: usize,
    pub layers: Option<usize>,
    pub channels: Option<usize>,
    pub seed: u64,
    pub threads: usize,
    /// Zero-cost proxies also scored on the checked sub-networks and compared (`--score`).
    pub proxies: Vec<Proxy>,
    /// Also score the checked sub-networks with a few-shot set (`--score few-shot`): its
    /// name, or `Some(None)` for the run's only one.
    pub few_shot: Option<Option<String>>,
    /// Stand-alone trainings per sub-network, with seeds `seed, seed + 1, ...`; their mean
    /// accuracy is compared with the scores, and with 2 or more the seed-vs-seed rank
    /// agreement is the ceiling reported beside them.
    pub seeds: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RankCheckRow {
    pub architecture: String,
    pub inherited: f64,
    /// The mean of `per_seed`.
    pub standalone: f64,
    /// Stand-alone accuracy of each seed.
    pub per_seed: Vec<f64>,
}

#[derive(Debug)]
pub struct RankCheckReport {
    pub rows: Vec<RankCheckRow>,
    /// Inherited-weight accuracy against stand-alone accuracy.
    pub inherited: Fidelity,
    /// Each proxy of `cfg.proxies`: its values on the rows, and against stand-alone accuracy.
    pub proxies: Vec<(Proxy, Vec<f64>, Fidelity)>,
    /// Few-shot accuracy on the rows (`cfg.few_shot`), and against stand-alone accuracy.
    pub few_shot: Option<(Vec<f64>, Fidelity)>,
    /// Seed-vs-seed rank agreement of the stand-alone accuracies (2 or more seeds).
    pub ceiling: Option<Ceiling>,
    pub group: String,
    pub csv: PathBuf,
}

/// `k` indices into `scores` spread evenly over their sorted order (lowest and highest
/// included), distinct.
pub fn spread(scores: &[f64], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(a.cmp(&b)));
    let n = order.len();
    if k >= n {
        return order;
    }
    let mut picked: Vec<usize> = (0..k)
        .map(|i| order[(i * (n - 1) + (k - 1) / 2) / (k - 1).max(1)])
        .collect();
    picked.dedup();
    picked
}

/// The sample table `name` (or the run's only one) as (architecture, accuracy) columns.
/// Also the BN mode it was scored with.
fn sample_table(dir: &Path, name: Option<&str>) -> Result<(String, Vec<String>, Vec<f64>, BnMode)> {
    let path = dir.join(RUN_FILE);
    let log = read_run(&path)?;
    let samples: Vec<&Table> = log
        .tables
        .iter()
        .filter(|t| t.group.starts_with("samples/"))
        .collect();
    let names: Vec<&str> = samples
        .iter()
        .map(|t| &t.group["samples/".len()..])
        .collect();
    let table = match name {
        Some(n) => samples.iter().find(|t| t.group == format!("samples/{n}")),
        None if samples.len() == 1 => samples.first(),
        None => None,
    }
    .ok_or_else(|| {
        Error::bad_file(
            &path,
            match (name, names.is_empty()) {
                (_, true) => "no sample table: run `supernet sample --run DIR --n N` first".into(),
                (Some(n), _) => format!("no sample table '{n}' (it has: {})", names.join(", ")),
                (None, _) => format!(
                    "several sample tables, choose one with --samples ({})",
                    names.join(", ")
                ),
            },
        )
    })?;
    if let Some(score) = table.attr("score").filter(|s| *s != "inherited") {
        let by = match score {
            "few-shot" => "few-shot sub-supernets".to_string(),
            proxy => format!("the proxy '{proxy}'"),
        };
        return Err(Error::bad_file(
            &path,
            format!(
                "{} was scored by {by}: rank-check starts from an inherited-weight sample \
                 table (other scores are compared with `rank-check --score {score}`)",
                table.group
            ),
        ));
    }
    let bn = match table.attr("bn") {
        Some(b) => b
            .parse()
            .map_err(|e| Error::bad_file(&path, format!("{} attribute bn: {e}", table.group)))?,
        None => BnMode::default(),
    };
    let (Some(Column::Text(archs)), Some(Column::F64(acc))) =
        (table.column("architecture"), table.column("accuracy"))
    else {
        return Err(Error::bad_file(
            &path,
            format!("{} lacks its architecture or accuracy column", table.group),
        ));
    };
    let short = table.group["samples/".len()..].to_string();
    Ok((short, archs.clone(), acc.clone(), bn))
}

/// Train `architecture` on its own in `dir` (or finish or reuse an earlier attempt there);
/// its test accuracy.
fn standalone_accuracy(dir: &Path, cfg: TrainConfig) -> Result<f64> {
    let outcome = if dir
        .join(MODEL_DIR)
        .join(crate::model::DESCRIPTION_FILE)
        .is_file()
    {
        let log = read_run(&dir.join(RUN_FILE))?;
        let last = log.epochs.last().ok_or_else(|| {
            Error::bad_file(dir.join(RUN_FILE), "a finished training run without epochs")
        })?;
        return Ok(last.val_acc);
    } else if dir.join(crate::run::CHECKPOINT_FILE).is_file() {
        train::resume(dir, true)?
    } else {
        train::start(cfg, dir, true)?
    };
    match outcome {
        train::Outcome::Finished { test, .. } => Ok(test.accuracy),
        train::Outcome::Interrupted(stopped) => Err(Error::Interrupted {
            signal: stopped.signal,
            message: format!(
                "rank-check interrupted during the training in {}; run the same rank-check again to continue",
                dir.display()
            ),
        }),
    }
}

pub fn rank_check(
    dir: &Path,
    cfg: &RankCheckConfig,
    mut progress: impl FnMut(usize, &RankCheckRow),
) -> Result<RankCheckReport> {
    if cfg.k < 3 {
        return Err(Error::invalid("--k", cfg.k, "at least 3"));
    }
    if cfg.top == 0 || cfg.top > cfg.k {
        return Err(Error::invalid("--top", cfg.top, format!("1..={}", cfg.k)));
    }
    if cfg.seeds == 0 {
        return Err(Error::invalid("--seeds", 0, "at least 1"));
    }
    let (samples, archs, inherited, bn) = sample_table(dir, cfg.samples.as_deref())?;
    if archs.len() < cfg.k {
        return Err(Error::invalid(
            "--k",
            cfg.k,
            format!(
                "at most the {} architectures of sample table '{samples}'",
                archs.len()
            ),
        ));
    }
    let name = format!("{samples}-k{}", cfg.k);
    check_name(&name)?;
    let run = RunDir::attach(dir)?;
    let search: SearchConfig = run.read_config()?;
    let mut network = search.network;
    network.layers = cfg.layers.or(network.layers);
    network.channels = cfg.channels.or(network.channels);
    let mut rows = Vec::new();
    for (i, idx) in spread(&inherited, cfg.k).into_iter().enumerate() {
        // A short plain training: no auxiliary head, drop-path or cutout.
        let train_cfg = |seed: u64| TrainConfig {
            genotype: archs[idx].clone(),
            space: search.space.clone(),
            network,
            init: None,
            style: OpStyle::Standalone,
            data: search.data.clone(),
            subset: cfg.subset,
            test_subset: cfg.test_subset,
            augment: AugmentOverrides {
                cutout: Some(0),
                ..Default::default()
            },
            auxiliary_weight: 0.0,
            drop_path: 0.0,
            epochs: cfg.epochs,
            batch_size: cfg.batch_size,
            seed,
            threads: cfg.threads,
            ..TrainConfig::default()
        };
        let runs = dir.join("rank-check").join(&name);
        let per_seed = (0..cfg.seeds)
            .map(|s| {
                // Seed 0's run keeps the name a one-seed check gives it.
                let run_dir = match s {
                    0 => runs.join(i.to_string()),
                    s => runs.join(format!("{i}-seed{s}")),
                };
                standalone_accuracy(&run_dir, train_cfg(cfg.seed + s as u64))
            })
            .collect::<Result<Vec<f64>>>()?;
        let row = RankCheckRow {
            architecture: archs[idx].clone(),
            inherited: inherited[idx],
            standalone: per_seed.iter().sum::<f64>() / per_seed.len() as f64,
            per_seed,
        };
        progress(i, &row);
        rows.push(row);
    }
    let x: Vec<f64> = rows.iter().map(|r| r.inherited).collect();
    let y: Vec<f64> = rows.iter().map(|r| r.standalone).collect();
    let inherited = Fidelity::new(&x, &y, cfg.top, true);
    let proxies = proxy_scores(dir, &rows, &cfg.proxies)?
        .into_iter()
        .map(|(p, v)| {
            let f = Fidelity::new(&v, &y, cfg.top, false);
            (p, v, f)
        })
        .collect::<Vec<_>>();
    let few_shot = match &cfg.few_shot {
        None => None,
        Some(set) => {
            let v = few_shot_scores(dir, &rows, set.as_deref(), bn)?;
            let f = Fidelity::new(&v, &y, cfg.top, true);
            Some((v, f))
        }
    };
    let seed_columns: Vec<Vec<f64>> = (0..cfg.seeds)
        .map(|s| rows.iter().map(|r| r.per_seed[s]).collect())
        .collect();
    let ceiling = Ceiling::new(&seed_columns);
    let show = |v: Option<f64>| v.map_or("undefined".to_string(), |v| format!("{v:.6}"));
    let group = format!("rank_check/{name}");
    let mut attrs = vec![("samples".to_string(), samples)];
    let measures = inherited.named().into_iter();
    attrs.extend(measures.map(|(m, v)| (m.to_string(), show(v))));
    attrs.push(("top".into(), cfg.top.to_string()));
    for (p, _, f) in &proxies {
        let measures = f.named().into_iter();
        attrs.extend(measures.map(|(m, v)| (format!("{}_{m}", p.column()), show(v))));
    }
    if !proxies.is_empty() {
        let names: Vec<&str> = proxies.iter().map(|(p, _, _)| p.name()).collect();
        attrs.push(("proxies".into(), names.join(",")));
    }
    if let Some((_, f)) = &few_shot {
        let measures = f.named().into_iter();
        attrs.extend(measures.map(|(m, v)| (format!("few_shot_{m}"), show(v))));
    }
    attrs.push(("seeds".into(), cfg.seeds.to_string()));
    if let Some(c) = &ceiling {
        attrs.push(("ceiling_kendall_tau".into(), show(c.kendall_tau)));
        attrs.push(("ceiling_spearman_rho".into(), show(c.spearman_rho)));
    }
    let mut columns = vec![
        (
            "architecture".to_string(),
            Column::Text(rows.iter().map(|r| r.architecture.clone()).collect()),
        ),
        ("inherited_accuracy".into(), Column::F64(x)),
        ("standalone_accuracy".into(), Column::F64(y)),
    ];
    for (p, v, _) in &proxies {
        columns.push((p.column(), Column::F64(v.clone())));
    }
    if let Some((v, _)) = &few_shot {
        columns.push(("few_shot_accuracy".into(), Column::F64(v.clone())));
    }
    if cfg.seeds > 1 {
        for (s, c) in seed_columns.into_iter().enumerate() {
            columns.push((format!("standalone_seed{s}"), Column::F64(c)));
        }
    }
    let table = Table {
        group: group.clone(),
        attrs: [
            attrs,
            vec![
                ("epochs".into(), cfg.epochs.to_string()),
                ("subset".into(), all_or(cfg.subset)),
                ("test_subset".into(), all_or(cfg.test_subset)),
                ("batch_size".into(), cfg.batch_size.to_string()),
                ("seed".into(), cfg.seed.to_string()),
            ],
        ]
        .concat(),
        columns,
    };
    let csv = store_table(&run, table, &format!("rank-check-{name}"))?;
    Ok(RankCheckReport {
        rows,
        inherited,
        proxies,
        few_shot,
        ceiling,
        group,
        csv,
    })
}

/// Few-shot accuracy of the architectures of `rows` from set `set` of the run in `dir`,
/// with the BN mode of the sample table.
fn few_shot_scores(
    dir: &Path,
    rows: &[RankCheckRow],
    set: Option<&str>,
    bn: BnMode,
) -> Result<Vec<f64>> {
    let scorer = Scorer::open(dir, bn, None)?.with_few_shot(dir, set)?;
    parse_rows(dir, rows, &scorer)?
        .iter()
        .map(|g| Ok(scorer.score(g)?.accuracy))
        .collect()
}

/// The architectures of `rows`, checked against the space of `scorer`.
fn parse_rows(dir: &Path, rows: &[RankCheckRow], scorer: &Scorer) -> Result<Vec<Genotype>> {
    rows.iter()
        .map(|r| {
            Genotype::parse(&r.architecture)
                .and_then(|g| g.validate(&scorer.space).map(|()| g))
                .map_err(|e| {
                    Error::bad_file(dir.join(RUN_FILE), format!("{}: {e}", r.architecture))
                })
        })
        .collect()
}

/// Each of `proxies` on the architectures of `rows`, computed as `supernet sample --score`
/// computes it (the run's first training batch, a fresh network from the run's seed).
fn proxy_scores(
    dir: &Path,
    rows: &[RankCheckRow],
    proxies: &[Proxy],
) -> Result<Vec<(Proxy, Vec<f64>)>> {
    if proxies.is_empty() {
        return Ok(Vec::new());
    }
    let mut scorer = Scorer::open(dir, BnMode::default(), None)?;
    let genotypes = parse_rows(dir, rows, &scorer)?;
    let mut out = Vec::new();
    for &p in proxies {
        scorer = scorer.with_score(ScoreKind::Proxy(p));
        let values = genotypes
            .iter()
            .map(|g| Ok(scorer.score(g)?.fitness()))
            .collect::<Result<Vec<f64>>>()?;
        out.push((p, values));
    }
    Ok(out)
}

/// A subset size as the table records it: the number, or `all`.
fn all_or(n: Option<usize>) -> String {
    n.map_or("all".into(), |n| n.to_string())
}
