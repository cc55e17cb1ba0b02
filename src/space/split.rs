//! Few-shot splits (Zhao et al. 2021) as plain data: one edge of the normal cell fixed to
//! one operation. An architecture belongs to the split of the op it has on that edge;
//! `none` stands for "the edge is not kept" under a top-k derivation rule.
use super::sampling::uniform_genotype;
use super::{DeriveRule, Genotype, OpKind, SearchSpace};
use crate::rng::Rng;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// Edge `edge` (alpha-row order) of every normal cell fixed to `op`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeSplit {
    pub edge: usize,
    pub op: OpKind,
}

/// `edge` as an index of the normal cell's edges of `space`.
pub fn check_split_edge(space: &SearchSpace, edge: usize) -> Result<()> {
    let n = space.cell.num_edges();
    if edge >= n {
        return Err(Error::invalid(
            "--edge",
            edge,
            format!(
                "an edge of the normal cell of '{}': 0..{} ({n} edges)",
                space.name,
                n - 1
            ),
        ));
    }
    Ok(())
}

/// The ops an architecture of `space` can have on normal edge `edge`, in alpha-column
/// order: one sub-supernet each. Under a top-k rule an edge into a node with no more
/// inputs than it keeps is always kept, never `none`; other edges may be left out
/// (`none`), and a kept edge never holds `none`.
pub fn split_ops(space: &SearchSpace, edge: usize) -> Result<Vec<OpKind>> {
    check_split_edge(space, edge)?;
    let always_kept = match space.cell.derive {
        DeriveRule::Argmax => return Ok(space.ops.clone()),
        DeriveRule::TopK { keep } => {
            let e = space.cell.edges()[edge];
            e.to <= keep // a node with `to` inputs keeps min(keep, to) of them
        }
    };
    Ok(space
        .ops
        .iter()
        .copied()
        .filter(|op| !(always_kept && op.is_none()))
        .collect())
}

/// The op `g` has on normal edge `edge` of `space`: its kept op, or `none` when the
/// edge is not kept.
pub fn op_on_edge(g: &Genotype, space: &SearchSpace, edge: usize) -> Result<OpKind> {
    check_split_edge(space, edge)?;
    let e = space.cell.edges()[edge];
    let node = g
        .normal
        .nodes
        .get(e.to - space.cell.inputs)
        .ok_or_else(|| Error::invalid("genotype", g.to_text(), "a genotype of the space"))?;
    Ok(node
        .iter()
        .find(|k| k.from == e.from)
        .map_or(OpKind::None, |k| k.op))
}

/// A uniformly drawn architecture of `space` among those with `split.op` on `split.edge`
/// (rejection sampling: exactly the uniform distribution conditioned on the split).
/// `split.op` must be one of [`split_ops`], so some draw is accepted.
pub fn uniform_genotype_in(space: &SearchSpace, split: EdgeSplit, rng: &mut Rng) -> Genotype {
    loop {
        let g = uniform_genotype(space, rng);
        if op_on_edge(&g, space, split.edge).is_ok_and(|op| op == split.op) {
            return g;
        }
    }
}
