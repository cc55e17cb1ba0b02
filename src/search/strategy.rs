//! Search algorithms. The loop owns data, logging and checkpoints; a [`Strategy`] owns what
//! one step does to the weights and the alphas.
use super::state::{Batch, SearchState};
use crate::rng::{PURPOSE_GDAS_ARCH, PURPOSE_GDAS_WEIGHTS, PURPOSE_SPOS};
pub use crate::run::StepStats;
use crate::supernet::ArchWeights;
use crate::{Error, Result};
use tch::{Kind, Tensor};

pub trait Strategy {
    fn name(&self) -> &'static str;

    /// One bi-level step: the alphas on the validation batch, then the weights on the
    /// training batch (the DARTS order).
    fn step(&mut self, st: &mut SearchState, train: &Batch, val: &Batch) -> Result<StepStats>;

    /// State of the strategy's own beyond [`SearchState`], by checkpoint name (live
    /// handles: saving reads them, loading copies into them).
    fn state_tensors(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }

    /// The architecture the search stands for now: what the alphas derive to, unless the
    /// strategy decides it otherwise (ENAS: its controller's most likely one).
    fn genotype(&self, st: &SearchState) -> Result<crate::space::Genotype> {
        st.arch.genotype(&st.space)
    }

    /// The mixing weights the per-epoch evaluation scores the supernet under: the softmax
    /// of the alphas, unless the strategy's architecture is a discrete one (ENAS).
    fn eval_weights(&self, st: &SearchState) -> Result<ArchWeights> {
        Ok(st.arch.softmax_detached())
    }
}

/// DARTS first order: the alpha gradient is taken at the current weights.
pub struct FirstOrder;

/// DARTS second order: the alpha gradient is taken at the weights after one virtual SGD
/// step, with the Hessian-vector term by finite differences.
pub struct SecondOrder;

impl Strategy for FirstOrder {
    fn name(&self) -> &'static str {
        "first-order"
    }

    fn step(&mut self, st: &mut SearchState, train: &Batch, val: &Batch) -> Result<StepStats> {
        if let Some(stats) = warmup_step(st, train, val)? {
            return Ok(stats);
        }
        st.zero_arch_grad();
        let (val_loss, val_acc) = st.arch_backward(val)?;
        st.arch_update()?;
        let mut stats = st.weight_step(train)?;
        stats.val_loss = val_loss;
        stats.val_acc = val_acc;
        Ok(stats)
    }
}

impl Strategy for SecondOrder {
    fn name(&self) -> &'static str {
        "second-order"
    }

    fn step(&mut self, st: &mut SearchState, train: &Batch, val: &Batch) -> Result<StepStats> {
        if let Some(stats) = warmup_step(st, train, val)? {
            return Ok(stats);
        }
        let lr = st.lr;
        let params: Vec<Tensor> = st.weights.iter().map(|w| w.shallow_clone()).collect();
        let alphas = st.arch.tensors();
        let backup: Vec<Tensor> = params.iter().map(|p| p.detach().copy()).collect();

        // Virtual step w' = w - lr * (momentum * buf + dL_train/dw + wd * w).
        let grads = st.grads_of(train, &st.arch.softmax_detached(), &params).2;
        st.average(&grads, "the virtual-step gradient all-reduce")?;
        tch::no_grad(|| {
            for (((p, g), buf), w) in params.iter().zip(&grads).zip(&st.sgd.buffers).zip(&backup) {
                let step = buf * st.sgd.momentum + g + w * st.sgd.weight_decay;
                p.shallow_clone().copy_(&(w - step * lr));
            }
        });
        drop(grads);

        // Validation loss at w': gradients for the alphas and for w'. DARTS evaluates it
        // on a throw-away copy of the network, so BN statistics from it are discarded.
        let bn_stats = st.save_bn_stats();
        let mut inputs: Vec<Tensor> = alphas.iter().map(|a| a.shallow_clone()).collect();
        inputs.extend(params.iter().map(|p| p.shallow_clone()));
        let (val_loss_t, val_acc, all) = st.grads_of(val, &st.arch.softmax(), &inputs);
        let val_loss = finite(val_loss_t.double_value(&[]), "validation loss", st)?;
        let (d_alpha, d_w) = all.split_at(alphas.len());
        // The Hessian term is taken along the global batch's dL_val/dw'; the alpha
        // gradient (local d_alpha minus the local Hessian term) is averaged by arch_update.
        st.average(d_w, "the unrolled gradient all-reduce")?;
        st.restore_bn_stats(&bn_stats);
        restore(&params, &backup);

        let hessian = finite_difference_hvp(&params, d_w, || {
            st.grads_of(train, &st.arch.softmax(), &alphas).2
        });
        tch::no_grad(|| {
            for ((a, da), h) in alphas.iter().zip(d_alpha).zip(&hessian) {
                // SearchState gives every alpha a gradient buffer up front.
                a.grad().copy_(&(da - h * lr));
            }
        });
        st.arch_update()?;
        let mut stats = st.weight_step(train)?;
        stats.val_loss = val_loss;
        stats.val_acc = val_acc;
        Ok(stats)
    }
}

/// During the first `cfg.arch_warmup_epochs` epochs (PC-DARTS: `if epoch >= 15:
/// architect.step(...)`) a DARTS step trains the weights only, under the softmax of the
/// untouched alphas; the validation batch is measured without a graph and its BN
/// statistics are discarded, as SPOS measures it. `None` after the warm-up.
fn warmup_step(st: &mut SearchState, train: &Batch, val: &Batch) -> Result<Option<StepStats>> {
    if st.epoch >= st.cfg.arch_warmup_epochs {
        return Ok(None);
    }
    let bn = st.save_bn_stats();
    let (val_loss, val_acc) = tch::no_grad(|| {
        let (l, a) = st.loss(val, false);
        (l.double_value(&[]), a)
    });
    st.restore_bn_stats(&bn);
    let val_loss = finite(val_loss, "validation loss", st)?;
    let mut stats = st.weight_step(train)?;
    stats.val_loss = val_loss;
    stats.val_acc = val_acc;
    Ok(Some(stats))
}

