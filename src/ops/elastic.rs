//! Once-for-All's elastic MBConv (Cai et al., ICLR 2020): one inverted residual block at the
//! largest kernel and expansion holds every choice of its layer. Expansion `e` uses the first
//! `e * C_in` expanded channels of the expansion, depthwise, SE and projection weights and of
//! the BN statistics (OFA's DynamicConv2d, DynamicSE, DynamicBatchNorm2d); kernel `k` uses
//! the centre of the larger kernel passed through one learnt `(k*k) x (k*k)` matrix per
//! step down (7 -> 5 -> 3), shared by the channels and initialised to the identity (OFA's
//! DynamicSeparableConv2d with KERNEL_TRANSFORM_MODE = 1). Parameter names follow
//! [`super::MbConv`]'s, so the weights of one choice, [`ElasticMbConv::materialise`]d, load
//! into the stand-alone block of that choice.
use super::layers::{batch_norm, batch_norm_prefix_t, linear, Affine, Conv, ConvShape};
use super::mbconv::activate;
use crate::space::chain::{se_channels, Activation, LayerPlan};
use tch::{nn, Kind, Tensor};

#[derive(Debug)]
struct ConvBn {
    conv: Conv,
    bn: nn::BatchNorm,
}

impl ConvBn {
    fn new(p: &nn::Path, shape: ConvShape) -> Self {
        ConvBn {
            conv: Conv::new(p / "conv", shape),
            bn: batch_norm(p / "bn", shape.c_out, Affine::Yes),
        }
    }

    /// The BN's tensors restricted to the first `c` channels, by their names in `bn.`.
    fn bn_prefix(&self, c: i64) -> Vec<(&'static str, Tensor)> {
        let bn = &self.bn;
        let slice = |t: &Tensor| t.narrow(0, 0, c);
        vec![
            ("bn.weight", slice(bn.ws.as_ref().expect("affine BN"))),
            ("bn.bias", slice(bn.bs.as_ref().expect("affine BN"))),
            ("bn.running_mean", slice(&bn.running_mean)),
            ("bn.running_var", slice(&bn.running_var)),
        ]
    }
}

/// One learnt kernel transformation: the centre `to`x`to` of a `from`x`from` kernel, each
/// channel's `to*to` entries mapped by `matrix` (`F.linear(x, matrix)`: `x @ matrix^T`).
#[derive(Debug)]
struct KernelTransform {
    from: usize,
    to: usize,
    matrix: Tensor,
}

#[derive(Debug)]
pub struct ElasticMbConv {
    c_in: i64,
    max_kernel: usize,
    expand: ConvBn,
    depthwise: ConvBn,
    /// Largest first.
    transforms: Vec<KernelTransform>,
    se: Option<(nn::Linear, nn::Linear)>,
    project: ConvBn,
    act: Activation,
    stride: i64,
    residual: bool,
}

/// The name of a kernel transformation matrix under the block's `depthwise.`.
pub fn transform_name(from: usize, to: usize) -> String {
    format!("transform_{from}to{to}")
}

impl ElasticMbConv {
    /// The block of `plan` at `max_kernel` and `max_expand`, with one matrix per
    /// `(from, to)` of `transforms` (largest first, consecutive kernel sizes).
    pub fn new(
        p: &nn::Path,
        plan: &LayerPlan,
        max_kernel: usize,
        max_expand: usize,
        transforms: &[(usize, usize)],
    ) -> Self {
        let (c_in, c_out) = (plan.c_in as i64, plan.c_out as i64);
        let hidden = c_in * max_expand as i64;
        let k = max_kernel as i64;
        let dw = p / "depthwise";
        ElasticMbConv {
            c_in,
            max_kernel,
            expand: ConvBn::new(&(p / "expand"), ConvShape::new(c_in, hidden, 1)),
            depthwise: ConvBn::new(
                &dw,
                ConvShape::new(hidden, hidden, k)
                    .stride(plan.stride as i64)
                    .padding(k / 2)
                    .depthwise(),
            ),
            transforms: transforms
                .iter()
                .map(|&(from, to)| {
                    let n = (to * to) as i64;
                    let eye = Tensor::eye(n, (Kind::Float, p.device()));
                    KernelTransform {
                        from,
                        to,
                        matrix: dw.var_copy(&transform_name(from, to), &eye),
                    }
                })
                .collect(),
            se: plan.se.then(|| {
                let sq = se_channels(hidden as usize) as i64;
                let se = p / "se";
                (
                    linear(&se / "fc1", hidden, sq),
                    linear(&se / "fc2", sq, hidden),
                )
            }),
            project: ConvBn::new(&(p / "project"), ConvShape::new(hidden, c_out, 1)),
            act: plan.act,
            stride: plan.stride as i64,
            residual: plan.shape_preserving(),
        }
    }

