//! The tables of `supernet sample` (`/samples/<name>`): how many were scored, the spread of
//! their scores, and where the run's derived genotype ranks when the table has its row.
use super::md;
use crate::numeric::median;
use crate::record::{run_file, Column, RunData, Table};
use crate::sample::rank::placement;
use crate::{Error, Result};

/// "## Sub-networks with inherited weights": one paragraph and table per sample table.
pub(super) fn section(run: &RunData, shown_dir: &str) -> Result<String> {
    let mut out = String::from("## Sub-networks scored with inherited weights\n\n");
    let tables: Vec<&Table> = run
        .log
        .tables
        .iter()
        .filter(|t| t.group.starts_with("samples/"))
        .collect();
    if tables.is_empty() {
        out.push_str(&format!(
            "No sample tables in the run file; `supernet sample --run {shown_dir} --n 20 \
             --with-derived` scores 20 drawn architectures and the derived one.\n"
        ));
    }
    for t in tables {
        // Zero-cost proxy tables (`--score`) have no accuracy to summarise here.
        match t.attr("score") {
            Some(score) if score != "inherited" => out.push_str(&format!(
                "### `/{}`\n\nScored by the zero-cost proxy `{score}` (column `{}`), not with \
                 inherited weights.\n\n",
                t.group,
                score.replace('-', "_")
            )),
            _ => out.push_str(&table(run, t)?),
        }
    }
    Ok(out)
}

/// A float column of `t`, or an error naming the run file, the table and the column.
fn f64_column<'a>(run: &RunData, t: &'a Table, name: &str) -> Result<&'a [f64]> {
    match t.column(name) {
        Some(Column::F64(v)) => Ok(v),
        _ => Err(Error::bad_file(
            run_file(&run.dir),
            format!("table '/{}' has no float column '{name}'", t.group),
        )),
    }
}

fn table(run: &RunData, t: &Table) -> Result<String> {
    let acc = f64_column(run, t, "accuracy")?;
    let loss = f64_column(run, t, "loss")?;
    let attr = |k: &str| t.attr(k).unwrap_or("?");
    let mut out = format!(
        "### `/{}`\n\n{} scored on {} images of the architecture half (drawn from `{}`, BN \
         `{}`, seed {}; {} requested, {} duplicate draws skipped), in {} s.\n\n",
        t.group,
        md::count(acc.len(), "architecture"),
        attr("val_images"),
        attr("from"),
        attr("bn"),
        attr("seed"),
        attr("requested"),
        attr("duplicates_skipped"),
        attr("seconds"),
    );
    if acc.is_empty() {
        return Ok(out);
    }
    let stat = |v: &[f64], f: fn(f64) -> String| {
        let min = v.iter().copied().fold(f64::INFINITY, f64::min);
        let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        [f(min), median(v).map_or("-".into(), f), f(max)]
    };
    let [a0, a1, a2] = stat(acc, md::pct);
    let [l0, l1, l2] = stat(loss, md::f4);
    out.push_str(&md::table(
        &["", "min", "median", "max"],
        &[
            vec!["accuracy".into(), a0, a1, a2],
            vec!["loss".into(), l0, l1, l2],
        ],
    ));
    out.push('\n');
    out.push_str(&derived(run, t, acc, loss)?);
    Ok(out)
}

/// Where the derived genotype's row ranks, or why the table cannot say.
fn derived(run: &RunData, t: &Table, acc: &[f64], loss: &[f64]) -> Result<String> {
    let Some(flags) = t.column("derived") else {
        return Ok("No derived row (the table was made without `--with-derived`).\n\n".to_string());
    };
    let rows: Vec<usize> = match flags {
        Column::U64(v) => (0..v.len()).filter(|&i| v[i] == 1).collect(),
        _ => vec![],
    };
    let &[i] = rows.as_slice() else {
        return Err(Error::bad_file(
            run_file(&run.dir),
            format!(
                "table '/{}': column 'derived' marks {} rows (expected exactly 1)",
                t.group,
                rows.len()
            ),
        ));
    };
    let p = placement(acc, loss, i).ok_or_else(|| {
        Error::bad_file(
            run_file(&run.dir),
            format!("table '/{}': columns of different lengths", t.group),
        )
    })?;
    let how = match t.attr("derived") {
        Some("drawn") => "also one of the draws",
        Some("added") => "added to the draws",
        _ => "its row",
    };
    let mut s = format!(
        "**The derived genotype ({how}): accuracy {}, loss {}: rank {} of {}** (higher \
         accuracy first, ties by lower loss).",
        md::pct(acc[i]),
        md::f4(loss[i]),
        p.rank,
        p.n
    );
    let others: Vec<f64> = (0..acc.len()).filter(|&j| j != i).map(|j| acc[j]).collect();
    if let Some(m) = median(&others) {
        let side = match acc[i].total_cmp(&m) {
            std::cmp::Ordering::Greater => "above",
            std::cmp::Ordering::Less => "below",
            std::cmp::Ordering::Equal => "at",
        };
        s.push_str(&format!(
            " It scores better than {} of the {} others ({:.1}%), worse than {}, and is {side} \
             their median accuracy ({}).",
            p.worse,
            others.len(),
            100.0 * p.worse as f64 / others.len() as f64,
            p.better,
            md::pct(m)
        ));
    }
    s.push_str("\n\n");
    Ok(s)
}
