//! The run file as its readers see it: the log and its space, checked against each other,
//! and what several readers derive from them (softmax rows, genotypes).
use super::{read_run, AlphaRecord, RunLog, RUN_FILE};
use crate::derive::{cap_skips, derive_raw, mixing_rows, with_rule, RawCell, RuleArg};
use crate::numeric::softmax;
use crate::space::{CellType, EdgeId, Genotype, OpKind, SearchSpace};
use crate::{Error, Result};
use std::path::{Path, PathBuf};

pub struct RunData {
    /// The run directory (or the run file itself) it was read from.
    pub dir: PathBuf,
    pub log: RunLog,
    pub space: SearchSpace,
    /// Alpha columns.
    pub ops: Vec<OpKind>,
    /// Alpha rows.
    pub edges: Vec<EdgeId>,
    /// Cell types with their own alphas, in the run file's order.
    pub cells: Vec<CellType>,
}

/// Where the genotype a cell diagram shows came from.
pub struct ShownGenotype {
    pub genotype: Genotype,
    pub source: String,
}

/// The run file of `run`: `run/run.h5`, or `run` itself when it is a file.
pub fn run_file(run: &Path) -> PathBuf {
    if run.is_file() {
        run.to_path_buf()
    } else {
        run.join(RUN_FILE)
    }
}

/// The run log in the run file `path`; every error names the file.
pub fn read_log(path: &Path) -> Result<RunLog> {
    read_run(path).map_err(|e| match e {
        Error::BadFile { .. } | Error::Io { .. } => e,
        other => Error::bad_file(path, format!("unreadable run file: {other}")),
    })
}

impl RunData {
    /// Read and check the run file of `run_dir`; every error names the file.
    pub fn load(run_dir: &Path) -> Result<Self> {
        let path = run_file(run_dir);
        Self::from_log(run_dir, read_log(&path)?)
    }

    /// Check `log`, read from the run file of `run_dir`, against its space.
    pub fn from_log(run_dir: &Path, log: RunLog) -> Result<Self> {
        let path = run_file(run_dir);
        let bad = |what: String| Error::bad_file(&path, what);
        let space = SearchSpace::from_toml(&log.meta.space)
            .map_err(|e| bad(format!("its 'space' attribute is not a search space: {e}")))?;
        let ops = log
            .meta
            .ops
            .iter()
            .map(|name| name.parse::<OpKind>())
            .collect::<Result<Vec<_>>>()
            .map_err(|e| bad(format!("/ops: {e}")))?;
        if ops != space.ops {
            return Err(bad(format!(
                "/ops ({}) are not the ops of its space '{}'",
                log.meta.ops.join(", "),
                space.name
            )));
        }
        let edges = space.cell.edges();
        let keys: Vec<String> = edges.iter().map(|e| e.key()).collect();
        if keys != log.meta.edges {
            return Err(bad(format!(
                "/edges ({}) are not the edges of its space '{}' ({})",
                log.meta.edges.join(", "),
                space.name,
                keys.join(", ")
            )));
        }
        let cells = log
            .meta
            .cell_types
            .iter()
            .map(|name| match name.as_str() {
                "normal" => Ok(CellType::Normal),
                "reduce" => Ok(CellType::Reduce),
                other => Err(bad(format!(
                    "/cell_types: unknown cell type '{other}' (normal or reduce)"
                ))),
            })
            .collect::<Result<Vec<_>>>()?;
        if !cells.contains(&CellType::Normal) {
            return Err(bad("/cell_types has no 'normal' cell".into()));
        }
        let with_reduce = cells.contains(&CellType::Reduce);
        if let Some(a) = log
            .alphas
            .iter()
            .find(|a| a.reduce.is_some() != with_reduce)
        {
            return Err(bad(format!(
                "the alpha record at step {} {} reduction-cell alphas but /cell_types is [{}]",
                a.step,
                if a.reduce.is_some() { "has" } else { "lacks" },
                log.meta.cell_types.join(", ")
            )));
        }
        Ok(RunData {
            dir: run_dir.to_path_buf(),
            log,
            space,
            ops,
            edges,
            cells,
        })
    }

