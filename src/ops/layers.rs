//! Building blocks shared by the operations: a convolution that knows its own shape (for
//! MAC counting), batch norm, and index-named chains mirroring PyTorch `nn.Sequential`.
use tch::{nn, Tensor};

/// Batch-norm flavour: the search network uses affine-free BN (DARTS, NAS-Bench-201 search
/// cells); stems, residual blocks and stand-alone networks use affine BN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Affine {
    Yes,
    No,
}

/// PyTorch's default momentum of BN running statistics.
const BN_MOMENTUM: f64 = 0.1;
/// tch's (and PyTorch's) default BN epsilon, which [`batch_norm`] keeps.
const BN_EPS: f64 = 1e-5;

/// BN as PyTorch initialises it: weight 1, bias 0 (tch's default weight is uniform).
pub fn batch_norm(p: nn::Path, c: i64, affine: Affine) -> nn::BatchNorm {
    nn::batch_norm2d(
        p,
        c,
        nn::BatchNormConfig {
            affine: affine == Affine::Yes,
            momentum: BN_MOMENTUM,
            ws_init: nn::Init::Const(1.0),
            bs_init: nn::Init::Const(0.0),
            ..Default::default()
        },
    )
}

/// PyTorch's default initialisation for conv and linear weights: kaiming_uniform with
/// a = sqrt(5), i.e. uniform in +-1/sqrt(fan_in) (tch's default is sqrt(6 / fan_in)).
fn pytorch_uniform(fan_in: i64) -> nn::Init {
    let bound = 1.0 / (fan_in as f64).sqrt();
    nn::Init::Uniform {
        lo: -bound,
        up: bound,
    }
}

/// A linear layer initialised as PyTorch's `nn.Linear`.
pub fn linear(p: nn::Path, c_in: i64, c_out: i64) -> nn::Linear {
    let init = pytorch_uniform(c_in);
    nn::linear(
        p,
        c_in,
        c_out,
        nn::LinearConfig {
            ws_init: init,
            bs_init: Some(init),
            bias: true,
        },
    )
}

/// Shape of a 2-D convolution, kept beside the module so costs can be computed without a
/// forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvShape {
    pub c_in: i64,
    pub c_out: i64,
    pub kernel: i64,
    pub stride: i64,
    pub padding: i64,
    pub dilation: i64,
    pub groups: i64,
    /// A bias (NAS-Bench-201's `ReLUConvBN` has one exactly when its BN is affine-free).
    pub bias: bool,
}

impl ConvShape {
    pub fn new(c_in: i64, c_out: i64, kernel: i64) -> Self {
        ConvShape {
            c_in,
            c_out,
            kernel,
            stride: 1,
            padding: 0,
            dilation: 1,
            groups: 1,
            bias: false,
        }
    }

    pub fn with_bias(self, bias: bool) -> Self {
        ConvShape { bias, ..self }
    }

    pub fn stride(self, stride: i64) -> Self {
        ConvShape { stride, ..self }
    }

    pub fn padding(self, padding: i64) -> Self {
        ConvShape { padding, ..self }
    }

    pub fn dilation(self, dilation: i64) -> Self {
        ConvShape { dilation, ..self }
    }

    pub fn depthwise(self) -> Self {
        ConvShape {
            groups: self.c_in,
            ..self
        }
    }

    /// Depthwise with dilation 2 and "same" padding (DARTS `dil_conv`), at stride 1 or 2.
    pub fn is_dilated_depthwise(&self) -> bool {
        self.dilation == 2
            && self.groups == self.c_in
            && self.c_in == self.c_out
            && self.padding == self.kernel / 2 * 2
            && (self.stride == 1 || self.stride == 2)
    }

    pub fn out_size(&self, size: i64) -> i64 {
        (size + 2 * self.padding - self.dilation * (self.kernel - 1) - 1) / self.stride + 1
    }

    /// Multiply-adds for one image whose input is `hw`.
    pub fn macs(&self, hw: (i64, i64)) -> u64 {
        let (h, w) = (self.out_size(hw.0), self.out_size(hw.1));
        (h * w * self.c_out * (self.c_in / self.groups) * self.kernel * self.kernel) as u64
    }
}

/// A convolution, bias-free unless its shape asks for one (every convolution in these
/// networks is followed by BN), initialised as PyTorch's `nn.Conv2d`.
#[derive(Debug)]
pub struct Conv {
    pub conv: nn::Conv2D,
    pub shape: ConvShape,
}

impl Conv {
    pub fn new(p: nn::Path, shape: ConvShape) -> Self {
        let fan_in = shape.c_in / shape.groups * shape.kernel * shape.kernel;
        let config = nn::ConvConfig {
            stride: shape.stride,
            padding: shape.padding,
            dilation: shape.dilation,
            groups: shape.groups,
            bias: shape.bias,
            ws_init: pytorch_uniform(fan_in),
            bs_init: pytorch_uniform(fan_in),
            ..Default::default()
        };
        Conv {
            conv: nn::conv2d(p, shape.c_in, shape.c_out, shape.kernel, config),
            shape,
        }
    }

