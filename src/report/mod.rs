//! `supernet report`: a one-page Markdown report of a search, `DIR/report.md`, for the
//! reader of a finished (or running) run: the settings and the time taken, loss and
//! accuracy per epoch, the final genotype and how settled it is, how far the alphas have
//! separated, the inherited-weight scores of sampled sub-networks with the derived
//! architecture's rank among them, and links to the charts of `supernet plot`.
//!
//! Every number is computed from `run.h5` and `config.toml` alone, and nothing else goes
//! in (no clock, no host), so the same run file gives the same page.
mod genotype;
mod md;
mod plots;
mod samples;
mod settings;

use crate::record::{RunData, RUN_FILE};
use crate::run::CONFIG_FILE;
use crate::search::SearchConfig;
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// The report's file name inside the run directory.
pub const REPORT_FILE: &str = "report.md";

/// Write `DIR/report.md` (atomically: an earlier report stays until the new one is
/// complete) for the search in `run` (its directory, or its run file); its path.
pub fn write_report(run: &Path) -> Result<PathBuf> {
    let dir = match run.parent() {
        Some(parent) if run.is_file() && parent.as_os_str().is_empty() => Path::new("."),
        Some(parent) if run.is_file() => parent,
        _ => run,
    };
    let text = render(dir)?;
    let path = dir.join(REPORT_FILE);
    crate::fs::write_atomic(&path, text.as_bytes())?;
    Ok(path)
}

/// The report of the search in `dir`, as Markdown. Commands in it name `dir` as given.
pub fn render(dir: &Path) -> Result<String> {
    if !dir.is_dir() {
        return Err(Error::bad_file(
            dir,
            "no such run directory (a directory written by `supernet search`)",
        ));
    }
    let run = RunData::load(dir)?;
    if run.log.meta.kind == "train" {
        return Err(Error::bad_file(
            dir.join(RUN_FILE),
            "a training run (kind 'train'); `supernet report` describes searches",
        ));
    }
    let cfg: SearchConfig = crate::run::read_config(dir)?;
    let shown = dir.display().to_string();
    let name = dir
        .file_name()
        .map_or(shown.clone(), |n| n.to_string_lossy().into_owned());
    let meta = &run.log.meta;
    let status = match (&run.log.genotype, run.log.epochs.len()) {
        (Some(_), n) => format!("The search finished ({}).", count_epochs(n, cfg.epochs)),
        (None, n) => format!(
            "The search has not finished ({}; no final genotype yet).",
            count_epochs(n, cfg.epochs)
        ),
    };
    let sections = [
        format!(
            "# Search report: {name}\n\nRun directory `{shown}`: `{RUN_FILE}` written by \
             supernet {} (libtorch {}) and `{CONFIG_FILE}`. {status} Every number here is \
             computed from those two files; `supernet report --run {shown}` writes this \
             page again.\n",
            meta.supernet_version, meta.libtorch_version
        ),
        settings::section(&run, &cfg),
        settings::training(&run),
        genotype::section(&run)?,
        genotype::separation(&run)?,
        samples::section(&run, &shown)?,
        plots::section(&run, dir, &shown)?,
    ];
    // Each section ends with one line break, and one empty line separates them.
    let sections: Vec<&str> = sections.iter().map(|s| s.trim_end()).collect();
    Ok(format!("{}\n", sections.join("\n\n")))
}

fn count_epochs(done: usize, of: usize) -> String {
    format!("{done} of {} recorded", md::count(of, "epoch"))
}
