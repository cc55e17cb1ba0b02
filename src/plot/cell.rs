//! `cell_<cell>`: the derived cell as a diagram, left to right: the cell inputs, the
//! intermediate nodes on one line, the output; one arrow per kept edge, coloured and
//! labelled by its op. Long edges between nodes on the line are drawn as arcs above or
//! below it, whichever crosses fewer arcs already drawn.
use super::data::ChartData;
use super::style;
use super::{DrawResult, Drawn, Figure, Output};
use crate::record::RunData;
use crate::space::{CellGenotype, CellType, OpKind};
use crate::Result;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

const HEADER: i32 = style::HEADER_H as i32;
const HEIGHT: i32 = 720;
const COL_W: i32 = 240;
const SIDE: i32 = 110;
const RADIUS: i32 = 30;
const BOX: (i32, i32) = (56, 24); // half width, half height of input/output boxes
const SAMPLES: usize = 64;

const INPUT_FILL: RGBColor = RGBColor(193, 238, 193);
const NODE_FILL: RGBColor = RGBColor(173, 216, 230);
const OUTPUT_FILL: RGBColor = RGBColor(238, 232, 170);
const CONCAT: RGBColor = RGBColor(150, 150, 150);

pub(super) fn draw(run: &RunData, out: &Output) -> Result<Drawn> {
    let Some(shown) = run.shown_genotype() else {
        return Ok(Drawn::Skipped("no genotype and no alpha record yet".into()));
    };
    let mut files = Vec::new();
    for &cell in &run.cells {
        let Some(g) = shown.genotype.cell(cell) else {
            continue;
        };
        let fig = CellDiagram::new(run, cell, g, &shown.source);
        files.push(out.render(&format!("cell_{}", cell.name()), &fig)?);
    }
    Ok(Drawn::Files(files))
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Shape {
    Box,
    Circle,
}

#[derive(Debug, Clone)]
struct Node {
    name: String,
    at: (f64, f64),
    /// Column, left to right.
    col: usize,
    shape: Shape,
    fill: RGBColor,
    /// On the centre line (arcs avoid the nodes there).
    on_line: bool,
}

#[derive(Debug, Clone)]
struct Arrow {
    from: usize,
    to: usize,
    op: Option<OpKind>,
    /// Points of the curve, trimmed to the node outlines.
    path: Vec<(f64, f64)>,
}

struct CellDiagram<'a> {
    run: &'a RunData,
    cell: CellType,
    source: String,
    nodes: Vec<Node>,
    arrows: Vec<Arrow>,
    width: i32,
}

