//! Mixing weights handed to the supernet: a softmax, a Gumbel sample or a discrete choice
//! are all just [`ArchWeights`]. Which ops are active is known on the host, so a sampled
//! sub-network runs only its own operations.
use crate::space::{CellGenotype, CellSpec, CellType, Genotype, SearchSpace};
use crate::{Error, Result};
use tch::{Device, Kind, Tensor};

/// Mixing weights of one cell type: `[edges, ops]`, plus which entries are non-zero.
#[derive(Debug)]
pub struct MixWeights {
    pub weights: Tensor,
    /// Per edge, the op columns to compute; `None` means every op (a dense mixture).
    active: Option<Vec<Vec<usize>>>,
    /// Every active weight is exactly 1 and needs no gradient (a discrete architecture):
    /// the multiplication can be skipped.
    unit: bool,
    /// GDAS: the (zero-valued) weights of the ops not computed are added to the edge output
    /// too, so that their straight-through gradient is the sum of the output gradient.
    straight_through: bool,
    /// PC-DARTS edge normalisation: one weight per edge (per node, the softmax of its
    /// incoming betas) that scales the edge's whole output.
    edges: Option<Tensor>,
}

impl MixWeights {
    /// A dense mixture (softmax): every operation of every edge runs.
    pub fn dense(weights: Tensor) -> Self {
        MixWeights {
            weights,
            active: None,
            unit: false,
            straight_through: false,
            edges: None,
        }
    }

    /// Weights that are zero in most places (one-hot, hard Gumbel, sampled paths): reads
    /// the non-zero pattern to the host once so that zero-weight ops cost nothing.
    pub fn sparse(weights: Tensor) -> Self {
        let mask =
            Vec::<Vec<f32>>::try_from(weights.detach().to_kind(Kind::Float).to_device(Device::Cpu))
                .expect("mixing weights are a 2-D tensor");
        let active = mask
            .iter()
            .map(|row| {
                row.iter()
                    .enumerate()
                    .filter(|(_, &w)| w != 0.0)
                    .map(|(k, _)| k)
                    .collect()
            })
            .collect();
        MixWeights {
            weights,
            active: Some(active),
            unit: false,
            straight_through: false,
            edges: None,
        }
    }

    /// Hard straight-through weights (GDAS `hardwts`): sparse, and every op left out adds
    /// its weight (0 in value) to the edge output, as the GDAS reference does.
    pub fn straight_through(weights: Tensor) -> Self {
        MixWeights {
            straight_through: true,
            ..Self::sparse(weights)
        }
    }

    /// These weights with PC-DARTS edge normalisation by the raw `betas` (`[edges]`) of a
    /// cell laid out as `spec`.
    pub fn with_betas(self, betas: &Tensor, spec: &CellSpec) -> Self {
        MixWeights {
            edges: Some(super::partial::normalise_edges(
                betas,
                spec.inputs,
                spec.nodes,
            )),
            ..self
        }
    }

    /// The normalised beta of edge `e` (a 0-D tensor), when edges are normalised.
    pub fn edge_weight(&self, e: usize) -> Option<Tensor> {
        self.edges.as_ref().map(|b| b.get(e as i64))
    }

    /// The same mixture on detached copies of the weights (and edge weights) that are
    /// leaves of their own graph, each requiring a gradient iff the original does:
    /// activation recomputation collects their gradient cell by cell.
    pub fn leaf(&self) -> Self {
        let leaf = |t: &Tensor| {
            let l = t.detach();
            if t.requires_grad() {
                l.set_requires_grad(true)
            } else {
                l
            }
        };
        MixWeights {
            weights: leaf(&self.weights),
            active: self.active.clone(),
            unit: self.unit,
            straight_through: self.straight_through,
            edges: self.edges.as_ref().map(leaf),
        }
    }

    /// The tensors the mixture computes with: the op weights, then the edge weights.
    pub fn tensors(&self) -> impl Iterator<Item = &Tensor> {
        std::iter::once(&self.weights).chain(self.edges.as_ref())
    }

    pub fn is_straight_through(&self) -> bool {
        self.straight_through
    }

    pub fn has_edge_weights(&self) -> bool {
        self.edges.is_some()
    }

    pub fn is_unit(&self) -> bool {
        self.unit
    }

