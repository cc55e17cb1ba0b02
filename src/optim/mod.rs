//! Optimizers written over plain tensors so that their state can be saved, restored and
//! read (second-order DARTS needs the weight optimizer's momentum buffer, which libtorch's
//! optimizers do not expose). Semantics are PyTorch's `SGD` and `Adam` (L2 weight decay
//! added to the gradient).
mod adam;
mod scaler;
mod schedule;
mod sgd;

pub use adam::Adam;
pub use scaler::GradScaler;
pub use schedule::cosine_lr;
pub use sgd::Sgd;

use tch::{nn, Tensor};

/// `clip_grad_norm_`: scales all gradients so that their joint L2 norm is at most
/// `max_norm`; returns the norm before clipping.
pub fn clip_grad_norm(params: &[Tensor], max_norm: f64) -> f64 {
    let norm = grad_norm(params);
    let coef = max_norm / (norm + 1e-6);
    if coef < 1.0 {
        tch::no_grad(|| {
            for p in params {
                let mut g = p.grad();
                if g.defined() {
                    let _ = g.g_mul_scalar_(coef);
                }
            }
        });
    }
    norm
}

/// Joint L2 norm of the gradients of `params` (parameters without a gradient count 0).
pub fn grad_norm(params: &[Tensor]) -> f64 {
    let squares: Vec<Tensor> = params
        .iter()
        .map(|p| p.grad())
        .filter(|g| g.defined())
        .map(|g| g.square().sum(tch::Kind::Double))
        .collect();
    if squares.is_empty() {
        return 0.0;
    }
    Tensor::stack(&squares, 0)
        .sum(tch::Kind::Double)
        .sqrt()
        .double_value(&[])
}

/// Set the gradients of `params` to zero (keeping the allocated buffers).
pub fn zero_grad(params: &[Tensor]) {
    for p in params {
        let mut g = p.grad();
        if g.defined() {
            let _ = g.detach_().zero_();
        }
    }
}

/// Names and tensors of the trainable weights, and the BN buffers, of a store, each in a
/// stable (name-sorted) order.
pub fn split_variables(vs: &nn::VarStore) -> (Vec<String>, Vec<Tensor>, Vec<Tensor>) {
    let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let (w, b): (Vec<_>, Vec<_>) = named.into_iter().partition(|(_, t)| t.requires_grad());
    let (names, weights) = w.into_iter().unzip();
    (names, weights, b.into_iter().map(|x| x.1).collect())
}
