//! `collapse`: the usual symptoms of a collapsing DARTS search over training: the mean
//! entropy of softmax(alpha) per edge, and how many kept edges of the derived genotype are
//! parameter-free (skip, pooling, none); with `--hessian-every`, R-DARTS's dominant Hessian
//! eigenvalue per epoch as a third panel.
use super::data::{self, ChartData};
use super::style::{self, Mark};
use super::{DrawResult, Drawn, Figure, Output};
use crate::record::RunData;
use crate::space::{CellType, Genotype};
use crate::Result;
use plotters::coord::Shift;
use plotters::prelude::*;

const LEGEND_H: u32 = 52;
/// At most this many epoch ends are marked.
const EPOCH_LINES: usize = 20;

pub(super) fn draw(run: &RunData, out: &Output) -> Result<Drawn> {
    if run.log.alphas.is_empty() {
        return Ok(Drawn::Skipped("no alpha records yet".into()));
    }
    Ok(Drawn::Files(vec![
        out.render("collapse", &Collapse::new(run))?
    ]))
}

struct Series {
    cell: CellType,
    /// (step, mean entropy over edges) per alpha record.
    entropy: Vec<(f64, f64)>,
    /// (step, parameter-free kept edges) of the genotype derived per alpha record.
    free: Vec<(f64, f64)>,
    /// (end step, parameter-free kept edges) of each epoch's recorded genotype.
    epochs: Vec<(f64, f64)>,
    kept: usize,
}

struct Collapse<'a> {
    run: &'a RunData,
    series: Vec<Series>,
    /// (end step, dominant Hessian eigenvalue) of the epochs that computed one.
    hessian: Vec<(f64, f64)>,
    last: f64,
}

impl<'a> Collapse<'a> {
    fn new(run: &'a RunData) -> Self {
        // Records whose alphas do not derive (not finite) are left out of the curves.
        let derived: Vec<Option<Genotype>> =
            run.log.alphas.iter().map(|a| run.derive(a).ok()).collect();
        let epoch_genotypes: Vec<(f64, Genotype)> = run
            .log
            .epochs
            .iter()
            .filter_map(|e| Some((run.epoch_end(e.epoch), Genotype::parse(&e.genotype).ok()?)))
            .collect();
        let series = run
            .cells
            .iter()
            .map(|&cell| {
                let entropy = run
                    .log
                    .alphas
                    .iter()
                    .map(|a| {
                        let rows = run.softmax(a, cell);
                        let mean = rows.iter().map(|r| crate::numeric::entropy(r)).sum::<f64>()
                            / rows.len().max(1) as f64;
                        (a.step as f64, mean)
                    })
                    .collect();
                let count = |g: &Genotype| g.cell(cell).map(data::parameter_free_edges);
                let free = run
                    .log
                    .alphas
                    .iter()
                    .zip(&derived)
                    .filter_map(|(a, g)| Some((a.step as f64, count(g.as_ref()?)? as f64)))
                    .collect();
                let epochs = epoch_genotypes
                    .iter()
                    .filter_map(|(x, g)| Some((*x, count(g)? as f64)))
                    .collect();
                let kept = derived
                    .iter()
                    .flatten()
                    .next()
                    .and_then(|g| g.cell(cell))
                    .map_or(0, data::kept_edges);
                Series {
                    cell,
                    entropy,
                    free,
                    epochs,
                    kept,
                }
            })
            .collect();
        let hessian = run
            .log
            .epochs
            .iter()
            .filter_map(|e| Some((run.epoch_end(e.epoch), e.hessian_eigenvalue?)))
            .filter(|(_, v)| v.is_finite())
            .collect();
        Collapse {
            run,
            series,
            hessian,
            last: run.last_step(),
        }
    }

