//! The candidate operations as libtorch modules, built by one `match` on [`OpKind`].
//! Semantics follow the DARTS and NAS-Bench-201 reference implementations exactly.
mod elastic;
mod factorized;
mod layers;
mod mbconv;
mod record;

pub use elastic::{transform_name, ElasticMbConv};
pub use factorized::FactorizedReduce;
pub use layers::{
    batch_norm, batch_norm_prefix_t, batch_norm_t, channels_last, linear, relu_conv_bn,
    update_running_stats, Affine, Chain, Conv, ConvShape, Layer, LayerSpec, Pool,
};

pub use mbconv::{activate, ConvBnAct, MbConv};
pub(crate) use record::note_relu;
pub use record::record_relus;

use crate::space::OpKind;
use std::cell::{OnceCell, RefCell};
use tch::{nn, Tensor};

/// An operation input whose parameter-free work is done at most once and shared by every
/// edge that leaves the same node: its ReLU (the start of sep/dil convs, ReLU-conv-BN and
/// FactorizedReduce), and its pooling, with the affine-free BN that follows pooling in
/// search cells in training passes. The same values as computing them per operation, with
/// one activation kept for backward instead of one per operation.
pub struct SharedInput {
    pub x: Tensor,
    relu: OnceCell<Tensor>,
    pooled: RefCell<Vec<(PoolKey, Tensor)>>,
}

/// Which pooling output of a [`SharedInput`]: the kind, the stride, and whether it went
/// through a training-mode affine-free BN (whose output depends on its input only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PoolKey {
    max: bool,
    stride: i64,
    normalised: bool,
}

impl SharedInput {
    pub fn new(x: Tensor) -> Self {
        SharedInput {
            x,
            relu: OnceCell::new(),
            pooled: RefCell::new(Vec::new()),
        }
    }

    pub fn relu(&self) -> &Tensor {
        self.relu.get_or_init(|| self.x.relu())
    }

    /// The output cached under `key`, if an edge computed it already.
    fn cached(&self, key: PoolKey) -> Option<Tensor> {
        let pooled = self.pooled.borrow();
        let hit = pooled.iter().find(|(k, _)| *k == key);
        hit.map(|(_, t)| t.shallow_clone())
    }

    fn cache(&self, key: PoolKey, t: &Tensor) {
        self.pooled.borrow_mut().push((key, t.shallow_clone()));
    }

    /// Pooling (and the BN after it) of this input for one edge. In a training pass an
    /// affine-free BN normalises with the batch statistics alone, so its output is the same
    /// on every edge and is computed once; every later edge only updates its own running
    /// statistics with the same batch statistics (libtorch's own update, bit for bit).
    fn pool(&self, max: bool, stride: i64, bn: Option<&nn::BatchNorm>, train: bool) -> Tensor {
        let raw_key = PoolKey {
            max,
            stride,
            normalised: false,
        };
        let raw = self.cached(raw_key).unwrap_or_else(|| {
            let raw = pool(&self.x, max, stride);
            self.cache(raw_key, &raw);
            raw
        });
        let Some(bn) = bn else { return raw };
        if !train || bn.ws.is_some() {
            return batch_norm_t(bn, &raw, train);
        }
        let key = PoolKey {
            normalised: true,
            ..raw_key
        };
        match self.cached(key) {
            Some(ys) => {
                update_running_stats(bn, &raw);
                ys
            }
            None => {
                let ys = batch_norm_t(bn, &raw, true);
                self.cache(key, &ys);
                ys
            }
        }
    }
}

/// 3x3 max or average pooling with padding 1 (`count_include_pad = false`, as in the
/// references).
fn pool(xs: &Tensor, max: bool, stride: i64) -> Tensor {
    let s = [stride, stride];
    if max {
        xs.max_pool2d([3, 3], s, [1, 1], [1, 1], false)
    } else {
        xs.avg_pool2d([3, 3], s, [1, 1], false, false, None::<i64>)
    }
}

/// How the operations of a network are built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpConfig {
    /// Affine BN inside the operations (false in search networks).
    pub affine: Affine,
    /// DARTS search networks follow each pooling with an affine-free BN; NAS-Bench-201
    /// and stand-alone networks do not.
    pub pool_bn: bool,
}

#[derive(Debug)]
pub enum Operation {
    /// `none`: zeros at the output resolution.
    Zero {
        stride: i64,
    },
    Identity,
    FactorizedReduce(Box<FactorizedReduce>),
    Pool {
        max: bool,
        stride: i64,
        bn: Option<nn::BatchNorm>,
    },
    Chain(Chain),
}