    /// The op columns to compute on edge `e`.
    pub fn active_ops(&self, e: usize, num_ops: usize) -> ActiveOps<'_> {
        match &self.active {
            None => ActiveOps::All(0..num_ops),
            Some(a) => ActiveOps::Some(a[e].iter()),
        }
    }

    /// One-hot weights of a discrete cell: kept edges weigh 1 on their op, other edges 0.
    pub fn one_hot(
        cell: &CellGenotype,
        spec: &CellSpec,
        space: &SearchSpace,
        device: Device,
    ) -> Result<Self> {
        let choice = edge_choice(cell, spec, space)?;
        let mut data = vec![0f32; choice.len() * space.ops.len()];
        for (e, k) in choice.iter().enumerate() {
            if let Some(k) = k {
                data[e * space.ops.len() + k] = 1.0;
            }
        }
        let weights = Tensor::from_slice(&data)
            .view([choice.len() as i64, space.ops.len() as i64])
            .to_device(device);
        let active = choice.iter().map(|k| k.iter().copied().collect()).collect();
        Ok(MixWeights {
            weights,
            active: Some(active),
            unit: true,
            straight_through: false,
            edges: None,
        })
    }
}

impl MixWeights {
    /// One-hot weights with a 1 in column `columns[r]` of each row `r` (a discrete chain
    /// architecture: one choice per searchable layer).
    pub fn one_hot_rows(columns: &[usize], num_columns: usize, device: Device) -> Self {
        let mut data = vec![0f32; columns.len() * num_columns];
        for (r, &k) in columns.iter().enumerate() {
            data[r * num_columns + k] = 1.0;
        }
        let weights = Tensor::from_slice(&data)
            .view([columns.len() as i64, num_columns as i64])
            .to_device(device);
        MixWeights {
            weights,
            active: Some(columns.iter().map(|&k| vec![k]).collect()),
            unit: true,
            straight_through: false,
            edges: None,
        }
    }
}

/// The chosen op column of every edge of a discrete cell (`None` for dropped edges).
pub fn edge_choice(
    cell: &CellGenotype,
    spec: &CellSpec,
    space: &SearchSpace,
) -> Result<Vec<Option<usize>>> {
    let edges = spec.edges();
    let mut choice = vec![None; edges.len()];
    for (i, node) in cell.nodes.iter().enumerate() {
        for g in node {
            let to = spec.inputs + i;
            let e = edges
                .iter()
                .position(|e| e.to == to && e.from == g.from)
                .ok_or_else(|| {
                    Error::invalid(
                        "genotype edge",
                        format!("{}->{}", g.from, to),
                        "an edge of the cell",
                    )
                })?;
            let k = space.index_of(g.op).ok_or_else(|| {
                Error::invalid("genotype operation", g.op, "an operation of the space")
            })?;
            choice[e] = Some(k);
        }
    }
    Ok(choice)
}

pub enum ActiveOps<'a> {
    All(std::ops::Range<usize>),
    Some(std::slice::Iter<'a, usize>),
}

impl Iterator for ActiveOps<'_> {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        match self {
            ActiveOps::All(r) => r.next(),
            ActiveOps::Some(it) => it.next().copied(),
        }
    }
}

/// Mixing weights for every cell type of a network.
#[derive(Debug)]
pub struct ArchWeights {
    pub normal: MixWeights,
    pub reduce: Option<MixWeights>,
}

impl ArchWeights {
    pub fn get(&self, t: CellType) -> &MixWeights {
        match t {
            CellType::Normal => &self.normal,
            CellType::Reduce => self
                .reduce
                .as_ref()
                .expect("a reduction cell has reduction weights"),
        }
    }

    /// Every cell type's [`MixWeights::leaf`].
    pub fn leaves(&self) -> Self {
        ArchWeights {
            normal: self.normal.leaf(),
            reduce: self.reduce.as_ref().map(MixWeights::leaf),
        }
    }

    /// The tensors of every cell type's mixture ([`MixWeights::tensors`]), normal first.
    pub fn tensors(&self) -> impl Iterator<Item = &Tensor> {
        self.normal
            .tensors()
            .chain(self.reduce.iter().flat_map(MixWeights::tensors))
    }

    /// One-hot weights of a genotype (validated against `space`).
    pub fn from_genotype(genotype: &Genotype, space: &SearchSpace, device: Device) -> Result<Self> {
        genotype.validate(space)?;
        let one_hot = |t: CellType| {
            let cell = genotype
                .cell(t)
                .expect("validated genotype has every cell type");
            MixWeights::one_hot(cell, &space.cell, space, device)
        };
        let reduce = if space.network.cell_types().contains(&CellType::Reduce) {
            Some(one_hot(CellType::Reduce)?)
        } else {
            None
        };
        Ok(ArchWeights {
            normal: one_hot(CellType::Normal)?,
            reduce,
        })
    }
}
