//! From mixing weights to a discrete architecture, by the space's derivation rule.
use crate::space::{CellGenotype, CellSpec, DeriveRule, GeneEdge, Genotype, OpKind, SearchSpace};

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

/// Derive the genotype from the mixing weights of every cell type.
pub fn derive(space: &SearchSpace, normal: &[Vec<f32>], reduce: Option<&[Vec<f32>]>) -> Genotype {
    Genotype {
        normal: derive_cell(normal, &space.cell, &space.ops),
        reduce: reduce.map(|w| derive_cell(w, &space.cell, &space.ops)),
    }
}