impl Operation {
    /// The operation `kind` on `c` channels at `stride`, parameters under `p`.
    pub fn new(p: nn::Path, kind: OpKind, c: i64, stride: i64, cfg: OpConfig) -> Self {
        use LayerSpec::{Bn, Conv, Relu};
        let affine = cfg.affine;
        let sep = |k: i64| {
            let dw = ConvShape::new(c, c, k).padding(k / 2).depthwise();
            let pw = ConvShape::new(c, c, 1);
            Chain::new(
                &p / "op",
                &[
                    Relu,
                    Conv(dw.stride(stride)),
                    Conv(pw),
                    Bn(c, affine),
                    Relu,
                    Conv(dw),
                    Conv(pw),
                    Bn(c, affine),
                ],
            )
        };
        let dil = |k: i64| {
            let dw = ConvShape::new(c, c, k)
                .stride(stride)
                .padding(k / 2 * 2)
                .dilation(2)
                .depthwise();
            Chain::new(
                &p / "op",
                &[Relu, Conv(dw), Conv(ConvShape::new(c, c, 1)), Bn(c, affine)],
            )
        };
        // NAS-Bench-201: `Conv2d(..., bias=not affine)`.
        let nor = |k: i64| {
            relu_conv_bn(
                &p,
                ConvShape::new(c, c, k)
                    .stride(stride)
                    .padding(k / 2)
                    .with_bias(affine == Affine::No),
                affine,
            )
        };
        let pool = |max: bool| Operation::Pool {
            max,
            stride,
            bn: cfg.pool_bn.then(|| batch_norm(&p / "bn", c, Affine::No)),
        };
        match kind {
            OpKind::None => Operation::Zero { stride },
            OpKind::MaxPool3x3 => pool(true),
            OpKind::AvgPool3x3 => pool(false),
            OpKind::SkipConnect if stride == 1 => Operation::Identity,
            OpKind::SkipConnect => {
                Operation::FactorizedReduce(Box::new(FactorizedReduce::new(&p, c, c, affine)))
            }
            OpKind::SepConv3x3 => Operation::Chain(sep(3)),
            OpKind::SepConv5x5 => Operation::Chain(sep(5)),
            OpKind::DilConv3x3 => Operation::Chain(dil(3)),
            OpKind::DilConv5x5 => Operation::Chain(dil(5)),
            OpKind::NorConv1x1 => Operation::Chain(nor(1)),
            OpKind::NorConv3x3 => Operation::Chain(nor(3)),
        }
    }

    /// [`Self::forward_t`] on a shared input, using its shared ReLU where the operation
    /// starts with one.
    pub fn forward_shared(&self, input: &SharedInput, train: bool) -> Tensor {
        match self {
            Operation::Chain(c) if c.starts_with_relu() => {
                note_relu(input.relu());
                c.forward_after_relu(input.relu(), train)
            }
            Operation::FactorizedReduce(f) => {
                note_relu(input.relu());
                f.forward_after_relu(input.relu(), train)
            }
            Operation::Pool { max, stride, bn } => input.pool(*max, *stride, bn.as_ref(), train),
            _ => self.forward_t(&input.x, train),
        }
    }

    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        match self {
            Operation::Zero { stride } => {
                if *stride == 1 {
                    xs.zeros_like()
                } else {
                    xs.slice(2, 0, None, *stride)
                        .slice(3, 0, None, *stride)
                        .zeros_like()
                }
            }
            Operation::Identity => xs.shallow_clone(),
            Operation::FactorizedReduce(f) => f.forward_t(xs, train),
            Operation::Pool { max, stride, bn } => {
                let ys = pool(xs, *max, *stride);
                match bn {
                    Some(bn) => batch_norm_t(bn, &ys, train),
                    None => ys,
                }
            }
            Operation::Chain(c) => c.forward_t(xs, train),
        }
    }

    /// Multiply-adds of the convolutions for one image with input `hw` (pooling, BN and
    /// additions are not counted, as is usual for FLOPs of CNNs).
    pub fn macs(&self, hw: (i64, i64)) -> u64 {
        match self {
            Operation::Zero { .. } | Operation::Identity | Operation::Pool { .. } => 0,
            Operation::FactorizedReduce(f) => f.macs(hw),
            Operation::Chain(c) => c.macs(hw).0,
        }
    }
}
