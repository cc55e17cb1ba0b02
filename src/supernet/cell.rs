//! A search cell: preprocessing of the cell inputs, then every intermediate node as the sum
//! of mixed edges from all earlier states, then the concatenation of the output states.
use super::mixed::MixedOp;
use super::network::Pass;
use super::partial::PartialChannels;
use super::weights::MixWeights;
use crate::ops::{
    relu_conv_bn, Chain, ConvShape, FactorizedReduce, OpConfig, Operation, SharedInput,
};
use crate::space::{CellSpec, CellType, OpKind};
use tch::{nn, Tensor};

/// How a DARTS cell brings an input to `C` channels at the cell's input resolution.
#[derive(Debug)]
pub enum Preprocess {
    /// ReLU-conv1x1-BN.
    Conv(Chain),
    /// After a reduction cell, the input two cells back has twice the resolution.
    Reduce(Box<FactorizedReduce>),
}

impl Preprocess {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        match self {
            Preprocess::Conv(c) => c.forward_t(xs, train),
            Preprocess::Reduce(f) => f.forward_t(xs, train),
        }
    }

    fn macs(&self, hw: (i64, i64)) -> (u64, (i64, i64)) {
        match self {
            Preprocess::Conv(c) => c.macs(hw),
            Preprocess::Reduce(f) => (f.macs(hw), (hw.0 / 2, hw.1 / 2)),
        }
    }
}

/// What a cell is built from.
pub struct CellPlan<'a> {
    pub spec: &'a CellSpec,
    pub ops: &'a [OpKind],
    pub cell_type: CellType,
    /// Channels of every node.
    pub c: i64,
    /// Channels of the cell inputs (oldest first) and whether each is at twice the
    /// resolution of the cell input (it comes from before a reduction cell).
    pub inputs: Vec<(i64, bool)>,
    /// Per edge, the op columns to build.
    pub keep: Vec<Vec<usize>>,
    pub cfg: OpConfig,
    /// DARTS cells bring every input to `C` channels first (ReLU-conv-BN or
    /// FactorizedReduce); NAS-Bench-201 cells use their input as it is.
    pub preprocess: bool,
    /// PC-DARTS partial channel connections on every edge (`OFF` outside a search).
    pub partial: PartialChannels,
    /// Few-shot split: (edge, op column) fixed in this cell (its `keep` is that column).
    pub fixed: Option<(usize, usize)>,
}

#[derive(Debug)]
pub struct SearchCell {
    pub cell_type: CellType,
    spec: CellSpec,
    /// Empty for NAS-Bench-201 cells.
    preprocess: Vec<Preprocess>,
    edges: Vec<MixedOp>,
}

impl SearchCell {
    pub fn new(p: &nn::Path, plan: CellPlan) -> Self {
        let affine = plan.cfg.affine;
        let preprocess = if plan.preprocess {
            plan.inputs
                .iter()
                .enumerate()
                .map(|(i, &(c_in, reduce))| {
                    let pp = p / format!("preprocess{i}");
                    if reduce {
                        Preprocess::Reduce(Box::new(FactorizedReduce::new(
                            &pp, c_in, plan.c, affine,
                        )))
                    } else {
                        Preprocess::Conv(relu_conv_bn(&pp, ConvShape::new(c_in, plan.c, 1), affine))
                    }
                })
                .collect()
        } else {
            Vec::new()
        };
        let reduction = plan.cell_type == CellType::Reduce;
        let edges = plan
            .spec
            .edges()
            .iter()
            .zip(&plan.keep)
            .enumerate()
            .map(|(i, (e, keep))| {
                let stride = if reduction && e.from < plan.spec.inputs {
                    2
                } else {
                    1
                };
                let edge = MixedOp::new(
                    &(p / "edges" / e.key()),
                    plan.ops,
                    keep,
                    (plan.c, stride),
                    plan.cfg,
                    plan.partial,
                );
                match plan.fixed {
                    Some((fixed, k)) if fixed == i => edge.fixed_to(k),
                    _ => edge,
                }
            })
            .collect();
        SearchCell {
            cell_type: plan.cell_type,
            spec: plan.spec.clone(),
            preprocess,
            edges,
        }
    }

    pub fn forward_t(&self, inputs: &[&Tensor], w: &MixWeights, pass: Pass) -> Tensor {
        let inputs: Vec<Tensor> = if self.preprocess.is_empty() {
            inputs.iter().map(|x| x.shallow_clone()).collect()
        } else {
            self.preprocess
                .iter()
                .zip(inputs)
                .map(|(pp, x)| pp.forward_t(x, pass.train))
                .collect()
        };
        // Each state computes its ReLU once, for all the edges that leave it.
        let mut states: Vec<SharedInput> = inputs.into_iter().map(SharedInput::new).collect();
        let mut e = 0;
        for _ in 0..self.spec.nodes {
            let n_in = states.len();
            let mut node: Option<Tensor> = None;
            for (from, state) in states.iter().enumerate() {
                self.edges[e + from].add_to_node(&mut node, state, w, e + from, pass);
            }
            // A node with no contribution is zero, at the resolution of its edges.
            let node = node.unwrap_or_else(|| {
                Operation::Zero {
                    stride: self.edges[e].stride,
                }
                .forward_t(&states[0].x, pass.train)
            });
            e += n_in;
            states.push(SharedInput::new(node));
        }
        if self.spec.concat.len() == 1 {
            states.swap_remove(self.spec.concat[0]).x
        } else {
            let out: Vec<&Tensor> = self.spec.concat.iter().map(|&s| &states[s].x).collect();
            Tensor::cat(&out, 1)
        }
    }

    /// Multiply-adds for one image; `hw` is the resolution of the newest input.
    pub fn macs(&self, hw: (i64, i64)) -> u64 {
        let mut total = 0;
        for pp in &self.preprocess {
            let input_hw = match pp {
                Preprocess::Reduce(_) => (hw.0 * 2, hw.1 * 2),
                Preprocess::Conv(_) => hw,
            };
            total += pp.macs(input_hw).0;
        }
        for (e, edge) in self.spec.edges().iter().zip(&self.edges) {
            let at = if e.from < self.spec.inputs {
                hw
            } else {
                self.node_hw(hw)
            };
            total += edge.macs(at);
        }
        total
    }

    /// Resolution of the intermediate nodes.
    pub fn node_hw(&self, hw: (i64, i64)) -> (i64, i64) {
        if self.cell_type == CellType::Reduce {
            ((hw.0 + 1) / 2, (hw.1 + 1) / 2)
        } else {
            hw
        }
    }
}
