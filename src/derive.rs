//! From mixing weights to a discrete architecture, by the space's derivation rule.
use crate::space::{CellGenotype, CellSpec, DeriveRule, GeneEdge, Genotype, OpKind, SearchSpace};
use crate::{Error, Result};

/// Derive one cell from its mixing weights `[edges][ops]` (softmax of the alphas).
pub fn derive_cell(weights: &[Vec<f32>], spec: &CellSpec, ops: &[OpKind]) -> CellGenotype {
    let mut nodes = Vec::with_capacity(spec.nodes);
    let mut start = 0;
    for i in 0..spec.nodes {
        let n_in = spec.inputs + i;
        let w = &weights[start..start + n_in];
        start += n_in;
        let node = match spec.derive {
            DeriveRule::TopK { keep } => {
                // Rank edges by their strongest op other than `none` (stable: ties keep
                // the lower input index, as Python's sorted does).
                let best = |row: &[f32]| strongest(row, ops, true);
                let mut order: Vec<usize> = (0..n_in).collect();
                order.sort_by(|&a, &b| {
                    let (wa, wb) = (best(&w[a]).1, best(&w[b]).1);
                    wb.partial_cmp(&wa).unwrap_or(std::cmp::Ordering::Equal)
                });
                order
                    .into_iter()
                    .take(keep)
                    .map(|from| GeneEdge {
                        op: ops[best(&w[from]).0],
                        from,
                    })
                    .collect()
            }
            DeriveRule::Argmax => (0..n_in)
                .map(|from| GeneEdge {
                    op: ops[strongest(&w[from], ops, false).0],
                    from,
                })
                .collect(),
        };
        nodes.push(node);
    }
    CellGenotype {
        nodes,
        concat: spec.concat.clone(),
    }
}

/// Index and weight of the largest entry (the first on ties), optionally skipping `none`.
fn strongest(row: &[f32], ops: &[OpKind], skip_none: bool) -> (usize, f32) {
    let mut best: Option<(usize, f32)> = None;
    for (k, &w) in row.iter().enumerate() {
        if skip_none && ops[k].is_none() {
            continue;
        }
        if best.is_none_or(|(_, b)| w > b) {
            best = Some((k, w));
        }
    }
    best.expect("validated spaces have an op other than none")
}

/// PC-DARTS: each edge's row of op weights multiplied by the edge's normalised beta (per
/// node, the softmax of its incoming betas) before the usual selection. Rows unchanged
/// without betas.
pub fn scale_by_betas(
    mut rows: Vec<Vec<f32>>,
    betas: Option<&[f32]>,
    spec: &CellSpec,
) -> Vec<Vec<f32>> {
    if let Some(betas) = betas {
        let w = crate::supernet::normalise_edges_host(betas, spec.inputs, spec.nodes);
        for (row, b) in rows.iter_mut().zip(w) {
            row.iter_mut().for_each(|x| *x *= b);
        }
    }
    rows
}

/// Derive the genotype from the mixing weights of every cell type.
pub fn derive(space: &SearchSpace, normal: &[Vec<f32>], reduce: Option<&[Vec<f32>]>) -> Genotype {
    Genotype {
        normal: derive_cell(normal, &space.cell, &space.ops),
        reduce: reduce.map(|w| derive_cell(w, &space.cell, &space.ops)),
    }
}

/// `supernet derive --rule`: how a run's alphas become one architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleArg {
    /// DARTS: per node the 2 incoming edges with the strongest op other than `none`.
    Top2,
    /// Per edge its strongest op (`none` included), every edge kept (the NAS-Bench-201
    /// rule; on a DARTS space the genotype validates against the space with this rule).
    Argmax,
    /// Draw K architectures from softmax(alphas), score each with inherited weights on the
    /// architecture half, keep the best.
    SampleTop(usize),
}

impl RuleArg {
    pub fn name(self) -> String {
        match self {
            RuleArg::Top2 => "top2".into(),
            RuleArg::Argmax => "argmax".into(),
            RuleArg::SampleTop(k) => format!("sample-top{k}"),
        }
    }

    /// The space's rule replaced by this one (top2, argmax); `None` for sample-top.
    pub fn rule(self, space: &SearchSpace) -> Result<Option<DeriveRule>> {
        match self {
            RuleArg::Top2 => {
                if space.cell.inputs < 2 {
                    return Err(Error::invalid(
                        "--rule",
                        "top2",
                        format!(
                            "a space whose first node has at least 2 inputs ('{}' has {}); use argmax",
                            space.name, space.cell.inputs
                        ),
                    ));
                }
                Ok(Some(DeriveRule::TopK { keep: 2 }))
            }
            RuleArg::Argmax => Ok(Some(DeriveRule::Argmax)),
            RuleArg::SampleTop(_) => Ok(None),
        }
    }
}

impl std::str::FromStr for RuleArg {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "top2" => Ok(RuleArg::Top2),
            "argmax" => Ok(RuleArg::Argmax),
            _ => match s.strip_prefix("sample-top:").map(str::parse::<usize>) {
                Some(Ok(k)) if k > 0 => Ok(RuleArg::SampleTop(k)),
                _ => Err(Error::invalid(
                    "--rule",
                    s,
                    "top2, argmax or sample-top:K with K >= 1",
                )),
            },
        }
    }
}

/// `space` with its derivation rule replaced: the space a genotype derived by another rule
/// validates against (an argmax genotype of a DARTS space keeps every edge).
pub fn with_rule(space: &SearchSpace, rule: DeriveRule) -> SearchSpace {
    let mut s = space.clone();
    s.cell.derive = rule;
    s
}

/// The genotype the last alphas of the run in `dir` derive to by `rule` (top2 or argmax,
/// checked against the run's space; reads only the run file, once).
pub fn derive_run(dir: &std::path::Path, rule: RuleArg) -> Result<Genotype> {
    let data = crate::plot::data::RunData::load(dir)?;
    let rule = rule
        .rule(&data.space)?
        .ok_or_else(|| Error::invalid("--rule", rule.name(), "top2 or argmax here"))?;
    let rec = data
        .log
        .alphas
        .last()
        .ok_or_else(|| Error::bad_file(dir.join("run.h5"), "no alpha record"))?;
    Ok(data.derive_with(&with_rule(&data.space, rule), rec))
}
