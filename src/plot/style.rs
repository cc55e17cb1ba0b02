//! The look every chart shares: the bundled font, one colour per operation and per cell
//! type, font sizes, and a legend drawn outside the data.
use crate::space::{CellType, OpKind};
use crate::{Error, Result};
use plotters::chart::MeshStyle;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontStyle;
use std::sync::OnceLock;

/// DejaVu Sans (Debian `fonts-dejavu-core`; licence in `fonts/LICENSE-DejaVu.txt`): plots
/// render on a machine with no fonts installed.
static FONT: &[u8] = include_bytes!("fonts/DejaVuSans.ttf");
/// The family every text style names; the bundled font is registered under it.
pub const FONT_FAMILY: &str = "sans-serif";

pub const TITLE: f64 = 30.0;
pub const SUBTITLE: f64 = 19.0;
pub const LABEL: f64 = 18.0;
pub const TICK: f64 = 16.0;

/// Register the bundled font once per process, before anything is drawn.
pub fn ensure_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        [FontStyle::Normal, FontStyle::Bold]
            .into_iter()
            .all(|style| plotters::style::register_font(FONT_FAMILY, style, FONT).is_ok())
    });
    if ok {
        Ok(())
    } else {
        Err(Error::Other(
            "the bundled plot font (DejaVuSans.ttf) could not be loaded".into(),
        ))
    }
}

pub fn font(size: f64) -> TextStyle<'static> {
    (FONT_FAMILY, size).into_font().color(&BLACK)
}

pub fn bold(size: f64) -> TextStyle<'static> {
    (FONT_FAMILY, size)
        .into_font()
        .style(FontStyle::Bold)
        .color(&BLACK)
}

/// One colour per operation, indexed like [`OpKind::ALL`]: parameter-free ops in greys and
/// blues, convolutions in warm colours; the same op has the same colour in every chart.
const OP_PALETTE: [RGBColor; 10] = [
    RGBColor(127, 127, 127), // none
    RGBColor(31, 119, 180),  // max_pool_3x3
    RGBColor(170, 170, 20),  // avg_pool_3x3
    RGBColor(255, 127, 14),  // skip_connect
    RGBColor(44, 160, 44),   // sep_conv_3x3
    RGBColor(214, 39, 40),   // sep_conv_5x5
    RGBColor(148, 103, 189), // dil_conv_3x3
    RGBColor(140, 86, 75),   // dil_conv_5x5
    RGBColor(227, 119, 194), // nor_conv_1x1
    RGBColor(23, 170, 190),  // nor_conv_3x3
];
const _: () = assert!(OP_PALETTE.len() == OpKind::ALL.len());

pub fn op_color(op: OpKind) -> RGBColor {
    let i = OpKind::ALL.iter().position(|&o| o == op).unwrap_or(0);
    OP_PALETTE[i]
}

/// Distinct hues for categories without a colour of their own (source states, chain
/// choices): matplotlib's tab10 with its grey replaced by navy, grey meaning "absent/skip".
const CATEGORICAL: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
    RGBColor(31, 31, 120),
];

/// The colour of category `i` (cycling after ten).
pub fn categorical(i: usize) -> RGBColor {
    CATEGORICAL[i % CATEGORICAL.len()]
}

/// Pixel size of a figure of `rows x cols` panels under the header and a legend row (at
/// least 1100 wide, so the header fits).
pub fn grid_size(rows: usize, cols: usize, panel: (u32, u32), legend_h: u32) -> (u32, u32) {
    (
        (cols as u32 * panel.0).max(1100) + 20,
        HEADER_H + legend_h + rows as u32 * panel.1 + 10,
    )
}

pub fn cell_color(cell: CellType) -> RGBColor {
    match cell {
        CellType::Normal => RGBColor(33, 102, 172),
        CellType::Reduce => RGBColor(202, 75, 0),
    }
}

/// A darker shade of `c` (text in an op's colour, lines over a band of that colour).
pub fn darker(c: RGBColor) -> RGBColor {
    let d = |v: u8| (f64::from(v) * 0.7) as u8;
    RGBColor(d(c.0), d(c.1), d(c.2))
}

/// `(lo, hi)` of `values` widened on each side by 8% of their span, at least `min_pad`
/// (a range that is never empty).
pub fn padded(values: impl Iterator<Item = f64>, min_pad: f64) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
        (l.min(v), h.max(v))
    });
    let pad = ((hi - lo) * 0.08).max(min_pad);
    (lo - pad, hi + pad)
}

