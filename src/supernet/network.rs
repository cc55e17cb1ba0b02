//! The supernet: stem, cells (and NAS-Bench-201's residual reduction blocks), classifier.
//! `forward_t(xs, &ArchWeights, train)` takes its mixing weights from outside. The same
//! builder makes the sub-networks of a genotype, in the supernet's style (to inherit its
//! weights) or as stand-alone networks trained from scratch (with an auxiliary head).
use super::auxiliary::AuxiliaryHead;
use super::cell::{CellPlan, SearchCell};
use super::partial::PartialChannels;
use super::weights::{edge_choice, ArchWeights};
use crate::ops::{
    batch_norm, channels_last, relu_conv_bn, Affine, Chain, Conv, ConvShape, LayerSpec, OpConfig,
};
use crate::space::{CellType, EdgeSplit, Genotype, NetworkSpec, SearchSpace};
use crate::{Error, Result};
use tch::{nn, Tensor};

/// What the data set fixes about the network: input channels, resolution, classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InputShape {
    pub channels: i64,
    pub height: i64,
    pub width: i64,
    pub classes: i64,
}

impl InputShape {
    /// Parse `CxHxW` (e.g. `3x32x32`).
    pub fn parse(text: &str, classes: i64) -> Result<Self> {
        let dims: Vec<i64> = text
            .split('x')
            .map(|d| d.trim().parse::<i64>().ok().filter(|&v| v > 0))
            .collect::<Option<_>>()
            .filter(|d: &Vec<i64>| d.len() == 3)
            .ok_or_else(|| {
                Error::invalid("input", text, "CxHxW with positive integers, e.g. 3x32x32")
            })?;
        Ok(InputShape {
            channels: dims[0],
            height: dims[1],
            width: dims[2],
            classes,
        })
    }

    /// The shape of a data set's images and its classes.
    pub fn of(data: &crate::data::Dataset) -> Self {
        InputShape {
            channels: data.channels() as i64,
            height: data.height() as i64,
            width: data.width() as i64,
            classes: data.num_classes() as i64,
        }
    }
}

impl std::fmt::Display for InputShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}x{}x{} images, {} classes",
            self.channels, self.height, self.width, self.classes
        )
    }
}

/// How the operations of a network are built.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum OpStyle {
    /// As in the supernet: affine-free BN inside the operations, BN after pooling in DARTS
    /// spaces. A sub-network in this style holds exactly the supernet's tensors it uses.
    Inherited,
    /// As trained from scratch (DARTS `NetworkCIFAR`, NAS-Bench-201's inference cells):
    /// affine BN, no BN after pooling.
    Standalone,
}

impl OpStyle {
    pub fn name(self) -> &'static str {
        match self {
            OpStyle::Inherited => "inherited",
            OpStyle::Standalone => "standalone",
        }
    }

    pub fn op_config(self, network: &NetworkSpec) -> OpConfig {
        match self {
            OpStyle::Inherited => OpConfig {
                affine: Affine::No,
                pool_bn: matches!(network, NetworkSpec::Darts { .. }),
            },
            OpStyle::Standalone => OpConfig {
                affine: Affine::Yes,
                pool_bn: false,
            },
        }
    }
}

/// How a forward pass runs: BN mode, and the drop-path probability (training only).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pass {
    pub train: bool,
    pub drop_path: f64,
}

impl Pass {
    pub fn new(train: bool) -> Self {
        Pass {
            train,
            drop_path: 0.0,
        }
    }

    pub fn drops_path(&self) -> bool {
        self.train && self.drop_path > 0.0
    }
}

/// Logits of a forward pass; the auxiliary head's only in training passes of networks
/// that have one.
#[derive(Debug)]
pub struct Logits {
    pub main: Tensor,
    pub auxiliary: Option<Tensor>,
}

/// NAS-Bench-201's residual block between stages (stride 2, affine BN).
#[derive(Debug)]
pub struct ResBlock {
    conv_a: Chain,
    conv_b: Chain,
    downsample: Conv,
}