impl<'a> CellDiagram<'a> {
    fn new(run: &'a RunData, cell: CellType, g: &CellGenotype, source: &str) -> Self {
        let inputs = run.space.cell.inputs;
        let n = g.nodes.len();
        let cols = n + 2;
        let width = (2 * SIDE + (cols as i32 - 1) * COL_W).max(1000);
        let col_w = f64::from(width - 2 * SIDE) / (cols - 1) as f64;
        let x = |col: usize| f64::from(SIDE) + col as f64 * col_w;
        let top = f64::from(HEADER + 20);
        let bottom = f64::from(HEIGHT - 20);
        let cy = (top + bottom) / 2.0;
        let spread = (bottom - top) * 0.36;

        let mut nodes = Vec::with_capacity(inputs + n + 1);
        for s in 0..inputs {
            let y = if inputs == 1 {
                cy
            } else {
                cy - spread + 2.0 * spread * s as f64 / (inputs - 1) as f64
            };
            nodes.push(Node {
                name: run.state_name(s),
                at: (x(0), y),
                col: 0,
                shape: Shape::Box,
                fill: INPUT_FILL,
                on_line: inputs == 1,
            });
        }
        for i in 0..n {
            nodes.push(Node {
                name: i.to_string(),
                at: (x(i + 1), cy),
                col: i + 1,
                shape: Shape::Circle,
                fill: NODE_FILL,
                on_line: true,
            });
        }
        let output = nodes.len();
        nodes.push(Node {
            name: "c_{k}".into(),
            at: (x(n + 1), cy),
            col: n + 1,
            shape: Shape::Box,
            fill: OUTPUT_FILL,
            on_line: true,
        });

        let mut edges: Vec<(usize, usize, Option<OpKind>)> = Vec::new();
        // Concatenation edges first (always below the line), then the ops.
        for &s in &g.concat {
            if s < output {
                edges.push((s, output, None));
            }
        }
        for (i, node) in g.nodes.iter().enumerate() {
            for e in node {
                if e.from < inputs + i {
                    edges.push((e.from, inputs + i, Some(e.op)));
                }
            }
        }
        let mut above: Vec<(usize, usize)> = Vec::new();
        let mut below: Vec<(usize, usize)> = Vec::new();
        let avail = cy - top - 30.0;
        // Concatenation arcs land side by side on the bottom of the output box, the
        // shortest (innermost) leftmost: their heads stay apart and they do not cross.
        let landing: Vec<usize> = {
            let mut arcs: Vec<usize> = edges
                .iter()
                .filter(|e| e.2.is_none() && nodes[e.1].col - nodes[e.0].col >= 2)
                .map(|e| e.0)
                .collect();
            arcs.sort_by_key(|&s| std::cmp::Reverse(nodes[s].col));
            arcs
        };
        let land_at = |from: usize| -> Option<(f64, f64)> {
            let k = landing.iter().position(|&s| s == from)?;
            let hw = f64::from(BOX.0);
            let step = if landing.len() > 1 {
                1.3 * hw / (landing.len() - 1) as f64
            } else {
                0.0
            };
            let at = nodes[output].at;
            Some((at.0 - 0.8 * hw + k as f64 * step, at.1 + f64::from(BOX.1)))
        };
        let arrows = edges
            .into_iter()
            .map(|(from, to, op)| {
                let (a, b) = (&nodes[from], &nodes[to]);
                let span = b.col - a.col;
                let p0 = a.at;
                let p2 = op
                    .is_none()
                    .then(|| land_at(from))
                    .flatten()
                    .unwrap_or(b.at);
                let mid = ((p0.0 + p2.0) / 2.0, (p0.1 + p2.1) / 2.0);
                let control = if a.on_line && b.on_line && span >= 2 {
                    let concat = op.is_none();
                    let side_up = if concat {
                        false
                    } else {
                        cost(&above, (a.col, b.col)) <= cost(&below, (a.col, b.col))
                    };
                    let arcs = if side_up { &mut above } else { &mut below };
                    arcs.push((a.col, b.col));
                    // Growing faster than the span, so that of two arcs leaving one node
                    // the longer leaves more steeply and stays above the shorter.
                    let peak = (38.0 * (span as f64).powf(1.5)).min(avail);
                    // A quadratic Bezier's apex lies halfway to its control point.
                    (mid.0, mid.1 + if side_up { -2.0 } else { 2.0 } * peak)
                } else if !a.on_line {
                    // From an input off the line: bow slightly outwards.
                    let out = if p0.1 < cy { -1.0 } else { 1.0 };
                    (mid.0, mid.1 + out * 0.12 * (p2.0 - p0.0).abs().min(500.0))
                } else {
                    mid
                };
                let curve: Vec<(f64, f64)> = (0..=SAMPLES)
                    .map(|k| bezier(p0, control, p2, k as f64 / SAMPLES as f64))
                    .collect();
                let path = trim(&curve, a, b);
                Arrow { from, to, op, path }
            })
            .collect();
        CellDiagram {
            run,
            cell,
            source: source.to_string(),
            nodes,
            arrows,
            width,
        }
    }