/// The shared look of a chart's mesh: label fonts and grid lines.
pub fn mesh_look<'m, 'a, 'b, X, Y, DB>(
    mesh: &'m mut MeshStyle<'a, 'b, X, Y, DB>,
) -> &'m mut MeshStyle<'a, 'b, X, Y, DB>
where
    X: Ranged,
    Y: Ranged,
    DB: DrawingBackend,
{
    mesh.axis_desc_style(font(LABEL))
        .label_style(font(TICK))
        .light_line_style(GRID.mix(0.5))
        .bold_line_style(GRID)
}

pub const GRID: RGBColor = RGBColor(225, 225, 225);
pub const EPOCH_LINE: RGBColor = RGBColor(170, 170, 170);

/// How a legend entry is drawn.
#[derive(Debug, Clone, Copy)]
pub enum Mark {
    /// A line segment of this colour and width.
    Line(RGBColor, u32),
    /// A faint (per-step, unsmoothed) line.
    Faint(RGBColor),
    /// A dashed line.
    Dashed(RGBColor),
    /// A filled circle.
    Dot(RGBColor),
    /// A filled triangle.
    Triangle(RGBColor),
}

/// Draw the legend `rows` centred in `area`, each row's entries left to right, wrapping a
/// row onto further lines when it does not fit. The area is reserved for the legend, so it
/// never covers data.
pub fn legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    rows: &[&[(String, Mark)]],
    size: f64,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let style = font(size);
    let (w, h) = area.dim_in_pixel();
    let (w, h) = (w as i32, h as i32);
    let swatch = 34;
    let gap = 28;
    let width = |text: &str| {
        let (tw, _) = area.estimate_text_size(text, &style).unwrap_or((0, 0));
        swatch + 8 + tw as i32
    };
    // Greedy line breaking within each row.
    let mut lines: Vec<Vec<(&(String, Mark), i32)>> = Vec::new();
    for row in rows {
        let mut line: Vec<(&(String, Mark), i32)> = Vec::new();
        let mut used = 0;
        for entry in row.iter() {
            let ew = width(&entry.0);
            if !line.is_empty() && used + gap + ew > w - 40 {
                lines.push(std::mem::take(&mut line));
                used = 0;
            }
            used += if line.is_empty() { ew } else { gap + ew };
            line.push((entry, ew));
        }
        if !line.is_empty() {
            lines.push(line);
        }
    }
    let line_h = (size * 1.6) as i32;
    let mut y = (h - line_h * lines.len() as i32) / 2 + line_h / 2;
    for line in &lines {
        let total: i32 = line.iter().map(|e| e.1).sum::<i32>() + gap * (line.len() as i32 - 1);
        let mut x = (w - total) / 2;
        for ((text, mark), ew) in line {
            draw_mark(area, *mark, (x, y), swatch)?;
            area.draw(&Text::new(
                text.clone(),
                (x + swatch + 8, y),
                style.pos(Pos::new(HPos::Left, VPos::Center)),
            ))?;
            x += ew + gap;
        }
        y += line_h;
    }
    Ok(())
}

fn draw_mark<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    mark: Mark,
    (x, y): (i32, i32),
    swatch: i32,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let line = |c: RGBColor, width: u32| {
        PathElement::new(vec![(x, y), (x + swatch, y)], c.stroke_width(width))
    };
    match mark {
        Mark::Line(c, width) => area.draw(&line(c, width)),
        Mark::Faint(c) => area.draw(&PathElement::new(
            vec![(x, y), (x + swatch, y)],
            c.mix(0.45).stroke_width(1),
        )),
        Mark::Dashed(c) => {
            for k in 0..3 {
                let x0 = x + k * 13;
                area.draw(&PathElement::new(
                    vec![(x0, y), (x0 + 8, y)],
                    c.stroke_width(2),
                ))?;
            }
            Ok(())
        }
        Mark::Dot(c) => area.draw(&Circle::new((x + swatch / 2, y), 6, c.filled())),
        Mark::Triangle(c) => area.draw(&TriangleMarker::new((x + swatch / 2, y), 7, c.filled())),
    }
}

/// Height of the area [`header`] draws in: the title and up to two note lines.
pub const HEADER_H: u32 = 104;

