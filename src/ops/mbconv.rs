//! MobileNet blocks: convolution + BN + activation, squeeze-excitation, and the inverted
//! residual (MBConv) of MobileNetV2/V3, with torchvision's structure and parameter names.
use super::layers::{batch_norm, batch_norm_t, linear, Affine, Conv, ConvShape};
use crate::space::chain::{se_channels, Activation, Choice, LayerPlan};
use tch::{nn, Tensor};

pub fn activate(xs: &Tensor, act: Activation) -> Tensor {
    match act {
        Activation::Relu => xs.relu(),
        Activation::Relu6 => xs.relu6(),
        Activation::Hswish => xs.hardswish(),
    }
}

/// Convolution (no bias), affine BN, and an optional activation (`conv`, `bn`).
#[derive(Debug)]
pub struct ConvBnAct {
    conv: Conv,
    bn: nn::BatchNorm,
    act: Option<Activation>,
}

impl ConvBnAct {
    pub fn new(p: &nn::Path, shape: ConvShape, act: Option<Activation>) -> Self {
        ConvBnAct {
            conv: Conv::new(p / "conv", shape),
            bn: batch_norm(p / "bn", shape.c_out, Affine::Yes),
            act,
        }
    }

    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let ys = batch_norm_t(&self.bn, &self.conv.forward(xs), train);
        match self.act {
            Some(a) => activate(&ys, a),
            None => ys,
        }
    }
}

/// MobileNetV3's squeeze-excitation: global average, 1x1 conv (bias) to the squeezed width,
/// ReLU, 1x1 conv (bias) back, hard sigmoid, rescale.
#[derive(Debug)]
struct SqueezeExcite {
    fc1: nn::Linear,
    fc2: nn::Linear,
}

impl SqueezeExcite {
    fn new(p: &nn::Path, c: i64) -> Self {
        let sq = se_channels(c as usize) as i64;
        SqueezeExcite {
            fc1: linear(p / "fc1", c, sq),
            fc2: linear(p / "fc2", sq, c),
        }
    }

    fn forward(&self, xs: &Tensor) -> Tensor {
        let (b, c) = (xs.size()[0], xs.size()[1]);
        let scale = xs
            .mean_dim([2i64, 3].as_slice(), false, None)
            .apply(&self.fc1)
            .relu()
            .apply(&self.fc2)
            .hardsigmoid()
            .view([b, c, 1, 1]);
        xs * scale
    }
}

/// The inverted residual: 1x1 expansion (`expand`; absent at expansion 1), depthwise
/// `kernel`x`kernel` at the layer's stride (`depthwise`), SE (`se`), 1x1 projection without
/// activation (`project`); the input is added when the shapes agree.
#[derive(Debug)]
pub struct MbConv {
    expand: Option<ConvBnAct>,
    depthwise: ConvBnAct,
    se: Option<SqueezeExcite>,
    project: ConvBnAct,
    residual: bool,
}

impl MbConv {
    /// The block of `plan` as `(kernel, expand)`.
    pub fn new(p: &nn::Path, plan: &LayerPlan, kernel: usize, expand: usize) -> Self {
        let (c_in, c_out) = (plan.c_in as i64, plan.c_out as i64);
        let hidden = c_in * expand as i64;
        let k = kernel as i64;
        MbConv {
            expand: (expand != 1).then(|| {
                ConvBnAct::new(
                    &(p / "expand"),
                    ConvShape::new(c_in, hidden, 1),
                    Some(plan.act),
                )
            }),
            depthwise: ConvBnAct::new(
                &(p / "depthwise"),
                ConvShape::new(hidden, hidden, k)
                    .stride(plan.stride as i64)
                    .padding(k / 2)
                    .depthwise(),
                Some(plan.act),
            ),
            se: plan.se.then(|| SqueezeExcite::new(&(p / "se"), hidden)),
            project: ConvBnAct::new(&(p / "project"), ConvShape::new(hidden, c_out, 1), None),
            residual: plan.shape_preserving(),
        }
    }

    /// The block of a non-skip `choice`; `None` for `skip`.
    pub fn of_choice(p: &nn::Path, plan: &LayerPlan, choice: Choice) -> Option<Self> {
        match choice {
            Choice::MbConv { kernel, expand } => Some(Self::new(p, plan, kernel, expand)),
            Choice::Skip => None,
        }
    }

    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let hidden = match &self.expand {
            Some(e) => e.forward_t(xs, train),
            None => xs.shallow_clone(),
        };
        let mut ys = self.depthwise.forward_t(&hidden, train);
        if let Some(se) = &self.se {
            ys = se.forward(&ys);
        }
        let ys = self.project.forward_t(&ys, train);
        if self.residual {
            ys + xs
        } else {
            ys
        }
    }
}
