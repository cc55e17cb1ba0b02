//! The auxiliary classifier of the DARTS evaluation network (`AuxiliaryHeadCIFAR`), read
//! from the output of the last reduction cell during training only.
use crate::ops::{linear, Affine, Chain, ConvShape, LayerSpec, Pool};
use crate::{Error, Result};
use tch::{nn, Tensor};

const POOL: Pool = Pool {
    kernel: 5,
    stride: 3,
};

#[derive(Debug)]
pub struct AuxiliaryHead {
    features: Chain,
    classifier: nn::Linear,
}

impl AuxiliaryHead {
    /// `c` channels at resolution `hw`. DARTS assumes 8x8 (32x32 input), where the pooled
    /// map is 2x2 and the second convolution is 2x2; here that convolution spans the
    /// whole pooled map, so the head also works at 7x7 (28x28 input) and above.
    pub fn new(p: &nn::Path, c: i64, hw: (i64, i64), classes: i64) -> Result<Self> {
        if hw.0 < POOL.kernel || hw.1 < POOL.kernel || hw.0 != hw.1 {
            return Err(Error::invalid(
                "auxiliary head input",
                format!("{}x{}", hw.0, hw.1),
                "a square map of at least 5x5 after the last reduction cell (a larger input, or --auxiliary-weight 0)",
            ));
        }
        let pooled = POOL.out_size(hw.0);
        use LayerSpec::{AvgPool, Bn, Conv, Relu};
        // Positions as in the reference `nn.Sequential`: features.2 / .3 / .5 / .6.
        let features = Chain::new(
            p / "features",
            &[
                Relu,
                AvgPool(POOL),
                Conv(ConvShape::new(c, 128, 1)),
                Bn(128, Affine::Yes),
                Relu,
                Conv(ConvShape::new(128, 768, pooled)),
                Bn(768, Affine::Yes),
                Relu,
            ],
        );
        Ok(AuxiliaryHead {
            features,
            classifier: linear(p / "classifier", 768, classes),
        })
    }

    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.features
            .forward_t(xs, train)
            .flatten(1, -1)
            .apply(&self.classifier)
    }
}
