//! DARTS FactorizedReduce: halves the resolution with two stride-2 1x1 convolutions, the
//! second shifted by one pixel, concatenated channel-wise.
use super::layers::{batch_norm, Affine, Conv, ConvShape};
use tch::{nn, Tensor};

#[derive(Debug)]
pub struct FactorizedReduce {
    conv_1: Conv,
    conv_2: Conv,
    bn: nn::BatchNorm,
}

impl FactorizedReduce {
    /// `c_out` must be even (checked by the network builder, which knows the channels).
    pub fn new(p: &nn::Path, c_in: i64, c_out: i64, affine: Affine) -> Self {
        let shape = ConvShape::new(c_in, c_out / 2, 1).stride(2);
        FactorizedReduce {
            conv_1: Conv::new(p / "conv_1", shape),
            conv_2: Conv::new(p / "conv_2", shape),
            bn: batch_norm(p / "bn", c_out, affine),
        }
    }

    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let xs = xs.relu();
        super::note_relu(&xs);
        self.forward_after_relu(&xs, train)
    }

    /// The reduction of an input that has been through the leading ReLU already.
    pub fn forward_after_relu(&self, xs: &Tensor, train: bool) -> Tensor {
        let shifted = xs.slice(2, 1, None, 1).slice(3, 1, None, 1);
        let ys = Tensor::cat(&[self.conv_1.forward(xs), self.conv_2.forward(&shifted)], 1);
        super::batch_norm_t(&self.bn, &ys, train)
    }

    pub fn macs(&self, hw: (i64, i64)) -> u64 {
        self.conv_1.shape.macs(hw) + self.conv_2.shape.macs((hw.0 - 1, hw.1 - 1))
    }
}
