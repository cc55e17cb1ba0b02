//! From architecture parameters to a discrete architecture, by a derivation rule. Pure host
//! code: the search, the run-file reader, the charts and `supernet derive` all derive
//! through [`derive_raw`], so one set of alphas always gives one genotype.
use crate::numeric::{softmax, softmax_per_node};
use crate::space::chain::{ChainArch, ChainSpace};
use crate::space::{
    CellGenotype, CellSpec, CellType, DeriveRule, GeneEdge, Genotype, OpKind, SearchSpace,
};
use crate::{Error, Result};

/// A chain architecture from its alphas, `[searchable layers x choices]` row-major as the
/// run file records them: per layer the choice with the largest alpha among those it
/// allows (the lower column on a tie). The masked softmax is monotone in the alphas, so
/// this is also the argmax of the choice probabilities. Refused when `alphas` does not have
/// the space's shape.
pub fn derive_chain(space: &ChainSpace, alphas: &[f32]) -> Result<ChainArch> {
    let columns = space.choices();
    let plan = space.plan((1, 1));
    let layers: Vec<_> = plan.iter().filter(|l| l.searchable.is_some()).collect();
    if alphas.len() != layers.len() * columns.len() {
        return Err(Error::invalid(
            "alphas",
            format!("{} values", alphas.len()),
            format!(
                "{} searchable layers x {} choices of '{}'",
                layers.len(),
                columns.len(),
                space.name
            ),
        ));
    }
    let layers = layers
        .iter()
        .zip(alphas.chunks(columns.len()))
        .map(|(l, row)| {
            let allowed = (0..columns.len()).filter(|&k| l.choices.contains(&columns[k]));
            let best = allowed
                .fold(None::<usize>, |best, k| match best {
                    Some(b) if row[b] >= row[k] => Some(b),
                    _ => Some(k),
                })
                .expect("every layer allows a choice");
            columns[best]
        })
        .collect();
    Ok(ChainArch { layers })
}

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
                    wb.total_cmp(&wa)
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

/// P-DARTS's cap on skip connections (Chen et al. 2019, applied to the normal cell with
/// `max` = 2): while the cell derived from `weights` keeps more than `max` skip
/// connections, the kept one with the smallest skip weight loses it (its weight set to
/// minus infinity) and the cell is derived again, so that edge takes its next-best op and
/// its node's edges are ranked anew. Spaces without `skip_connect` derive as usual.
pub fn cap_skips(
    mut weights: Vec<Vec<f32>>,
    spec: &CellSpec,
    ops: &[OpKind],
    max: usize,
) -> CellGenotype {
    let Some(skip) = ops.iter().position(|&k| k == OpKind::SkipConnect) else {
        return derive_cell(&weights, spec, ops);
    };
    loop {
        let cell = derive_cell(&weights, spec, ops);
        if cell.count(OpKind::SkipConnect) <= max {
            return cell;
        }
        // Rows of the kept skip connections: node i's edges start after those of 0..i.
        let kept = cell.nodes.iter().enumerate().flat_map(|(i, node)| {
            let start: usize = (0..i).map(|j| spec.inputs + j).sum();
            node.iter()
                .filter(|e| e.op == OpKind::SkipConnect)
                .map(move |e| start + e.from)
        });
        let weakest = kept
            .min_by(|&a, &b| weights[a][skip].total_cmp(&weights[b][skip]))
            .expect("more than max >= 0 skip connections are kept");
        if weights[weakest][skip] == f32::NEG_INFINITY {
            return cell; // the edge has no other op to take (none aside)
        }
        weights[weakest][skip] = f32::NEG_INFINITY;
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
        let w = softmax_per_node(betas, spec.inputs, spec.nodes);
        for (row, b) in rows.iter_mut().zip(w) {
            row.iter_mut().for_each(|x| *x *= b);
        }
    }
    rows
}

/// The raw architecture parameters of one cell type, as the run file stores them: alphas
/// `[edges * ops]` row-major, and PC-DARTS's betas `[edges]` when the run has them.
#[derive(Debug, Clone, Copy)]
pub struct RawCell<'a> {
    pub alphas: &'a [f32],
    pub betas: Option<&'a [f32]>,
}

