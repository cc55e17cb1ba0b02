//! ProxylessNAS's binarised paths (Cai et al., ICLR 2019, Sec. 3.2), as plain numbers: the
//! paths are drawn on the host from (seed, step) keyed generators, the gradient of the
//! alphas is assembled from the gradient of the binary gates, and the two sampled alphas are
//! shifted back so that the choices not sampled keep their share of the softmax.
use crate::rng::Rng;

/// `softmax(alphas)` over the entries `allowed` (zeros elsewhere), in f64.
pub fn probabilities(alphas: &[f64], allowed: &[usize]) -> Vec<f64> {
    let max = allowed
        .iter()
        .map(|&k| alphas[k])
        .fold(f64::NEG_INFINITY, f64::max);
    let mut p = vec![0.0; alphas.len()];
    for &k in allowed {
        p[k] = (alphas[k] - max).exp();
    }
    let sum: f64 = p.iter().sum();
    p.iter_mut().for_each(|x| *x /= sum);
    p
}

/// One index drawn with probability `probs[i]` among those not `excluded`, renormalised
/// (`torch.multinomial` without replacement, one draw at a time).
pub fn multinomial(probs: &[f64], excluded: Option<usize>, rng: &mut Rng) -> usize {
    let weight = |i: usize| if Some(i) == excluded { 0.0 } else { probs[i] };
    let total: f64 = (0..probs.len()).map(weight).sum();
    let u = rng.unit() * total;
    let mut acc = 0.0;
    let mut last = None;
    for i in 0..probs.len() {
        let w = weight(i);
        if w > 0.0 {
            acc += w;
            last = Some(i);
            if u < acc {
                return i;
            }
        }
    }
    last.expect("a positive probability")
}

/// The paths of one layer in an architecture step: the active one (binary gate 1, computed
/// with its graph) and the inactive one (gate 0, computed only for its gate's gradient);
/// `None` when the layer has a single choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TwoPaths {
    pub active: usize,
    pub inactive: Option<usize>,
}

impl TwoPaths {
    /// ProxylessNAS "two" mode: two distinct choices drawn by the multinomial of `probs`
    /// (softmax over the layer's allowed choices); the active one of them drawn by the
    /// softmax of their two alphas.
    pub fn draw(alphas: &[f64], probs: &[f64], rng: &mut Rng) -> Self {
        let first = multinomial(probs, None, rng);
        if probs.iter().filter(|&&p| p > 0.0).count() < 2 {
            return TwoPaths {
                active: first,
                inactive: None,
            };
        }
        let second = multinomial(probs, Some(first), rng);
        let slice = probabilities(alphas, &[first, second]);
        let (active, inactive) = if rng.unit() < slice[first] {
            (first, second)
        } else {
            (second, first)
        };
        TwoPaths {
            active,
            inactive: Some(inactive),
        }
    }

    /// The columns involved: active first.
    pub fn columns(&self) -> Vec<usize> {
        std::iter::once(self.active).chain(self.inactive).collect()
    }
}

/// `dL/dalpha_i = sum_j dL/dg_j * p_j * (delta_ij - p_i)` over the two involved choices,
/// with `p` the softmax of their two alphas (`alphas`, `gate_grads` in the same order).
pub fn two_path_alpha_grad(alphas: [f64; 2], gate_grads: [f64; 2]) -> [f64; 2] {
    let p = probabilities(&alphas, &[0, 1]);
    let mut grad = [0.0; 2];
    for (i, g) in grad.iter_mut().enumerate() {
        for j in 0..2 {
            let delta = if i == j { 1.0 } else { 0.0 };
            *g += gate_grads[j] * p[j] * (delta - p[i]);
        }
    }
    grad
}

/// What is subtracted from both involved alphas after their update so that the sum of
/// their exponentials, and with it the softmax of every choice not involved, is what it
/// was before: `log(sum exp(new) / sum exp(old))`.
pub fn rescale_offset(old: [f64; 2], new: [f64; 2]) -> f64 {
    let lse = |a: [f64; 2]| {
        let m = a[0].max(a[1]);
        m + ((a[0] - m).exp() + (a[1] - m).exp()).ln()
    };
    lse(new) - lse(old)
}
