//! `supernet rank-check --ground-truth TABLE`: the sample tables of a run (each one scorer:
//! inherited weights under a BN mode, or a zero-cost proxy) against a table of stand-alone
//! accuracies built by `supernet tabulate`, with no training. Next to each scorer's measures
//! stands the ceiling: the agreement between two seeds of the stand-alone training itself,
//! which no scorer can be expected to beat.
//!
//! Each comparison goes into the run file as `/rank_check/truth-<samples>` (drawn by
//! `supernet plot` like any rank-check) and all of them, one row per scorer, into
//! `/fidelity/truth` and `DIR/fidelity-truth.csv`.
use super::rank::{kendall_tau_b, spearman_rho, Fidelity};
use super::{check_name, store_table};
use crate::record::{read_run, Column, Table, RUN_FILE};
use crate::run::RunDir;
use crate::space::Genotype;
use crate::tabulate::GroundTruth;
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// What `rank-check --ground-truth` compares.
#[derive(Debug, Clone)]
pub struct TruthConfig {
    /// The `supernet tabulate` table.
    pub table: PathBuf,
    /// Sample tables (`/samples/<name>`) to compare; empty: every one of the run.
    pub samples: Vec<String>,
    /// Size of the top sets (overlap and top-k tau).
    pub top: usize,
}

/// The agreement between the seeds of the stand-alone training: the mean over seed pairs
/// of Kendall's tau-b and of Spearman's rho, over the compared architectures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ceiling {
    pub kendall_tau: Option<f64>,
    pub spearman_rho: Option<f64>,
    pub seed_pairs: usize,
}

/// One scorer against the ground truth.
#[derive(Debug, Clone)]
pub struct TruthRow {
    /// The sample table's name.
    pub samples: String,
    /// How it scored: `inherited (BN)` or the proxy's name.
    pub scorer: String,
    pub architectures: usize,
    pub fidelity: Fidelity,
    pub ceiling: Ceiling,
}

#[derive(Debug)]
pub struct TruthReport {
    pub rows: Vec<TruthRow>,
    pub csv: PathBuf,
}

/// One sample table's scores: its name, architectures, score column name and values, and
/// whether the values are accuracies (inherited weights) rather than a proxy's.
struct Scores {
    name: String,
    scorer: String,
    architectures: Vec<String>,
    column: String,
    values: Vec<f64>,
    is_accuracy: bool,
}

impl Scores {
    fn of(path: &Path, table: &Table) -> Result<Self> {
        let name = table.group["samples/".len()..].to_string();
        let score = table.attr("score").unwrap_or("inherited");
        // Inherited and few-shot scores are accuracies; a proxy has a column of its own.
        let (column, is_accuracy) = match table.column("accuracy") {
            Some(_) => ("accuracy".to_string(), true),
            None => (score.replace('-', "_"), false),
        };
        let (Some(Column::Text(architectures)), Some(Column::F64(values))) =
            (table.column("architecture"), table.column(&column))
        else {
            return Err(Error::bad_file(
                path,
                format!("{} lacks its architecture or {column} column", table.group),
            ));
        };
        let scorer = match (is_accuracy, table.attr("bn")) {
            (true, Some(bn)) => format!("{score} ({bn})"),
            _ => score.to_string(),
        };
        Ok(Scores {
            name,
            scorer,
            architectures: architectures.clone(),
            column,
            values: values.clone(),
            is_accuracy,
        })
    }
}

/// The sample tables of the run at `dir` named in `wanted` (every one when empty).
fn sample_tables(dir: &Path, wanted: &[String]) -> Result<Vec<Scores>> {
    let path = dir.join(RUN_FILE);
    let log = read_run(&path)?;
    let all: Vec<&Table> = log
        .tables
        .iter()
        .filter(|t| t.group.starts_with("samples/"))
        .collect();
    if all.is_empty() {
        return Err(Error::bad_file(
            &path,
            "no sample table: run `supernet sample --run DIR --n N` first",
        ));
    }
    let chosen: Vec<&Table> = match wanted.is_empty() {
        true => all,
        false => wanted
            .iter()
            .map(|w| {
                all.iter()
                    .find(|t| t.group["samples/".len()..] == **w)
                    .copied()
                    .ok_or_else(|| {
                        let names: Vec<&str> =
                            all.iter().map(|t| &t.group["samples/".len()..]).collect();
                        Error::bad_file(
                            &path,
                            format!("no sample table '{w}' (it has: {})", names.join(", ")),
                        )
                    })
            })
            .collect::<Result<_>>()?,
    };
    chosen.into_iter().map(|t| Scores::of(&path, t)).collect()
}

/// The ground-truth rows of `architectures`: each one's index into the table; an
/// architecture the table lacks, or one with no finished training, is an error.
fn truth_rows(truth: &GroundTruth, table: &Path, architectures: &[String]) -> Result<Vec<usize>> {
    architectures
        .iter()
        .map(|a| {
            let g = Genotype::parse(a)?;
            let i = truth.lookup(&g).ok_or_else(|| {
                Error::bad_file(
                    table,
                    format!("architecture {a} is not in the table (tabulated from another space?)"),
                )
            })?;
            if truth.mean(i).is_nan() {
                return Err(Error::bad_file(
                    table,
                    format!(
                        "architecture {a} has no finished training: finish the table with \
                         `supernet tabulate` first"
                    ),
                ));
            }
            Ok(i)
        })
        .collect()
}