    pub fn forward(&self, xs: &Tensor) -> Tensor {
        if self.shape.is_dilated_depthwise() && xs.requires_grad() {
            if let Some(ys) = self.dilated_as_dense(xs) {
                return ys;
            }
        }
        if self.shape.kernel == 1 && self.shape.stride > 1 && self.shape.c_in < 8 {
            // oneDNN's weight gradient of a strided 1x1 convolution with few input channels
            // in channels-last layout differs from run to run (garbage; seen at 4->2, 4->4
            // and 2->1 channels, not at 8->4), so these run in NCHW.
            return xs.contiguous().apply(&self.conv);
        }
        xs.apply(&self.conv)
    }

    /// A dilation-2 depthwise convolution as an undilated one on the polyphase components
    /// of the input: exactly the same values, but oneDNN's backward pass of a dilated
    /// depthwise convolution is 3-7x slower than that of an undilated one on CPU (measured
    /// in results/BENCHMARKS.md), which outweighs the two extra copies. At stride 2 only the
    /// even-even component is read, so it is one convolution on a strided slice. Used in
    /// training passes at even resolutions of at least 8: at 14x14 (fmnist_small) and 8x8
    /// (the DARTS space) it still makes a step 4-10% faster (results/BENCHMARKS.md).
    fn dilated_as_dense(&self, xs: &Tensor) -> Option<Tensor> {
        let (b, c, h, w) = xs.size4().ok()?;
        if h % 2 != 0 || w % 2 != 0 || h.min(w) < 8 || xs.device() != tch::Device::Cpu {
            return None;
        }
        let pad = self.shape.padding / 2;
        let conv = |x: &Tensor| {
            x.conv2d(
                &self.conv.ws,
                self.conv.bs.as_ref(),
                [1, 1],
                [pad, pad],
                [1, 1],
                self.shape.groups,
            )
        };
        if self.shape.stride == 2 {
            return Some(conv(&xs.slice(2, 0, None, 2).slice(3, 0, None, 2)));
        }
        // [b, c, h, w] -> [b*4, c, h/2, w/2], channels-last in memory, phases outermost.
        let phases = xs
            .view([b, c, h / 2, 2, w / 2, 2])
            .permute([0, 3, 5, 2, 4, 1])
            .contiguous()
            .view([b * 4, h / 2, w / 2, c])
            .permute([0, 3, 1, 2]);
        let ys = conv(&phases);
        Some(
            ys.permute([0, 2, 3, 1])
                .reshape([b, 2, 2, h / 2, w / 2, c])
                .permute([0, 3, 1, 4, 2, 5])
                .contiguous()
                .view([b, h, w, c])
                .permute([0, 3, 1, 2]),
        )
    }
}

/// One element of a [`Chain`].
#[derive(Debug)]
pub enum Layer {
    Relu,
    Conv(Conv),
    Bn(nn::BatchNorm),
    AvgPool(Pool),
}

/// Average pooling without padding (`count_include_pad` is irrelevant then).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    pub kernel: i64,
    pub stride: i64,
}

impl Pool {
    pub fn out_size(&self, size: i64) -> i64 {
        (size - self.kernel) / self.stride + 1
    }
}

/// A sequence whose parameters are named by position (`op.1.weight`), as PyTorch's
/// `nn.Sequential` names them, so the reference implementation mirrors it one to one.
#[derive(Debug)]
pub struct Chain {
    layers: Vec<Layer>,
}

/// What a chain is made of, before it is given parameters.
#[derive(Debug, Clone, Copy)]
pub enum LayerSpec {
    Relu,
    Conv(ConvShape),
    Bn(i64, Affine),
    AvgPool(Pool),
}

impl Chain {
    pub fn new(p: nn::Path, specs: &[LayerSpec]) -> Self {
        let layers = specs
            .iter()
            .enumerate()
            .map(|(i, spec)| match *spec {
                LayerSpec::Relu => Layer::Relu,
                LayerSpec::Conv(shape) => Layer::Conv(Conv::new(&p / i, shape)),
                LayerSpec::Bn(c, affine) => Layer::Bn(batch_norm(&p / i, c, affine)),
                LayerSpec::AvgPool(pool) => Layer::AvgPool(pool),
            })
            .collect();
        Chain { layers }
    }

    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.forward_from(0, xs, train)
    }

    /// Whether the chain starts with a ReLU, so that the operations of an edge can share
    /// one ReLU of their input (see [`Self::forward_after_relu`]).
    pub fn starts_with_relu(&self) -> bool {
        matches!(self.layers.first(), Some(Layer::Relu))
    }

    /// The chain after its leading ReLU, on an input that has been through it already.
    pub fn forward_after_relu(&self, relu_xs: &Tensor, train: bool) -> Tensor {
        debug_assert!(self.starts_with_relu());
        self.forward_from(1, relu_xs, train)
    }

    fn forward_from(&self, start: usize, xs: &Tensor, train: bool) -> Tensor {
        let mut ys = apply(&self.layers[start], xs, train);
        for layer in &self.layers[start + 1..] {
            ys = match layer {
                // Inside a chain the ReLU input is a fresh tensor that no backward needs
                // (conv, BN and pooling save their inputs, not their outputs), so the ReLU
                // runs in place and its input is freed: one activation less per ReLU.
                Layer::Relu => {
                    let _ = ys.relu_();
                    super::note_relu(&ys);
                    ys
                }
                _ => apply(layer, &ys, train),
            };
        }
        ys
    }

    pub fn macs(&self, mut hw: (i64, i64)) -> (u64, (i64, i64)) {
        let mut total = 0;
        for layer in &self.layers {
            match layer {
                Layer::Conv(c) => {
                    total += c.shape.macs(hw);
                    hw = (c.shape.out_size(hw.0), c.shape.out_size(hw.1));
                }
                Layer::AvgPool(p) => hw = (p.out_size(hw.0), p.out_size(hw.1)),
                Layer::Relu | Layer::Bn(_) => {}
            }
        }
        (total, hw)
    }
}