impl ResBlock {
    fn new(p: &nn::Path, c_in: i64, c_out: i64) -> Self {
        ResBlock {
            conv_a: relu_conv_bn(
                &(p / "conv_a"),
                ConvShape::new(c_in, c_out, 3).stride(2).padding(1),
                Affine::Yes,
            ),
            conv_b: relu_conv_bn(
                &(p / "conv_b"),
                ConvShape::new(c_out, c_out, 3).padding(1),
                Affine::Yes,
            ),
            // nn.Sequential(AvgPool2d(2, 2), Conv2d(1x1)): the conv is `downsample.1`.
            downsample: Conv::new(p / "downsample" / 1, ConvShape::new(c_in, c_out, 1)),
        }
    }

    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let residual = self.downsample.forward(&xs.avg_pool2d(
            [2, 2],
            [2, 2],
            [0, 0],
            false,
            true,
            None::<i64>,
        ));
        self.conv_b
            .forward_t(&self.conv_a.forward_t(xs, train), train)
            + residual
    }

    fn macs(&self, hw: (i64, i64)) -> u64 {
        let (a, hw2) = self.conv_a.macs(hw);
        a + self.conv_b.macs(hw2).0 + self.downsample.shape.macs(hw2)
    }
}

#[derive(Debug)]
enum Block {
    Cell(SearchCell),
    Res(ResBlock),
}

#[derive(Debug)]
pub struct Supernet {
    pub space: SearchSpace,
    pub input: InputShape,
    stem: Chain,
    blocks: Vec<Block>,
    /// NAS-Bench-201 applies BN + ReLU before pooling; DARTS does not.
    lastact: Option<nn::BatchNorm>,
    classifier: nn::Linear,
    /// The auxiliary head and the index of the block whose output it reads.
    auxiliary: Option<(usize, AuxiliaryHead)>,
}

/// What [`Supernet::build`] builds: a sub-network's ops only (`genotype`), or every op
/// with an optional few-shot (edge, op column) fixed in the normal cells.
struct Build<'a> {
    genotype: Option<&'a Genotype>,
    fixed: Option<(usize, usize)>,
}

impl Supernet {
    /// The full supernet of `space`: every candidate op on every edge.
    pub fn new(p: &nn::Path, space: &SearchSpace, input: InputShape) -> Result<Self> {
        Self::search(p, space, input, PartialChannels::OFF)
    }

    /// The full supernet with PC-DARTS partial channel connections on every edge (`K`
    /// must divide the channels of every cell).
    pub fn search(
        p: &nn::Path,
        space: &SearchSpace,
        input: InputShape,
        partial: PartialChannels,
    ) -> Result<Self> {
        Self::search_split(p, space, input, partial, None)
    }

    /// [`Self::search`] with a few-shot split: the split edge of every normal cell holds
    /// only the split's op and outputs it at weight 1 under any mixing weights.
    pub fn search_split(
        p: &nn::Path,
        space: &SearchSpace,
        input: InputShape,
        partial: PartialChannels,
        split: Option<EdgeSplit>,
    ) -> Result<Self> {
        let fixed = match split {
            None => None,
            Some(s) => {
                crate::space::check_split_edge(space, s.edge)?;
                let k = space.index_of(s.op).ok_or_else(|| {
                    Error::invalid("split operation", s.op, "an operation of the space")
                })?;
                Some((s.edge, k))
            }
        };
        Self::build(
            p,
            space,
            input,
            Build {
                genotype: None,
                fixed,
            },
            (OpStyle::Inherited, partial),
            false,
        )
    }

    /// Only the operations of `genotype`, with the same parameter names as in the
    /// supernet: the sub-network that inherits the supernet's weights.
    pub fn subnet(
        p: &nn::Path,
        space: &SearchSpace,
        input: InputShape,
        genotype: &Genotype,
    ) -> Result<Self> {
        Self::standalone(p, space, input, genotype, OpStyle::Inherited, false)
    }

