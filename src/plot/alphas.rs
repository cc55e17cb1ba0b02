//! `alphas_<cell>`: softmax(alpha) of every edge over training, one panel per edge, one row
//! of panels per intermediate node, one colour per op.
use super::data::ChartData;
use super::style::{self, Mark};
use super::{DrawResult, Drawn, Figure, Output};
use crate::record::RunData;
use crate::space::CellType;
use crate::Result;
use plotters::coord::Shift;
use plotters::prelude::*;

const PANEL_W: u32 = 330;
const PANEL_H: u32 = 255;
const LEGEND_H: u32 = 52;
/// At most this many epoch ends are marked.
const EPOCH_LINES: usize = 12;

pub(super) fn draw(run: &RunData, out: &Output) -> Result<Drawn> {
    if run.log.alphas.is_empty() {
        return Ok(Drawn::Skipped("no alpha records yet".into()));
    }
    let mut files = Vec::new();
    for &cell in &run.cells {
        let fig = AlphaGrid::new(run, cell);
        files.push(out.render(&format!("alphas_{}", cell.name()), &fig)?);
    }
    Ok(Drawn::Files(files))
}

struct AlphaGrid<'a> {
    run: &'a RunData,
    cell: CellType,
    /// `[edge][op]`: (step, softmax weight) per alpha record.
    series: Vec<Vec<Vec<(f64, f64)>>>,
    /// Shared y range of all panels.
    y: (f64, f64),
    last: f64,
}

impl<'a> AlphaGrid<'a> {
    fn new(run: &'a RunData, cell: CellType) -> Self {
        let (e, k) = (run.edges.len(), run.ops.len());
        let mut series = vec![vec![Vec::with_capacity(run.log.alphas.len()); k]; e];
        for rec in &run.log.alphas {
            for (i, row) in run.softmax(rec, cell).iter().enumerate() {
                for (j, &w) in row.iter().enumerate() {
                    series[i][j].push((rec.step as f64, f64::from(w)));
                }
            }
        }
        let y = weight_range(series.iter().flatten().flatten().map(|p| p.1), 1e-4);
        AlphaGrid {
            run,
            cell,
            series,
            y,
            last: run.last_step(),
        }
    }

    fn rows_cols(&self) -> (usize, usize) {
        let c = &self.run.space.cell;
        (c.nodes, c.inputs + c.nodes - 1)
    }

    fn panel<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>, e: usize) -> DrawResult<DB> {
        let (y0, y1) = self.y;
        let digits = decimals(y1 - y0);
        let mut chart = ChartBuilder::on(area)
            .caption(
                super::data::edge_label(self.run.edges[e]),
                style::bold(style::LABEL),
            )
            .margin(8)
            .margin_right(16)
            .x_label_area_size(28)
            .y_label_area_size(44 + 9 * digits as u32)
            .build_cartesian_2d(0f64..self.last, y0..y1)?;
        style::step_mesh(
            &mut chart,
            None,
            (Some(4), Some(5)),
            &|y| format!("{y:.digits$}"),
            &self.run.epoch_boundaries(self.last, EPOCH_LINES),
        )?;
        let few = self.run.log.alphas.len() <= 40;
        for (k, points) in self.series[e].iter().enumerate() {
            let color = style::op_color(self.run.ops[k]);
            chart.draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))?;
            if few {
                chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
            }
        }
        Ok(())
    }
}

impl Figure for AlphaGrid<'_> {
    fn size(&self) -> (u32, u32) {
        let (rows, cols) = self.rows_cols();
        style::grid_size(rows, cols, (PANEL_W, PANEL_H), LEGEND_H)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let entries: Vec<(String, Mark)> = self
            .run
            .ops
            .iter()
            .map(|&op| (op.name().to_string(), Mark::Line(style::op_color(op), 3)))
            .collect();
        let body = style::frame(
            root,
            &format!(
                "softmax(alpha) of the {} cell over training",
                self.cell.name()
            ),
            &format!(
                "{}; x: training step, {}; panels: edge to ← from, in states ({})",
                self.run.space_note(),
                self.run.epoch_note(self.last, EPOCH_LINES),
                match self.run.space.cell.inputs {
                    1 => "0: the cell input".to_string(),
                    n => format!("0..{}: the cell inputs", n - 1),
                },
            ),
            LEGEND_H,
            &[&entries],
        )?;

        let (rows, cols) = self.rows_cols();
        let panels = body.split_evenly((rows, cols));
        let mut e = 0;
        for node in 0..rows {
            let n_in = self.run.space.cell.inputs + node;
            for from in 0..n_in {
                self.panel(&panels[node * cols + from], e)?;
                e += 1;
            }
        }
        Ok(())
    }
}

/// The y range of weights in `0..=1` showing `values`, padded by 8% (at least `min_pad`).
pub(super) fn weight_range(values: impl Iterator<Item = f64> + Clone, min_pad: f64) -> (f64, f64) {
    let lo = values.clone().fold(f64::INFINITY, f64::min);
    let hi = values.fold(f64::NEG_INFINITY, f64::max);
    let pad = ((hi - lo) * 0.08).max(min_pad);
    ((lo - pad).max(0.0), (hi + pad).min(1.0))
}

/// Decimals that tell apart ticks spread over `range`.
pub(super) fn decimals(range: f64) -> usize {
    if range <= 0.0 || !range.is_finite() {
        return 2;
    }
    ((-(range / 5.0).log10()).ceil().max(0.0) as usize).min(6)
}
