//! Sub-networks of a trained supernet: drawn, scored with the weights they inherit, and
//! searched over (random and evolutionary search), plus rank-agreement measures.
//! `supernet sample`, `supernet evolve` and `supernet derive --rule sample-top:K`.
mod breed;
pub mod chain;
pub mod chain_evolve;
pub mod chain_score;
mod evolve;
mod extract;
pub mod few_shot;
mod ground_truth;
pub mod pareto;
pub mod proxy;
pub mod rank;
mod rank_check;
mod scorer;

pub use crate::space::{crossover, mutate, uniform_genotype, Sampler};
pub use evolve::{evolve, EvolveConfig, EvolveReport};
pub use extract::extract;
pub use ground_truth::{against_ground_truth, Ceiling, TruthConfig, TruthReport, TruthRow};
pub use proxy::{Proxy, ScoreKind};
pub use rank_check::{rank_check, spread, RankCheckConfig, RankCheckReport, RankCheckRow};
pub use scorer::{ArchScore, BnMode, Scorer, DEFAULT_RECALIBRATION_BATCHES};

use crate::record::{Column, Table};
use crate::rng::{Rng, PURPOSE_SAMPLE};
use crate::run::RunDir;
use crate::space::{CellType, Genotype};
use crate::{Error, Result};
use std::collections::HashSet;
use std::path::PathBuf;

/// `--from`: where `supernet sample` draws architectures from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SampleFrom {
    /// Every choice uniform, under the space's derivation rule.
    Uniform,
    /// Drawn from softmax(alphas).
    Alphas,
    /// Drawn from the ENAS controller of the run (`--strategy enas` runs only).
    Controller,
}

impl SampleFrom {
    pub fn name(self) -> &'static str {
        match self {
            SampleFrom::Uniform => "uniform",
            SampleFrom::Alphas => "alphas",
            SampleFrom::Controller => "controller",
        }
    }
}

/// The sampler of `from` for the supernet in `scorer` (its alphas for `alphas`); `None`
/// for the controller, which is no plain-data sampler.
pub fn sampler(scorer: &Scorer, from: SampleFrom) -> Option<Sampler> {
    Some(match from {
        SampleFrom::Uniform => Sampler::Uniform,
        SampleFrom::Controller => return None,
        SampleFrom::Alphas => Sampler::Weights {
            normal: scorer
                .st
                .arch
                .softmax_rows(CellType::Normal)
                .expect("normal alphas"),
            reduce: scorer.st.arch.softmax_rows(CellType::Reduce),
        },
    })
}

/// `n` distinct architectures drawn from `sampler` with a generator seeded by `seed`;
/// also the number of duplicate draws skipped. Stops early (fewer than `n`) when
/// `20 n` draws do not find `n` distinct ones (a small space).
pub fn draw_distinct(
    sampler: &Sampler,
    space: &crate::space::SearchSpace,
    n: usize,
    seed: u64,
) -> (Vec<Genotype>, usize) {
    draw_distinct_by(|rng| sampler.genotype(space, rng), n, seed)
}

/// [`draw_distinct`] with any drawing function (an ENAS controller's, say).
pub fn draw_distinct_by(
    mut draw: impl FnMut(&mut Rng) -> Genotype,
    n: usize,
    seed: u64,
) -> (Vec<Genotype>, usize) {
    let mut rng = Rng::from_key(&[seed, PURPOSE_SAMPLE]);
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut duplicates = 0;
    for _ in 0..n.saturating_mul(20) {
        if out.len() == n {
            break;
        }
        let g = draw(&mut rng);
        if seen.insert(g.to_text()) {
            out.push(g);
        } else {
            duplicates += 1;
        }
    }
    (out, duplicates)
}

/// The columns every table of scored architectures has: the architecture, its scores
/// (`accuracy` and `loss` with inherited weights, else one column named after the proxy),
/// parameters and multiply-adds.
pub fn score_columns(scores: &[&ArchScore], kind: ScoreKind) -> Vec<(String, Column)> {
    let f64s = |f: fn(&ArchScore) -> f64| Column::F64(scores.iter().map(|s| f(s)).collect());
    let mut columns = vec![(
        "architecture".into(),
        Column::Text(scores.iter().map(|s| s.text.clone()).collect()),
    )];
    match kind.proxy() {
        None => {
            columns.push(("accuracy".into(), f64s(|s| s.accuracy)));
            columns.push(("loss".into(), f64s(|s| s.loss)));
        }
        Some(p) => columns.push((p.column(), f64s(ArchScore::fitness))),
    }
    columns.extend([
        (
            "parameters".into(),
            Column::U64(scores.iter().map(|s| s.parameters).collect()),
        ),
        (
            "macs".into(),
            Column::U64(scores.iter().map(|s| s.macs).collect()),
        ),
    ]);
    columns
}

/// The table attributes that say how its architectures were scored: `score` (`inherited`
/// or the proxy), and `bn` for inherited weights.
pub fn score_attrs(scorer: &Scorer) -> Vec<(String, String)> {
    let mut attrs = vec![("score".to_string(), scorer.score.name().to_string())];
    if scorer.score.proxy().is_none() {
        attrs.push(("bn".into(), scorer.bn.name()));
    }
    if let Some(set) = scorer
        .few_shot
        .as_ref()
        .filter(|_| scorer.score == ScoreKind::FewShot)
    {
        attrs.push(("few_shot".into(), set.name.clone()));
        attrs.push(("few_shot_edge".into(), set.edge.to_string()));
    }
    attrs
}

/// A table name usable as an HDF5 group and a file name.
pub fn check_name(name: &str) -> Result<()> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(Error::invalid(
            "--name",
            name,
            "letters, digits, '-', '_' and '.' only",
        ));
    }
    Ok(())
}

