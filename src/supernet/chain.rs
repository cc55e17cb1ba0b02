//! The chain supernet with separate weights per choice (ProxylessNAS / FBNet form): every
//! searchable layer holds one MBConv block per choice it allows, and its output is the sum
//! of the blocks' outputs under that layer's row of the mixing weights (`skip` adds the
//! input itself). The same builder makes the network of one architecture, with the
//! supernet's parameter names, so that it can inherit the supernet's weights. With elastic
//! weights (Once-for-All) a searchable layer holds one largest block instead, which every
//! choice slices ([`ElasticMbConv`]); its choices' weights are materialised for extraction.
use super::network::InputShape;
use super::weights::MixWeights;
use crate::ops::{
    activate, channels_last, linear, transform_name, ConvBnAct, ConvShape, ElasticMbConv, MbConv,
};
use crate::space::chain::{
    kernel_transforms, largest_choice, Activation, ChainArch, ChainSpace, Choice, ImageShape,
    WeightSharing,
};
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
    /// Alpha row `row`; one elastic block for every choice, and per allowed choice its alpha
    /// column.
    Elastic {
        row: usize,
        block: Box<ElasticMbConv>,
        choices: Vec<(usize, Choice)>,
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
    /// The supernet: every allowed choice of every searchable layer, with separate weights.
    pub fn supernet(p: &nn::Path, space: &ChainSpace, input: InputShape) -> Result<Self> {
        Self::build(p, space, input, None, WeightSharing::Separate)
    }

    /// The supernet with its choices' weights held as `sharing` says.
    pub fn supernet_with(
        p: &nn::Path,
        space: &ChainSpace,
        input: InputShape,
        sharing: WeightSharing,
    ) -> Result<Self> {
        sharing.check(space)?;
        Self::build(p, space, input, None, sharing)
    }

    /// Only the blocks of `arch`, named as in the supernet.
    pub fn of_arch(
        p: &nn::Path,
        space: &ChainSpace,
        input: InputShape,
        arch: &ChainArch,
    ) -> Result<Self> {
        arch.validate(space)?;
        Self::build(p, space, input, Some(arch), WeightSharing::Separate)
    }

    fn build(
        p: &nn::Path,
        space: &ChainSpace,
        input: InputShape,
        arch: Option<&ChainArch>,
        sharing: WeightSharing,
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
                Some(row) if sharing == WeightSharing::Elastic => {
                    let Choice::MbConv { kernel, expand } = largest_choice(space) else {
                        unreachable!("the largest choice is a block")
                    };
                    let block = ElasticMbConv::new(
                        &(&lp / ELASTIC),
                        plan,
                        kernel,
                        expand,
                        &kernel_transforms(space),
                    );
                    let choices = plan
                        .choices
                        .iter()
                        .map(|&c| {
                            let column = columns.iter().position(|&x| x == c).expect("a column");
                            (column, c)
                        })
                        .collect();
                    Layer::Elastic {
                        row,
                        block: Box::new(block),
                        choices,
                    }
                }
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
                Layer::Searched { row, .. } | Layer::Elastic { row, .. } => {
                    let mut sum: Option<Tensor> = None;
                    for k in w.active_ops(*row, n_cols) {
                        let Some(y) = run_column(layer, k, &x, train) else {
                            // Masked (a choice this layer does not allow): weight 0.
                            continue;
                        };
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
        run_column(self.layers.get(layer)?, column, xs, train)
    }

    /// ProxylessNAS's binary gates: per searchable layer (row `r`) the output is
    /// `gates[r][a] * o_a + gates[r][i] * o_i`, where `o_a` is the active path `paths[r].0`
    /// with its graph and `o_i` the inactive path `paths[r].1` computed without one (so that
    /// only the gate sees it). With `gates` one-hot at the active paths the value is that of
    /// the active path alone, and the gradient of the loss with respect to `gates` is
    /// `dL/dg_j = sum(dL/dout * o_j)` for both paths.
    pub fn forward_gated(
        &self,
        xs: &Tensor,
        gates: &Tensor,
        paths: &[(usize, Option<usize>)],
        train: bool,
    ) -> Tensor {
        let mut x = self.stem_t(xs, train);
        for layer in &self.layers {
            x = match layer {
                Layer::Fixed(b) => b.forward_t(&x, train),
                Layer::Searched { row, .. } | Layer::Elastic { row, .. } => {
                    let (active, inactive) = paths[*row];
                    let gate = |k: usize| gates.get(*row as i64).get(k as i64);
                    let run = |k: usize| {
                        run_column(layer, k, &x, train).expect("a sampled path is allowed")
                    };
                    let y = run(active) * gate(active);
                    match inactive {
                        Some(k) => y + tch::no_grad(|| run(k)).detach() * gate(k),
                        None => y,
                    }
                }
            };
        }
        self.head_t(&x, train)
    }

    /// The supernet's tensors a stand-alone network of `arch` inherits beyond its own
    /// variables: for every elastic layer, the weights of `arch`'s choice materialised
    /// under the separate form's names (`layers.{i}.{choice}.expand.conv.weight`, ...).
    pub fn materialised(&self, arch: &ChainArch) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            if let Layer::Elastic { row, block, .. } = layer {
                let choice = arch.layers[*row];
                if let Choice::MbConv { kernel, expand } = choice {
                    for (name, t) in block.materialise(kernel, expand) {
                        out.push((format!("layers.{i}.{choice}.{name}"), t));
                    }
                }
            }
        }
        out
    }

    /// Parameter-name prefixes of the weights the path `arch` does not use: per searchable
    /// layer the blocks of the other choices (separate weights), or the whole elastic block
    /// of a skipped layer and the kernel transformations its kernel does not need.
    pub fn off_path(&self, arch: &ChainArch) -> Vec<String> {
        let plan = self.space.plan((1, 1));
        let mut off = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            match layer {
                Layer::Fixed(_) => {}
                Layer::Searched { row, .. } => {
                    off.extend(
                        plan[i]
                            .choices
                            .iter()
                            .filter(|&&c| c != arch.layers[*row])
                            .map(|c| format!("layers.{i}.{c}.")),
                    );
                }
                Layer::Elastic { row, block, .. } => match arch.layers[*row] {
                    Choice::Skip => off.push(format!("layers.{i}.{ELASTIC}.")),
                    Choice::MbConv { kernel, .. } => {
                        let used = block.transforms_used(kernel);
                        for (from, to) in kernel_transforms(&self.space) {
                            if !used.contains(&(from, to)) {
                                off.push(format!(
                                    "layers.{i}.{ELASTIC}.depthwise.{}",
                                    transform_name(from, to)
                                ));
                            }
                        }
                    }
                },
            }
        }
        off
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

/// The parameter-path component of an elastic layer's block.
pub const ELASTIC: &str = "elastic";

/// A layer as alpha column `column` (a fixed layer: its block): the block of that choice, or
/// the input itself for `skip`; `None` when the layer does not hold that choice.
fn run_column(layer: &Layer, column: usize, xs: &Tensor, train: bool) -> Option<Tensor> {
    match layer {
        Layer::Fixed(b) => Some(b.forward_t(xs, train)),
        Layer::Searched { ops, .. } => {
            let (_, block) = ops.iter().find(|(c, _)| *c == column)?;
            Some(match block {
                Some(b) => b.forward_t(xs, train),
                None => xs.shallow_clone(),
            })
        }
        Layer::Elastic { block, choices, .. } => {
            let (_, choice) = choices.iter().find(|(c, _)| *c == column)?;
            Some(match *choice {
                Choice::MbConv { kernel, expand } => block.forward_t(xs, kernel, expand, train),
                Choice::Skip => xs.shallow_clone(),
            })
        }
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
