//! A sweep's charts, from its results table: `sweep_trials` (each trial's validation
//! accuracy per epoch, so that the trials ASHA stopped show where they stopped) and
//! `sweep_settings` (final accuracy against each setting, one panel per setting).
use super::style::{self, Mark};
use super::{DrawResult, Figure, Format, Output};
use crate::record::{Column, Table};
use crate::Result;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

const LEGEND_H: u32 = 40;
const COMPLETE: RGBColor = RGBColor(31, 119, 180);
const PRUNED: RGBColor = RGBColor(255, 127, 14);
const FAILED: RGBColor = RGBColor(214, 39, 40);

/// Draw both charts of `table` into `dir` (PNG); `params` names each setting and whether
/// it was searched on a log scale.
pub fn sweep_charts(table: &Table, params: &[(String, bool)], dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| crate::Error::io(dir, e))?;
    style::ensure_font()?;
    let out = Output {
        dir: dir.to_path_buf(),
        format: Format::Png,
        draw: true,
    };
    let trials = Trials::new(table);
    Ok(vec![
        out.render("sweep_trials", &trials)?,
        out.render(
            "sweep_settings",
            &Settings {
                trials: &trials,
                table,
                params,
            },
        )?,
    ])
}

struct Trials {
    state: Vec<String>,
    curves: Vec<Vec<f64>>,
    final_acc: Vec<f64>,
}

impl Trials {
    fn new(t: &Table) -> Self {
        let text = |name: &str| match t.column(name) {
            Some(Column::Text(v)) => v.clone(),
            _ => Vec::new(),
        };
        let curves: Vec<Vec<f64>> = text("val_acc_per_epoch")
            .iter()
            .map(|s| {
                s.split_whitespace()
                    .filter_map(|x| x.parse::<f64>().ok())
                    .map(|x| 100.0 * x)
                    .collect()
            })
            .collect();
        let final_acc = curves
            .iter()
            .map(|c| c.last().copied().unwrap_or(f64::NAN))
            .collect();
        Trials {
            state: text("state"),
            curves,
            final_acc,
        }
    }

    fn color(&self, i: usize) -> RGBColor {
        match self.state[i].as_str() {
            "complete" => COMPLETE,
            "pruned" => PRUNED,
            _ => FAILED,
        }
    }

    fn legend(&self) -> Vec<(String, Mark)> {
        let count = |s: &str| self.state.iter().filter(|x| *x == s).count();
        vec![
            (
                format!("complete ({})", count("complete")),
                Mark::Line(COMPLETE, 3),
            ),
            (
                format!("stopped early by ASHA ({})", count("pruned")),
                Mark::Line(PRUNED, 3),
            ),
            (
                format!(
                    "failed ({})",
                    self.state.len() - count("complete") - count("pruned")
                ),
                Mark::Line(FAILED, 3),
            ),
        ]
    }

    fn acc_range(&self) -> (f64, f64) {
        let (lo, hi) = self
            .curves
            .iter()
            .flatten()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| {
                (l.min(v), h.max(v))
            });
        if lo.is_finite() {
            ((lo - 2.0).max(0.0), (hi + 2.0).min(100.0))
        } else {
            (0.0, 100.0)
        }
    }
}

impl Figure for Trials {
    fn size(&self) -> (u32, u32) {
        (1000, 700)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let body = style::frame(
            root,
            "sweep: validation accuracy per epoch",
            &format!("{} trials", self.state.len()),
            LEGEND_H,
            &[&self.legend()],
        )?;
        let epochs = self.curves.iter().map(Vec::len).max().unwrap_or(1).max(2);
        let (y0, y1) = self.acc_range();
        let mut chart = ChartBuilder::on(&body)
            .margin(16)
            .x_label_area_size(56)
            .y_label_area_size(72)
            .build_cartesian_2d(0.8..epochs as f64 + 0.2, y0..y1)?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc("validation accuracy (%)")
            .x_labels(epochs.min(20))
            .x_label_formatter(&|x| format!("{x:.0}"))
            .axis_desc_style(style::font(style::LABEL))
            .label_style(style::font(style::TICK))
            .light_line_style(style::GRID.mix(0.5))
            .bold_line_style(style::GRID)
            .draw()?;
        for (i, c) in self.curves.iter().enumerate() {
            let color = self.color(i);
            let pts: Vec<(f64, f64)> = c
                .iter()
                .enumerate()
                .map(|(e, &a)| ((e + 1) as f64, a))
                .collect();
            chart.draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?;
            chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
        }
        Ok(())
    }
}

