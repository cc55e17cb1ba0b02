//! `samples-<name>`: the inherited-weight accuracy of every sub-network of a
//! `/samples/<name>` table, best first, with the run's derived genotype marked when the
//! table has its row (`sample --with-derived`) and the median as a dashed line.
use super::style::{self, Mark};
use super::{DrawResult, Drawn, Figure, Output};
use crate::numeric::median;
use crate::record::{Column, RunData, Table};
use crate::sample::rank::{placement, Placement};
use crate::Result;
use plotters::coord::Shift;
use plotters::prelude::*;

const LEGEND_H: u32 = 40;
const POINT: RGBColor = RGBColor(31, 119, 180);
const DERIVED: RGBColor = RGBColor(214, 39, 40);
const MEDIAN: RGBColor = RGBColor(90, 90, 90);

pub(super) fn draw(run: &RunData, out: &Output) -> Result<Drawn> {
    let mut files = Vec::new();
    for table in &run.log.tables {
        let Some(name) = table.group.strip_prefix("samples/") else {
            continue;
        };
        if let Some(fig) = Scores::new(table) {
            files.push(out.render(&format!("samples-{name}"), &fig)?);
        }
    }
    Ok(if files.is_empty() {
        Drawn::Absent
    } else {
        Drawn::Files(files)
    })
}

struct Scores<'a> {
    table: &'a Table,
    /// Accuracy in percent, best first (higher accuracy, ties by lower loss).
    sorted: Vec<f64>,
    /// The derived genotype's place and accuracy (percent), when the table has its row.
    derived: Option<(Placement, f64)>,
    median: f64,
}

impl<'a> Scores<'a> {
    fn new(table: &'a Table) -> Option<Self> {
        let (Some(Column::F64(acc)), Some(Column::F64(loss))) =
            (table.column("accuracy"), table.column("loss"))
        else {
            return None;
        };
        if acc.is_empty() || acc.len() != loss.len() {
            return None;
        }
        let mut order: Vec<usize> = (0..acc.len()).collect();
        order.sort_by(|&a, &b| acc[b].total_cmp(&acc[a]).then(loss[a].total_cmp(&loss[b])));
        let derived = match table.column("derived") {
            Some(Column::U64(flags)) => flags
                .iter()
                .position(|&f| f == 1)
                .and_then(|i| Some((placement(acc, loss, i)?, 100.0 * acc[i]))),
            _ => None,
        };
        Some(Scores {
            table,
            sorted: order.iter().map(|&i| 100.0 * acc[i]).collect(),
            derived,
            median: 100.0 * median(acc)?,
        })
    }
}

impl Figure for Scores<'_> {
    fn size(&self) -> (u32, u32) {
        (1000, 720)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let attr = |k: &str| self.table.attr(k).unwrap_or("?").to_string();
        let n = self.sorted.len();
        let mut entries = vec![
            ("one sub-network".to_string(), Mark::Dot(POINT)),
            (
                format!("median of all {n}: {:.2}%", self.median),
                Mark::Dashed(MEDIAN),
            ),
        ];
        if let Some((p, _)) = self.derived {
            entries.push((
                format!("derived genotype: rank {} of {}", p.rank, p.n),
                Mark::Dot(DERIVED),
            ));
        }
        let body = style::frame(
            root,
            "sub-networks scored with inherited weights",
            &format!(
                "/{}: {n} sub-networks drawn from {}; BN {}; {} images of the architecture half",
                self.table.group,
                attr("from"),
                attr("bn"),
                attr("val_images"),
            ),
            LEGEND_H,
            &[&entries],
        )?;
        let y = style::padded(self.sorted.iter().copied(), 0.5);
        let x = (0.5, n as f64 + 0.5);
        let mut chart = ChartBuilder::on(&body)
            .margin(16)
            .x_label_area_size(56)
            .y_label_area_size(72)
            .build_cartesian_2d(x.0..x.1, y.0..y.1)?;
        style::mesh_look(&mut chart.configure_mesh())
            .x_desc("rank (best first: higher accuracy, ties by lower loss)")
            .y_desc("accuracy with inherited weights (%)")
            .x_labels(n.min(10))
            // Ranks only: whole numbers from 1 to n.
            .x_label_formatter(&|v| {
                let r = v.round();
                if (v - r).abs() < 1e-6 && r >= 1.0 && r <= n as f64 {
                    format!("{r:.0}")
                } else {
                    String::new()
                }
            })
            .draw()?;
        chart.draw_series(DashedLineSeries::new(
            [(x.0, self.median), (x.1, self.median)],
            8,
            6,
            MEDIAN.stroke_width(2),
        ))?;
        chart.draw_series(
            self.sorted
                .iter()
                .enumerate()
                .map(|(i, &a)| Circle::new(((i + 1) as f64, a), 5, POINT.filled())),
        )?;
        if let Some((p, a)) = self.derived {
            chart.draw_series([Circle::new((p.rank as f64, a), 9, DERIVED.filled())])?;
        }
        Ok(())
    }
}
