//! Charts of a search, drawn from the run file alone (never from tensors or the network).
//!
//! [`plot_run`] reads `DIR/run.h5` and writes, as PNG or SVG:
//! - `alphas_<cell>`: softmax(alpha) per edge over training, one panel per edge;
//! - `alphas_final`: the last recorded softmax(alpha) as a heat map per cell type;
//! - `collapse`: mean alpha entropy and parameter-free edges of the derived genotype;
//! - `training`: loss and accuracy per step (raw and smoothed) and per epoch;
//! - `cell_<cell>`: the derived cell as a diagram;
//! - `samples-<name>`: the scores of a `sample` table, best first, the derived genotype marked;
//! - `rank_check-<name>`: inherited vs stand-alone accuracy of a `rank-check`, and
//!   `rank_check-<name>-<proxy>` for each zero-cost proxy it compared (`--score`);
//! - `fidelity-<name>`: every scorer's Kendall tau and Spearman rho against a ground-truth
//!   table (`rank-check --ground-truth`), with the seed-vs-seed ceiling.
//!
//! A chain search's run file gets `choices` instead: the choice probabilities per layer over
//! training (the cell charts do not apply to it); and `pareto-samples-<name>` and
//! `pareto-evolution-<name>`: accuracy against latency or multiply-adds of each `sample`
//! and `evolve` table, the Pareto front joined.
//!
//! Each chart family is one entry of [`CHARTS`]: a function from the run to the files it
//! wrote, or to why it drew nothing. [`watch`] redraws whenever the run file changes.
mod alphas;
mod betas;
mod cell;
mod chain;
mod collapse;
mod data;
mod fidelity;
mod heatmap;
mod pareto;
mod rank_check;
mod samples;
mod style;
mod sweep;
mod training;
mod watch;

pub use chain::{choice_series, ChoiceSeries};
pub use sweep::sweep_charts;
pub use watch::{watch, watch_with};

use crate::record::RunData;
use crate::{Error, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// Image format of the charts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    #[default]
    Png,
    Svg,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Png => "png",
            Format::Svg => "svg",
        }
    }
}

/// What one call of [`plot_run_report`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlotReport {
    /// Files written, in chart order.
    pub files: Vec<PathBuf>,
    /// Charts not drawn, each with the reason (e.g. "training: no steps recorded yet").
    pub skipped: Vec<String>,
    /// The run has its final genotype (the search finished).
    pub finished: bool,
}

/// Draw every chart the run file of `run_dir` has data for into `out_dir`; returns the
/// files written. `run_dir` may also be the run file itself.
pub fn plot_run(run_dir: &Path, out_dir: &Path, format: Format) -> Result<Vec<PathBuf>> {
    Ok(plot_run_report(run_dir, out_dir, format)?.files)
}

/// [`plot_run`], also saying which charts were skipped and why.
pub fn plot_run_report(run_dir: &Path, out_dir: &Path, format: Format) -> Result<PlotReport> {
    let path = crate::record::run_file(run_dir);
    let log = crate::record::read_log(&path)?;
    style::ensure_font()?;
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let out = Output {
        dir: out_dir.to_path_buf(),
        format,
        draw: true,
    };
    if crate::space::is_chain_toml(&log.meta.space) {
        return chain_report(&path, &log, &out);
    }
    let run = RunData::from_log(run_dir, log)?;
    let drawn: Vec<(&str, Drawn)> = CHARTS
        .par_iter()
        .map(|chart| Ok((chart.name, (chart.draw)(&run, &out)?)))
        .collect::<Result<_>>()?;
    let mut report = PlotReport {
        finished: run.log.genotype.is_some(),
        ..Default::default()
    };
    for (name, d) in drawn {
        match d {
            Drawn::Files(files) => report.files.extend(files),
            Drawn::Skipped(why) => report.skipped.push(format!("{name}: {why}")),
            Drawn::Absent => {}
        }
    }
    Ok(report)
}

/// The charts of a chain search: `choices` and `pareto-*`; the cell-space charts do not
/// apply.
fn chain_report(path: &Path, log: &crate::record::RunLog, out: &Output) -> Result<PlotReport> {
    let mut report = PlotReport {
        finished: log.genotype.is_some(),
        ..Default::default()
    };
    match chain::draw(path, log, out)? {
        Ok(file) => report.files.push(file),
        Err(why) => report.skipped.push(why),
    }
    report.files.extend(pareto::draw(log, out)?);
    report.skipped.push(
        "alphas, alphas_final, betas, collapse, training, cell, samples, rank_check: cell-space charts, not drawn for a chain run".into(),
    );
    Ok(report)
}

/// One file [`plot_run`] writes for a run, and what to look at in it.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedFile {
    pub path: PathBuf,
    /// The chart family (`alphas`, `training`, ...).
    pub chart: &'static str,
    pub hint: &'static str,
}

