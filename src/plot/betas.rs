//! `betas_<cell>` (PC-DARTS runs only): each node's edge weights (the softmax of its
//! incoming betas) over training, one panel per intermediate node, one line per source state.
use super::data::ChartData;
use super::style::{self, Mark};
use super::{DrawResult, Drawn, Figure, Output};
use crate::record::RunData;
use crate::space::CellType;

use crate::Result;
use plotters::coord::Shift;
use plotters::prelude::*;

const PANEL_W: u32 = 420;
const PANEL_H: u32 = 330;
const LEGEND_H: u32 = 52;
const EPOCH_LINES: usize = 12;

pub(super) fn draw(run: &RunData, out: &Output) -> Result<Drawn> {
    let mut files = Vec::new();
    for &cell in &run.cells {
        if run.log.alphas.iter().any(|r| r.betas(cell).is_none()) || run.log.alphas.is_empty() {
            return Ok(Drawn::Absent);
        }
        let fig = BetaPanels::new(run, cell);
        files.push(out.render(&format!("betas_{}", cell.name()), &fig)?);
    }
    Ok(Drawn::Files(files))
}

struct BetaPanels<'a> {
    run: &'a RunData,
    cell: CellType,
    /// `[edge]`: (step, normalised edge weight) per record.
    series: Vec<Vec<(f64, f64)>>,
    /// Shared y range of the panels.
    y: (f64, f64),
    last: f64,
}

impl<'a> BetaPanels<'a> {
    fn new(run: &'a RunData, cell: CellType) -> Self {
        let spec = &run.space.cell;
        let mut series = vec![Vec::with_capacity(run.log.alphas.len()); run.edges.len()];
        for rec in &run.log.alphas {
            let betas = rec.betas(cell).unwrap_or(&[]);
            let w = crate::numeric::softmax_per_node(betas, spec.inputs, spec.nodes);
            for (s, v) in series.iter_mut().zip(w) {
                s.push((rec.step as f64, f64::from(v)));
            }
        }
        let y = super::alphas::weight_range(series.iter().flatten().map(|p| p.1), 1e-3);
        BetaPanels {
            run,
            cell,
            series,
            y,
            last: run.last_step(),
        }
    }
}

impl Figure for BetaPanels<'_> {
    fn size(&self) -> (u32, u32) {
        let nodes = self.run.space.cell.nodes;
        style::grid_size(1, nodes, (PANEL_W, PANEL_H), LEGEND_H)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let spec = &self.run.space.cell;
        let states = spec.inputs + spec.nodes - 1;
        let entries: Vec<(String, Mark)> = (0..states)
            .map(|s| {
                let color = style::categorical(s);
                (
                    format!("from {}", self.run.state_name(s)),
                    Mark::Line(color, 3),
                )
            })
            .collect();
        let body = style::frame(
            root,
            &format!(
                "edge weights (softmax of the betas per node) of the {} cell",
                self.cell.name()
            ),
            &format!(
                "{}; x: training step, {}",
                self.run.space_note(),
                self.run.epoch_note(self.last, EPOCH_LINES)
            ),
            LEGEND_H,
            &[&entries],
        )?;
        let panels = body.split_evenly((1, spec.nodes));
        let mut e = 0;
        for (node, area) in panels.iter().enumerate() {
            let n_in = spec.inputs + node;
            let mut chart = style::step_chart(
                area,
                &format!("node {}", self.run.state_name(spec.inputs + node)),
                style::LABEL,
                60,
                self.last,
                self.y,
            )?;
            let digits = super::alphas::decimals(self.y.1 - self.y.0);
            style::step_mesh(
                &mut chart,
                Some("edge weight"),
                (Some(4), Some(5)),
                &|y| format!("{y:.digits$}"),
                &self.run.epoch_boundaries(self.last, EPOCH_LINES),
            )?;
            for from in 0..n_in {
                let color = style::categorical(from);
                chart.draw_series(LineSeries::new(
                    self.series[e + from].iter().copied(),
                    color.stroke_width(2),
                ))?;
            }
            e += n_in;
        }
        Ok(())
    }
}