/// The title and, under it, the note, broken at "; " into lines that fit the width.
pub fn header<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    note: &str,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let (w, _) = area.dim_in_pixel();
    let centre = Pos::new(HPos::Center, VPos::Top);
    area.draw(&Text::new(
        title.to_string(),
        (w as i32 / 2, 12),
        bold(TITLE).pos(centre),
    ))?;
    let style = font(SUBTITLE).color(&RGBColor(80, 80, 80));
    let fits = |text: &str| {
        area.estimate_text_size(text, &style)
            .map_or(true, |(tw, _)| tw + 40 <= w)
    };
    let mut lines: Vec<String> = Vec::new();
    for part in note.split("; ").filter(|p| !p.is_empty()) {
        match lines.last_mut() {
            Some(last) if fits(&format!("{last}; {part}")) => {
                last.push_str("; ");
                last.push_str(part);
            }
            _ => lines.push(part.to_string()),
        }
    }
    for (i, line) in lines.iter().enumerate() {
        area.draw(&Text::new(
            line.clone(),
            (
                w as i32 / 2,
                12 + TITLE as i32 + 10 + i as i32 * (SUBTITLE as i32 + 6),
            ),
            style.pos(centre),
        ))?;
    }
    Ok(())
}

/// Draw the header and, under it, the legend `rows` in a band `legend_h` high; returns the
/// area left below them for the data.
pub fn frame<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    note: &str,
    legend_h: u32,
    rows: &[&[(String, Mark)]],
) -> Result<DrawingArea<DB, Shift>, DrawingAreaErrorKind<DB::ErrorType>> {
    let (top, rest) = root.split_vertically(HEADER_H);
    let (key, body) = rest.split_vertically(legend_h);
    header(&top, title, note)?;
    legend(&key, rows, LABEL)?;
    Ok(body.margin(0, 10, 10, 10))
}

/// A chart over the steps `0..last` and `y`, with a bold caption and room for axis names
/// (the panels of the two-panel figures).
pub fn step_chart<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    caption: &str,
    size: f64,
    y_label_area: u32,
    last: f64,
    (y0, y1): (f64, f64),
) -> Result<Chart2d<'a, DB>, DrawingAreaErrorKind<DB::ErrorType>> {
    ChartBuilder::on(area)
        .caption(caption, bold(size))
        .margin(12)
        .margin_right(24)
        .x_label_area_size(56)
        .y_label_area_size(y_label_area)
        .build_cartesian_2d(0f64..last, y0..y1)
}

/// A chart with f64 axes.
pub type Chart2d<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Dashed vertical lines at the steps `xs` (epoch ends) across `y0..y1`.
pub fn epoch_lines<DB: DrawingBackend>(
    chart: &mut Chart2d<DB>,
    xs: &[f64],
    y0: f64,
    y1: f64,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    for &x in xs {
        chart.draw_series(DashedLineSeries::new(
            [(x, y0), (x, y1)],
            5,
            4,
            EPOCH_LINE.stroke_width(1),
        ))?;
    }
    Ok(())
}

/// Grid and tick labels (whole steps on x) of a chart over training steps, the axis names
/// "step" and `y_desc` when given, then dashed lines at the epoch ends `epochs`.
pub fn step_mesh<DB: DrawingBackend>(
    chart: &mut Chart2d<DB>,
    y_desc: Option<&str>,
    (x_labels, y_labels): (Option<usize>, Option<usize>),
    y_label: &dyn Fn(&f64) -> String,
    epochs: &[f64],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let mut mesh = chart.configure_mesh();
    if let Some(y_desc) = y_desc {
        mesh.x_desc("step")
            .y_desc(y_desc)
            .axis_desc_style(font(LABEL));
    }
    if let Some(n) = x_labels {
        mesh.x_labels(n);
    }
    if let Some(n) = y_labels {
        mesh.y_labels(n);
    }
    mesh.label_style(font(TICK))
        .light_line_style(GRID.mix(0.5))
        .bold_line_style(GRID)
        .x_label_formatter(&step_label)
        .y_label_formatter(y_label)
        .draw()?;
    let y = chart.y_range();
    epoch_lines(chart, epochs, y.start, y.end)
}

/// Tick label of a step axis: whole steps only (a short run gets fractional ticks).
pub fn step_label(x: &f64) -> String {
    if (x - x.round()).abs() < 1e-9 {
        format!("{x:.0}")
    } else {
        String::new()
    }
}
