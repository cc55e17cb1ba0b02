//! `pareto-<kind>-<name>`: for each table of a chain run with a cost column
//! (`/samples/<name>` and `/evolution/<name>`), accuracy with inherited weights against
//! the cost the table's front was taken on (`latency_ms` or `macs`), every architecture a
//! dot and the Pareto front highlighted and joined in order of cost.
use super::style::{self, Mark};
use super::{DrawResult, Figure, Output};
use crate::record::{Column, RunLog, Table};
use crate::sample::pareto::pareto_front;
use crate::Result;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::PathBuf;

const LEGEND_H: u32 = 40;
const POINT: RGBColor = RGBColor(31, 119, 180);
const FRONT: RGBColor = RGBColor(214, 39, 40);

/// Draw a chart per sample and evolution table with a cost column; the files written.
pub(super) fn draw(log: &RunLog, out: &Output) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for table in &log.tables {
        let Some((kind, name)) = table.group.split_once('/') else {
            continue;
        };
        if !matches!(kind, "samples" | "evolution") {
            continue;
        }
        if let Some(fig) = Front::new(table) {
            files.push(out.render(&format!("pareto-{kind}-{name}"), &fig)?);
        }
    }
    Ok(files)
}

struct Front<'a> {
    table: &'a Table,
    cost_name: &'static str,
    /// (cost, accuracy in percent) of every row.
    points: Vec<(f64, f64)>,
    /// The front's points by increasing cost.
    front: Vec<(f64, f64)>,
}

impl<'a> Front<'a> {
    /// `None` for a table without accuracy or a cost column.
    fn new(table: &'a Table) -> Option<Self> {
        let Some(Column::F64(acc)) = table.column("accuracy") else {
            return None;
        };
        // The table's own choice (`pareto_cost`); latency when it has it, else MACs.
        let latency =
            table.attr("pareto_cost") != Some("macs") && table.column("latency_ms").is_some();
        let cost_name = if latency { "latency_ms" } else { "macs" };
        let cost: Vec<f64> = match table.column(cost_name)? {
            Column::F64(v) => v.clone(),
            Column::U64(v) => v.iter().map(|&x| x as f64).collect(),
            _ => return None,
        };
        if acc.is_empty() || acc.len() != cost.len() {
            return None;
        }
        // The table's own marks when it has them (sample and evolve store them).
        let on_front: Vec<bool> = match table.column("pareto") {
            Some(Column::U64(p)) if p.len() == acc.len() => p.iter().map(|&v| v == 1).collect(),
            _ => pareto_front(acc, &cost),
        };
        let points: Vec<(f64, f64)> = cost
            .iter()
            .zip(acc)
            .map(|(&c, &a)| (c, 100.0 * a))
            .collect();
        let mut front: Vec<(f64, f64)> = (0..points.len())
            .filter(|&i| on_front[i])
            .map(|i| points[i])
            .collect();
        front.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
        Some(Front {
            table,
            cost_name,
            points,
            front,
        })
    }

    fn x_desc(&self) -> &'static str {
        match self.cost_name {
            "latency_ms" => "predicted latency (ms, lookup table)",
            _ => "multiply-adds per image",
        }
    }
}

impl Figure for Front<'_> {
    fn size(&self) -> (u32, u32) {
        (1000, 720)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let attr = |k: &str| self.table.attr(k).unwrap_or("?").to_string();
        let n = self.points.len();
        let entries = vec![
            ("one architecture".to_string(), Mark::Dot(POINT)),
            (
                format!("Pareto front ({} of {n})", self.front.len()),
                Mark::Line(FRONT, 3),
            ),
        ];
        let how = match self.table.attr("mode") {
            Some(mode) => format!("{mode} search"),
            None => "uniform draws".into(),
        };
        let body = style::frame(
            root,
            match self.cost_name {
                "latency_ms" => "accuracy against latency",
                _ => "accuracy against multiply-adds",
            },
            &format!(
                "/{}: {n} architectures ({how}), inherited weights, BN {}; {} images of the architecture half",
                self.table.group,
                attr("bn"),
                attr("val_images"),
            ),
            LEGEND_H,
            &[&entries],
        )?;
        let x = style::padded(self.points.iter().map(|p| p.0), 1e-9);
        let y = style::padded(self.points.iter().map(|p| p.1), 0.5);
        let mut chart = ChartBuilder::on(&body)
            .margin(16)
            .margin_right(32)
            .x_label_area_size(56)
            .y_label_area_size(72)
            .build_cartesian_2d(x.0..x.1, y.0..y.1)?;
        let latency = self.cost_name == "latency_ms";
        style::mesh_look(&mut chart.configure_mesh())
            .x_desc(self.x_desc())
            .y_desc("accuracy with inherited weights (%)")
            .x_labels(6)
            .x_label_formatter(&|v| {
                if latency {
                    format!("{v:.3}")
                } else {
                    format!("{:.2}M", v / 1e6)
                }
            })
            .draw()?;
        chart.draw_series(
            self.points
                .iter()
                .map(|&p| Circle::new(p, 5, POINT.mix(0.7).filled())),
        )?;
        chart.draw_series(LineSeries::new(
            self.front.iter().copied(),
            FRONT.stroke_width(3),
        ))?;
        chart.draw_series(
            self.front
                .iter()
                .map(|&p| Circle::new(p, 7, FRONT.filled())),
        )?;
        Ok(())
    }
}
