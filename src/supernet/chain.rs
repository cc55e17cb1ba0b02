//! The chain supernet with separate weights per choice (ProxylessNAS / FBNet form): every
//! searchable layer holds one MBConv block per choice it allows, and its output is the sum
//! of the blocks' outputs under that layer's row of the mixing weights (`skip` adds the
//! input itself). The same builder makes the network of one architecture, with the
//! supernet's parameter names, so that it can inherit the supernet's weights.
use super::network::InputShape;
use super::weights::MixWeights;
use crate::ops::{activate, channels_last, linear, ConvBnAct, ConvShape, MbConv};
use crate::space::chain::{Activation, ChainArch, ChainSpace, Choice, ImageShape};
use crate::{Error, Result};
use tch::{nn, Tensor};

#[derive(Debug)]
enum Layer {
    Fixed(Box<MbConv>),
    /// Alpha row `row`; per computed choice its alpha column and its block (`None`: skip).
    Searched {
        row: usize,
        ops: Vec<(usize, Option<MbConv>)>,
    },
}

#[derive(Debug)]
pub struct ChainNet {
    pub space: ChainSpace,
    pub input: InputShape,
    stem: ConvBnAct,
    layers: Vec<Layer>,
    head: Option<ConvBnAct>,
    hidden: Option<(nn::Linear, Activation)>,
    classifier: nn::Linear,
}

impl ChainNet {
    /// The supernet: every allowed choice of every searchable layer.
    pub fn supernet(p: &nn::Path, space: &ChainSpace, input: InputShape) -> Result<Self> {
        Self::build(p, space, input, None)
    }

    /// Only the blocks of `arch`, named as in the supernet.
    pub fn of_arch(
        p: &nn::Path,
        space: &ChainSpace,
        input: InputShape,
        arch: &ChainArch,
    ) -> Result<Self> {
        arch.validate(space)?;
        Self::build(p, space, input, Some(arch))
    }

    fn build(
        p: &nn::Path,
        space: &ChainSpace,
        input: InputShape,
        arch: Option<&ChainArch>,
    ) -> Result<Self> {
        space.validate()?;
        if input.classes < 1 {
            return Err(Error::invalid("classes", input.classes, "at least 1"));
        }
        let net = &space.network;
        let columns = space.choices();
        let stem_k = net.stem.kernel as i64;
        let stem = ConvBnAct::new(
            &(p / "stem"),
            ConvShape::new(input.channels, net.stem.channels as i64, stem_k)
                .stride(net.stem.stride as i64)
                .padding(stem_k / 2),
            Some(net.stem.act),
        );
        let image = image_shape(input);
        let mut layers = Vec::new();
        for (i, plan) in space.plan(image.hw).iter().enumerate() {
            let lp = p / "layers" / i;
            let layer = match plan.searchable {
                None => Layer::Fixed(Box::new(
                    MbConv::of_choice(&lp, plan, plan.choices[0]).expect("validated: not skip"),
                )),
                Some(row) => {
                    let chosen: Vec<Choice> = match arch {
                        Some(a) => vec![a.layers[row]],
                        None => plan.choices.clone(),
                    };
                    let ops = chosen
                        .into_iter()
                        .map(|c| {
                            let column = columns.iter().position(|&x| x == c).expect("a column");
                            (column, MbConv::of_choice(&(&lp / c.name()), plan, c))
                        })
                        .collect();
                    Layer::Searched { row, ops }
                }
            };
            layers.push(layer);
        }
        let mut c = space.last_channels() as i64;
        let head = net.head.channels.map(|h| {
            let conv = ConvBnAct::new(
                &(p / "head"),
                ConvShape::new(c, h as i64, 1),
                Some(net.head.act),
            );
            c = h as i64;
            conv
        });
        let hidden = net.head.hidden.map(|h| {
            let l = linear(p / "hidden", c, h as i64);
            c = h as i64;
            (l, net.head.act)
        });
        let classifier = linear(p / "classifier", c, input.classes);
        Ok(ChainNet {
            space: space.clone(),
            input,
            stem,
            layers,
            head,
            hidden,
            classifier,
        })
    }

    /// Logits `[batch, classes]` under mixing weights `w` (`[searchable layers, choices]`).
    pub fn forward_t(&self, xs: &Tensor, w: &MixWeights, train: bool) -> Tensor {
        let n_cols = w.weights.size()[1] as usize;
        let mut x = self.stem_t(xs, train);
        for layer in &self.layers {
            x = match layer {
                Layer::Fixed(b) => b.forward_t(&x, train),
                Layer::Searched { row, ops } => {
                    let mut sum: Option<Tensor> = None;
                    for k in w.active_ops(*row, n_cols) {
                        let Some((_, block)) = ops.iter().find(|(c, _)| *c == k) else {
                            // Masked (a choice this layer does not allow): weight 0.
                            continue;
                        };
                        let y = run_block(block.as_ref(), &x, train);
                        let y = if w.is_unit() {
                            y
                        } else {
                            y * w.weights.get(*row as i64).get(k as i64)
                        };
                        sum = Some(match sum {
                            Some(s) => s + y,
                            None => y,
                        });
                    }
                    sum.expect("every layer has an active choice")
                }
            };
        }
        self.head_t(&x, train)
    }

    /// The stem on an input batch (channels-last, as the whole forward runs).
    pub fn stem_t(&self, xs: &Tensor, train: bool) -> Tensor {
        channels_last(&self.stem.forward_t(&channels_last(xs), train))
    }

    /// Layer `layer` (index into [`ChainSpace::plan`]) alone: a fixed layer's block, or a
    /// searchable layer's block of alpha column `column` (skip: the input). `None` when
    /// the network does not hold that block.
    pub fn layer_t(&self, layer: usize, column: usize, xs: &Tensor, train: bool) -> Option<Tensor> {
        match self.layers.get(layer)? {
            Layer::Fixed(b) => Some(b.forward_t(xs, train)),
            Layer::Searched { ops, .. } => {
                let (_, block) = ops.iter().find(|(c, _)| *c == column)?;
                Some(run_block(block.as_ref(), xs, train))
            }
        }
    }

    /// After the last layer: head convolution, global average pooling, hidden linear
    /// layer, classifier.
    pub fn head_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let x = match &self.head {
            Some(h) => h.forward_t(xs, train),
            None => xs.shallow_clone(),
        };
        let mut f = x.adaptive_avg_pool2d([1, 1]).flatten(1, -1);
        if let Some((l, act)) = &self.hidden {
            f = activate(&f.apply(l), *act);
        }
        f.apply(&self.classifier)
    }
}

/// A searchable layer's block, or the input itself for `skip`.
fn run_block(block: Option<&MbConv>, xs: &Tensor, train: bool) -> Tensor {
    match block {
        Some(b) => b.forward_t(xs, train),
        None => xs.shallow_clone(),
    }
}

/// The plain-data form of an input shape (the cost model's).
pub fn image_shape(input: InputShape) -> ImageShape {
    ImageShape {
        channels: input.channels as usize,
        hw: (input.height as usize, input.width as usize),
        classes: input.classes as usize,
    }
}