    fn draw_arrow<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        a: &Arrow,
    ) -> DrawResult<DB> {
        let color = a.op.map_or(CONCAT, style::op_color);
        let px: Vec<(i32, i32)> = a.path.iter().map(|&p| ipt(p)).collect();
        if px.len() < 2 {
            return Ok(());
        }
        let dashed = a.op.is_some_and(OpKind::is_none);
        let width = if a.op.is_some() { 3 } else { 2 };
        if dashed {
            for (k, seg) in px.windows(2).enumerate() {
                if (k / 2) % 2 == 0 {
                    root.draw(&PathElement::new(seg.to_vec(), color.stroke_width(width)))?;
                }
            }
        } else {
            root.draw(&PathElement::new(px.clone(), color.stroke_width(width)))?;
        }
        // Arrow head: a small triangle along the last segment.
        let tip = *a.path.last().expect("two points");
        let back = a.path[a.path.len().saturating_sub(4)];
        let (dx, dy) = (tip.0 - back.0, tip.1 - back.1);
        let len = (dx * dx + dy * dy).sqrt().max(1e-9);
        let (ux, uy) = (dx / len, dy / len);
        let (hl, hw) = (16.0, 7.0);
        let base = (tip.0 - ux * hl, tip.1 - uy * hl);
        root.draw(&Polygon::new(
            vec![
                ipt(tip),
                ipt((base.0 - uy * hw, base.1 + ux * hw)),
                ipt((base.0 + uy * hw, base.1 - ux * hw)),
            ],
            color.filled(),
        ))
    }

    fn draw_node<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        n: &Node,
    ) -> DrawResult<DB> {
        let c = ipt(n.at);
        match n.shape {
            Shape::Circle => {
                root.draw(&Circle::new(c, RADIUS, n.fill.filled()))?;
                root.draw(&Circle::new(c, RADIUS, BLACK.stroke_width(2)))?;
            }
            Shape::Box => {
                let r = [(c.0 - BOX.0, c.1 - BOX.1), (c.0 + BOX.0, c.1 + BOX.1)];
                root.draw(&Rectangle::new(r, n.fill.filled()))?;
                root.draw(&Rectangle::new(r, BLACK.stroke_width(2)))?;
            }
        }
        root.draw(&Text::new(
            n.name.clone(),
            c,
            style::bold(20.0).pos(Pos::new(HPos::Center, VPos::Center)),
        ))
    }

    /// Op labels on their arrows, moved along the arrow until they overlap no other label
    /// or node.
    fn draw_labels<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let font = style::font(style::LABEL);
        let mut taken: Vec<Rect> = self
            .nodes
            .iter()
            .map(|n| {
                let (hw, hh) = match n.shape {
                    Shape::Circle => (RADIUS, RADIUS),
                    Shape::Box => BOX,
                };
                Rect::around(n.at, f64::from(hw), f64::from(hh))
            })
            .collect();
        for a in &self.arrows {
            let Some(op) = a.op else { continue };
            let (tw, th) = root
                .estimate_text_size(op.name(), &font)
                .unwrap_or((100, 18));
            let (hw, hh) = (f64::from(tw) / 2.0 + 6.0, f64::from(th) / 2.0 + 4.0);
            let at = |t: f64| a.path[((a.path.len() - 1) as f64 * t).round() as usize];
            let spot = [0.5, 0.42, 0.58, 0.34, 0.66, 0.26, 0.74]
                .into_iter()
                .map(at)
                .find(|&p| {
                    // Kept a few pixels apart, so that no two labels touch.
                    let r = Rect::around(p, hw + 5.0, hh + 5.0);
                    taken.iter().all(|t| !t.overlaps(&r))
                })
                .unwrap_or_else(|| at(0.5));
            let r = Rect::around(spot, hw, hh);
            taken.push(r);
            let color = style::op_color(op);
            let corners = [ipt((r.x0, r.y0)), ipt((r.x1, r.y1))];
            root.draw(&Rectangle::new(corners, WHITE.mix(0.92).filled()))?;
            root.draw(&Rectangle::new(corners, color.stroke_width(1)))?;
            root.draw(&Text::new(
                op.name(),
                ipt(spot),
                font.color(&style::darker(color))
                    .pos(Pos::new(HPos::Center, VPos::Center)),
            ))?;
        }
        Ok(())
    }
}