    /// The network of `genotype` in either style, with or without the auxiliary head
    /// (DARTS networks only: it reads the output of the last reduction cell).
    pub fn standalone(
        p: &nn::Path,
        space: &SearchSpace,
        input: InputShape,
        genotype: &Genotype,
        style: OpStyle,
        auxiliary: bool,
    ) -> Result<Self> {
        genotype.validate(space)?;
        Self::build(
            p,
            space,
            input,
            Build {
                genotype: Some(genotype),
                fixed: None,
            },
            (style, PartialChannels::OFF),
            auxiliary,
        )
    }

    fn build(
        p: &nn::Path,
        space: &SearchSpace,
        input: InputShape,
        Build { genotype, fixed }: Build,
        (style, partial): (OpStyle, PartialChannels),
        auxiliary: bool,
    ) -> Result<Self> {
        space.validate()?;
        partial.check_space(space)?;
        if input.classes < 1 {
            return Err(Error::invalid("classes", input.classes, "at least 1"));
        }
        let n_ops = space.ops.len();
        let keep_for = |t: CellType| -> Result<Vec<Vec<usize>>> {
            match genotype {
                None => {
                    let mut keep = vec![(0..n_ops).collect(); space.cell.num_edges()];
                    if let Some((e, k)) = fixed.filter(|_| t == CellType::Normal) {
                        keep[e] = vec![k];
                    }
                    Ok(keep)
                }
                Some(g) => {
                    let cell = g.cell(t).expect("validated genotype");
                    Ok(edge_choice(cell, &space.cell, space)?
                        .into_iter()
                        .map(|k| k.into_iter().collect())
                        .collect())
                }
            }
        };
        let search_cfg = style.op_config(&space.network);
        let mut aux_head = None;
        let mut hw = (input.height, input.width);
        let check_even = |hw: (i64, i64), what: String| -> Result<()> {
            if hw.0 % 2 != 0 || hw.1 % 2 != 0 || hw.0 < 2 || hw.1 < 2 {
                Err(Error::invalid(
                    "input",
                    format!("{}x{}x{}", input.channels, input.height, input.width),
                    format!("{what} receives {}x{}; a reduction needs an even resolution of at least 2 (choose an input size divisible by 2 per reduction)", hw.0, hw.1),
                ))
            } else {
                Ok(())
            }
        };
        let mut blocks = Vec::new();
        let (stem, lastact, c_last) = match &space.network {
            NetworkSpec::Darts {
                layers,
                channels,
                stem_multiplier,
                ..
            } => {
                let c_stem = (stem_multiplier * channels) as i64;
                let stem = stem(p, input.channels, c_stem);
                let reductions = space.network.reduction_layers();
                let aux_after = reductions.iter().max().copied().filter(|_| auxiliary);
                if auxiliary && aux_after.is_none() {
                    return Err(Error::invalid(
                        "auxiliary head",
                        "requested",
                        "a network with a reduction cell (its output feeds the head)",
                    ));
                }
                let mut c = *channels as i64;
                // (channels, whether it is at twice the resolution of the next cell input)
                let (mut s0, mut s1) = ((c_stem, false), (c_stem, false));
                for i in 0..*layers {
                    let reduction = reductions.contains(&i);
                    if reduction {
                        c *= 2;
                        check_even(hw, format!("reduction cell {i}"))?;
                    }
                    let cell_type = if reduction {
                        CellType::Reduce
                    } else {
                        CellType::Normal
                    };
                    let plan = CellPlan {
                        spec: &space.cell,
                        ops: &space.ops,
                        cell_type,
                        c,
                        inputs: vec![s0, s1],
                        keep: keep_for(cell_type)?,
                        cfg: search_cfg,
                        preprocess: true,
                        partial,
                        fixed: fixed.filter(|_| cell_type == CellType::Normal),
                    };
                    blocks.push(Block::Cell(SearchCell::new(&(p / "cells" / i), plan)));
                    let c_out = c * space.cell.concat.len() as i64;
                    s0 = (s1.0, reduction);
                    s1 = (c_out, false);
                    if reduction {
                        hw = (hw.0 / 2, hw.1 / 2);
                    }
                    if aux_after == Some(i) {
                        let head =
                            AuxiliaryHead::new(&(p / "auxiliary_head"), c_out, hw, input.classes)?;
                        aux_head = Some((i, head));
                    }
                }
                (stem, None, s1.0)
            }
            NetworkSpec::Nb201 {
                cells_per_stage,
                channels,
            } => {
                if auxiliary {
                    return Err(Error::invalid(
                        "auxiliary head",
                        "requested",
                        "a DARTS network (NAS-Bench-201 networks have none; use --auxiliary-weight 0)",
                    ));
                }
                let c0 = *channels as i64;
                let stem = stem(p, input.channels, c0);
                let mut c_prev = c0;
                let mut index = 0;
                for stage in 0..3 {
                    let c = c0 << stage;
                    if stage > 0 {
                        check_even(hw, format!("residual block {index}"))?;
                        blocks.push(Block::Res(ResBlock::new(&(p / "cells" / index), c_prev, c)));
                        index += 1;
                        hw = (hw.0 / 2, hw.1 / 2);
                    }
                    for _ in 0..*cells_per_stage {
                        let plan = CellPlan {
                            spec: &space.cell,
                            ops: &space.ops,
                            cell_type: CellType::Normal,
                            c,
                            inputs: vec![(c, false)],
                            keep: keep_for(CellType::Normal)?,
                            cfg: search_cfg,
                            preprocess: false,
                            partial,
                            fixed,
                        };
                        blocks.push(Block::Cell(SearchCell::new(&(p / "cells" / index), plan)));
                        index += 1;
                    }
                    c_prev = c;
                }
                let lastact = batch_norm(p / "lastact" / 0, c_prev, Affine::Yes);
                (stem, Some(lastact), c_prev)
            }
        };
        let classifier = crate::ops::linear(p / "classifier", c_last, input.classes);
        Ok(Supernet {
            space: space.clone(),
            input,
            stem,
            blocks,
            lastact,
            classifier,
            auxiliary: aux_head,
        })
    }