/// SPOS (single-path one-shot, Guo et al. 2020): each step trains one uniformly drawn
/// path (a discrete architecture under the space's derivation rule) with SGD; only that
/// path's operations are computed and updated. The alphas are not touched. The path is a
/// pure function of (seed, global step).
pub struct Spos;

impl Strategy for Spos {
    fn name(&self) -> &'static str {
        "spos"
    }

    /// The path of the derived genotype: SPOS trains single paths only, so the mixture of
    /// all of them would score near chance. A few-shot sub-supernet keeps the mixture: the
    /// derived path need not hold its fixed op.
    fn eval_weights(&self, st: &SearchState) -> Result<ArchWeights> {
        if st.cfg.few_shot.is_some() {
            return Ok(st.arch.softmax_detached());
        }
        ArchWeights::from_genotype(&self.genotype(st)?, &st.space, st.device)
    }

    fn step(&mut self, st: &mut SearchState, train: &Batch, val: &Batch) -> Result<StepStats> {
        let rng = &mut st.step_rng(PURPOSE_SPOS);
        // A few-shot sub-supernet trains the paths through its fixed op only.
        let genotype = match &st.cfg.few_shot {
            Some(f) => crate::space::uniform_genotype_in(&st.space, f.split, rng),
            None => crate::space::uniform_genotype(&st.space, rng),
        };
        let path = ArchWeights::from_genotype(&genotype, &st.space, st.device)?;
        // The validation batch only measures the path (BN statistics left as they were).
        let bn = st.save_bn_stats();
        let (val_loss, val_acc) = tch::no_grad(|| {
            let (l, a) = st.loss_with(val, &path);
            (l.double_value(&[]), a)
        });
        st.restore_bn_stats(&bn);
        let val_loss = finite(val_loss, "validation loss", st)?;
        let mut stats = st.weight_step_with(train, &path, true)?;
        stats.val_loss = val_loss;
        stats.val_acc = val_acc;
        Ok(stats)
    }
}

/// GDAS (Dong & Yang 2019): per edge one op sampled by the hard Gumbel-softmax of the
/// alphas at temperature `cfg.tau(epoch)` (linear from `tau_max` to `tau_min`); only the
/// sampled ops run. As in the GDAS code, the weights are updated first (SGD on the
/// training batch, with a sample whose weights are constants), then the alphas (Adam on
/// the validation batch, with a fresh sample and the straight-through gradient). The
/// Gumbel noise is a pure function of (seed, global step).
pub struct Gdas;

impl Strategy for Gdas {
    fn name(&self) -> &'static str {
        "gdas"
    }

    fn step(&mut self, st: &mut SearchState, train: &Batch, val: &Batch) -> Result<StepStats> {
        let tau = st.cfg.tau(st.epoch);
        let sample = st
            .arch
            .gumbel_hard(tau, &mut st.step_rng(PURPOSE_GDAS_WEIGHTS), true);
        let mut stats = st.weight_step_with(train, &sample, true)?;
        st.zero_arch_grad();
        let relaxed = st
            .arch
            .gumbel_hard(tau, &mut st.step_rng(PURPOSE_GDAS_ARCH), false);
        let (val_loss, val_acc) = st.arch_backward_with(val, &relaxed)?;
        drop(relaxed);
        st.arch_update()?;
        stats.val_loss = val_loss;
        stats.val_acc = val_acc;
        Ok(stats)
    }
}

/// `(dL/dalpha at w + R v  -  dL/dalpha at w - R v) / (2R)` with `R = 0.01 / ||v||`: the
/// DARTS approximation of `d2L / dalpha dw . v`; `alpha_grads` gives `dL/dalpha` at the
/// current `params`. `params` are restored exactly afterwards.
pub fn finite_difference_hvp(
    params: &[Tensor],
    v: &[Tensor],
    alpha_grads: impl Fn() -> Vec<Tensor>,
) -> Vec<Tensor> {
    let norm = Tensor::stack(
        &v.iter()
            .map(|t| t.square().sum(Kind::Double))
            .collect::<Vec<_>>(),
        0,
    )
    .sum(Kind::Double)
    .sqrt()
    .double_value(&[]);
    let r = 0.01 / norm;
    let backup: Vec<Tensor> = params.iter().map(|p| p.detach().copy()).collect();
    let grad_at = |sign: f64| {
        tch::no_grad(|| {
            for ((p, w), d) in params.iter().zip(&backup).zip(v) {
                p.shallow_clone().copy_(&(w + d * (sign * r)));
            }
        });
        alpha_grads()
    };
    let plus = grad_at(1.0);
    let minus = grad_at(-1.0);
    restore(params, &backup);
    plus.iter()
        .zip(&minus)
        .map(|(p, m)| (p - m) / (2.0 * r))
        .collect()
}

fn restore(params: &[Tensor], backup: &[Tensor]) {
    tch::no_grad(|| {
        for (p, w) in params.iter().zip(backup) {
            p.shallow_clone().copy_(w);
        }
    });
}

/// `value` if finite, otherwise the error that stops the run.
pub fn finite(value: f64, what: &str, st: &SearchState) -> Result<f64> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(Error::NonFinite {
            what: what.to_string(),
            epoch: st.epoch,
            step: st.step_in_epoch,
        })
    }
}