/// Store `table` in the run file of `dir` and as `DIR/<file_stem>.csv`; returns the CSV path.
pub fn store_table(dir: &RunDir, table: Table, file_stem: &str) -> Result<PathBuf> {
    let csv = dir.write(&format!("{file_stem}.csv"), table.to_csv().as_bytes())?;
    dir.update_run(|log| log.put_table(table))?;
    Ok(csv)
}

/// What `supernet sample` does.
#[derive(Debug, Clone)]
pub struct SampleConfig {
    pub n: usize,
    pub from: SampleFrom,
    pub seed: u64,
    /// Table name: `/samples/<name>` and `DIR/samples-<name>.csv`.
    pub name: Option<String>,
    /// Also score the run's derived genotype (its `/genotype`) and mark its row in a
    /// `derived` column; a drawn architecture equal to it is that row, not scored twice.
    pub with_derived: bool,
}

#[derive(Debug)]
pub struct SampleReport {
    pub scores: Vec<ArchScore>,
    pub duplicates: usize,
    pub group: String,
    pub csv: PathBuf,
    /// With `with_derived`: the row of the run's derived genotype.
    pub derived: Option<DerivedRow>,
}

/// The row of the derived genotype in a sample table: one of the draws, or added after them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DerivedRow {
    Drawn(usize),
    Added(usize),
}

impl DerivedRow {
    pub fn index(self) -> usize {
        match self {
            DerivedRow::Drawn(i) | DerivedRow::Added(i) => i,
        }
    }
}

/// The run's derived genotype (`/genotype` of its run file), checked against `space`.
fn run_genotype(dir: &RunDir, space: &crate::space::SearchSpace) -> Result<Genotype> {
    let path = dir.run_file();
    let log = crate::record::read_run(&path)?;
    let Some((text, json)) = log.genotype else {
        return Err(Error::bad_file(
            &path,
            format!(
                "--with-derived: no final genotype (/genotype): the search has not finished; \
                 `supernet search --resume {}` finishes it",
                dir.path().display()
            ),
        ));
    };
    let g = Genotype::parse(&json)
        .or_else(|_| Genotype::parse(&text))
        .and_then(|g| g.validate(space).map(|()| g))
        .map_err(|e| Error::bad_file(&path, format!("/genotype: {e}")))?;
    Ok(g)
}

/// Draw, score and record `cfg.n` distinct architectures of the run in `dir` (attached:
/// held from before the first score to the last write). `progress` receives each score as
/// it is computed.
pub fn sample(
    dir: &RunDir,
    scorer: &Scorer,
    cfg: &SampleConfig,
    progress: impl FnMut(usize, &ArchScore),
) -> Result<SampleReport> {
    if cfg.n == 0 {
        return Err(Error::invalid("--n", 0, "at least 1"));
    }
    let name = cfg.name.clone().unwrap_or_else(|| {
        let how = match scorer.score {
            ScoreKind::Inherited => scorer.bn.name().replace(':', ""),
            ScoreKind::FewShot => format!("few-shot-{}", scorer.bn.name().replace(':', "")),
            proxy => proxy.name().to_string(),
        };
        format!("{}-{how}-seed{}", cfg.from.name(), cfg.seed)
    });
    check_name(&name)?;
    // Read before any scoring: a run without a final genotype is refused at once.
    let derived = match cfg.with_derived {
        true => Some(run_genotype(dir, &scorer.space)?),
        false => None,
    };
    let start = std::time::Instant::now();
    let (mut genotypes, duplicates) = match sampler(scorer, cfg.from) {
        Some(sampler) => draw_distinct(&sampler, &scorer.space, cfg.n, cfg.seed),
        None => {
            let c = crate::search::enas::load_controller(dir.path(), &scorer.cfg, &scorer.space)?;
            let draw = |rng: &mut Rng| tch::no_grad(|| c.rollout(Some(rng))).genotype;
            draw_distinct_by(draw, cfg.n, cfg.seed)
        }
    };
    // Appended after the draws, so the draws and their rows are those of a sample without it.
    let derived = derived.map(|g| {
        let text = g.to_text();
        match genotypes.iter().position(|d| d.to_text() == text) {
            Some(i) => DerivedRow::Drawn(i),
            None => {
                genotypes.push(g);
                DerivedRow::Added(genotypes.len() - 1)
            }
        }
    });
    let scores = scorer.score_all(&genotypes, progress)?;
    let group = format!("samples/{name}");
    let mut attrs = vec![("from".into(), cfg.from.name().into())];
    attrs.extend(score_attrs(scorer));
    attrs.extend([
        ("seed".into(), cfg.seed.to_string()),
        ("requested".into(), cfg.n.to_string()),
        ("duplicates_skipped".into(), duplicates.to_string()),
        ("val_images".into(), scorer.val_images().to_string()),
        (
            "seconds".into(),
            format!("{:.3}", start.elapsed().as_secs_f64()),
        ),
    ]);
    let mut columns = score_columns(&scores.iter().collect::<Vec<_>>(), scorer.score);
    if let Some(row) = derived {
        let how = match row {
            DerivedRow::Drawn(_) => "drawn",
            DerivedRow::Added(_) => "added",
        };
        attrs.push(("derived".into(), how.into()));
        let flags = (0..scores.len())
            .map(|j| u64::from(j == row.index()))
            .collect();
        columns.push(("derived".into(), Column::U64(flags)));
    }
    let table = Table {
        group: group.clone(),
        attrs,
        columns,
    };
    let csv = store_table(dir, table, &format!("samples-{name}"))?;
    Ok(SampleReport {
        scores,
        duplicates,
        group,
        csv,
        derived,
    })
}