/// The files [`plot_run_report`] writes into `out_dir` for `run`, in chart order, found
/// by running every chart without drawing (nothing is written); also the charts it skips.
pub fn planned_files(
    run: &RunData,
    out_dir: &Path,
    format: Format,
) -> Result<(Vec<PlannedFile>, Vec<String>)> {
    let out = Output {
        dir: out_dir.to_path_buf(),
        format,
        draw: false,
    };
    let (mut files, mut skipped) = (Vec::new(), Vec::new());
    for chart in CHARTS {
        match (chart.draw)(run, &out)? {
            Drawn::Files(paths) => files.extend(paths.into_iter().map(|path| PlannedFile {
                path,
                chart: chart.name,
                hint: chart.hint,
            })),
            Drawn::Skipped(why) => skipped.push(format!("{}: {why}", chart.name)),
            Drawn::Absent => {}
        }
    }
    Ok((files, skipped))
}

/// One chart family.
struct Chart {
    name: &'static str,
    /// What a reader should look at in it (the run report's line for it).
    hint: &'static str,
    draw: fn(&RunData, &Output) -> Result<Drawn>,
}

/// What a chart function did.
enum Drawn {
    Files(Vec<PathBuf>),
    /// Nothing drawn for a reason worth telling (e.g. no steps yet).
    Skipped(String),
    /// The run file has no data of this kind at all (an optional dataset): say nothing.
    Absent,
}

/// Every chart, in output order.
///
/// Extension point: charts of data that later stages append to the run file are one
/// function each, added here, that return [`Drawn::Absent`] when the run file lacks their
/// datasets (as `samples` and `rank_check` do).
const CHARTS: &[Chart] = &[
    Chart {
        name: "alphas",
        hint: "softmax(alpha) per edge over the steps: whether one op pulls away from the uniform 1/K on each edge, and whether that happened early or is still moving at the end",
        draw: alphas::draw,
    },
    Chart {
        name: "alphas_final",
        hint: "the last softmax(alpha) per edge and op, the derived genotype outlined: how clear each kept op's lead over the runner-up on its edge is",
        draw: heatmap::draw,
    },
    Chart {
        name: "betas",
        hint: "each node's edge weights (PC-DARTS betas) over training: whether the two edges the node keeps stand out from the others",
        draw: betas::draw,
    },
    Chart {
        name: "collapse",
        hint: "mean alpha entropy (should fall) and parameter-free ops among the kept edges (a rise towards all skip/pooling is DARTS collapse)",
        draw: collapse::draw,
    },
    Chart {
        name: "training",
        hint: "loss and accuracy on the weight and architecture halves: both should improve; a growing gap means the supernet overfits its weight half",
        draw: training::draw,
    },
    Chart {
        name: "cell",
        hint: "the derived cells as diagrams: which ops each node takes from which inputs",
        draw: cell::draw,
    },
    Chart {
        name: "samples",
        hint: "inherited-weight accuracy of every sampled sub-network, best first, the derived genotype in red: near the top and above the median means the alphas chose better than chance by the supernet's own measure",
        draw: samples::draw,
    },
    Chart {
        name: "rank_check",
        hint: "inherited-weight against stand-alone accuracy: points along a rising line (Kendall tau near 1) mean inherited scores rank architectures well",
        draw: rank_check::draw,
    },
    Chart {
        name: "fidelity",
        hint: "every scorer's agreement with a ground-truth table: bars that reach the dashed seed-vs-seed line rank architectures as well as another training seed does",
        draw: fidelity::draw,
    },
];

type DrawResult<DB> =
    std::result::Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// A picture of a fixed size that can be drawn on any backend.
trait Figure {
    fn size(&self) -> (u32, u32);
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB>;
}

/// Where and in which format the charts go.
struct Output {
    dir: PathBuf,
    format: Format,
    /// False: only say which files would be written ([`planned_files`]).
    draw: bool,
}

impl Output {
    /// Draw `fig` into `<dir>/<stem>.<ext>`, atomically (a reader never sees half a file).
    fn render(&self, stem: &str, fig: &impl Figure) -> Result<PathBuf> {
        let path = self.dir.join(format!("{stem}.{}", self.format.extension()));
        if !self.draw {
            return Ok(path);
        }
        let failed =
            |e: &dyn std::fmt::Display| Error::io(&path, std::io::Error::other(e.to_string()));
        let size = fig.size();
        match self.format {
            Format::Png => crate::fs::replace_with(&path, |tmp| {
                let root = BitMapBackend::new(tmp, size).into_drawing_area();
                (|| {
                    root.fill(&WHITE)?;
                    fig.draw(&root)?;
                    root.present()
                })()
                .map_err(|e| failed(&e))
            })?,
            Format::Svg => {
                let mut svg = String::new();
                {
                    let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
                    (|| {
                        root.fill(&WHITE)?;
                        fig.draw(&root)?;
                        root.present()
                    })()
                    .map_err(|e| failed(&e))?;
                }
                crate::fs::write_atomic(&path, svg.as_bytes())?;
            }
        }
        Ok(path)
    }
}
