//! Links to the charts `supernet plot` draws for the run, each with what to look at; the
//! ones not drawn yet are named with the command that draws them.
use super::md;
use crate::plot::{planned_files, Format};
use crate::record::RunData;
use crate::Result;
use clap::ValueEnum;
use std::path::Path;

/// Where `supernet plot --run DIR` puts its charts, relative to the run directory.
const PLOTS: &str = "plots";

/// "## Plots": a table of the chart files present (PNG or SVG), relative links from `dir`.
pub(super) fn section(run: &RunData, dir: &Path, shown_dir: &str) -> Result<String> {
    let mut out = String::from("## Plots\n\n");
    let (planned, skipped) = planned_files(run, &dir.join(PLOTS), Format::Png)?;
    let (mut rows, mut missing) = (Vec::new(), Vec::new());
    for f in &planned {
        // The chart in whichever format `plot` wrote it.
        let found = Format::value_variants()
            .iter()
            .map(|fmt| f.path.with_extension(fmt.extension()))
            .find(|p| p.is_file());
        let name = |p: &Path| {
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        match found {
            Some(p) => rows.push(vec![
                format!("[{0}]({PLOTS}/{0})", name(&p)),
                f.hint.to_string(),
            ]),
            None => missing.push(format!("`{}`", name(&f.path))),
        }
    }
    if !rows.is_empty() {
        out.push_str(&md::table(&["plot", "what to look at"], &rows));
        out.push('\n');
    }
    if !missing.is_empty() {
        out.push_str(&format!(
            "Not drawn yet: {}. `supernet plot --run {shown_dir}` draws them (then run \
             `supernet report` again to link them).\n\n",
            missing.join(", ")
        ));
    }
    for s in skipped {
        out.push_str(&format!("No chart for this run: {s}.\n\n"));
    }
    Ok(out)
}
