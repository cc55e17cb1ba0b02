//! `alphas_final`: the last recorded softmax(alpha) as a heat map (edges x ops) per cell
//! type, side by side, the values printed in the cells and the derived genotype outlined.
use super::data::ChartData;
use super::style;
use super::{DrawResult, Drawn, Figure, Output};
use crate::record::AlphaRecord;
use crate::record::RunData;
use crate::space::{CellType, Genotype};
use crate::Result;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

const HEADER: i32 = style::HEADER_H as i32;
const TITLE_H: i32 = 40;
const COL_LABEL_H: i32 = 130;
const ROW_LABEL_W: i32 = 96;
const CELL_W: i32 = 76;
const CELL_H: i32 = 34;
const BAR_H: i32 = 90;
const GAP: i32 = 60;
const MARGIN: i32 = 30;
const KEPT: RGBColor = RGBColor(230, 20, 30);

pub(super) fn draw(run: &RunData, out: &Output) -> Result<Drawn> {
    let Some(last) = run.log.alphas.last() else {
        return Ok(Drawn::Skipped("no alpha records yet".into()));
    };
    let fig = Heatmap::new(run, last);
    Ok(Drawn::Files(vec![out.render("alphas_final", &fig)?]))
}

struct Heatmap<'a> {
    run: &'a RunData,
    rec: &'a AlphaRecord,
    /// Per cell type: softmax `[edges][ops]`.
    weights: Vec<(CellType, Vec<Vec<f32>>)>,
    /// `None` when the alphas do not derive (not finite).
    genotype: Option<Genotype>,
    /// Colour scale shared by all cell types.
    lo: f32,
    hi: f32,
}

impl<'a> Heatmap<'a> {
    fn new(run: &'a RunData, rec: &'a AlphaRecord) -> Self {
        let weights: Vec<_> = run
            .cells
            .iter()
            .map(|&c| (c, run.softmax(rec, c)))
            .collect();
        let all = weights
            .iter()
            .flat_map(|(_, w)| w.iter().flatten().copied());
        let lo = all.clone().fold(f32::INFINITY, f32::min);
        let hi = all.fold(f32::NEG_INFINITY, f32::max);
        Heatmap {
            run,
            rec,
            weights,
            genotype: run.derive(rec).ok(),
            lo,
            hi,
        }
    }

    fn panel_w(&self) -> i32 {
        ROW_LABEL_W + CELL_W * self.run.ops.len() as i32
    }

    /// Decimals that tell the printed values apart (2 to 4).
    fn digits(&self) -> usize {
        (super::alphas::decimals(f64::from(self.hi - self.lo)) + 1).clamp(2, 4)
    }

    fn unit(&self, w: f32) -> f64 {
        if self.hi > self.lo {
            f64::from((w - self.lo) / (self.hi - self.lo))
        } else {
            0.5
        }
    }

    /// Whether the derived genotype keeps `op` on edge `e` of `cell`.
    fn kept(&self, cell: CellType, e: usize, op: usize) -> bool {
        let edge = self.run.edges[e];
        let node = edge.to - self.run.space.cell.inputs;
        self.genotype
            .as_ref()
            .and_then(|g| g.cell(cell))
            .is_some_and(|g| {
                g.nodes.get(node).is_some_and(|n| {
                    n.iter()
                        .any(|ge| ge.from == edge.from && ge.op == self.run.ops[op])
                })
            })
    }