fn apply(layer: &Layer, xs: &Tensor, train: bool) -> Tensor {
    match layer {
        Layer::Relu => {
            let ys = xs.relu();
            super::note_relu(&ys);
            ys
        }
        Layer::Conv(c) => c.forward(xs),
        Layer::Bn(bn) => batch_norm_t(bn, xs, train),
        Layer::AvgPool(p) => xs.avg_pool2d(
            [p.kernel, p.kernel],
            [p.stride, p.stride],
            [0, 0],
            false,
            false,
            None::<i64>,
        ),
    }
}

/// BN in training or evaluation mode. libtorch's channels-last BN kernels are 10-35x slower
/// than the contiguous ones when the channel count is not a multiple of 8 (measured in
/// results/BENCHMARKS.md: 6.1 ms against 0.18 ms at [64, 4, 28, 28]), so such inputs are
/// normalised in NCHW and handed back in channels-last: the same statistics, up to float
/// summation order.
pub fn batch_norm_t(bn: &nn::BatchNorm, xs: &Tensor, train: bool) -> Tensor {
    if slow_bn_layout(xs) {
        channels_last(&xs.contiguous().apply_t(bn, train))
    } else {
        xs.apply_t(bn, train)
    }
}

/// OFA's DynamicBatchNorm2d: `bn` restricted to its first `c` channels (weights, biases
/// and running statistics, which a training pass updates in place through the slices).
/// The same call and layout handling as [`batch_norm_t`], so that with `c` equal to the
/// full width the result is bit for bit that of the whole BN.
pub fn batch_norm_prefix_t(bn: &nn::BatchNorm, c: i64, xs: &Tensor, train: bool) -> Tensor {
    let slice = |t: &Tensor| t.narrow(0, 0, c);
    let (ws, bs) = (bn.ws.as_ref().map(slice), bn.bs.as_ref().map(slice));
    let norm = |x: &Tensor| {
        Tensor::batch_norm(
            x,
            ws.as_ref(),
            bs.as_ref(),
            Some(&slice(&bn.running_mean)),
            Some(&slice(&bn.running_var)),
            train,
            BN_MOMENTUM,
            BN_EPS,
            true,
        )
    };
    if slow_bn_layout(xs) {
        channels_last(&norm(&xs.contiguous()))
    } else {
        norm(xs)
    }
}

fn slow_bn_layout(xs: &Tensor) -> bool {
    xs.dim() == 4 && xs.device() == tch::Device::Cpu && xs.size()[1] % 8 != 0 && !xs.is_contiguous()
}

/// The running-statistics update of a training-mode [`batch_norm_t`] on `xs`, without its
/// output: libtorch's `batch_norm` and `batch_norm_update_stats` share the update code, so
/// the statistics are the same bit for bit.
pub fn update_running_stats(bn: &nn::BatchNorm, xs: &Tensor) {
    let xs = if slow_bn_layout(xs) {
        xs.contiguous()
    } else {
        xs.shallow_clone()
    };
    let _ = tch::no_grad(|| {
        xs.batch_norm_update_stats(Some(&bn.running_mean), Some(&bn.running_var), BN_MOMENTUM)
    });
}

/// `xs` with channels-last strides (NHWC in memory, NCHW in shape) on the CPU, where oneDNN
/// runs depthwise and 1x1 convolutions, pooling and BN several times faster in that layout
/// than in NCHW (measured in results/BENCHMARKS.md); on CUDA with `--channels-last`
/// ([`crate::backend::channels_last_on`]). Every op keeps the layout of its input, so
/// converting the network input once is enough. Elsewhere `xs` is returned as is.
pub fn channels_last(xs: &Tensor) -> Tensor {
    if crate::backend::channels_last_on(xs.device()) && xs.dim() == 4 {
        xs.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
    } else {
        xs.shallow_clone()
    }
}

/// ReLU -> conv -> BN, the unit of DARTS and NAS-Bench-201 (`op.1` conv, `op.2` BN).
pub fn relu_conv_bn(p: &nn::Path, shape: ConvShape, affine: Affine) -> Chain {
    Chain::new(
        p / "op",
        &[
            LayerSpec::Relu,
            LayerSpec::Conv(shape),
            LayerSpec::Bn(shape.c_out, affine),
        ],
    )
}