    fn entropy_panel<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let max = (self.run.ops.len().max(1) as f64).ln();
        let values = self
            .series
            .iter()
            .flat_map(|s| s.entropy.iter().map(|p| p.1));
        let lo = values.clone().fold(max, f64::min);
        let pad = ((max - lo) * 0.1).max(1e-4);
        let (y0, y1) = ((lo - pad).max(0.0), max + pad);
        let digits = super::alphas::decimals(y1 - y0);
        let mut chart = style::step_chart(
            area,
            "mean entropy of softmax(alpha) per edge (nats)",
            style::LABEL + 2.0,
            50 + 11 * digits as u32,
            self.last,
            (y0, y1),
        )?;
        style::step_mesh(
            &mut chart,
            Some("entropy"),
            (None, None),
            &|y| format!("{y:.digits$}"),
            &self.run.epoch_boundaries(self.last, EPOCH_LINES),
        )?;
        chart.draw_series(DashedLineSeries::new(
            [(0.0, max), (self.last, max)],
            8,
            6,
            RGBColor(90, 90, 90).stroke_width(2),
        ))?;
        for s in &self.series {
            let c = style::cell_color(s.cell);
            chart.draw_series(LineSeries::new(
                s.entropy.iter().copied(),
                c.stroke_width(3),
            ))?;
        }
        Ok(())
    }

    fn free_panel<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let kept = self.series.iter().map(|s| s.kept).max().unwrap_or(1).max(1);
        let mut chart = style::step_chart(
            area,
            "parameter-free edges (skip, pool, none) in the derived genotype",
            style::LABEL + 2.0,
            76,
            self.last,
            (-0.3, kept as f64 + 0.3),
        )?;
        style::step_mesh(
            &mut chart,
            Some(&format!("edges (of {kept} kept)")),
            (None, Some(kept + 1)),
            &|y| {
                if (y - y.round()).abs() < 1e-6 {
                    format!("{y:.0}")
                } else {
                    String::new()
                }
            },
            &self.run.epoch_boundaries(self.last, EPOCH_LINES),
        )?;
        // Offset the cell types slightly so equal counts do not hide each other.
        let n = self.series.len() as f64;
        for (i, s) in self.series.iter().enumerate() {
            let c = style::cell_color(s.cell);
            let dy = (i as f64 - (n - 1.0) / 2.0) * 0.06;
            // A step line: the count holds until the next record.
            let mut stairs = Vec::with_capacity(2 * s.free.len());
            for (j, &(x, y)) in s.free.iter().enumerate() {
                if j > 0 {
                    stairs.push((x, s.free[j - 1].1 + dy));
                }
                stairs.push((x, y + dy));
            }
            chart.draw_series(LineSeries::new(stairs, c.stroke_width(3)))?;
            chart.draw_series(
                s.epochs
                    .iter()
                    .map(|&(x, y)| TriangleMarker::new((x, y + dy), 9, c.filled())),
            )?;
        }
        Ok(())
    }
}

impl Collapse<'_> {
    fn hessian_panel<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let values = self.hessian.iter().map(|p| p.1);
        let lo = values.clone().fold(f64::INFINITY, f64::min).min(0.0);
        let hi = values.fold(f64::NEG_INFINITY, f64::max).max(0.0);
        let pad = ((hi - lo) * 0.1).max(1e-6);
        let mut chart = style::step_chart(
            area,
            "dominant Hessian eigenvalue of the validation loss w.r.t. alpha",
            style::LABEL + 2.0,
            96,
            self.last,
            (lo - pad, hi + pad),
        )?;
        style::step_mesh(
            &mut chart,
            Some("eigenvalue"),
            (None, None),
            &|y| format!("{y:.2e}"),
            &self.run.epoch_boundaries(self.last, EPOCH_LINES),
        )?;
        let c = RGBColor(110, 50, 160);
        chart.draw_series(LineSeries::new(
            self.hessian.iter().copied(),
            c.stroke_width(3),
        ))?;
        chart.draw_series(self.hessian.iter().map(|&p| Circle::new(p, 6, c.filled())))?;
        Ok(())
    }
}

impl Figure for Collapse<'_> {
    fn size(&self) -> (u32, u32) {
        if self.hessian.is_empty() {
            (1600, 760)
        } else {
            (2400, 760)
        }
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let mut lines: Vec<(String, Mark)> = Vec::new();
        for s in &self.series {
            lines.push((
                format!("{} cell", s.cell.name()),
                Mark::Line(style::cell_color(s.cell), 3),
            ));
        }
        let mut entries: Vec<(String, Mark)> = Vec::new();
        for s in &self.series {
            entries.push((
                format!("{} cell, epoch genotype", s.cell.name()),
                Mark::Triangle(style::cell_color(s.cell)),
            ));
        }
        entries.push((
            format!("uniform alphas: ln {}", self.run.ops.len()),
            Mark::Dashed(RGBColor(90, 90, 90)),
        ));
        lines.append(&mut entries);
        if !self.hessian.is_empty() {
            lines.push((
                "Hessian eigenvalue (R-DARTS)".into(),
                Mark::Line(RGBColor(110, 50, 160), 3),
            ));
        }
        let body = style::frame(
            root,
            "collapse diagnostics",
            &format!(
                "{}; {}",
                self.run.space_note(),
                self.run.epoch_note(self.last, EPOCH_LINES)
            ),
            LEGEND_H,
            &[&lines],
        )?;
        let panels = if self.hessian.is_empty() { 2 } else { 3 };
        let areas = body.split_evenly((1, panels));
        self.entropy_panel(&areas[0])?;
        self.free_panel(&areas[1])?;
        if panels == 3 {
            self.hessian_panel(&areas[2])?;
        }
        Ok(())
    }
}
