//! Zero-cost proxies: scores of an untrained network, computed on a freshly initialised
//! stand-alone network of the genotype and one batch, without any training.
//!
//! - grad-norm, snip, synflow, jacov: Abdelfattah et al. 2021, "Zero-Cost Proxies for
//!   Lightweight NAS"; naswot: Mellor et al. 2021, "Neural Architecture Search without
//!   Training". Weight-wise proxies sum over the weights of the convolutions and the
//!   classifier (the references' `Conv2d`/`Linear` `weight`s: the variables of two or more
//!   dimensions; BN parameters and biases are not counted).
//! - The network is in training mode (batch statistics), as in the references, except for
//!   synflow, which runs BN in evaluation mode with its fresh statistics (mean 0, variance 1,
//!   so each BN only scales by `1 / sqrt(1 + 1e-5)`; the reference removes BN).
use crate::model::{Model, ModelSpec};
use crate::ops::record_relus;
use crate::supernet::Pass;
use crate::{Error, Result};
use tch::{Device, Kind, Tensor};

/// One zero-cost proxy (higher is better for each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proxy {
    /// `sum_W ||dL/dW||_2`, L the cross-entropy of the batch.
    GradNorm,
    /// `sum |W * dL/dW|`.
    Snip,
    /// `sum |W * dR/dW|` with every parameter replaced by its absolute value, float64, an
    /// all-ones input of batch size 1 and `R` the sum of the logits.
    Synflow,
    /// `log |det K|`, `K = sum over ReLUs of c c^T + (1 - c)(1 - c)^T`, `c` the binary
    /// activation codes of the batch's images.
    Naswot,
    /// `-sum_i log(v_i + k) + 1 / (v_i + k)`, `k = 1e-5`, over the eigenvalues `v` of the
    /// correlation matrix of the per-image input gradients of the summed logits; NaN when
    /// the output does not depend on the input (every gradient below [`JACOBIAN_FLOOR`]).
    Jacov,
}

/// Input gradients all below this are float32 rounding noise of an output that does not
/// depend on its input (their correlations would be noise too).
pub const JACOBIAN_FLOOR: f64 = 1e-6;

/// `--score`: how a sub-network is scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScoreKind {
    /// Validation accuracy with the weights inherited from the supernet (with `--bn`).
    #[default]
    Inherited,
    Proxy(Proxy),
    /// Inherited weights (with `--bn`) from the few-shot sub-supernet whose fixed op the
    /// architecture has on the split edge (`supernet few-shot`).
    FewShot,
}

impl Proxy {
    pub const ALL: [Proxy; 5] = [
        Proxy::Synflow,
        Proxy::Naswot,
        Proxy::GradNorm,
        Proxy::Snip,
        Proxy::Jacov,
    ];

    /// The `--score` value.
    pub fn name(self) -> &'static str {
        match self {
            Proxy::GradNorm => "grad-norm",
            Proxy::Snip => "snip",
            Proxy::Synflow => "synflow",
            Proxy::Naswot => "naswot",
            Proxy::Jacov => "jacov",
        }
    }

    /// The table column holding its values.
    pub fn column(self) -> String {
        self.name().replace('-', "_")
    }
}

impl ScoreKind {
    pub fn name(self) -> &'static str {
        match self {
            ScoreKind::Inherited => "inherited",
            ScoreKind::FewShot => "few-shot",
            ScoreKind::Proxy(p) => p.name(),
        }
    }

    pub fn proxy(self) -> Option<Proxy> {
        match self {
            ScoreKind::Inherited | ScoreKind::FewShot => None,
            ScoreKind::Proxy(p) => Some(p),
        }
    }
}

impl std::str::FromStr for ScoreKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "inherited" => return Ok(ScoreKind::Inherited),
            "few-shot" => return Ok(ScoreKind::FewShot),
            _ => {}
        }
        Proxy::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .map(ScoreKind::Proxy)
            .ok_or_else(|| {
                let names: Vec<&str> = Proxy::ALL.iter().map(|p| p.name()).collect();
                Error::invalid(
                    "--score",
                    s,
                    format!("inherited, few-shot, {}", names.join(", ")),
                )
            })
    }
}

