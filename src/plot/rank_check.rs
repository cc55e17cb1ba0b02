//! `rank_check-<name>`: inherited-weight accuracy against stand-alone accuracy of the
//! sub-networks of each `/rank_check/<name>` table, with Kendall tau and Spearman rho; and
//! `rank_check-<name>-<proxy>`: the same for each zero-cost proxy the table holds
//! (`rank-check --score`).
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
        if let Some(scatter) = Scatter::new(table, None) {
            files.push(out.render(&format!("rank_check-{name}"), &scatter)?);
        }
        let proxies = table.attr("proxies").unwrap_or_default();
        for proxy in proxies.split(',').filter(|p| !p.is_empty()) {
            let column = proxy.replace('-', "_");
            if let Some(scatter) = Scatter::new(table, Some(column.clone())) {
                files.push(out.render(&format!("rank_check-{name}-{column}"), &scatter)?);
            }
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
    /// The proxy column on the x axis; `None`: inherited-weight accuracy.
    proxy: Option<String>,
    /// (score, stand-alone accuracy in percent); accuracies in percent, non-finite proxy
    /// values left out.
    points: Vec<(f64, f64)>,
}

impl<'a> Scatter<'a> {
    fn new(table: &'a Table, proxy: Option<String>) -> Option<Self> {
        let x_column = proxy.as_deref().unwrap_or("inherited_accuracy");
        let (Some(Column::F64(x)), Some(Column::F64(y))) =
            (table.column(x_column), table.column("standalone_accuracy"))
        else {
            return None;
        };
        let x_scale = if proxy.is_some() { 1.0 } else { 100.0 };
        let points: Vec<(f64, f64)> = x
            .iter()
            .zip(y)
            .filter(|(a, _)| a.is_finite())
            .map(|(a, b)| (x_scale * a, 100.0 * b))
            .collect();
        (!points.is_empty()).then_some(Scatter {
            table,
            proxy,
            points,
        })
    }

    /// A table attribute of this scatter's scorer (`<proxy>_<key>` for a proxy's measures).
    fn measure(&self, key: &str) -> String {
        let key = match &self.proxy {
            Some(p) => format!("{p}_{key}"),
            None => key.to_string(),
        };
        let value = self.table.attr(&key).unwrap_or("?");
        value
            .parse::<f64>()
            .map_or(value.to_string(), |v| format!("{v:.3}"))
    }
}

impl Figure for Scatter<'_> {
    fn size(&self) -> (u32, u32) {
        (900, 800)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let attr = |k: &str| self.table.attr(k).unwrap_or("?").to_string();
        // A comparison with a `supernet tabulate` table rather than trainings of its own.
        let truth = self.table.attr("ground_truth");
        let point = match truth {
            Some(_) => "one architecture of the sample table",
            None => "one sub-network (spread over the sampled score range)",
        };
        let entries = [(point.to_string(), Mark::Dot(POINT))];
        let (title, x_desc, x_pad) = match &self.proxy {
            None => (
                "inherited vs stand-alone accuracy".to_string(),
                "accuracy with inherited weights (%)".to_string(),
                0.5,
            ),
            Some(p) => {
                let largest = self.points.iter().map(|q| q.0.abs()).fold(0.0, f64::max);
                (
                    format!("zero-cost proxy {p} vs stand-alone accuracy"),
                    format!("{p} of the freshly initialised network"),
                    (1e-3 * largest).max(1e-12),
                )
            }
        };
        let (standalone, y_desc) = match truth {
            Some(t) => (
                format!(
                    "ground truth {} ({} seeds, seed-vs-seed tau {})",
                    std::path::Path::new(t)
                        .file_name()
                        .map_or(t.into(), |f| f.to_string_lossy()),
                    attr("seeds"),
                    self.table
                        .attr("ceiling_kendall_tau")
                        .and_then(|v| v.parse::<f64>().ok())
                        .map_or("?".into(), |v| format!("{v:.3}"))
                ),
                "stand-alone accuracy, mean over seeds (%)",
            ),
            None => (
                format!("stand-alone: {} epochs", attr("epochs")),
                "accuracy trained on its own (%)",
            ),
        };
        let body = style::frame(
            root,
            &title,
            &format!(
                "{} sub-networks of /samples/{}; {standalone}; Kendall tau {} (sparse {}), Spearman rho {}, top-{} overlap {}, top-{} tau {}",
                self.points.len(),
                attr("samples"),
                self.measure("kendall_tau"),
                self.measure("sparse_kendall_tau"),
                self.measure("spearman_rho"),
                attr("top"),
                self.measure("top_overlap"),
                attr("top"),
                self.measure("top_kendall_tau"),
            ),
            LEGEND_H,
            &[&entries],
        )?;
        let x = style::padded(self.points.iter().map(|p| p.0), x_pad);
        let y = style::padded(self.points.iter().map(|p| p.1), 0.5);
        let mut chart = ChartBuilder::on(&body)
            .margin(16)
            .x_label_area_size(56)
            .y_label_area_size(72)
            .build_cartesian_2d(x.0..x.1, y.0..y.1)?;
        style::mesh_look(&mut chart.configure_mesh())
            .x_desc(x_desc)
            .y_desc(y_desc)
            .draw()?;
        chart.draw_series(
            self.points
                .iter()
                .map(|&p| Circle::new(p, 7, POINT.filled())),
        )?;
        Ok(())
    }
}
