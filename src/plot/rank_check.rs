//! `rank_check-<name>`: inherited-weight accuracy against stand-alone accuracy of the
//! sub-networks of each `/rank_check/<name>` table, with Kendall tau and Spearman rho.
use super::style::{self, Mark};
use super::{DrawResult, Drawn, Figure, Output};
use crate::record::RunData;
use crate::record::{Column, Table};
use crate::Result;
use plotters::coord::Shift;
use plotters::prelude::*;

const LEGEND_H: u32 = 40;
const POINT: RGBColor = RGBColor(31, 119, 180);

pub(super) fn draw(run: &RunData, out: &Output) -> Result<Drawn> {
    let mut files = Vec::new();
    for table in run.log.tables.iter() {
        let Some(name) = table.group.strip_prefix("rank_check/") else {
            continue;
        };
        if let Some(scatter) = Scatter::new(table) {
            files.push(out.render(&format!("rank_check-{name}"), &scatter)?);
        }
    }
    Ok(if files.is_empty() {
        Drawn::Absent
    } else {
        Drawn::Files(files)
    })
}

struct Scatter<'a> {
    table: &'a Table,
    /// (inherited, stand-alone) accuracy in percent.
    points: Vec<(f64, f64)>,
}

impl<'a> Scatter<'a> {
    fn new(table: &'a Table) -> Option<Self> {
        let (Some(Column::F64(x)), Some(Column::F64(y))) = (
            table.column("inherited_accuracy"),
            table.column("standalone_accuracy"),
        ) else {
            return None;
        };
        let points: Vec<(f64, f64)> = x
            .iter()
            .zip(y)
            .map(|(a, b)| (100.0 * a, 100.0 * b))
            .collect();
        (!points.is_empty()).then_some(Scatter { table, points })
    }
}

/// A range around `values` with a margin, never empty.
fn padded(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
        (l.min(v), h.max(v))
    });
    let pad = ((hi - lo) * 0.08).max(0.5);
    (lo - pad, hi + pad)
}

impl Figure for Scatter<'_> {
    fn size(&self) -> (u32, u32) {
        (900, 800)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let attr = |k: &str| self.table.attr(k).unwrap_or("?").to_string();
        let entries = [(
            "one sub-network (spread over the sampled score range)".to_string(),
            Mark::Dot(POINT),
        )];
        let body = style::frame(
            root,
            "inherited vs stand-alone accuracy",
            &format!(
                "{} sub-networks of /samples/{}; Kendall tau {}, Spearman rho {}, top-{} overlap {}; stand-alone: {} epochs",
                self.points.len(),
                attr("samples"),
                attr("kendall_tau"),
                attr("spearman_rho"),
                attr("top"),
                attr("top_overlap"),
                attr("epochs"),
            ),
            LEGEND_H,
            &[&entries],
        )?;
        let x = padded(self.points.iter().map(|p| p.0));
        let y = padded(self.points.iter().map(|p| p.1));
        let mut chart = ChartBuilder::on(&body)
            .margin(16)
            .x_label_area_size(56)
            .y_label_area_size(72)
            .build_cartesian_2d(x.0..x.1, y.0..y.1)?;
        chart
            .configure_mesh()
            .x_desc("accuracy with inherited weights (%)")
            .y_desc("accuracy trained on its own (%)")
            .axis_desc_style(style::font(style::LABEL))
            .label_style(style::font(style::TICK))
            .light_line_style(style::GRID.mix(0.5))
            .bold_line_style(style::GRID)
            .draw()?;
        chart.draw_series(
            self.points
                .iter()
                .map(|&p| Circle::new(p, 7, POINT.filled())),
        )?;
        Ok(())
    }
}
