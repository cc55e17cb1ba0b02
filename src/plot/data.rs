//! The run file as the charts see it: the log, its space, checked against each other, and
//! the derived quantities several charts share (softmax rows, genotypes, state names).
use crate::record::{read_run, AlphaRecord, RunLog};
use crate::search::RUN_FILE;
use crate::space::{CellGenotype, CellType, EdgeId, Genotype, OpKind, SearchSpace};
use crate::{Error, Result};
use std::path::{Path, PathBuf};

pub struct RunData {
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

impl RunData {
    /// Read and check the run file of `run_dir`; every error names the file.
    pub fn load(run_dir: &Path) -> Result<Self> {
        let path = run_file(run_dir);
        let log = read_run(&path).map_err(|e| match e {
            Error::BadFile { .. } | Error::Io { .. } => e,
            other => Error::bad_file(&path, format!("unreadable run file: {other}")),
        })?;
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

    /// The rows derivation ranks: [`Self::softmax`], scaled per edge by the normalised
    /// betas when the run has them (PC-DARTS).
    pub fn derive_rows(&self, rec: &AlphaRecord, cell: CellType) -> Vec<Vec<f32>> {
        crate::derive::scale_by_betas(self.softmax(rec, cell), rec.betas(cell), &self.space.cell)
    }

    /// The genotype the alphas (and betas) of `rec` derive to by `space`'s rule.
    pub fn derive_with(&self, space: &SearchSpace, rec: &AlphaRecord) -> Genotype {
        let normal = self.derive_rows(rec, CellType::Normal);
        let reduce = rec
            .reduce
            .as_ref()
            .map(|_| self.derive_rows(rec, CellType::Reduce));
        crate::derive::derive(space, &normal, reduce.as_deref())
    }

    /// The genotype the alphas of `rec` derive to by the space's rule.
    pub fn derive(&self, rec: &AlphaRecord) -> Genotype {
        self.derive_with(&self.space, rec)
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
        self.log.alphas.last().map(|a| ShownGenotype {
            genotype: self.derive(a),
            source: format!(
                "derived from the alphas at step {} (no epoch finished)",
                a.step
            ),
        })
    }

    /// Name of state `s` of a cell: DARTS `c_{k-2}`, `c_{k-1}` for the inputs, then the
    /// intermediate nodes `0..n`.
    pub fn state_name(&self, s: usize) -> String {
        let inputs = self.space.cell.inputs;
        if s < inputs {
            format!("c_{{k-{}}}", inputs - s)
        } else {
            (s - inputs).to_string()
        }
    }

    /// Panel title of an edge, in state indices: `"2 ← 0"` (state 2 from state 0).
    pub fn edge_label(e: EdgeId) -> String {
        format!("{} ← {}", e.to, e.from)
    }

    /// Step at which epoch `epoch` (from 0) ends.
    pub fn epoch_end(&self, epoch: u32) -> f64 {
        (u64::from(epoch) + 1) as f64 * self.log.meta.steps_per_epoch as f64
    }

    /// Last step anything was recorded at (at least 1, for an axis range).
    pub fn last_step(&self) -> f64 {
        let steps = self.log.steps.last().map_or(0, |s| s.step + 1);
        let alphas = self.log.alphas.iter().map(|a| a.step).max().unwrap_or(0);
        steps.max(alphas).max(1) as f64
    }

    /// Epoch ends (in steps) inside `0..=last`, every `epoch_every(last, max)`-th.
    pub fn epoch_boundaries(&self, last: f64, max: usize) -> Vec<f64> {
        let spe = self.log.meta.steps_per_epoch as f64;
        if spe <= 0.0 {
            return vec![];
        }
        let n = (last / spe).floor() as usize;
        let every = self.epoch_every(last, max);
        (1..=n)
            .filter(|e| e % every == 0)
            .map(|e| e as f64 * spe)
            .collect()
    }

    /// Marking every this many epoch ends keeps at most `max` lines inside `0..=last`.
    pub fn epoch_every(&self, last: f64, max: usize) -> usize {
        let spe = self.log.meta.steps_per_epoch.max(1) as f64;
        ((last / spe).floor() as usize).div_ceil(max.max(1)).max(1)
    }

    /// What the dashed lines of [`Self::epoch_boundaries`] mark, for a chart's note.
    pub fn epoch_note(&self, last: f64, max: usize) -> String {
        let spe = self.log.meta.steps_per_epoch;
        match self.epoch_every(last, max) {
            1 => format!("dashed: epoch ends ({spe} steps per epoch)"),
            k => format!("dashed: every {k} epochs ({spe} steps per epoch)"),
        }
    }

    pub fn space_note(&self) -> String {
        format!(
            "space '{}', {} ops, {} edges per cell",
            self.space.name,
            self.ops.len(),
            self.edges.len()
        )
    }
}

/// Numerically stable softmax of one alpha row.
pub fn softmax(row: &[f32]) -> Vec<f32> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f64> = row.iter().map(|&a| f64::from(a - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    exp.iter().map(|&e| (e / sum) as f32).collect()
}

/// Shannon entropy (nats) of a probability row.
pub fn entropy(p: &[f32]) -> f64 {
    p.iter()
        .filter(|&&x| x > 0.0)
        .map(|&x| -f64::from(x) * f64::from(x).ln())
        .sum()
}

/// Kept edges of a cell whose op has no weights (skip, pooling, none).
pub fn parameter_free_edges(cell: &CellGenotype) -> usize {
    cell.nodes
        .iter()
        .flatten()
        .filter(|e| e.op.is_parameter_free())
        .count()
}

pub fn kept_edges(cell: &CellGenotype) -> usize {
    cell.nodes.iter().map(Vec::len).sum()
}