    /// Logits `[batch, classes]` for images `[batch, C, H, W]`.
    pub fn forward_t(&self, xs: &Tensor, w: &ArchWeights, train: bool) -> Tensor {
        self.forward_pass(xs, w, Pass::new(train)).main
    }

    /// The main logits, and the auxiliary head's in training passes.
    pub fn forward_pass(&self, xs: &Tensor, w: &ArchWeights, pass: Pass) -> Logits {
        let train = pass.train;
        let stem = self.stem_forward(xs, train);
        let span = self.block_span();
        // Block outputs; each is dropped as soon as no later block reads it.
        let mut outs: Vec<Option<Tensor>> = Vec::with_capacity(self.blocks.len());
        let mut auxiliary = None;
        for i in 0..self.blocks.len() {
            let out = self.block_forward_after(i, &stem, &outs, w, pass);
            if let Some((at, head)) = &self.auxiliary {
                if *at == i && train {
                    auxiliary = Some(head.forward_t(&out, train));
                }
            }
            outs.push(Some(out));
            if let Some(old) = i.checked_sub(span) {
                outs[old] = None;
            }
        }
        let features = outs.pop().flatten().unwrap_or(stem);
        Logits {
            main: self.head_forward(&features, train),
            auxiliary,
        }
    }

    /// The stem, on the input converted to the fast memory layout ([`channels_last`]).
    /// The forward pass is stem, blocks, head; recomputation runs the pieces one by one.
    pub fn stem_forward(&self, xs: &Tensor, train: bool) -> Tensor {
        // A one-channel input is both NCHW and channels-last, and libtorch then keeps the
        // stem's output in NCHW: convert it too, or the whole network runs in NCHW.
        channels_last(&self.stem.forward_t(&channels_last(xs), train))
    }

