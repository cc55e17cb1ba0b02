//! `choices`: a chain search's choice probabilities per searchable layer over training (the
//! softmax of each alpha row over the choices that layer allows, as the search computes it),
//! one panel per layer, one colour per choice: the chain analogue of `alphas_<cell>`. Drawn
//! from the run file alone.
use super::alphas::{decimals, weight_range};
use super::style::{self, Mark};
use super::{DrawResult, Figure, Output};
use crate::record::RunLog;
use crate::space::chain::{ChainSpace, Choice};
use crate::{Error, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

const PANEL_W: u32 = 360;
const PANEL_H: u32 = 255;
const LEGEND_H: u32 = 52;
const COLUMNS: usize = 3;
/// `skip` is grey; the other choices take [`style::categorical`] colours.
const SKIP_COLOR: RGBColor = RGBColor(127, 127, 127);

/// Per searchable layer and choice, the (step, probability) of every alpha record (`None`
/// for a choice the layer does not allow).
pub type ChoiceSeries = Vec<Vec<Option<Vec<(f64, f64)>>>>;

/// The choice probabilities of the chain run `log` read from the run file `path`, and the
/// space's choices (the columns).
pub fn choice_series(path: &Path, log: &RunLog) -> Result<(Vec<Choice>, ChoiceSeries)> {
    let run = ChainRun::new(path, log)?;
    Ok((run.choices, run.series))
}

/// The chain run `log` read from `path`: its space and its [`ChoiceSeries`].
struct ChainRun {
    space: ChainSpace,
    choices: Vec<Choice>,
    series: ChoiceSeries,
    last: f64,
    records: usize,
}

impl ChainRun {
    fn new(path: &Path, log: &RunLog) -> Result<Self> {
        let bad = |what: String| Error::bad_file(path, what);
        let space = ChainSpace::from_toml(&log.meta.space)
            .map_err(|e| bad(format!("its 'space' attribute is not a chain space: {e}")))?;
        let choices = space.choices();
        let names: Vec<String> = choices.iter().map(|c| c.name()).collect();
        if log.meta.ops != names {
            return Err(bad(format!(
                "/ops ({}) are not the choices of its space '{}' ({})",
                log.meta.ops.join(", "),
                space.name,
                names.join(", ")
            )));
        }
        let plan = space.plan((1, 1));
        let allowed: Vec<Vec<bool>> = plan
            .iter()
            .filter(|l| l.searchable.is_some())
            .map(|l| choices.iter().map(|c| l.choices.contains(c)).collect())
            .collect();
        let (rows, cols) = (allowed.len(), choices.len());
        let mut series: ChoiceSeries = allowed
            .iter()
            .map(|row| row.iter().map(|&a| a.then(Vec::new)).collect())
            .collect();
        for rec in &log.alphas {
            if rec.normal.len() != rows * cols {
                return Err(bad(format!(
                    "an alpha record at step {} has {} values, expected {rows} layers x {cols} choices",
                    rec.step,
                    rec.normal.len()
                )));
            }
            for (r, ok) in allowed.iter().enumerate() {
                let row = &rec.normal[r * cols..(r + 1) * cols];
                for (k, p) in masked_softmax(row, ok).into_iter().enumerate() {
                    if let (Some(s), Some(p)) = (&mut series[r][k], p) {
                        s.push((rec.step as f64, p));
                    }
                }
            }
        }
        let steps = log.steps.last().map_or(0, |s| s.step + 1);
        let alphas = log.alphas.iter().map(|a| a.step).max().unwrap_or(0);
        Ok(ChainRun {
            space,
            choices,
            series,
            last: steps.max(alphas).max(1) as f64,
            records: log.alphas.len(),
        })
    }

    fn color(&self, k: usize) -> RGBColor {
        match self.choices[k] {
            Choice::Skip => SKIP_COLOR,
            Choice::MbConv { .. } => style::categorical(k),
        }
    }

    fn grid(&self) -> (usize, usize) {
        let cols = self.series.len().clamp(1, COLUMNS);
        (self.series.len().div_ceil(cols).max(1), cols)
    }

    fn panel<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        r: usize,
        y: (f64, f64),
    ) -> DrawResult<DB> {
        let digits = decimals(y.1 - y.0);
        let mut chart = ChartBuilder::on(area)
            .caption(format!("layer {r}"), style::bold(style::LABEL))
            .margin(8)
            .margin_right(16)
            .x_label_area_size(28)
            .y_label_area_size(44 + 9 * digits as u32)
            .build_cartesian_2d(0f64..self.last, y.0..y.1)?;
        style::step_mesh(
            &mut chart,
            None,
            (Some(4), Some(5)),
            &|v| format!("{v:.digits$}"),
            &[],
        )?;
        let few = self.records <= 40;
        for (k, points) in self.series[r].iter().enumerate() {
            let Some(points) = points else { continue };
            let color = self.color(k);
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

/// Softmax of `row` over the columns `allowed` marks; `None` elsewhere.
fn masked_softmax(row: &[f32], allowed: &[bool]) -> Vec<Option<f64>> {
    let max = row
        .iter()
        .zip(allowed)
        .filter(|(_, &a)| a)
        .map(|(&v, _)| f64::from(v))
        .fold(f64::NEG_INFINITY, f64::max);
    let exp: Vec<Option<f64>> = row
        .iter()
        .zip(allowed)
        .map(|(&v, &a)| a.then(|| (f64::from(v) - max).exp()))
        .collect();
    let sum: f64 = exp.iter().flatten().sum();
    exp.into_iter().map(|e| e.map(|e| e / sum)).collect()
}

impl Figure for ChainRun {
    fn size(&self) -> (u32, u32) {
        let (rows, cols) = self.grid();
        style::grid_size(rows, cols, (PANEL_W, PANEL_H), LEGEND_H)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let entries: Vec<(String, Mark)> = self
            .choices
            .iter()
            .enumerate()
            .map(|(k, c)| (c.name(), Mark::Line(self.color(k), 3)))
            .collect();
        let body = style::frame(
            root,
            "choice probabilities per layer over training",
            &format!(
                "chain space '{}', {} searchable layers, {} choices; softmax of each layer's alphas over the choices it allows; x: training step",
                self.space.name,
                self.series.len(),
                self.choices.len()
            ),
            LEGEND_H,
            &[&entries],
        )?;
        let y = weight_range(
            self.series
                .iter()
                .flatten()
                .flatten()
                .flatten()
                .map(|p| p.1),
            1e-4,
        );
        let (rows, cols) = self.grid();
        let panels = body.split_evenly((rows, cols));
        for (r, area) in panels.iter().enumerate().take(self.series.len()) {
            self.panel(area, r, y)?;
        }
        Ok(())
    }
}

/// Draw `choices` for the chain run file `path` into `out`; nothing when it has no alpha
/// records yet (the reason is returned instead).
pub(super) fn draw(
    path: &Path,
    log: &RunLog,
    out: &Output,
) -> Result<std::result::Result<PathBuf, String>> {
    if log.alphas.is_empty() {
        return Ok(Err("choices: no alpha records yet".into()));
    }
    let run = ChainRun::new(path, log)?;
    Ok(Ok(out.render("choices", &run)?))
}
