//! The run file: every number of a search or training run under a stable name, in HDF5,
//! and [`RunData`], the checked view of it that derivation and the charts read.
//!
//! The log is kept in memory and the whole file is rewritten atomically (built in memory,
//! temporary file, fsync, rename) at every flush. The file on disk is therefore always
//! complete and closed: h5py can read it while the search runs, and a killed search never
//! leaves a half-written file. Run files are small (kilobytes per epoch), so this costs
//! milliseconds. Who may write a run file when is the run directory's business
//! ([`crate::run::RunDir`]).
mod data;
mod h5;
pub mod image;

pub use data::{derive_run, derive_run_capped, read_log, run_file, RunData, ShownGenotype};
pub use h5::{read_run, read_str_attr, str_attr, tables_to_bytes, to_bytes, unicode, write_run};

/// The run file's name inside a run directory.
pub const RUN_FILE: &str = "run.h5";

use serde::{Deserialize, Serialize};

/// Format written into the root attribute `format_version`.
pub const FORMAT_VERSION: u32 = 1;
/// Root attribute `tool` that marks a supernet run file.
pub const TOOL: &str = "supernet";

/// Per-step record (`/steps/*`).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct StepRecord {
    /// Global step, from 0.
    pub step: u64,
    pub epoch: u32,
    pub train_loss: f64,
    pub train_acc: f64,
    pub val_loss: f64,
    pub val_acc: f64,
    pub lr: f64,
    pub grad_norm: f64,
    /// Wall-clock seconds of the step.
    pub seconds: f64,
}

/// Raw alphas at one point (`/alphas/*`): `[edges * ops]` row-major per cell type; with
/// PC-DARTS edge normalisation also the raw betas (`/alphas/betas_normal`, `[edges]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlphaRecord {
    /// Steps completed when recorded.
    pub step: u64,
    pub epoch: u32,
    pub normal: Vec<f32>,
    pub reduce: Option<Vec<f32>>,
    #[serde(default)]
    pub normal_betas: Option<Vec<f32>>,
    #[serde(default)]
    pub reduce_betas: Option<Vec<f32>>,
}

impl AlphaRecord {
    /// The raw alphas of one cell type (empty when the record has none).
    pub fn alphas(&self, t: crate::space::CellType) -> &[f32] {
        match t {
            crate::space::CellType::Normal => &self.normal,
            crate::space::CellType::Reduce => self.reduce.as_deref().unwrap_or(&[]),
        }
    }

    /// The raw betas of one cell type, when the run normalises its edges.
    pub fn betas(&self, t: crate::space::CellType) -> Option<&[f32]> {
        match t {
            crate::space::CellType::Normal => self.normal_betas.as_deref(),
            crate::space::CellType::Reduce => self.reduce_betas.as_deref(),
        }
    }
}

/// Per-epoch summary (`/epochs/*`). In training runs `val_*` hold the test-set score.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: u32,
    /// Means over the epoch's steps.
    pub train_loss: f64,
    pub train_acc: f64,
    /// Full evaluation of the supernet on the architecture half.
    pub val_loss: f64,
    pub val_acc: f64,
    pub lr: f64,
    pub seconds: f64,
    /// The genotype the alphas derived to at the end of the epoch (text form).
    pub genotype: String,
    /// R-DARTS: the dominant eigenvalue of the Hessian of the validation loss w.r.t. the
    /// alphas after the epoch (`/epochs/hessian_eigenvalue`, NaN where not computed; the
    /// dataset exists only in runs that computed one).
    #[serde(default)]
    pub hessian_eigenvalue: Option<f64>,
}

/// Root attributes: what produced the run.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RunMeta {
    /// "search" (a supernet) or "train" (a stand-alone network); files written before
    /// this attribute existed are searches.
    pub kind: String,
    pub config: String,
    pub space: String,
    pub seed: u64,
    pub device: String,
    pub supernet_version: String,
    pub libtorch_version: String,
    pub hdf5_version: String,
    /// Op names (alpha columns) and edge keys `to_from` (alpha rows).
    pub ops: Vec<String>,
    pub edges: Vec<String>,
    /// Cell types with their own alphas ("normal", and "reduce" for DARTS networks).
    pub cell_types: Vec<String>,
    pub steps_per_epoch: u64,
    /// Classes of the data set the run trained on (0 in files written before it was
    /// recorded).
    pub classes: u64,
}

