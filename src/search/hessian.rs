//! R-DARTS's curvature signal (Zela et al. 2020, "Understanding and Robustifying
//! Differentiable Architecture Search"): the dominant eigenvalue of the Hessian of the
//! validation loss with respect to the alphas, which grows as a search heads for a
//! collapsed (sharp) architecture. Found by power iteration on exact Hessian-vector
//! products (double backward through libtorch autograd), never forming the Hessian.
use super::{Batch, SearchState};
use crate::rng::{Rng, PURPOSE_HESSIAN};
use crate::{Error, Result};
use tch::{Kind, Tensor};

/// Power iterations at most; fewer when the estimate settles (see [`TOLERANCE`]).
pub const MAX_ITERATIONS: usize = 20;
/// The iteration stops once the eigenvalue estimate changes by at most this fraction of
/// itself from one iteration to the next.
pub const TOLERANCE: f64 = 1e-4;

/// The eigenvalue of largest magnitude of the Hessian of `loss` w.r.t. `params` (which
/// `loss` must have been computed from, with its graph alive), by power iteration from a
/// random start drawn from `rng`: `v <- Hv / |Hv|`, the estimate being the Rayleigh
/// quotient `v.Hv` of the unit vector `v`. At most `max_iterations` products.
pub fn power_iteration(
    loss: &Tensor,
    params: &[Tensor],
    max_iterations: usize,
    tolerance: f64,
    rng: &mut Rng,
) -> f64 {
    // The gradient with its own graph, so that its products with v differentiate again.
    let grads = defined(Tensor::run_backward(&[loss], params, true, true), params);
    let mut v: Vec<Tensor> = params
        .iter()
        .map(|p| {
            let draw: Vec<f32> = (0..p.numel()).map(|_| gaussian(rng) as f32).collect();
            Tensor::from_slice(&draw)
                .view_(p.size())
                .to_kind(p.kind())
                .to_device(p.device())
        })
        .collect();
    let norm = norm_of(&v);
    v.iter_mut().for_each(|t| *t = &*t / norm);
    let mut estimate = 0.0;
    for i in 0..max_iterations {
        let hv = hessian_vector(&grads, params, &v);
        let next = dot(&v, &hv);
        let settled = i > 0 && (next - estimate).abs() <= tolerance * next.abs();
        estimate = next;
        let n = norm_of(&hv);
        if settled || n == 0.0 {
            break;
        }
        v = hv.iter().map(|t| t / n).collect();
    }
    estimate
}

/// `H v` from the gradient `grads` (built with `create_graph`): the gradient of `g . v`.
fn hessian_vector(grads: &[Tensor], params: &[Tensor], v: &[Tensor]) -> Vec<Tensor> {
    let products: Vec<Tensor> = grads
        .iter()
        .zip(v)
        .map(|(g, v)| (g * v).sum(Kind::Double))
        .collect();
    let gv = Tensor::stack(&products, 0).sum(Kind::Double);
    if !gv.requires_grad() {
        // A gradient constant in the parameters: the Hessian is zero.
        return params.iter().map(Tensor::zeros_like).collect();
    }
    defined(Tensor::run_backward(&[&gv], params, true, false), params)
}

/// Zeros where autograd returned no gradient (a parameter the value does not reach).
fn defined(grads: Vec<Tensor>, params: &[Tensor]) -> Vec<Tensor> {
    grads
        .into_iter()
        .zip(params)
        .map(|(g, p)| if g.defined() { g } else { p.zeros_like() })
        .collect()
}

fn dot(a: &[Tensor], b: &[Tensor]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x * y).sum(Kind::Double).double_value(&[]))
        .sum()
}

fn norm_of(v: &[Tensor]) -> f64 {
    dot(v, v).sqrt()
}

/// A standard normal draw (Box-Muller; `u1` in (0, 1] so the logarithm is finite).
fn gaussian(rng: &mut Rng) -> f64 {
    let u1 = 1.0 - rng.unit();
    let u2 = rng.unit();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// The dominant Hessian eigenvalue of the supernet's validation loss on `batch` w.r.t. the
/// alphas (PC-DARTS's betas held fixed), under the softmax relaxation with train-mode BN
/// as in the alpha step; the start vector is a pure function of (seed, `epoch`). BN
/// running statistics are left as they were, so the search goes on unchanged.
pub fn dominant_eigenvalue(st: &SearchState, batch: &Batch, epoch: usize) -> Result<f64> {
    let saved = st.save_bn_stats();
    let alphas: Vec<Tensor> = st
        .arch
        .alphas
        .iter()
        .map(|(_, a)| a.shallow_clone())
        .collect();
    let value = {
        let (loss, _) = st.loss_with(batch, &st.arch.softmax());
        let mut rng = Rng::from_key(&[st.cfg.seed, PURPOSE_HESSIAN, epoch as u64]);
        power_iteration(&loss, &alphas, MAX_ITERATIONS, TOLERANCE, &mut rng)
    };
    st.restore_bn_stats(&saved);
    if !value.is_finite() {
        return Err(Error::invalid(
            format!("Hessian eigenvalue after epoch {}", epoch + 1),
            value,
            "a finite number (the validation loss or its curvature diverged)",
        ));
    }
    Ok(value)
}
