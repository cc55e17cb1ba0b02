//! Drawing discrete architectures: uniformly from the space, from the softmax of the
//! alphas, and the mutation and crossover of evolutionary search. Every genotype drawn
//! here follows the space's derivation rule (DARTS top-k: each node keeps `keep`
//! distinct predecessors, each with an op other than `none`; NAS-Bench-201 argmax: every
//! edge keeps one op, `none` included), with each node's edges sorted by input, so that
//! equal architectures have equal text.
use super::{
    CellGenotype, CellSpec, CellType, DeriveRule, GeneEdge, Genotype, OpKind, SearchSpace,
};
use crate::rng::Rng;

/// Where architectures are drawn from.
#[derive(Debug, Clone, PartialEq)]
pub enum Sampler {
    /// Every choice uniform.
    Uniform,
    /// Mixing weights `[edges][ops]` per cell type (softmax of the alphas): edges drawn
    /// without replacement in proportion to their weight other than `none`, ops in
    /// proportion to their weight.
    Weights {
        normal: Vec<Vec<f32>>,
        reduce: Option<Vec<Vec<f32>>>,
    },
}

/// Index drawn in proportion to `w` (non-negative; uniform when they sum to zero).
fn weighted(w: &[f64], rng: &mut Rng) -> usize {
    let total: f64 = w.iter().sum();
    if total <= 0.0 || !total.is_finite() {
        return rng.below(w.len());
    }
    let mut u = rng.unit() * total;
    for (i, &x) in w.iter().enumerate() {
        if u < x {
            return i;
        }
        u -= x;
    }
    // Rounding: the last index with a positive weight.
    w.iter().rposition(|&x| x > 0.0).unwrap_or(w.len() - 1)
}

impl Sampler {
    /// One architecture of `space`.
    pub fn genotype(&self, space: &SearchSpace, rng: &mut Rng) -> Genotype {
        let mut cell = |t: CellType| {
            let rows = match (self, t) {
                (Sampler::Uniform, _) => None,
                (Sampler::Weights { normal, .. }, CellType::Normal) => Some(normal.as_slice()),
                (Sampler::Weights { reduce, .. }, CellType::Reduce) => reduce.as_deref(),
            };
            sample_cell(&space.cell, &space.ops, rows, rng)
        };
        let normal = cell(CellType::Normal);
        let reduce = space
            .network
            .cell_types()
            .contains(&CellType::Reduce)
            .then(|| cell(CellType::Reduce));
        Genotype { normal, reduce }
    }
}

/// A uniformly drawn architecture of `space`.
pub fn uniform_genotype(space: &SearchSpace, rng: &mut Rng) -> Genotype {
    Sampler::Uniform.genotype(space, rng)
}

/// One cell; `rows` are the cell's mixing weights (uniform when absent).
fn sample_cell(
    spec: &CellSpec,
    ops: &[OpKind],
    rows: Option<&[Vec<f32>]>,
    rng: &mut Rng,
) -> CellGenotype {
    let mut start = 0;
    let nodes = (0..spec.nodes)
        .map(|i| {
            let n_in = spec.inputs + i;
            let w = rows.map(|r| &r[start..start + n_in]);
            start += n_in;
            sample_node(spec.derive, n_in, ops, w, rng)
        })
        .collect();
    CellGenotype {
        nodes,
        concat: spec.concat.clone(),
    }
}

/// Op weights of one edge: uniform, or the row; `none` zeroed when excluded.
fn op_weights(ops: &[OpKind], row: Option<&Vec<f32>>, with_none: bool) -> Vec<f64> {
    ops.iter()
        .enumerate()
        .map(|(k, op)| {
            if op.is_none() && !with_none {
                0.0
            } else {
                row.map_or(1.0, |r| r[k].max(0.0) as f64)
            }
        })
        .collect()
}

fn sample_node(
    rule: DeriveRule,
    n_in: usize,
    ops: &[OpKind],
    rows: Option<&[Vec<f32>]>,
    rng: &mut Rng,
) -> Vec<GeneEdge> {
    let row = |from: usize| rows.map(|r| &r[from]);
    let mut node: Vec<GeneEdge> = match rule {
        DeriveRule::TopK { keep } => {
            // Edges without replacement, each weighted by its mass other than `none`.
            let mut candidates: Vec<usize> = (0..n_in).collect();
            let mut chosen = Vec::new();
            while chosen.len() < keep.min(n_in) {
                let w: Vec<f64> = candidates
                    .iter()
                    .map(|&f| op_weights(ops, row(f), false).iter().sum())
                    .collect();
                chosen.push(candidates.remove(weighted(&w, rng)));
            }
            chosen
                .into_iter()
                .map(|from| GeneEdge {
                    op: ops[weighted(&op_weights(ops, row(from), false), rng)],
                    from,
                })
                .collect()
        }
        DeriveRule::Argmax => (0..n_in)
            .map(|from| GeneEdge {
                op: ops[weighted(&op_weights(ops, row(from), true), rng)],
                from,
            })
            .collect(),
    };
    node.sort_by_key(|e| e.from);
    node
}

/// SPOS mutation: each node re-draws its inputs with probability `p` (top-k rule), and
/// every kept edge re-draws its op with probability `p`, uniformly.
pub fn mutate(g: &Genotype, space: &SearchSpace, p: f64, rng: &mut Rng) -> Genotype {
    let mut cell = |c: &CellGenotype| {
        let nodes = c
            .nodes
            .iter()
            .enumerate()
            .map(|(i, node)| {
                let n_in = space.cell.inputs + i;
                let mut node = node.clone();
                if let DeriveRule::TopK { .. } = space.cell.derive {
                    if rng.unit() < p {
                        let fresh = sample_node(space.cell.derive, n_in, &space.ops, None, rng);
                        for (e, f) in node.iter_mut().zip(fresh) {
                            e.from = f.from;
                        }
                    }
                }
                let with_none = space.cell.derive == DeriveRule::Argmax;
                for e in node.iter_mut() {
                    if rng.unit() < p {
                        e.op = space.ops[weighted(&op_weights(&space.ops, None, with_none), rng)];
                    }
                }
                node.sort_by_key(|e| e.from);
                node
            })
            .collect();
        CellGenotype {
            nodes,
            concat: c.concat.clone(),
        }
    };
    let normal = cell(&g.normal);
    let reduce = g.reduce.as_ref().map(cell);
    Genotype { normal, reduce }
}

/// Uniform crossover per node: each node (its inputs and ops together) from `a` or `b`.
pub fn crossover(a: &Genotype, b: &Genotype, rng: &mut Rng) -> Genotype {
    let mut cell = |x: &CellGenotype, y: &CellGenotype| CellGenotype {
        nodes: x
            .nodes
            .iter()
            .zip(&y.nodes)
            .map(|(n, m)| if rng.coin() { n.clone() } else { m.clone() })
            .collect(),
        concat: x.concat.clone(),
    };
    let normal = cell(&a.normal, &b.normal);
    let reduce = match (&a.reduce, &b.reduce) {
        (Some(x), Some(y)) => Some(cell(x, y)),
        _ => None,
    };
    Genotype { normal, reduce }
}
