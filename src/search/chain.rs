//! One-shot search on a chain space (separate or elastic weights per choice): DARTS-style
//! relaxation (first order: the alphas on the validation batch, then the weights on the
//! training batch), SPOS (one uniformly drawn path trained per step), GDAS and ProxylessNAS's
//! binarised paths. The same SGD and Adam, configuration fields and (seed, step) keyed
//! sampling as the cell strategies.
use super::config::SearchConfig;
use super::hardware::HardwarePenalty;
use super::state::Batch;
use crate::arch::binary_gate::{rescale_offset, two_path_alpha_grad, TwoPaths};
use crate::arch::ChainAlphas;
use crate::evaluate::accuracy;
use crate::optim::{clip_grad_norm, split_variables, zero_grad, Adam, Sgd};
use crate::rng::{
    Rng, PURPOSE_GDAS_ARCH, PURPOSE_GDAS_WEIGHTS, PURPOSE_PROXYLESS_ARCH,
    PURPOSE_PROXYLESS_WEIGHTS, PURPOSE_SPOS,
};
use crate::run::StepStats;
use crate::space::chain::{ChainArch, ChainSpace};
use crate::supernet::{image_shape, ChainNet, InputShape, MixWeights};
use crate::{Error, Result};
use tch::{nn, Device, Kind, Tensor};

pub struct ChainSearch {
    pub space: ChainSpace,
    pub vs: nn::VarStore,
    pub net: ChainNet,
    /// Trainable network weights and their names, sorted by name.
    pub weights: Vec<Tensor>,
    pub weight_names: Vec<String>,
    pub arch: ChainAlphas,
    pub sgd: Sgd,
    pub adam: Adam,
    pub cfg: SearchConfig,
    /// Steps completed; SPOS paths are drawn from (seed, step).
    pub global_step: u64,
    /// The expected-cost penalty of the architecture loss, when the config sets a target.
    pub penalty: Option<HardwarePenalty>,
}

impl ChainSearch {
    /// libtorch's generator is seeded with `cfg.seed`, then the weights and the alphas are
    /// initialised, in that order (as [`super::SearchState::new`]).
    pub fn new(
        space: &ChainSpace,
        input: InputShape,
        cfg: &SearchConfig,
        device: Device,
    ) -> Result<Self> {
        tch::manual_seed(cfg.seed as i64);
        let vs = nn::VarStore::new(device);
        let net = ChainNet::supernet_with(&vs.root(), space, input, cfg.weight_sharing)?;
        let arch = ChainAlphas::new(space, device);
        let (weight_names, weights, _) = split_variables(&vs);
        let mut sgd = Sgd::new(&weights, cfg.momentum, cfg.weight_decay);
        sgd.nesterov = cfg.nesterov;
        let penalty = HardwarePenalty::new(&cfg.hardware, space, image_shape(input), device)?;
        let adam = Adam::new(
            &[arch.alphas.shallow_clone()],
            (cfg.arch_beta1, cfg.arch_beta2),
            cfg.arch_weight_decay,
        );
        Ok(ChainSearch {
            space: space.clone(),
            vs,
            net,
            weights,
            weight_names,
            arch,
            sgd,
            adam,
            cfg: cfg.clone(),
            global_step: 0,
            penalty,
        })
    }

    fn loss(&self, batch: &Batch, mix: &MixWeights) -> (Tensor, f64) {
        let logits = self.net.forward_t(&batch.images, mix, true);
        let acc = accuracy(&logits, &batch.labels);
        (logits.cross_entropy_for_logits(&batch.labels), acc)
    }

    /// The architecture loss: the validation loss under `mix`, plus the hardware penalty
    /// of `mix` when there is one (the value returned is the cross-entropy alone).
    fn arch_loss(&self, val: &Batch, mix: &MixWeights) -> (Tensor, f64, f64) {
        let (loss, acc) = self.loss(val, mix);
        let ce = loss.double_value(&[]);
        let total = match &self.penalty {
            Some(p) => loss + p.value(&mix.weights),
            None => loss,
        };
        (total, ce, acc)
    }

    fn finite(&self, v: f64, what: &str) -> Result<f64> {
        if v.is_finite() {
            Ok(v)
        } else {
            Err(Error::NonFinite {
                what: what.to_string(),
                epoch: 0,
                step: self.global_step as usize,
            })
        }
    }

    /// Backward of `mix` on `train`, clipping, and SGD on the weights `active` accepts.
    fn weight_step(
        &mut self,
        train: &Batch,
        mix: &MixWeights,
        lr: f64,
        active: impl Fn(&str) -> bool,
    ) -> Result<StepStats> {
        zero_grad(&self.weights);
        let (loss, acc) = self.loss(train, mix);
        loss.backward();
        let value = self.finite(loss.double_value(&[]), "training loss")?;
        drop(loss);
        let norm = clip_grad_norm(&self.weights, self.cfg.grad_clip);
        self.finite(norm, "weight gradient")?;
        let names = &self.weight_names;
        self.sgd
            .step_where(&self.weights, lr, |i| active(&names[i]));
        Ok(StepStats {
            train_loss: value,
            train_acc: acc,
            val_loss: f64::NAN,
            val_acc: f64::NAN,
            grad_norm: norm,
        })
    }