    /// The depthwise kernel of choice `kernel` for the first `hidden` channels: the largest
    /// kernel's channels, cropped to the centre and transformed step by step down to `kernel`.
    pub fn kernel(&self, kernel: usize, hidden: i64) -> Tensor {
        let mut w = self.depthwise.conv.conv.ws.narrow(0, 0, hidden);
        let mut size = self.max_kernel;
        for t in &self.transforms {
            if size <= kernel {
                break;
            }
            debug_assert_eq!(t.from, size);
            let start = ((t.from - t.to) / 2) as i64;
            let to = t.to as i64;
            let centre = w.narrow(2, start, to).narrow(3, start, to);
            w = centre
                .reshape([hidden, to * to])
                .linear::<&Tensor>(&t.matrix, None)
                .reshape([hidden, 1, to, to]);
            size = t.to;
        }
        w
    }

    /// The transformation matrices the choice of `kernel` uses: those from sizes above it.
    pub fn transforms_used(&self, kernel: usize) -> Vec<(usize, usize)> {
        self.transforms
            .iter()
            .filter(|t| t.from > kernel)
            .map(|t| (t.from, t.to))
            .collect()
    }

    /// The choice `(kernel, expand)` on `xs`.
    pub fn forward_t(&self, xs: &Tensor, kernel: usize, expand: usize, train: bool) -> Tensor {
        let hidden = self.c_in * expand as i64;
        let k = kernel as i64;
        let w = self.expand.conv.conv.ws.narrow(0, 0, hidden).contiguous();
        let h = xs.conv2d::<&Tensor>(&w, None, [1, 1], [0, 0], [1, 1], 1);
        let h = activate(
            &batch_norm_prefix_t(&self.expand.bn, hidden, &h, train),
            self.act,
        );
        let w = self.kernel(kernel, hidden).contiguous();
        let h = h.conv2d::<&Tensor>(
            &w,
            None,
            [self.stride, self.stride],
            [k / 2, k / 2],
            [1, 1],
            hidden,
        );
        let mut h = activate(
            &batch_norm_prefix_t(&self.depthwise.bn, hidden, &h, train),
            self.act,
        );
        if let Some((fc1, fc2)) = &self.se {
            let sq = se_channels(hidden as usize) as i64;
            let (b, c) = (h.size()[0], h.size()[1]);
            let b1 = fc1.bs.as_ref().map(|t| t.narrow(0, 0, sq));
            let b2 = fc2.bs.as_ref().map(|t| t.narrow(0, 0, hidden));
            let scale = h
                .mean_dim([2i64, 3].as_slice(), false, None)
                .linear(
                    &fc1.ws.narrow(0, 0, sq).narrow(1, 0, hidden).contiguous(),
                    b1.as_ref(),
                )
                .relu()
                .linear(
                    &fc2.ws.narrow(0, 0, hidden).narrow(1, 0, sq).contiguous(),
                    b2.as_ref(),
                )
                .hardsigmoid()
                .view([b, c, 1, 1]);
            // Not `*=`: that would overwrite in place what the activation's backward reads.
            h = &h * scale;
        }
        let w = self.project.conv.conv.ws.narrow(1, 0, hidden).contiguous();
        let ys = h.conv2d::<&Tensor>(&w, None, [1, 1], [0, 0], [1, 1], 1);
        let ys = batch_norm_prefix_t(&self.project.bn, self.project.conv.shape.c_out, &ys, train);
        if self.residual {
            ys + xs
        } else {
            ys
        }
    }

    /// The weights of choice `(kernel, expand)` as copies, named as in the stand-alone
    /// [`super::MbConv`] of that choice (`expand.conv.weight`, `depthwise.bn.running_var`,
    /// `se.fc1.bias`, ...).
    pub fn materialise(&self, kernel: usize, expand: usize) -> Vec<(String, Tensor)> {
        let hidden = self.c_in * expand as i64;
        let mut out: Vec<(String, Tensor)> = Vec::new();
        let mut put = |prefix: &str, name: &str, t: Tensor| {
            out.push((format!("{prefix}.{name}"), t.detach().contiguous().copy()));
        };
        tch::no_grad(|| {
            put(
                "expand",
                "conv.weight",
                self.expand.conv.conv.ws.narrow(0, 0, hidden),
            );
            for (n, t) in self.expand.bn_prefix(hidden) {
                put("expand", n, t);
            }
            put("depthwise", "conv.weight", self.kernel(kernel, hidden));
            for (n, t) in self.depthwise.bn_prefix(hidden) {
                put("depthwise", n, t);
            }
            if let Some((fc1, fc2)) = &self.se {
                let sq = se_channels(hidden as usize) as i64;
                put(
                    "se",
                    "fc1.weight",
                    fc1.ws.narrow(0, 0, sq).narrow(1, 0, hidden),
                );
                if let Some(b) = &fc1.bs {
                    put("se", "fc1.bias", b.narrow(0, 0, sq));
                }
                put(
                    "se",
                    "fc2.weight",
                    fc2.ws.narrow(0, 0, hidden).narrow(1, 0, sq),
                );
                if let Some(b) = &fc2.bs {
                    put("se", "fc2.bias", b.narrow(0, 0, hidden));
                }
            }
            put(
                "project",
                "conv.weight",
                self.project.conv.conv.ws.narrow(1, 0, hidden),
            );
            let c_out = self.project.conv.shape.c_out;
            for (n, t) in self.project.bn_prefix(c_out) {
                put("project", n, t);
            }
        });
        out
    }
}