    /// Cells (and NAS-Bench-201's residual blocks) in order.
    pub fn num_blocks(&self) -> usize {
        self.blocks.len()
    }

    /// How many previous outputs a block reads: DARTS cells the last two, NAS-Bench-201
    /// blocks the last one.
    fn block_span(&self) -> usize {
        if self.lastact.is_none() {
            2
        } else {
            1
        }
    }

    /// The outputs block `i` reads, oldest first, as block indices; `None` is the stem
    /// (the first DARTS cell reads the stem twice).
    pub fn block_inputs(&self, i: usize) -> impl Iterator<Item = Option<usize>> {
        let span = self.block_span();
        (0..span).map(move |k| (i + k).checked_sub(span))
    }

    /// Block `i` on the outputs so far (`outs[j]` for block `j`, which must be kept while a
    /// later block reads it).
    pub fn block_forward_after(
        &self,
        i: usize,
        stem: &Tensor,
        outs: &[Option<Tensor>],
        w: &ArchWeights,
        pass: Pass,
    ) -> Tensor {
        let inputs: Vec<&Tensor> = self
            .block_inputs(i)
            .map(|j| j.map_or(stem, |j| outs[j].as_ref().expect("a kept block output")))
            .collect();
        self.block_forward(i, &inputs, w, pass)
    }

    /// Block `i` on the outputs [`Self::block_inputs`] names.
    pub fn block_forward(
        &self,
        i: usize,
        inputs: &[&Tensor],
        w: &ArchWeights,
        pass: Pass,
    ) -> Tensor {
        match &self.blocks[i] {
            Block::Cell(cell) => cell.forward_t(inputs, w.get(cell.cell_type), pass),
            Block::Res(res) => res.forward_t(inputs[0], pass.train),
        }
    }

    /// Logits from the last block's output (NAS-Bench-201's final BN-ReLU, global average
    /// pooling, classifier).
    pub fn head_forward(&self, features: &Tensor, train: bool) -> Tensor {
        let features = match &self.lastact {
            Some(bn) => {
                let ys = features.apply_t(bn, train).relu();
                crate::ops::note_relu(&ys);
                ys
            }
            None => features.shallow_clone(),
        };
        features
            .adaptive_avg_pool2d([1, 1])
            .flatten(1, -1)
            .apply(&self.classifier)
    }

    pub fn has_auxiliary(&self) -> bool {
        self.auxiliary.is_some()
    }

    /// Multiply-adds per image of the operations this network holds (all of them for a
    /// supernet, the chosen ones for a sub-network): convolutions and the classifier.
    pub fn macs_per_image(&self) -> u64 {
        let mut hw = (self.input.height, self.input.width);
        let mut total = self.stem.macs(hw).0;
        for block in &self.blocks {
            match block {
                Block::Cell(cell) => {
                    total += cell.macs(hw);
                    hw = cell.node_hw(hw);
                }
                Block::Res(res) => {
                    total += res.macs(hw);
                    hw = (hw.0 / 2, hw.1 / 2);
                }
            }
        }
        total + (self.classifier.ws.size()[0] * self.classifier.ws.size()[1]) as u64
    }

    /// Cells in order: index, type (`None` for a residual block).
    pub fn cell_types(&self) -> Vec<Option<CellType>> {
        self.blocks
            .iter()
            .map(|b| match b {
                Block::Cell(c) => Some(c.cell_type),
                Block::Res(_) => None,
            })
            .collect()
    }
}

fn stem(p: &nn::Path, c_in: i64, c_out: i64) -> Chain {
    Chain::new(
        p / "stem",
        &[
            LayerSpec::Conv(ConvShape::new(c_in, c_out, 3).padding(1)),
            LayerSpec::Bn(c_out, Affine::Yes),
        ],
    )
}
