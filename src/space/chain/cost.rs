//! Exact parameter and multiply-add counts of chain networks, from the plain data alone.
//! Parameters: every trainable tensor (convolution weights, affine BN weight and bias, SE and
//! linear weights and biases), as PyTorch counts `p.numel()`. Multiply-adds per image:
//! convolutions and linear layers (BN, activations, pooling and the SE rescaling excluded).
use super::arch::ChainArch;
use super::choice::Choice;
use super::spec::{conv_out, ChainSpace, LayerPlan};

/// Parameters and multiply-adds per image.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cost {
    pub params: u64,
    pub macs: u64,
}

impl std::ops::Add for Cost {
    type Output = Cost;
    fn add(self, o: Cost) -> Cost {
        Cost {
            params: self.params + o.params,
            macs: self.macs + o.macs,
        }
    }
}

impl std::iter::Sum for Cost {
    fn sum<I: Iterator<Item = Cost>>(it: I) -> Cost {
        it.fold(Cost::default(), |a, b| a + b)
    }
}

/// Squeeze-excitation bottleneck width: MobileNetV3's `_make_divisible(expanded // 4, 8)`.
pub fn se_channels(expanded: usize) -> usize {
    make_divisible(expanded / 4, 8)
}

/// torchvision's `_make_divisible`: the nearest multiple of `divisor`, at least `divisor`,
/// never more than 10% below `v`.
pub fn make_divisible(v: usize, divisor: usize) -> usize {
    let rounded = ((v + divisor / 2) / divisor * divisor).max(divisor);
    if (rounded as f64) < 0.9 * v as f64 {
        rounded + divisor
    } else {
        rounded
    }
}

/// A convolution (no bias) followed by affine BN.
fn conv_bn(
    c_in: usize,
    c_out: usize,
    kernel: usize,
    groups: usize,
    out_hw: (usize, usize),
) -> Cost {
    let weights = c_out * (c_in / groups) * kernel * kernel;
    Cost {
        params: (weights + 2 * c_out) as u64,
        macs: (weights * out_hw.0 * out_hw.1) as u64,
    }
}

/// A linear layer (or 1x1 convolution on a 1x1 input) with bias.
fn linear(c_in: usize, c_out: usize) -> Cost {
    Cost {
        params: (c_in * c_out + c_out) as u64,
        macs: (c_in * c_out) as u64,
    }
}

/// One layer of `plan` as `choice`.
pub fn layer_cost(plan: &LayerPlan, choice: Choice) -> Cost {
    match choice {
        Choice::Skip => Cost::default(),
        Choice::MbConv { kernel, expand } => {
            let hidden = plan.c_in * expand;
            let out = plan.out_hw();
            let mut cost = Cost::default();
            if expand != 1 {
                cost = cost + conv_bn(plan.c_in, hidden, 1, 1, plan.hw);
            }
            cost = cost + conv_bn(hidden, hidden, kernel, hidden, out);
            if plan.se {
                let sq = se_channels(hidden);
                cost = cost + linear(hidden, sq) + linear(sq, hidden);
            }
            cost + conv_bn(hidden, plan.c_out, 1, 1, out)
        }
    }
}

/// What the data fixes: input channels, resolution, classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageShape {
    pub channels: usize,
    pub hw: (usize, usize),
    pub classes: usize,
}

/// Stem, fixed layers, head and classifier: the parts no choice changes.
pub fn fixed_cost(space: &ChainSpace, input: ImageShape) -> Cost {
    let net = &space.network;
    let stem_hw = (
        conv_out(input.hw.0, net.stem.stride),
        conv_out(input.hw.1, net.stem.stride),
    );
    let stem = conv_bn(
        input.channels,
        net.stem.channels,
        net.stem.kernel,
        1,
        stem_hw,
    );
    let fixed: Cost = space
        .plan(input.hw)
        .iter()
        .filter(|l| l.searchable.is_none())
        .map(|l| layer_cost(l, l.choices[0]))
        .sum();
    let last_hw = space
        .plan(input.hw)
        .last()
        .map_or(stem_hw, LayerPlan::out_hw);
    let mut head = Cost::default();
    let mut c = space.last_channels();
    if let Some(h) = net.head.channels {
        head = head + conv_bn(c, h, 1, 1, last_hw);
        c = h;
    }
    if let Some(h) = net.head.hidden {
        head = head + linear(c, h);
        c = h;
    }
    stem + fixed + head + linear(c, input.classes)
}

/// The network of `arch` (validated against `space`).
pub fn arch_cost(space: &ChainSpace, arch: &ChainArch, input: ImageShape) -> Cost {
    let chosen: Cost = space
        .plan(input.hw)
        .iter()
        .filter_map(|l| l.searchable.map(|i| layer_cost(l, arch.layers[i])))
        .sum();
    fixed_cost(space, input) + chosen
}

/// The supernet with separate weights per choice: every choice of every layer.
pub fn supernet_cost(space: &ChainSpace, input: ImageShape) -> Cost {
    let all: Cost = space
        .plan(input.hw)
        .iter()
        .filter(|l| l.searchable.is_some())
        .flat_map(|l| l.choices.iter().map(move |&c| layer_cost(l, c)))
        .sum();
    fixed_cost(space, input) + all
}

/// The architecture that takes, in every layer, the choice with the most (`largest`) or
/// fewest multiply-adds (parameters break ties).
pub fn extreme_arch(space: &ChainSpace, input: ImageShape, largest: bool) -> ChainArch {
    let layers = space
        .plan(input.hw)
        .iter()
        .filter(|l| l.searchable.is_some())
        .map(|l| {
            let key = |c: &&Choice| {
                let cost = layer_cost(l, **c);
                (cost.macs, cost.params)
            };
            let pick = if largest {
                l.choices.iter().max_by_key(key)
            } else {
                l.choices.iter().min_by_key(key)
            };
            *pick.expect("every layer has a choice")
        })
        .collect();
    ChainArch { layers }
}

/// How many architectures the space holds (product of the layers' choice counts; `None`
/// beyond `u128`).
pub fn num_architectures(space: &ChainSpace) -> Option<u128> {
    space
        .plan((1, 1))
        .iter()
        .filter(|l| l.searchable.is_some())
        .try_fold(1u128, |n, l| n.checked_mul(l.choices.len() as u128))
}
