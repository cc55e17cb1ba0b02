//! Redraw the charts whenever the run file changes, until the search finishes.
//!
//! The search replaces `run.h5` atomically (rename), so a change shows as a new
//! modification time (or size) and every read sees a complete file.
use super::{plot_run_report, Format, PlotReport};
use crate::record::run_file;
use crate::Result;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

/// Redraw the charts of `run_dir` into `out_dir` whenever its run file changes, until the
/// run has its final genotype (drawn once more) or `stop()` returns true. Waits for the
/// run file to appear. Returns how many times the charts were drawn.
pub fn watch(
    run_dir: &Path,
    out_dir: &Path,
    format: Format,
    interval: Duration,
    stop: impl Fn() -> bool,
) -> Result<usize> {
    watch_with(run_dir, out_dir, format, interval, stop, |_| {})
}

/// [`watch`], calling `on_draw` with the report of every redraw (e.g. to print it).
pub fn watch_with(
    run_dir: &Path,
    out_dir: &Path,
    format: Format,
    interval: Duration,
    stop: impl Fn() -> bool,
    mut on_draw: impl FnMut(&PlotReport),
) -> Result<usize> {
    let file = run_file(run_dir);
    let mut seen: Option<(SystemTime, u64)> = None;
    let mut draws = 0;
    loop {
        if stop() {
            return Ok(draws);
        }
        let stamp = std::fs::metadata(&file)
            .and_then(|m| Ok((m.modified()?, m.len())))
            .ok();
        if stamp.is_some() && stamp != seen {
            let report = plot_run_report(run_dir, out_dir, format)?;
            seen = stamp;
            draws += 1;
            on_draw(&report);
            if report.finished {
                return Ok(draws);
            }
        }
        // Sleep in short slices so that `stop` is answered promptly.
        let until = Instant::now() + interval;
        while Instant::now() < until {
            if stop() {
                return Ok(draws);
            }
            std::thread::sleep((until - Instant::now()).min(Duration::from_millis(50)));
        }
    }
}