    /// softmax(alpha) per edge of one cell type in one record: `[edges][ops]`.
    pub fn softmax(&self, rec: &AlphaRecord, cell: CellType) -> Vec<Vec<f32>> {
        rec.alphas(cell)
            .chunks(self.ops.len().max(1))
            .map(softmax)
            .collect()
    }

    /// The genotype the alphas (and betas) of `rec` derive to by `space`'s rule; an alpha
    /// that is not finite is an error naming the file, the step, the cell and the edge.
    pub fn derive_with(&self, space: &SearchSpace, rec: &AlphaRecord) -> Result<Genotype> {
        let raw = |cell: CellType| RawCell {
            alphas: rec.alphas(cell),
            betas: rec.betas(cell),
        };
        let reduce = rec.reduce.as_ref().map(|_| raw(CellType::Reduce));
        derive_raw(space, raw(CellType::Normal), reduce).map_err(|e| {
            Error::bad_file(
                run_file(&self.dir),
                format!("the alpha record at step {}: {e}", rec.step),
            )
        })
    }

    /// The genotype the alphas of `rec` derive to by the space's rule.
    pub fn derive(&self, rec: &AlphaRecord) -> Result<Genotype> {
        self.derive_with(&self.space, rec)
    }

    /// The genotype the last alpha record derives to by `space`'s rule.
    pub fn derive_last(&self, space: &SearchSpace) -> Result<Genotype> {
        let rec = self
            .log
            .alphas
            .last()
            .ok_or_else(|| Error::bad_file(run_file(&self.dir), "no alpha record"))?;
        self.derive_with(space, rec)
    }

    /// The genotype to draw: the final one, else the latest epoch's, else the one derived
    /// from the latest alpha record. Texts that do not parse are passed over.
    pub fn shown_genotype(&self) -> Option<ShownGenotype> {
        if let Some((text, json)) = &self.log.genotype {
            if let Ok(g) = Genotype::parse(json).or_else(|_| Genotype::parse(text)) {
                return Some(ShownGenotype {
                    genotype: g,
                    source: "final genotype".into(),
                });
            }
        }
        if let Some(e) = self.log.epochs.last() {
            if let Ok(g) = Genotype::parse(&e.genotype) {
                return Some(ShownGenotype {
                    genotype: g,
                    source: format!("genotype after epoch {} (search unfinished)", e.epoch + 1),
                });
            }
        }
        let a = self.log.alphas.last()?;
        Some(ShownGenotype {
            genotype: self.derive(a).ok()?,
            source: format!(
                "derived from the alphas at step {} (no epoch finished)",
                a.step
            ),
        })
    }
}

/// The genotype the last alphas of the run in `dir` derive to by `rule` (top2 or argmax,
/// checked against the run's space; reads only the run file, once).
pub fn derive_run(dir: &Path, rule: RuleArg) -> Result<Genotype> {
    let data = RunData::load(dir)?;
    data.derive_last(&data.space_with(rule)?)
}

/// [`derive_run`] with P-DARTS's cap on the normal cell: at most `max_skip` skip
/// connections, the weakest beyond them replaced by their edge's next-best op (see
/// [`cap_skips`]).
pub fn derive_run_capped(dir: &Path, rule: RuleArg, max_skip: usize) -> Result<Genotype> {
    let data = RunData::load(dir)?;
    let space = data.space_with(rule)?;
    let mut genotype = data.derive_last(&space)?;
    let rec = data
        .log
        .alphas
        .last()
        .expect("derive_last found an alpha record");
    let raw = RawCell {
        alphas: rec.alphas(CellType::Normal),
        betas: rec.betas(CellType::Normal),
    };
    let rows = mixing_rows(&space, CellType::Normal, raw)?;
    genotype.normal = cap_skips(rows, &space.cell, &space.ops, max_skip);
    Ok(genotype)
}

impl RunData {
    /// The run's space with its derivation rule replaced by `rule` (top2 or argmax).
    fn space_with(&self, rule: RuleArg) -> Result<SearchSpace> {
        let r = rule
            .rule(&self.space)?
            .ok_or_else(|| Error::invalid("--rule", rule.name(), "top2 or argmax here"))?;
        Ok(with_rule(&self.space, r))
    }
}