/// `proxy` of the network of `spec`, freshly initialised from libtorch's generator seeded
/// with `seed`, on `images` (NCHW) and `labels` (class indices) on `device`. Non-finite
/// values (a singular kernel, a constant Jacobian) are returned as they are.
pub fn proxy_score(
    proxy: Proxy,
    spec: ModelSpec,
    seed: i64,
    device: Device,
    images: &Tensor,
    labels: &Tensor,
) -> Result<f64> {
    tch::manual_seed(seed);
    let mut model = Model::new(spec, device)?;
    let (images, labels) = (images.to_device(device), labels.to_device(device));
    Ok(match proxy {
        Proxy::GradNorm => loss_gradients(&model, &images, &labels)
            .iter()
            .map(|(_, g)| g.norm().double_value(&[]))
            .sum(),
        Proxy::Snip => loss_gradients(&model, &images, &labels)
            .iter()
            .map(|(w, g)| sum_abs_product(w, g))
            .sum(),
        Proxy::Synflow => synflow(&mut model, &images),
        Proxy::Naswot => naswot(&model, &images),
        Proxy::Jacov => jacov(&model, &images),
    })
}

/// The weights the weight-wise proxies sum over (convolution and linear weights).
fn weights(model: &Model) -> Vec<Tensor> {
    let vars = model.vs.trainable_variables();
    vars.into_iter().filter(|t| t.dim() >= 2).collect()
}

/// Each weight with its gradient after `backward` (zeros where none reached it).
fn gradients(model: &Model) -> Vec<(Tensor, Tensor)> {
    weights(model)
        .into_iter()
        .map(|w| {
            let g = w.grad();
            let g = if g.defined() { g } else { w.zeros_like() };
            (w, g)
        })
        .collect()
}

fn loss_gradients(model: &Model, images: &Tensor, labels: &Tensor) -> Vec<(Tensor, Tensor)> {
    let logits = model.forward(images, Pass::new(true)).main;
    logits.cross_entropy_for_logits(labels).backward();
    gradients(model)
}

fn sum_abs_product(w: &Tensor, g: &Tensor) -> f64 {
    (w * g).abs().sum(Kind::Double).double_value(&[])
}

fn synflow(model: &mut Model, images: &Tensor) -> f64 {
    model.vs.double();
    tch::no_grad(|| {
        for v in model.vs.trainable_variables() {
            let _ = v.shallow_clone().abs_();
        }
    });
    let mut shape = images.size();
    shape[0] = 1;
    let ones = Tensor::ones(shape, (Kind::Double, images.device()));
    let out = model.forward(&ones, Pass::new(false)).main;
    out.sum(Kind::Double).backward();
    gradients(model)
        .iter()
        .map(|(w, g)| sum_abs_product(w, g))
        .sum()
}

fn naswot(model: &Model, images: &Tensor) -> f64 {
    let n = images.size()[0];
    let (_, codes) = record_relus(|| tch::no_grad(|| model.forward(images, Pass::new(true))));
    let mut k = Tensor::zeros([n, n], (Kind::Double, images.device()));
    for c in codes {
        let c = c.reshape([n, -1]).to_kind(Kind::Double);
        let off = c.ones_like() - &c;
        k += c.mm(&c.tr()) + off.mm(&off.tr());
    }
    let (_sign, logabsdet) = k.slogdet();
    logabsdet.double_value(&[])
}

fn jacov(model: &Model, images: &Tensor) -> f64 {
    let n = images.size()[0];
    let x = images.detach().copy().set_requires_grad(true);
    let out = model.forward(&x, Pass::new(true)).main;
    out.sum(Kind::Float).backward();
    // No gradient at all: the logits do not depend on the input (a cell cut off by `none`).
    let grad = x.grad();
    if !grad.defined() {
        return f64::NAN;
    }
    let jacobian = grad.reshape([n, -1]).to_kind(Kind::Double);
    if jacobian.abs().max().double_value(&[]) < JACOBIAN_FLOOR {
        return f64::NAN;
    }
    let v = jacobian.corrcoef().linalg_eigvalsh("L") + 1e-5;
    -(v.log() + v.reciprocal())
        .sum(Kind::Double)
        .double_value(&[])
}