struct Settings<'a> {
    trials: &'a Trials,
    table: &'a Table,
    params: &'a [(String, bool)],
}

impl Figure for Settings<'_> {
    fn size(&self) -> (u32, u32) {
        (520 * self.params.len().max(1) as u32, 640)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let body = style::frame(
            root,
            "sweep: final validation accuracy per setting",
            "each dot one trial, at the last epoch it ran",
            LEGEND_H,
            &[&self.trials.legend()],
        )?;
        let panels = body.split_evenly((1, self.params.len().max(1)));
        let (y0, y1) = self.trials.acc_range();
        for ((name, log), area) in self.params.iter().zip(&panels) {
            // Numbers on their own (log) axis; anything else by its position in the list
            // of distinct values.
            let (xs, labels): (Vec<f64>, Vec<String>) = match self.table.column(name) {
                Some(Column::F64(v)) => (v.clone(), Vec::new()),
                Some(Column::Text(v)) => {
                    let mut distinct: Vec<String> = v.clone();
                    distinct.sort();
                    distinct.dedup();
                    (
                        v.iter()
                            .map(|s| distinct.iter().position(|d| d == s).unwrap_or(0) as f64)
                            .collect(),
                        distinct,
                    )
                }
                _ => continue,
            };
            let (lo, hi) = xs
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| {
                    (l.min(v), h.max(v))
                });
            let points: Vec<(f64, f64, RGBColor)> = xs
                .iter()
                .zip(&self.trials.final_acc)
                .enumerate()
                .filter(|(_, (_, a))| a.is_finite())
                .map(|(i, (&x, &a))| (x, a, self.trials.color(i)))
                .collect();
            let mut builder = ChartBuilder::on(area);
            builder
                .margin(16)
                .caption(name, style::font(style::LABEL))
                .x_label_area_size(48)
                .y_label_area_size(64);
            if *log && lo > 0.0 {
                let (a, b) = (lo / 1.5, hi * 1.5);
                let mut chart = builder.build_cartesian_2d((a..b).log_scale(), y0..y1)?;
                chart
                    .configure_mesh()
                    .y_desc("validation accuracy (%)")
                    .x_label_formatter(&|x| format!("{x:.0e}"))
                    .label_style(style::font(style::TICK))
                    .axis_desc_style(style::font(style::LABEL))
                    .light_line_style(style::GRID.mix(0.5))
                    .draw()?;
                chart.draw_series(
                    points
                        .iter()
                        .map(|&(x, a, c)| Circle::new((x, a), 7, c.filled())),
                )?;
            } else {
                let pad = ((hi - lo) * 0.1).max(0.5);
                let mut chart = builder.build_cartesian_2d((lo - pad)..(hi + pad), y0..y1)?;
                let fmt = |x: &f64| {
                    if labels.is_empty() {
                        format!("{x}")
                    } else {
                        let i = x.round();
                        if (x - i).abs() < 1e-6 && i >= 0.0 {
                            labels.get(i as usize).cloned().unwrap_or_default()
                        } else {
                            String::new()
                        }
                    }
                };
                chart
                    .configure_mesh()
                    .y_desc("validation accuracy (%)")
                    .x_label_formatter(&fmt)
                    .label_style(style::font(style::TICK))
                    .axis_desc_style(style::font(style::LABEL))
                    .light_line_style(style::GRID.mix(0.5))
                    .draw()?;
                chart.draw_series(
                    points
                        .iter()
                        .map(|&(x, a, c)| Circle::new((x, a), 7, c.filled())),
                )?;
            }
        }
        Ok(())
    }
}
