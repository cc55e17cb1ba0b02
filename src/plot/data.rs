//! What several charts compute from a run: state and edge names, epoch boundaries, and
//! counts over a derived genotype.
use crate::record::RunData;
use crate::space::{CellGenotype, EdgeId};

/// Chart helpers on the run-file view.
pub(super) trait ChartData {
    fn state_name(&self, s: usize) -> String;
    fn epoch_end(&self, epoch: u32) -> f64;
    fn last_step(&self) -> f64;
    fn epoch_boundaries(&self, last: f64, max: usize) -> Vec<f64>;
    fn epoch_every(&self, last: f64, max: usize) -> usize;
    fn epoch_note(&self, last: f64, max: usize) -> String;
    fn space_note(&self) -> String;
}

/// Panel title of an edge, in state indices: `"2 ← 0"` (state 2 from state 0).
pub(super) fn edge_label(e: EdgeId) -> String {
    format!("{} ← {}", e.to, e.from)
}

impl ChartData for RunData {
    /// Name of state `s` of a cell: DARTS `c_{k-2}`, `c_{k-1}` for the inputs, then the
    /// intermediate nodes `0..n`.
    fn state_name(&self, s: usize) -> String {
        let inputs = self.space.cell.inputs;
        if s < inputs {
            format!("c_{{k-{}}}", inputs - s)
        } else {
            (s - inputs).to_string()
        }
    }

    /// Step at which epoch `epoch` (from 0) ends.
    fn epoch_end(&self, epoch: u32) -> f64 {
        (u64::from(epoch) + 1) as f64 * self.log.meta.steps_per_epoch as f64
    }

    /// Last step anything was recorded at (at least 1, for an axis range).
    fn last_step(&self) -> f64 {
        let steps = self.log.steps.last().map_or(0, |s| s.step + 1);
        let alphas = self.log.alphas.iter().map(|a| a.step).max().unwrap_or(0);
        steps.max(alphas).max(1) as f64
    }

    /// Epoch ends (in steps) inside `0..=last`, every `epoch_every(last, max)`-th.
    fn epoch_boundaries(&self, last: f64, max: usize) -> Vec<f64> {
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
    fn epoch_every(&self, last: f64, max: usize) -> usize {
        let spe = self.log.meta.steps_per_epoch.max(1) as f64;
        ((last / spe).floor() as usize).div_ceil(max.max(1)).max(1)
    }

    /// What the dashed lines of [`Self::epoch_boundaries`] mark, for a chart's note.
    fn epoch_note(&self, last: f64, max: usize) -> String {
        let spe = self.log.meta.steps_per_epoch;
        match self.epoch_every(last, max) {
            1 => format!("dashed: epoch ends ({spe} steps per epoch)"),
            k => format!("dashed: every {k} epochs ({spe} steps per epoch)"),
        }
    }

    fn space_note(&self) -> String {
        format!(
            "space '{}', {} ops, {} edges per cell",
            self.space.name,
            self.ops.len(),
            self.edges.len()
        )
    }
}

/// Kept edges of a cell whose op has no weights (skip, pooling, none).
pub(super) fn parameter_free_edges(cell: &CellGenotype) -> usize {
    cell.nodes
        .iter()
        .flatten()
        .filter(|e| e.op.is_parameter_free())
        .count()
}

pub(super) fn kept_edges(cell: &CellGenotype) -> usize {
    cell.nodes.iter().map(Vec::len).sum()
}