/// The whole run log.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RunLog {
    pub meta: RunMeta,
    pub steps: Vec<StepRecord>,
    pub alphas: Vec<AlphaRecord>,
    pub epochs: Vec<EpochRecord>,
    /// The final genotype (text, JSON) once the search has finished.
    pub genotype: Option<(String, String)>,
    /// Why the search finished before its last epoch (an early stop), with the genotype.
    pub stop_reason: Option<String>,
    /// Tables added after the search (sampled and scored sub-networks, evolution
    /// histories), each in its own group under one of [`TABLE_ROOTS`].
    pub tables: Vec<Table>,
}

/// Top-level groups that hold [`Table`]s: `/samples/<name>`, `/evolution/<name>`,
/// `/rank_check/<name>`, `/fidelity/<name>`, `/perturbation/<name>` (DARTS-PT's
/// measurements) and `/hardware/<name>` (a penalised chain search's expected costs).
pub const TABLE_ROOTS: [&str; 6] = [
    "samples",
    "evolution",
    "rank_check",
    "fidelity",
    "perturbation",
    "hardware",
];

/// One column of a [`Table`].
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    Text(Vec<String>),
    F64(Vec<f64>),
    U64(Vec<u64>),
}

impl Column {
    pub fn len(&self) -> usize {
        match self {
            Column::Text(v) => v.len(),
            Column::F64(v) => v.len(),
            Column::U64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A table of equally long columns stored as one HDF5 group (`group`, e.g.
/// `samples/uniform-seed0`), one dataset per column, with string attributes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Table {
    pub group: String,
    pub attrs: Vec<(String, String)>,
    pub columns: Vec<(String, Column)>,
}

impl Table {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|(n, _)| n == name).map(|(_, c)| c)
    }

    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The table as CSV (header line, then one line per row; text quoted when needed).
    pub fn to_csv(&self) -> String {
        let quote = |s: &str| {
            if s.contains([',', '"', '\n']) {
                format!("\"{}\"", s.replace('"', "\"\""))
            } else {
                s.to_string()
            }
        };
        let rows = self.columns.first().map_or(0, |(_, c)| c.len());
        let mut out = self
            .columns
            .iter()
            .map(|(n, _)| quote(n))
            .collect::<Vec<_>>()
            .join(",");
        out.push('\n');
        for i in 0..rows {
            let cells: Vec<String> = self
                .columns
                .iter()
                .map(|(_, c)| match c {
                    Column::Text(v) => quote(&v[i]),
                    Column::F64(v) => format!("{}", v[i]),
                    Column::U64(v) => format!("{}", v[i]),
                })
                .collect();
            out.push_str(&cells.join(","));
            out.push('\n');
        }
        out
    }
}

impl RunLog {
    /// The summary of `epoch`: means over its steps (including those before a resume), the
    /// evaluation `(loss, accuracy)`, and its time (steps plus `extra_seconds`).
    pub fn epoch_summary(
        &self,
        epoch: u32,
        lr: f64,
        (val_loss, val_acc): (f64, f64),
        extra_seconds: f64,
        genotype: &str,
    ) -> EpochRecord {
        let steps: Vec<&StepRecord> = self.steps.iter().filter(|r| r.epoch == epoch).collect();
        let mean = |f: fn(&StepRecord) -> f64| {
            steps.iter().map(|r| f(r)).sum::<f64>() / steps.len().max(1) as f64
        };
        EpochRecord {
            epoch,
            train_loss: mean(|r| r.train_loss),
            train_acc: mean(|r| r.train_acc),
            val_loss,
            val_acc,
            lr,
            seconds: steps.iter().map(|r| r.seconds).sum::<f64>() + extra_seconds,
            genotype: genotype.to_string(),
            hessian_eigenvalue: None,
        }
    }

    /// Drop everything recorded at or after global step `step` (resume from a checkpoint
    /// taken after `step` steps): afterwards every step is in the log exactly once.
    pub fn truncate_to(&mut self, step: u64, epochs_done: u32) {
        self.steps.retain(|s| s.step < step);
        // A record at `step` was taken from the state the checkpoint holds: keep it.
        self.alphas.retain(|a| a.step <= step);
        self.epochs.retain(|e| e.epoch < epochs_done);
        self.genotype = None;
        self.stop_reason = None;
    }

    /// Add `table`, replacing one with the same group.
    pub fn put_table(&mut self, table: Table) {
        self.tables.retain(|t| t.group != table.group);
        self.tables.push(table);
    }

    pub fn table(&self, group: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.group == group)
    }
}
