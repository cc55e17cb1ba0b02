//! `fidelity-<name>`: every scorer of a `/fidelity/<name>` table (`rank-check
//! --ground-truth`) side by side: Kendall tau as a bar, Spearman rho as a dot, and the
//! seed-vs-seed ceiling as a dashed line, so that which scorer to believe is one glance.
use super::style::{self, Mark};
use super::{DrawResult, Drawn, Figure, Output};
use crate::record::{Column, RunData, Table};
use crate::Result;
use plotters::coord::Shift;
use plotters::prelude::*;

const LEGEND_H: u32 = 40;
const BAR: RGBColor = RGBColor(31, 119, 180);
const RHO: RGBColor = RGBColor(255, 127, 14);
const CEILING: RGBColor = RGBColor(90, 90, 90);

pub(super) fn draw(run: &RunData, out: &Output) -> Result<Drawn> {
    let mut files = Vec::new();
    for table in &run.log.tables {
        let Some(name) = table.group.strip_prefix("fidelity/") else {
            continue;
        };
        if let Some(fig) = Scorers::new(table) {
            files.push(out.render(&format!("fidelity-{name}"), &fig)?);
        }
    }
    Ok(if files.is_empty() {
        Drawn::Absent
    } else {
        Drawn::Files(files)
    })
}

struct Scorers<'a> {
    table: &'a Table,
    /// (label, Kendall tau, Spearman rho), in table order; undefined measures are NaN.
    rows: Vec<(String, f64, f64)>,
    /// The seed-vs-seed Kendall tau (the first defined one; every row shares the table).
    ceiling: Option<f64>,
}

impl<'a> Scorers<'a> {
    fn new(table: &'a Table) -> Option<Self> {
        let (
            Some(Column::Text(samples)),
            Some(Column::Text(scorer)),
            Some(Column::F64(tau)),
            Some(Column::F64(rho)),
            Some(Column::F64(ceiling)),
        ) = (
            table.column("samples"),
            table.column("scorer"),
            table.column("kendall_tau"),
            table.column("spearman_rho"),
            table.column("ceiling_kendall_tau"),
        )
        else {
            return None;
        };
        let rows: Vec<(String, f64, f64)> = (0..samples.len())
            .map(|i| {
                let label = match samples[i] == scorer[i] {
                    true => scorer[i].clone(),
                    false => format!("{}: {}", samples[i], scorer[i]),
                };
                (label, tau[i], rho[i])
            })
            .collect();
        (!rows.is_empty()).then(|| Scorers {
            table,
            rows,
            ceiling: ceiling.iter().copied().find(|c| c.is_finite()),
        })
    }
}

impl Figure for Scorers<'_> {
    fn size(&self) -> (u32, u32) {
        (1100, 260 + 56 * self.rows.len() as u32)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let mut entries = vec![
            ("Kendall tau".to_string(), Mark::Line(BAR, 12)),
            ("Spearman rho".to_string(), Mark::Dot(RHO)),
        ];
        if let Some(c) = self.ceiling {
            entries.push((
                format!("seed-vs-seed tau (ceiling) {c:.3}"),
                Mark::Dashed(CEILING),
            ));
        }
        let body = style::frame(
            root,
            "scorers against the ground truth",
            &format!(
                "/{}: {} scorers against {}",
                self.table.group,
                self.rows.len(),
                self.table.attr("ground_truth").unwrap_or("?")
            ),
            LEGEND_H,
            &[&entries],
        )?;
        let values = self.rows.iter().flat_map(|r| [r.1, r.2]);
        let lo = values
            .chain(self.ceiling)
            .filter(|v| v.is_finite())
            .fold(0.0f64, f64::min);
        let n = self.rows.len() as f64;
        let labels: Vec<String> = self.rows.iter().map(|r| r.0.clone()).collect();
        let mut chart = ChartBuilder::on(&body)
            .margin(16)
            .x_label_area_size(56)
            .y_label_area_size(360)
            .build_cartesian_2d((lo - 0.05)..1.0, -0.5..(n - 0.5))?;
        chart
            .configure_mesh()
            .x_desc("agreement with the ground truth's mean accuracy")
            .y_labels(self.rows.len())
            // Row indices only, each named by its scorer.
            .y_label_formatter(&|v| {
                let i = v.round();
                match (v - i).abs() < 1e-6 && i >= 0.0 {
                    true => labels.get(i as usize).cloned().unwrap_or_default(),
                    false => String::new(),
                }
            })
            .axis_desc_style(style::font(style::LABEL))
            .label_style(style::font(style::TICK))
            .light_line_style(style::GRID.mix(0.5))
            .bold_line_style(style::GRID)
            .draw()?;
        let defined = |v: f64| v.is_finite().then_some(v);
        chart.draw_series(self.rows.iter().enumerate().filter_map(|(i, r)| {
            let y = i as f64;
            defined(r.1).map(|t| Rectangle::new([(0.0, y - 0.3), (t, y + 0.3)], BAR.filled()))
        }))?;
        chart.draw_series(self.rows.iter().enumerate().filter_map(|(i, r)| {
            defined(r.2).map(|rho| Circle::new((rho, i as f64), 7, RHO.filled()))
        }))?;
        if let Some(c) = self.ceiling {
            chart.draw_series(DashedLineSeries::new(
                [(c, -0.5), (c, n - 0.5)],
                8,
                6,
                CEILING.stroke_width(2),
            ))?;
        }
        Ok(())
    }
}
