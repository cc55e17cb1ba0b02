//! The final genotype, when each cell type's genotype last changed over the epochs, and
//! how far the kept ops' mixing weights stand out from uniform.
use super::md;
use crate::record::{run_file, RunData};
use crate::space::{CellType, EdgeId, Genotype};
use crate::{Error, Result};

/// "## Final genotype": its text, where it came from, and the epoch table of changes.
pub(super) fn section(run: &RunData) -> Result<String> {
    let mut out = String::from("## Final genotype\n\n");
    let Some(shown) = run.shown_genotype() else {
        out.push_str("No genotype yet (no epoch finished and no alpha record).\n");
        return Ok(out);
    };
    out.push_str(&format!(
        "{}:\n\n```\n{}\n```\n\n",
        md::capitalized(&shown.source),
        shown.genotype.to_text()
    ));
    out.push_str(&stability(run)?);
    Ok(out)
}

/// The genotype derived at each epoch end (`/epochs/genotype`), parsed.
fn epoch_genotypes(run: &RunData) -> Result<Vec<Genotype>> {
    run.log
        .epochs
        .iter()
        .map(|e| {
            Genotype::parse(&e.genotype).map_err(|err| {
                Error::bad_file(
                    run_file(&run.dir),
                    format!("/epochs/genotype of epoch {}: {err}", e.epoch + 1),
                )
            })
        })
        .collect()
}

/// Per cell type: the epochs after which its genotype differed from the epoch before,
/// the last of them, and for how many final epochs it has stayed the same.
fn stability(run: &RunData) -> Result<String> {
    let epochs = epoch_genotypes(run)?;
    if epochs.len() < 2 {
        return Ok(format!(
            "Stability: {} recorded, nothing to compare yet.\n",
            md::count(epochs.len(), "epoch genotype")
        ));
    }
    let rows: Vec<Vec<String>> = run
        .cells
        .iter()
        .map(|&cell| {
            let changed: Vec<usize> = (1..epochs.len())
                .filter(|&i| epochs[i].cell(cell) != epochs[i - 1].cell(cell))
                .map(|i| run.log.epochs[i].epoch as usize + 1)
                .collect();
            let last_epoch = run.log.epochs[epochs.len() - 1].epoch as usize + 1;
            let (last, same) = match changed.last() {
                Some(&e) => (format!("epoch {e}"), last_epoch + 1 - e),
                None => ("never".into(), epochs.len()),
            };
            let list = if changed.is_empty() {
                "-".into()
            } else {
                changed
                    .iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            vec![cell.name().into(), list, last, md::count(same, "epoch")]
        })
        .collect();
    Ok(format!(
        "Stability: the genotype derived from the alphas at the end of each epoch \
         (`/epochs/genotype`), compared with the epoch before (epochs from 1).\n\n{}",
        md::table(
            &[
                "cell",
                "changed at epochs",
                "last changed",
                "the same over the last"
            ],
            &rows
        )
    ))
}

/// One kept edge's mixing weight.
struct KeptWeight {
    /// The state the edge goes into (inputs first, as in the genotype's text).
    to: usize,
    label: String,
    weight: f64,
}

/// "## Alpha separation": per cell type the softmax weight of each kept edge's op in the
/// last alpha record, how many reach twice uniform, and their spread.
pub(super) fn separation(run: &RunData) -> Result<String> {
    let mut out = String::from("## Alpha separation\n\n");
    let (Some(rec), Some(shown)) = (run.log.alphas.last(), run.shown_genotype()) else {
        out.push_str("No alpha record yet.\n");
        return Ok(out);
    };
    let k = run.ops.len();
    let uniform = 1.0 / k as f64;
    out.push_str(&format!(
        "softmax(alpha) of each kept edge's op ({}) in the last alpha record (step {}); \
         uniform is 1/{k} = {}, and an edge counts as separated at twice that ({}).\n\n",
        shown.source,
        rec.step,
        md::f4(uniform),
        md::f4(2.0 * uniform)
    ));
    let mut summary = Vec::new();
    let mut per_cell: Vec<(CellType, Vec<KeptWeight>)> = Vec::new();
    for &cell in &run.cells {
        let Some(g) = shown.genotype.cell(cell) else {
            continue;
        };
        let rows = run.softmax(rec, cell);
        let mut kept = Vec::new();
        for (node, edges) in g.nodes.iter().enumerate() {
            let to = run.space.cell.inputs + node;
            for e in edges {
                let at = |what: String| Error::bad_file(run_file(&run.dir), what);
                let row = run
                    .edges
                    .iter()
                    .position(|&x| x == EdgeId { to, from: e.from })
                    .ok_or_else(|| {
                        at(format!(
                            "the genotype's edge {to} <- {} is not in /edges",
                            e.from
                        ))
                    })?;
                let col = run
                    .ops
                    .iter()
                    .position(|&o| o == e.op)
                    .ok_or_else(|| at(format!("the genotype's op {} is not in /ops", e.op)))?;
                kept.push(KeptWeight {
                    to,
                    label: format!(
                        "`{}` from {}: {}",
                        e.op,
                        e.from,
                        md::f4(f64::from(rows[row][col]))
                    ),
                    weight: f64::from(rows[row][col]),
                });
            }
        }
        let w: Vec<f64> = kept.iter().map(|x| x.weight).collect();
        let ratio = |x: f64| format!("{} ({:.2}x)", md::f4(x), x / uniform);
        let (min, max) = (
            w.iter().copied().fold(f64::INFINITY, f64::min),
            w.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        );
        summary.push(vec![
            cell.name().to_string(),
            w.len().to_string(),
            w.iter()
                .filter(|&&x| x >= 2.0 * uniform)
                .count()
                .to_string(),
            ratio(min),
            crate::numeric::median(&w).map_or("-".into(), ratio),
            ratio(max),
        ]);
        per_cell.push((cell, kept));
    }
    out.push_str(&md::table(
        &["cell", "kept edges", ">= 2/K", "min", "median", "max"],
        &summary,
    ));
    // The kept edges of every cell type side by side, one line per edge of a node.
    let lines = per_cell.iter().map(|(_, k)| k.len()).max().unwrap_or(0);
    let mut rows = Vec::new();
    for i in 0..lines {
        let to = per_cell
            .iter()
            .find_map(|(_, k)| k.get(i).map(|x| x.to))
            .unwrap_or(0);
        let mut row = vec![to.to_string()];
        row.extend(
            per_cell
                .iter()
                .map(|(_, k)| k.get(i).map_or(String::new(), |x| x.label.clone())),
        );
        rows.push(row);
    }
    let mut header = vec!["to state".to_string()];
    header.extend(per_cell.iter().map(|(c, _)| format!("{} cell", c.name())));
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    out.push('\n');
    out.push_str(&md::table(&header, &rows));
    Ok(out)
}