impl Figure for CellDiagram<'_> {
    fn size(&self) -> (u32, u32) {
        (self.width as u32, HEIGHT as u32)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let (header, _) = root.split_vertically(style::HEADER_H);
        let kept = self.arrows.iter().filter(|a| a.op.is_some()).count();
        let free = self
            .arrows
            .iter()
            .filter(|a| a.op.is_some_and(OpKind::is_parameter_free))
            .count();
        style::header(
            &header,
            &format!("{} cell: {}", self.cell.name(), self.source),
            &format!(
                "{}; {kept} kept edges, {free} parameter-free; grey: states concatenated into the output c_{{k}}",
                self.run.space_note()
            ),
        )?;
        // Concatenation arrows under the op arrows, nodes on top of both.
        for a in self.arrows.iter().filter(|a| a.op.is_none()) {
            self.draw_arrow(root, a)?;
        }
        for a in self.arrows.iter().filter(|a| a.op.is_some()) {
            self.draw_arrow(root, a)?;
        }
        for n in &self.nodes {
            self.draw_node(root, n)?;
        }
        debug_assert!(self.arrows.iter().all(|a| a.from < a.to));
        self.draw_labels(root)
    }
}

/// How bad a side of the line is for the arc `(a, b)`: arcs there that it would cross
/// count most, arcs sharing an end with it (and so leaving or arriving close to it) less.
fn cost(arcs: &[(usize, usize)], (a, b): (usize, usize)) -> usize {
    arcs.iter()
        .map(|&(c, d)| {
            if (c < a && a < d && d < b) || (a < c && c < b && b < d) {
                10
            } else {
                usize::from(c == a || d == b)
            }
        })
        .sum()
}

fn bezier(p0: (f64, f64), c: (f64, f64), p2: (f64, f64), t: f64) -> (f64, f64) {
    let u = 1.0 - t;
    (
        u * u * p0.0 + 2.0 * u * t * c.0 + t * t * p2.0,
        u * u * p0.1 + 2.0 * u * t * c.1 + t * t * p2.1,
    )
}

fn inside(n: &Node, p: (f64, f64)) -> bool {
    let (dx, dy) = (p.0 - n.at.0, p.1 - n.at.1);
    match n.shape {
        Shape::Circle => (dx * dx + dy * dy).sqrt() < f64::from(RADIUS) + 3.0,
        Shape::Box => dx.abs() < f64::from(BOX.0) + 3.0 && dy.abs() < f64::from(BOX.1) + 3.0,
    }
}

/// The part of `curve` outside both end nodes, ending exactly on their outlines.
fn trim(curve: &[(f64, f64)], a: &Node, b: &Node) -> Vec<(f64, f64)> {
    let start = curve.iter().position(|&p| !inside(a, p)).unwrap_or(0);
    let end = curve
        .iter()
        .rposition(|&p| !inside(b, p))
        .unwrap_or(curve.len() - 1);
    if start >= end {
        return curve.to_vec();
    }
    let mut path = curve[start..=end].to_vec();
    if start > 0 {
        path.insert(0, outline(a, curve[start - 1], curve[start]));
    }
    if end + 1 < curve.len() {
        path.push(outline(b, curve[end + 1], curve[end]));
    }
    path
}

/// The point where the segment from `inner` (inside `n`) to `outer` leaves `n`.
fn outline(n: &Node, inner: (f64, f64), outer: (f64, f64)) -> (f64, f64) {
    let (mut lo, mut hi) = (inner, outer);
    for _ in 0..12 {
        let mid = ((lo.0 + hi.0) / 2.0, (lo.1 + hi.1) / 2.0);
        if inside(n, mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

fn ipt(p: (f64, f64)) -> (i32, i32) {
    (p.0.round() as i32, p.1.round() as i32)
}

#[derive(Debug, Clone, Copy)]
struct Rect {
    x0: f64,
    y0: f64,
    x1: f64,
    y1: f64,
}

impl Rect {
    fn around(c: (f64, f64), hw: f64, hh: f64) -> Self {
        Rect {
            x0: c.0 - hw,
            y0: c.1 - hh,
            x1: c.0 + hw,
            y1: c.1 + hh,
        }
    }

    fn overlaps(&self, o: &Rect) -> bool {
        self.x0 < o.x1 && o.x0 < self.x1 && self.y0 < o.y1 && o.y0 < self.y1
    }
}