/// The rows derivation ranks for one cell type: softmax(alpha) per edge, scaled by the
/// normalised betas when there are betas. A value that is not finite, or a size that does
/// not fit the space, is an error naming the cell and the edge.
pub fn mixing_rows(space: &SearchSpace, cell: CellType, raw: RawCell) -> Result<Vec<Vec<f32>>> {
    let edges = space.cell.edges();
    let n_ops = space.ops.len();
    if raw.alphas.len() != edges.len() * n_ops {
        return Err(Error::invalid(
            format!("alphas of the {} cell", cell.name()),
            format!("{} values", raw.alphas.len()),
            format!(
                "{} edges x {n_ops} ops = {}",
                edges.len(),
                edges.len() * n_ops
            ),
        ));
    }
    for (e, row) in raw.alphas.chunks(n_ops).enumerate() {
        if let Some(k) = row.iter().position(|a| !a.is_finite()) {
            return Err(Error::invalid(
                format!(
                    "alpha of the {} cell, edge {} <- {}, op {}",
                    cell.name(),
                    edges[e].to,
                    edges[e].from,
                    space.ops[k].name()
                ),
                row[k],
                "a finite number (the search diverged; see its losses)",
            ));
        }
    }
    if let Some(betas) = raw.betas {
        if betas.len() != edges.len() {
            return Err(Error::invalid(
                format!("betas of the {} cell", cell.name()),
                format!("{} values", betas.len()),
                format!("one per edge ({})", edges.len()),
            ));
        }
        if let Some(e) = betas.iter().position(|b| !b.is_finite()) {
            return Err(Error::invalid(
                format!(
                    "beta of the {} cell, edge {} <- {}",
                    cell.name(),
                    edges[e].to,
                    edges[e].from
                ),
                betas[e],
                "a finite number (the search diverged; see its losses)",
            ));
        }
    }
    let rows = raw.alphas.chunks(n_ops).map(softmax).collect();
    Ok(scale_by_betas(rows, raw.betas, &space.cell))
}

/// The genotype raw architecture parameters derive to by `space`'s rule.
pub fn derive_raw(
    space: &SearchSpace,
    normal: RawCell,
    reduce: Option<RawCell>,
) -> Result<Genotype> {
    let normal = mixing_rows(space, CellType::Normal, normal)?;
    let reduce = reduce
        .map(|r| mixing_rows(space, CellType::Reduce, r))
        .transpose()?;
    Ok(derive(space, &normal, reduce.as_deref()))
}

/// Derive the genotype from the mixing weights of every cell type (finite rows).
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
    /// ENAS runs: the controller's most likely architecture (greedy decoding).
    Controller,
    /// ENAS runs: K architectures drawn from the controller, scored, the best (xautodl
    /// `ENAS.py` `get_best_arch`, 100 samples).
    ControllerBest(usize),
    /// DARTS-PT: ops and then edges selected by how much their removal drops the
    /// supernet's validation accuracy ([`crate::search::perturbation`]).
    Perturbation,
}

impl RuleArg {
    pub fn name(self) -> String {
        match self {
            RuleArg::Top2 => "top2".into(),
            RuleArg::Argmax => "argmax".into(),
            RuleArg::SampleTop(k) => format!("sample-top{k}"),
            RuleArg::Controller => "controller".into(),
            RuleArg::ControllerBest(k) => format!("controller-best{k}"),
            RuleArg::Perturbation => "perturbation".into(),
        }
    }

    /// The space's rule replaced by this one (top2, argmax); `None` for the others.
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
            RuleArg::SampleTop(_)
            | RuleArg::Controller
            | RuleArg::ControllerBest(_)
            | RuleArg::Perturbation => Ok(None),
        }
    }
}

impl std::str::FromStr for RuleArg {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "top2" => Ok(RuleArg::Top2),
            "argmax" => Ok(RuleArg::Argmax),
            "controller" => Ok(RuleArg::Controller),
            "perturbation" => Ok(RuleArg::Perturbation),
            _ => {
                let k = |prefix: &str| {
                    s.strip_prefix(prefix)
                        .and_then(|k| k.parse::<usize>().ok())
                        .filter(|&k| k > 0)
                };
                match (k("sample-top:"), k("controller-best:")) {
                    (Some(k), _) => Ok(RuleArg::SampleTop(k)),
                    (_, Some(k)) => Ok(RuleArg::ControllerBest(k)),
                    _ => Err(Error::invalid(
                        "--rule",
                        s,
                        "top2, argmax, sample-top:K, controller, controller-best:K with K >= 1, or perturbation",
                    )),
                }
            }
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
