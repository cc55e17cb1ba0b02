//! PC-DARTS (Xu et al. 2020) partial channel connections: an edge mixes its candidate ops
//! on the first `C/K` channels only; the other channels bypass the ops (identity, or 2x2
//! max pooling on a stride-2 edge), and the two parts are concatenated and shuffled in `K`
//! groups. Edge normalisation (a softmax over each node's incoming betas) is carried by
//! [`super::MixWeights`].
use crate::space::{CellType, NetworkSpec, OpKind, SearchSpace};
use crate::{Error, Result};
use tch::Tensor;

/// How many channel groups an edge is split into (`K`; 1 = every channel goes through the
/// ops, plain DARTS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartialChannels(pub i64);

impl PartialChannels {
    pub const OFF: PartialChannels = PartialChannels(1);

    pub fn is_on(self) -> bool {
        self.0 > 1
    }

    /// Channels the candidate ops of an edge on `c` channels are built on.
    pub fn op_channels(self, c: i64) -> i64 {
        c / self.0
    }

    /// Refuse a space with a cell whose channels `K` does not split evenly (see
    /// [`Self::check_cell`]).
    pub fn check_space(self, space: &SearchSpace) -> Result<()> {
        match &space.network {
            NetworkSpec::Darts {
                layers, channels, ..
            } => {
                let reductions = space.network.reduction_layers();
                let mut c = *channels as i64;
                for i in 0..*layers {
                    let t = if reductions.contains(&i) {
                        c *= 2;
                        CellType::Reduce
                    } else {
                        CellType::Normal
                    };
                    self.check_cell(c, i, t, &space.ops)?;
                }
            }
            NetworkSpec::Nb201 {
                cells_per_stage,
                channels,
            } => {
                for stage in 0..3 {
                    let c = (*channels as i64) << stage;
                    let first = stage * (cells_per_stage + 1);
                    self.check_cell(c, first, CellType::Normal, &space.ops)?;
                }
            }
        }
        Ok(())
    }

    /// Refuse a cell of `c` channels that `K` does not split evenly (and a reduction cell
    /// whose `skip_connect`, a FactorizedReduce on `C/K` channels, needs `C/K` even).
    pub fn check_cell(self, c: i64, cell: usize, t: CellType, ops: &[OpKind]) -> Result<()> {
        let k = self.0;
        if k < 1 {
            return Err(Error::invalid("partial_channels", k, "at least 1"));
        }
        if c % k != 0 {
            return Err(Error::invalid(
                "partial_channels",
                k,
                format!("a divisor of the channels of every cell (cell {cell} has C = {c})"),
            ));
        }
        let reduce_skip = t == CellType::Reduce && ops.contains(&OpKind::SkipConnect);
        if k > 1 && reduce_skip && (c / k) % 2 != 0 {
            return Err(Error::invalid(
                "partial_channels",
                k,
                format!(
                    "C/K even in reduction cells with skip_connect (cell {cell}: C = {c}, C/K = {})",
                    c / k
                ),
            ));
        }
        Ok(())
    }

    /// The channels that go through the ops: `x[:, :C/K]`.
    pub fn ops_part(self, xs: &Tensor) -> Tensor {
        let c = xs.size()[1];
        // A dense copy in the network's layout: oneDNN's convolution backward pass gave
        // run-to-run different weight gradients on the channel-narrowed view of a
        // channels-last tensor (seen in FactorizedReduce's `conv_1`).
        crate::ops::channels_last(&xs.narrow(1, 0, c / self.0))
    }

    /// `channel_shuffle(cat([mixed, bypass(x[:, C/K:])]), K)`, where the bypass is the
    /// identity when `mixed` keeps the input resolution and 2x2 max pooling otherwise.
    pub fn combine(self, mixed: &Tensor, xs: &Tensor) -> Tensor {
        let c = xs.size()[1];
        let rest = xs.narrow(1, c / self.0, c - c / self.0);
        let rest = if mixed.size()[2] == xs.size()[2] {
            rest
        } else {
            rest.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false)
        };
        channel_shuffle(&Tensor::cat(&[mixed, &rest], 1), self.0)
    }
}

/// ShuffleNet's channel shuffle as PC-DARTS applies it: view `[B, G, C/G, H, W]`, swap
/// the group axes, view `[B, C, H, W]`. Channel `g * C/G + j` moves to `j * G + g`.
/// In channels-last layout (the CPU; CUDA with `--channels-last`) the result is
/// channels-last, like the rest of the network there.
pub fn channel_shuffle(xs: &Tensor, groups: i64) -> Tensor {
    let s = xs.size();
    let (b, c, h, w) = (s[0], s[1], s[2], s[3]);
    if crate::backend::channels_last_on(xs.device()) {
        return xs
            .permute([0, 2, 3, 1])
            .reshape([b, h, w, groups, c / groups])
            .transpose(3, 4)
            .contiguous()
            .view([b, h, w, c])
            .permute([0, 3, 1, 2]);
    }
    xs.view([b, groups, c / groups, h, w])
        .transpose(1, 2)
        .contiguous()
        .view([b, c, h, w])
}

/// Per node, the softmax of its incoming edges' betas (PC-DARTS edge normalisation):
/// `betas` holds one entry per edge in alpha-row order, node by node; the result too.
pub fn normalise_edges(betas: &Tensor, inputs: usize, nodes: usize) -> Tensor {
    let mut start = 0;
    let parts: Vec<Tensor> = (0..nodes)
        .map(|i| {
            let n = (inputs + i) as i64;
            let part = betas.narrow(0, start, n).softmax(-1, tch::Kind::Float);
            start += n;
            part
        })
        .collect();
    Tensor::cat(&parts, 0)
}
