//! Every architecture of a space, in a fixed order: what a ground-truth table trains. The
//! genotypes follow the space's derivation rule exactly as [`super::Sampler`] draws them
//! (DARTS top-k: `keep` distinct inputs per node, sorted, each with an op other than
//! `none`; NAS-Bench-201 argmax: every edge one op, `none` included), so a drawn
//! architecture is one of the enumerated ones, with the same text.
use super::{CellGenotype, CellType, DeriveRule, GeneEdge, Genotype, OpKind, SearchSpace};

/// The number of architectures of `space` (saturating at `u128::MAX`), computed without
/// enumerating them.
pub fn count_architectures(space: &SearchSpace) -> u128 {
    let per_cell = node_choices(space)
        .iter()
        .fold(1u128, |acc, n| acc.saturating_mul(*n));
    space
        .network
        .cell_types()
        .iter()
        .fold(1u128, |acc, _| acc.saturating_mul(per_cell))
}

/// The choices of each node of one cell.
fn node_choices(space: &SearchSpace) -> Vec<u128> {
    let ops = space.ops.len() as u128;
    let real = space.ops.iter().filter(|o| !o.is_none()).count() as u128;
    (0..space.cell.nodes)
        .map(|i| {
            let n_in = space.cell.inputs + i;
            match space.cell.derive {
                DeriveRule::Argmax => ops.saturating_pow(n_in as u32),
                DeriveRule::TopK { keep } => {
                    let k = keep.min(n_in);
                    binomial(n_in, k).saturating_mul(real.saturating_pow(k as u32))
                }
            }
        })
        .collect()
}

fn binomial(n: usize, k: usize) -> u128 {
    (0..k).fold(1u128, |acc, i| acc * (n - i) as u128 / (i + 1) as u128)
}

/// Every architecture of `space`: the first cell type's choices vary slowest, and within a
/// cell the first node's; a node's inputs in lexicographic order, then its ops in the
/// space's column order. The caller bounds the size with [`count_architectures`] first.
pub fn enumerate(space: &SearchSpace) -> Vec<Genotype> {
    let cells = all_cells(space);
    let types = space.network.cell_types();
    let mut out = Vec::new();
    for normal in &cells {
        if types.contains(&CellType::Reduce) {
            for reduce in &cells {
                out.push(Genotype {
                    normal: normal.clone(),
                    reduce: Some(reduce.clone()),
                });
            }
        } else {
            out.push(Genotype {
                normal: normal.clone(),
                reduce: None,
            });
        }
    }
    out
}

fn all_cells(space: &SearchSpace) -> Vec<CellGenotype> {
    let per_node: Vec<Vec<Vec<GeneEdge>>> = (0..space.cell.nodes)
        .map(|i| all_nodes(space, space.cell.inputs + i))
        .collect();
    let mut cells: Vec<Vec<Vec<GeneEdge>>> = vec![Vec::new()];
    for choices in &per_node {
        cells = cells
            .iter()
            .flat_map(|prefix| {
                choices.iter().map(move |node| {
                    let mut c = prefix.clone();
                    c.push(node.clone());
                    c
                })
            })
            .collect();
    }
    cells
        .into_iter()
        .map(|nodes| CellGenotype {
            nodes,
            concat: space.cell.concat.clone(),
        })
        .collect()
}

/// Every kept-edge list of a node with `n_in` incoming states.
fn all_nodes(space: &SearchSpace, n_in: usize) -> Vec<Vec<GeneEdge>> {
    let (inputs, ops): (Vec<Vec<usize>>, Vec<OpKind>) = match space.cell.derive {
        DeriveRule::Argmax => (vec![(0..n_in).collect()], space.ops.clone()),
        DeriveRule::TopK { keep } => (
            combinations(n_in, keep.min(n_in)),
            space.ops.iter().copied().filter(|o| !o.is_none()).collect(),
        ),
    };
    let mut out = Vec::new();
    for from in &inputs {
        let mut edges: Vec<Vec<GeneEdge>> = vec![Vec::new()];
        for &f in from {
            edges = edges
                .iter()
                .flat_map(|prefix| {
                    ops.iter().map(move |&op| {
                        let mut e = prefix.clone();
                        e.push(GeneEdge { op, from: f });
                        e
                    })
                })
                .collect();
        }
        out.extend(edges);
    }
    out
}

/// The `k`-subsets of `0..n`, each sorted, in lexicographic order.
fn combinations(n: usize, k: usize) -> Vec<Vec<usize>> {
    if k == 0 {
        return vec![Vec::new()];
    }
    (k - 1..n)
        .flat_map(|last| {
            combinations(last, k - 1).into_iter().map(move |mut c| {
                c.push(last);
                c
            })
        })
        .collect()
}