    /// DARTS first order: Adam on the alphas from the validation loss under the softmax,
    /// then SGD on every weight from the training loss under the (constant) softmax.
    pub fn darts_step(&mut self, train: &Batch, val: &Batch, lr: f64) -> Result<StepStats> {
        let mix = self.arch.softmax();
        let (val_loss, val_acc) = self.alpha_step(val, &mix)?;
        let mix = self.arch.softmax_detached();
        let stats = self.weight_step(train, &mix, lr, |_| true)?;
        self.global_step += 1;
        Ok(StepStats {
            val_loss,
            val_acc,
            ..stats
        })
    }

    /// SPOS: one path drawn uniformly from (seed, step); only its blocks are computed and
    /// updated (the others keep their weights and momentum, as PyTorch leaves a parameter
    /// without a gradient). The alphas are not touched; there is no validation half.
    pub fn spos_step(&mut self, train: &Batch, lr: f64) -> Result<(ChainArch, StepStats)> {
        let mut rng = Rng::from_key(&[self.cfg.seed, PURPOSE_SPOS, self.global_step]);
        let (arch, mix) = ChainAlphas::uniform_path(&self.space, &mut rng, self.vs.device());
        let off = self.off_path(&arch);
        let stats = self.weight_step(train, &mix, lr, |name| {
            !off.iter().any(|p| name.starts_with(p))
        })?;
        self.global_step += 1;
        Ok((arch, stats))
    }

    /// GDAS (FBNet's Gumbel sampling, hard): SGD on the blocks of one path sampled from the
    /// Gumbel-softmax of the alphas at temperature `tau` (constants), then Adam on the alphas
    /// from the validation loss of a fresh sample with the straight-through gradient. The
    /// noise is a pure function of (seed, step), as in the cell GDAS strategy.
    pub fn gdas_step(
        &mut self,
        train: &Batch,
        val: &Batch,
        lr: f64,
        tau: f64,
    ) -> Result<StepStats> {
        let key = |purpose| Rng::from_key(&[self.cfg.seed, purpose, self.global_step]);
        let (mut rng_w, mut rng_a) = (key(PURPOSE_GDAS_WEIGHTS), key(PURPOSE_GDAS_ARCH));
        let (arch, sample) = self.arch.gumbel_hard(&self.space, tau, &mut rng_w, true);
        let off = self.off_path(&arch);
        let stats = self.weight_step(train, &sample, lr, |name| {
            !off.iter().any(|p| name.starts_with(p))
        })?;
        let (_, relaxed) = self.arch.gumbel_hard(&self.space, tau, &mut rng_a, false);
        let (val_loss, val_acc) = self.alpha_step(val, &relaxed)?;
        self.global_step += 1;
        Ok(StepStats {
            val_loss,
            val_acc,
            ..stats
        })
    }

    /// One Adam step on the alphas from the validation loss under the mixing weights `mix`
    /// (a function of the alphas: their softmax, or a straight-through Gumbel sample);
    /// the validation loss and accuracy.
    fn alpha_step(&mut self, val: &Batch, mix: &MixWeights) -> Result<(f64, f64)> {
        let alphas = [self.arch.alphas.shallow_clone()];
        zero_grad(&alphas);
        let (total, val_loss, val_acc) = self.arch_loss(val, mix);
        total.backward();
        drop(total);
        let val_loss = self.finite(val_loss, "validation loss")?;
        self.finite(
            alphas[0].grad().abs().max().double_value(&[]),
            "architecture gradient",
        )?;
        self.adam.step(&alphas, self.cfg.arch_lr);
        Ok((val_loss, val_acc))
    }

    /// Parameter-name prefixes of the weights `arch` does not use.
    pub fn off_path(&self, arch: &ChainArch) -> Vec<String> {
        self.net.off_path(arch)
    }

    /// ProxylessNAS (Cai et al. 2019, Sec. 3.2), binarised paths: SGD on one path per layer
    /// drawn by the multinomial of softmax(alpha) (only its blocks computed and updated), then
    /// the "two paths" architecture step of [`ChainSearch::two_path_step`].
    pub fn proxyless_step(&mut self, train: &Batch, val: &Batch, lr: f64) -> Result<StepStats> {
        let key = |purpose| Rng::from_key(&[self.cfg.seed, purpose, self.global_step]);
        let (mut rng_w, mut rng_a) = (key(PURPOSE_PROXYLESS_WEIGHTS), key(PURPOSE_PROXYLESS_ARCH));
        let arch = self.arch.sample_path(&self.space, &mut rng_w);
        let mix = MixWeights::one_hot_rows(
            &arch.columns(&self.space),
            self.space.choices().len(),
            self.vs.device(),
        );
        let off = self.off_path(&arch);
        let stats = self.weight_step(train, &mix, lr, |name| {
            !off.iter().any(|p| name.starts_with(p))
        })?;
        let paths = self.arch.two_paths(&mut rng_a);
        let (val_loss, val_acc) = self.two_path_step(val, &paths)?;
        self.global_step += 1;
        Ok(StepStats {
            val_loss,
            val_acc,
            ..stats
        })
    }

