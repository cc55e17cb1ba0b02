//! One edge of a search cell: every candidate operation, mixed by the edge's weights.
use super::network::Pass;
use super::partial::PartialChannels;
use super::weights::MixWeights;
use crate::ops::{OpConfig, Operation, SharedInput};
use crate::space::OpKind;
use tch::{nn, Tensor};

#[derive(Debug)]
pub struct MixedOp {
    kinds: Vec<OpKind>,
    /// Per op column; `None` where a pruned (sub-)network does not hold that op.
    ops: Vec<Option<Operation>>,
    pub stride: i64,
    /// PC-DARTS: the ops hold `C/K` channels and see only those.
    partial: PartialChannels,
    /// Few-shot split: the edge holds only this op column and outputs it with weight 1,
    /// whatever the mixing weights say (`none`: the edge adds nothing).
    fixed: Option<usize>,
}

impl MixedOp {
    /// `keep` lists the op columns to build (all of them in a supernet); with partial
    /// channels the ops are built on `C/K` channels.
    pub fn new(
        p: &nn::Path,
        kinds: &[OpKind],
        keep: &[usize],
        (c, stride): (i64, i64),
        cfg: OpConfig,
        partial: PartialChannels,
    ) -> Self {
        let c = partial.op_channels(c);
        let ops = kinds
            .iter()
            .enumerate()
            .map(|(k, &kind)| {
                keep.contains(&k)
                    .then(|| Operation::new(p / kind.name(), kind, c, stride, cfg))
            })
            .collect();
        MixedOp {
            kinds: kinds.to_vec(),
            ops,
            stride,
            partial,
            fixed: None,
        }
    }

    /// The edge of a few-shot sub-supernet: only op column `k` (its only op, built with
    /// `keep = [k]`), at weight 1 under any mixing weights.
    pub fn fixed_to(self, k: usize) -> Self {
        MixedOp {
            fixed: Some(k),
            ..self
        }
    }

    /// Adds the edge's output to its node's sum `node`. With plain softmax weights (no
    /// partial channels, betas, one-hot or straight-through weights) every op's weighted
    /// output goes into one buffer per node, `node += w[e, k] * op_k(x)` in place: one
    /// kernel and no allocation per op instead of a product and a sum. The buffer is the
    /// node's first product, so nothing else holds it. Otherwise the edge's mixture is
    /// formed first and added.
    pub fn add_to_node(
        &self,
        node: &mut Option<Tensor>,
        input: &SharedInput,
        w: &MixWeights,
        e: usize,
        pass: Pass,
    ) {
        if let Some(k) = self.fixed {
            if let Some(y) = self.fixed_output(input, k, pass) {
                *node = Some(match node.take() {
                    None => y,
                    Some(a) => a + y,
                });
            }
            return;
        }
        if Self::accumulates_in_place(w) && !self.partial.is_on() {
            let row = w.weights.get(e as i64);
            let mut edge: Option<Tensor> = None;
            for (k, y) in self.op_outputs(input, w, e, pass) {
                let wk = row.get(k as i64);
                match &mut edge {
                    None => edge = Some(y * wk),
                    Some(acc) => {
                        let _ = acc.addcmul_(&y, &wk);
                    }
                }
            }
            match (node.as_mut(), edge) {
                (_, None) => {}
                (None, Some(y)) => *node = Some(y),
                (Some(acc), Some(y)) => {
                    let _ = acc.g_add_(&y);
                }
            }
        } else if let Some(y) = self.forward_t(input, w, e, pass) {
            *node = Some(match node.take() {
                None => y,
                Some(a) => a + y,
            });
        }
    }

    /// The output of the fixed op `k` (drop-path as for any op); `None` for `none`.
    fn fixed_output(&self, input: &SharedInput, k: usize, pass: Pass) -> Option<Tensor> {
        let op = self.ops[k].as_ref().filter(|_| !self.kinds[k].is_none())?;
        let y = op.forward_shared(input, pass.train);
        Some(if pass.drops_path() && !matches!(op, Operation::Identity) {
            drop_path(&y, pass.drop_path)
        } else {
            y
        })
    }