/// The seed-vs-seed ceiling over the table rows `rows`.
pub fn ceiling(truth: &GroundTruth, rows: &[usize]) -> Ceiling {
    let seeds = truth.accuracy.ncols();
    let column = |s: usize| -> Vec<f64> { rows.iter().map(|&i| truth.accuracy[[i, s]]).collect() };
    let (mut taus, mut rhos) = (Vec::new(), Vec::new());
    for a in 0..seeds {
        for b in a + 1..seeds {
            let (x, y) = (column(a), column(b));
            if x.iter().chain(&y).any(|v| v.is_nan()) {
                continue;
            }
            taus.extend(kendall_tau_b(&x, &y));
            rhos.extend(spearman_rho(&x, &y));
        }
    }
    let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    Ceiling {
        kendall_tau: mean(&taus),
        spearman_rho: mean(&rhos),
        seed_pairs: taus.len(),
    }
}

fn show(v: Option<f64>) -> String {
    v.map_or("undefined".to_string(), |v| format!("{v:.6}"))
}

pub fn against_ground_truth(dir: &Path, cfg: &TruthConfig) -> Result<TruthReport> {
    if cfg.top == 0 {
        return Err(Error::invalid("--top", cfg.top, "at least 1"));
    }
    let truth = GroundTruth::read(&cfg.table)?;
    let scored = sample_tables(dir, &cfg.samples)?;
    let run = RunDir::attach(dir)?;
    let mut rows = Vec::new();
    for s in scored {
        let name = format!("truth-{}", s.name);
        check_name(&name)?;
        let idx = truth_rows(&truth, &cfg.table, &s.architectures)?;
        let mean: Vec<f64> = idx.iter().map(|&i| truth.mean(i)).collect();
        let std: Vec<f64> = idx.iter().map(|&i| truth.std(i)).collect();
        let fidelity = Fidelity::new(&s.values, &mean, cfg.top, s.is_accuracy);
        let ceiling = ceiling(&truth, &idx);
        // Laid out as a rank-check table, so that `supernet plot` draws its scatter.
        let prefix = match s.is_accuracy {
            true => String::new(),
            false => format!("{}_", s.column),
        };
        let mut attrs = vec![
            ("samples".to_string(), s.name.clone()),
            ("ground_truth".into(), cfg.table.display().to_string()),
            ("seeds".into(), truth.seeds.len().to_string()),
            ("top".into(), cfg.top.to_string()),
            ("ceiling_kendall_tau".into(), show(ceiling.kendall_tau)),
            ("ceiling_spearman_rho".into(), show(ceiling.spearman_rho)),
        ];
        let measures = fidelity.named().into_iter();
        attrs.extend(measures.map(|(m, v)| (format!("{prefix}{m}"), show(v))));
        let x_column = match s.is_accuracy {
            true => "inherited_accuracy".to_string(),
            false => {
                attrs.push(("proxies".into(), s.scorer.clone()));
                s.column.clone()
            }
        };
        let table = Table {
            group: format!("rank_check/{name}"),
            attrs,
            columns: vec![
                ("architecture".into(), Column::Text(s.architectures.clone())),
                (x_column, Column::F64(s.values.clone())),
                ("standalone_accuracy".into(), Column::F64(mean)),
                ("standalone_std".into(), Column::F64(std)),
            ],
        };
        store_table(&run, table, &format!("rank-check-{name}"))?;
        rows.push(TruthRow {
            samples: s.name,
            scorer: s.scorer,
            architectures: idx.len(),
            fidelity,
            ceiling,
        });
    }
    let csv = store_table(&run, summary(&rows, &cfg.table), "fidelity-truth")?;
    Ok(TruthReport { rows, csv })
}

/// One row per scorer: its measures and the ceiling.
fn summary(rows: &[TruthRow], table: &Path) -> Table {
    let text = |f: fn(&TruthRow) -> String| Column::Text(rows.iter().map(f).collect());
    let mut columns = vec![
        ("samples".to_string(), text(|r| r.samples.clone())),
        ("scorer".into(), text(|r| r.scorer.clone())),
        (
            "architectures".into(),
            Column::U64(rows.iter().map(|r| r.architectures as u64).collect()),
        ),
    ];
    for (k, measure) in Fidelity::MEASURES.into_iter().enumerate() {
        let values = rows
            .iter()
            .map(|r| r.fidelity.named()[k].1.unwrap_or(f64::NAN));
        columns.push((measure.to_string(), Column::F64(values.collect())));
    }
    let ceiling = |f: fn(&Ceiling) -> Option<f64>| {
        Column::F64(
            rows.iter()
                .map(|r| f(&r.ceiling).unwrap_or(f64::NAN))
                .collect(),
        )
    };
    columns.push(("ceiling_kendall_tau".into(), ceiling(|c| c.kendall_tau)));
    columns.push(("ceiling_spearman_rho".into(), ceiling(|c| c.spearman_rho)));
    Table {
        group: "fidelity/truth".into(),
        attrs: vec![("ground_truth".into(), table.display().to_string())],
        columns,
    }
}