    fn panel<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        x0: i32,
        cell: CellType,
        w: &[Vec<f32>],
    ) -> DrawResult<DB> {
        let top = HEADER + TITLE_H + COL_LABEL_H;
        let grid_x = x0 + ROW_LABEL_W;
        root.draw(&Text::new(
            format!("{} cell", cell.name()),
            (grid_x + CELL_W * self.run.ops.len() as i32 / 2, HEADER + 4),
            style::bold(24.0).pos(Pos::new(HPos::Center, VPos::Top)),
        ))?;
        for (k, op) in self.run.ops.iter().enumerate() {
            let x = grid_x + CELL_W * k as i32 + CELL_W / 2;
            root.draw(&Text::new(
                op.name(),
                (x, top - 8),
                style::font(style::LABEL)
                    .color(&style::op_color(*op))
                    .transform(FontTransform::Rotate270)
                    .pos(Pos::new(HPos::Left, VPos::Center)),
            ))?;
        }
        let digits = self.digits();
        for (e, row) in w.iter().enumerate() {
            let y = top + CELL_H * e as i32;
            root.draw(&Text::new(
                super::data::edge_label(self.run.edges[e]),
                (grid_x - 10, y + CELL_H / 2),
                style::font(style::LABEL).pos(Pos::new(HPos::Right, VPos::Center)),
            ))?;
            for (k, &v) in row.iter().enumerate() {
                let x = grid_x + CELL_W * k as i32;
                let t = self.unit(v);
                root.draw(&Rectangle::new(
                    [(x, y), (x + CELL_W, y + CELL_H)],
                    viridis(t).filled(),
                ))?;
                let ink = if t < 0.6 { WHITE } else { BLACK };
                root.draw(&Text::new(
                    format!("{v:.digits$}"),
                    (x + CELL_W / 2, y + CELL_H / 2),
                    style::font(style::TICK)
                        .color(&ink)
                        .pos(Pos::new(HPos::Center, VPos::Center)),
                ))?;
            }
            // Node separators: a white gap between the edges of consecutive nodes.
            if e + 1 < w.len() && self.run.edges[e + 1].to != self.run.edges[e].to {
                let yb = y + CELL_H;
                root.draw(&PathElement::new(
                    vec![(grid_x, yb), (grid_x + CELL_W * row.len() as i32, yb)],
                    WHITE.stroke_width(3),
                ))?;
            }
        }
        for e in 0..w.len() {
            for k in 0..self.run.ops.len() {
                if self.kept(cell, e, k) {
                    let (x, y) = (grid_x + CELL_W * k as i32, top + CELL_H * e as i32);
                    root.draw(&Rectangle::new(
                        [(x + 2, y + 2), (x + CELL_W - 2, y + CELL_H - 2)],
                        KEPT.stroke_width(4),
                    ))?;
                }
            }
        }
        Ok(())
    }

    fn colour_bar<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let (w, h) = self.size();
        let (w, h) = (w as i32, h as i32);
        let bar_w = 420.min(w - 2 * MARGIN);
        let x0 = (w - bar_w) / 2;
        let y0 = h - BAR_H + 22;
        for i in 0..bar_w {
            let t = f64::from(i) / f64::from(bar_w - 1);
            root.draw(&Rectangle::new(
                [(x0 + i, y0), (x0 + i + 1, y0 + 20)],
                viridis(t).filled(),
            ))?;
        }
        let label = style::font(style::TICK);
        root.draw(&Text::new(
            format!("{:.*}", self.digits(), self.lo),
            (x0 - 8, y0 + 10),
            label.pos(Pos::new(HPos::Right, VPos::Center)),
        ))?;
        root.draw(&Text::new(
            format!("{:.*}", self.digits(), self.hi),
            (x0 + bar_w + 8, y0 + 10),
            label.pos(Pos::new(HPos::Left, VPos::Center)),
        ))?;
        root.draw(&Text::new(
            "softmax(alpha)",
            (x0 + bar_w / 2, y0 + 28),
            label.pos(Pos::new(HPos::Center, VPos::Top)),
        ))
    }
}

impl Figure for Heatmap<'_> {
    fn size(&self) -> (u32, u32) {
        let n = self.weights.len() as i32;
        let w = 2 * MARGIN + n * self.panel_w() + (n - 1) * GAP;
        let h = HEADER + TITLE_H + COL_LABEL_H + CELL_H * self.run.edges.len() as i32 + BAR_H;
        (w.max(1000) as u32, h as u32)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let (header, _) = root.split_vertically(style::HEADER_H);
        let when = if self.run.log.genotype.is_some() {
            "final"
        } else {
            "latest"
        };
        style::header(
            &header,
            &format!(
                "{when} softmax(alpha) (step {}, epoch {})",
                self.rec.step,
                self.rec.epoch + 1
            ),
            &format!(
                "{}; rows: edge to ← from, in states; outlined in red: the edges and ops the derived genotype keeps",
                self.run.space_note()
            ),
        )?;
        let n = self.weights.len() as i32;
        let total = n * self.panel_w() + (n - 1) * GAP;
        let mut x = (self.size().0 as i32 - total) / 2;
        for (cell, w) in &self.weights {
            self.panel(root, x, *cell, w)?;
            x += self.panel_w() + GAP;
        }
        self.colour_bar(root)
    }
}

/// The viridis colour map at `t` in `[0, 1]` (piecewise linear through 9 stops).
pub(super) fn viridis(t: f64) -> RGBColor {
    const STOPS: [(u8, u8, u8); 9] = [
        (68, 1, 84),
        (71, 45, 123),
        (59, 82, 139),
        (44, 114, 142),
        (33, 145, 140),
        (40, 174, 128),
        (94, 201, 98),
        (170, 220, 50),
        (253, 231, 37),
    ];
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let pos = t * (STOPS.len() - 1) as f64;
    let i = (pos.floor() as usize).min(STOPS.len() - 2);
    let f = pos - i as f64;
    let mix = |a: u8, b: u8| (f64::from(a) + (f64::from(b) - f64::from(a)) * f).round() as u8;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}