    /// ProxylessNAS's "two" mode architecture step for the paths `paths` (one per layer):
    /// the validation loss through binary gates one-hot at the active paths; per layer the
    /// gradient of the two involved alphas from the gates' gradient
    /// (`dL/dalpha_i = sum_j dL/dg_j p_j (delta_ij - p_i)`, `p` the softmax of the two),
    /// plus the hardware penalty's gradient of the expected cost (Eq. 5) under the same
    /// two-path distribution (the reference's `current_prob_over_ops`, so that the penalty
    /// too reaches only the sampled alphas); Adam; then both involved alphas shifted by
    /// `log(sum exp(new) / sum exp(old))` so that the choices not sampled keep their
    /// probabilities (`rescale_updated_arch_param`). The validation loss and accuracy.
    pub fn two_path_step(&mut self, val: &Batch, paths: &[TwoPaths]) -> Result<(f64, f64)> {
        let device = self.vs.device();
        let shape = self.arch.alphas.size();
        let cols = shape[1] as usize;
        let mut one_hot = vec![0f32; paths.len() * cols];
        for (r, p) in paths.iter().enumerate() {
            one_hot[r * cols + p.active] = 1.0;
        }
        let gates = Tensor::from_slice(&one_hot)
            .view([shape[0], shape[1]])
            .to_device(device)
            .set_requires_grad(true);
        let pairs: Vec<(usize, Option<usize>)> =
            paths.iter().map(|p| (p.active, p.inactive)).collect();
        let logits = self.net.forward_gated(&val.images, &gates, &pairs, true);
        let acc = accuracy(&logits, &val.labels);
        let loss = logits.cross_entropy_for_logits(&val.labels);
        let val_loss = self.finite(loss.double_value(&[]), "validation loss")?;
        let gate_grad = Tensor::run_backward(&[&loss], &[&gates], false, false)
            .pop()
            .expect("the gates' gradient");
        drop((loss, logits));
        let g = Vec::<Vec<f64>>::try_from(gate_grad.to_kind(Kind::Double).to_device(Device::Cpu))
            .expect("a 2-D gradient");
        let old = self.arch.host();
        let mut grad = vec![0f64; paths.len() * cols];
        for (r, p) in paths.iter().enumerate() {
            if let Some(i) = p.inactive {
                let a = p.active;
                let d = two_path_alpha_grad([old[r][a], old[r][i]], [g[r][a], g[r][i]]);
                grad[r * cols + a] = d[0];
                grad[r * cols + i] = d[1];
            }
        }
        let grad = Tensor::from_slice(&grad)
            .view([shape[0], shape[1]])
            .to_kind(Kind::Float)
            .to_device(device);
        let alphas = [self.arch.alphas.shallow_clone()];
        zero_grad(&alphas);
        // A surrogate whose gradient is the binary-gate gradient plus the penalty's.
        let gates_term = (&alphas[0] * &grad).sum(Kind::Float);
        let surrogate = match &self.penalty {
            Some(p) => gates_term + p.value(&self.two_path_probabilities(paths)),
            None => gates_term,
        };
        surrogate.backward();
        drop(surrogate);
        self.finite(
            alphas[0].grad().abs().max().double_value(&[]),
            "architecture gradient",
        )?;
        self.adam.step(&alphas, self.cfg.arch_lr);
        let new = self.arch.host();
        let mut offsets = vec![0f64; paths.len() * cols];
        for (r, p) in paths.iter().enumerate() {
            if let Some(i) = p.inactive {
                let a = p.active;
                let o = rescale_offset([old[r][a], old[r][i]], [new[r][a], new[r][i]]);
                offsets[r * cols + a] = o;
                offsets[r * cols + i] = o;
            }
        }
        let offsets = Tensor::from_slice(&offsets)
            .view([shape[0], shape[1]])
            .to_kind(Kind::Float)
            .to_device(device);
        tch::no_grad(|| {
            let _ = alphas[0].shallow_clone().f_sub_(&offsets);
        });
        Ok((val_loss, acc))
    }

    /// Per layer the softmax over its two sampled choices only, zero elsewhere
    /// (differentiable in the alphas).
    fn two_path_probabilities(&self, paths: &[TwoPaths]) -> Tensor {
        let shape = self.arch.alphas.size();
        let cols = shape[1] as usize;
        let mut mask = vec![f32::NEG_INFINITY; paths.len() * cols];
        for (r, p) in paths.iter().enumerate() {
            for k in p.columns() {
                mask[r * cols + k] = 0.0;
            }
        }
        let mask = Tensor::from_slice(&mask)
            .view([shape[0], shape[1]])
            .to_device(self.vs.device());
        (&self.arch.alphas + mask).softmax(-1, Kind::Float)
    }

    /// The derived architecture: per layer the argmax of its allowed choices.
    pub fn derive(&self) -> ChainArch {
        self.arch.derive(&self.space)
    }
}