    /// Whether the mixture of `w` can be summed into a node buffer in place.
    fn accumulates_in_place(w: &MixWeights) -> bool {
        !w.is_unit() && !w.is_straight_through() && !w.has_edge_weights()
    }

    /// The edge's output: the mixture (PC-DARTS: on `C/K` channels, then concatenated with
    /// the bypassed rest and shuffled), times the edge's normalised beta when the mixing
    /// weights carry betas.
    fn forward_t(
        &self,
        input: &SharedInput,
        w: &MixWeights,
        e: usize,
        pass: Pass,
    ) -> Option<Tensor> {
        let y = if self.partial.is_on() {
            // The ReLU of the part is shared by this edge's ops only.
            let part = SharedInput::new(self.partial.ops_part(&input.x));
            let mixed = self.mix_t(&part, w, e, pass).unwrap_or_else(|| {
                Operation::Zero {
                    stride: self.stride,
                }
                .forward_t(&part.x, pass.train)
            });
            self.partial.combine(&mixed, &input.x)
        } else {
            self.mix_t(input, w, e, pass)?
        };
        Some(match w.edge_weight(e) {
            Some(b) => y * b,
            None => y,
        })
    }

    /// `sum_k w[e, k] * op_k(x)` over the active ops (`op_outputs`). `None` when nothing
    /// contributes (every active op is `none`, or the edge is not in a sampled path).
    fn mix_t(&self, input: &SharedInput, w: &MixWeights, e: usize, pass: Pass) -> Option<Tensor> {
        let row = w.weights.get(e as i64);
        let mut acc: Option<Tensor> = None;
        for (k, y) in self.op_outputs(input, w, e, pass) {
            let y = if w.is_unit() {
                y
            } else {
                y * row.get(k as i64)
            };
            acc = Some(match acc {
                None => y,
                Some(a) => a + y,
            });
        }
        if w.is_straight_through() {
            let active: Vec<usize> = w.active_ops(e, self.kinds.len()).collect();
            let left_out: Vec<i64> = (0..self.kinds.len())
                .filter(|k| !active.contains(k))
                .map(|k| k as i64)
                .collect();
            if !left_out.is_empty() {
                let index = Tensor::from_slice(&left_out).to_device(row.device());
                let s = row.index_select(0, &index).sum(row.kind());
                let base = acc.unwrap_or_else(|| {
                    Operation::Zero {
                        stride: self.stride,
                    }
                    .forward_t(&input.x, pass.train)
                });
                acc = Some(base + s);
            }
        }
        acc
    }

    /// `(k, op_k(x))` for the active ops of edge `e` except `none` (it adds exactly zero,
    /// and its gradient with respect to the weight is zero too), after drop-path in
    /// training: DARTS drops every op's output except the identity's.
    fn op_outputs<'a>(
        &'a self,
        input: &'a SharedInput,
        w: &'a MixWeights,
        e: usize,
        pass: Pass,
    ) -> impl Iterator<Item = (usize, Tensor)> + 'a {
        w.active_ops(e, self.kinds.len())
            .filter(|&k| !self.kinds[k].is_none())
            .map(move |k| {
                let op = self.ops[k].as_ref().unwrap_or_else(|| {
                    panic!(
                        "mixing weights select {} on edge {e}, which this network does not hold",
                        self.kinds[k]
                    )
                });
                let y = op.forward_shared(input, pass.train);
                if pass.drops_path() && !matches!(op, Operation::Identity) {
                    (k, drop_path(&y, pass.drop_path))
                } else {
                    (k, y)
                }
            })
    }

    /// Multiply-adds of the ops this edge holds.
    pub fn macs(&self, hw: (i64, i64)) -> u64 {
        self.ops.iter().flatten().map(|op| op.macs(hw)).sum()
    }
}

/// Zero whole samples with probability `p` and scale the rest by `1 / (1 - p)`. The mask
/// comes from libtorch's generator, which the training loop seeds per step.
fn drop_path(y: &Tensor, p: f64) -> Tensor {
    let keep = 1.0 - p;
    let mask = Tensor::zeros([y.size()[0], 1, 1, 1], (y.kind(), y.device())).bernoulli_p(keep);
    y / keep * mask
}
