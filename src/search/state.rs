//! Everything a search step reads and changes: the network and its weights, the alphas,
//! both optimizers, the position in the schedule.
use super::config::SearchConfig;
use super::recompute::{self, Wrt};
use super::strategy::finite;
use crate::arch::ArchParams;
use crate::backend::Precision;
use crate::distrib::Group;
use crate::evaluate::accuracy;
use crate::optim::{clip_grad_norm, grad_norm, split_variables, zero_grad, Adam, GradScaler, Sgd};
use crate::rng::Rng;
use crate::space::SearchSpace;
use crate::supernet::ArchWeights;
use crate::supernet::{InputShape, Supernet};
use crate::Result;
use std::sync::Arc;
use tch::{nn, Device, Kind, Tensor};

/// A batch on the search device.
pub struct Batch {
    pub images: Tensor,
    pub labels: Tensor,
}

impl Batch {
    /// The batch on `device`. To CUDA through pinned host memory with a non-blocking copy
    /// (`pin_memory().to(device, non_blocking=True)`): the host does not wait for the
    /// device, and libtorch's pinned-memory allocator keeps the staging buffer until the
    /// copy has run.
    pub fn to_device(b: &crate::data::Batch, device: Device) -> Self {
        let to = |t: &Tensor| {
            if device.is_cuda() {
                t.pin_memory(device)
                    .to_device_(device, t.kind(), true, false)
            } else {
                t.to_device(device)
            }
        };
        Batch {
            images: to(&b.images),
            labels: to(&b.labels),
        }
    }
}

pub struct SearchState {
    pub space: SearchSpace,
    pub device: Device,
    pub vs: nn::VarStore,
    pub net: Supernet,
    /// Trainable network weights and their names, sorted by name.
    pub weights: Vec<Tensor>,
    pub weight_names: Vec<String>,
    /// BN running statistics (non-trainable variables).
    pub buffers: Vec<Tensor>,
    pub arch: ArchParams,
    pub sgd: Sgd,
    pub adam: Adam,
    /// Loss scaling of float16 weight steps (`precision = "fp16"` only).
    pub scaler: Option<GradScaler>,
    pub cfg: SearchConfig,
    /// Learning rate of the current epoch.
    pub lr: f64,
    /// Where the loop is, for error messages (the checkpointed position is `Position`).
    pub epoch: usize,
    pub step_in_epoch: usize,
    /// Steps completed before the current one; sampling strategies draw their paths from
    /// (seed, global step), so a resumed run samples what the uninterrupted one did.
    pub global_step: u64,
    /// The data-parallel group when this process is one rank of several: gradients are
    /// averaged over the ranks before every optimizer step.
    pub dist: Option<Arc<Group>>,
    /// BN groups of this process's batch (ghost batch norm; `cfg.bn_groups` per rank).
    pub bn_chunks: usize,
}

impl SearchState {
    /// A fresh state: libtorch's generator is seeded with `cfg.seed`, then the network
    /// weights and the alphas are initialised, in that order.
    pub fn new(
        space: &SearchSpace,
        input: InputShape,
        cfg: &SearchConfig,
        device: Device,
    ) -> Result<Self> {
        super::speed::configure(cfg, device)?;
        tch::manual_seed(cfg.seed as i64);
        let vs = nn::VarStore::new(device);
        let split = cfg.few_shot.as_ref().map(|f| f.split);
        let net = Supernet::search_split(&vs.root(), space, input, cfg.partial(), split)?;
        let mut arch = ArchParams::with_edge_betas(space, device, cfg.edge_normalisation());
        arch.set_split(split);
        let (weight_names, weights, buffers) = split_variables(&vs);
        let mut sgd = Sgd::new(&weights, cfg.momentum, cfg.weight_decay);
        sgd.nesterov = cfg.nesterov;
        let alphas = arch.tensors();
        let adam = Adam::new(
            &alphas,
            (cfg.arch_beta1, cfg.arch_beta2),
            cfg.arch_weight_decay,
        );
        // Every alpha gets a gradient buffer now, so strategies can write into it. So does
        // every weight: a weight the loss does not reach in some step (everything before a
        // cell whose sampled ops are all `none`, whose zero output is a new tensor here)
        // then has a zero gradient, and SGD applies weight decay and momentum to it as
        // PyTorch does upstream, where `none` is `x * 0` and still reaches it. Without the
        // buffer such a weight would be skipped exactly when no earlier step had reached it.
        for params in [&alphas, &weights] {
            let sums: Vec<Tensor> = params.iter().map(|p| p.sum(Kind::Float)).collect();
            if !sums.is_empty() {
                Tensor::stack(&sums, 0).sum(Kind::Float).backward();
            }
            zero_grad(params);
        }
        Ok(SearchState {
            space: space.clone(),
            device,
            vs,
            net,
            weights,
            weight_names,
            buffers,
            arch,
            sgd,
            adam,
            scaler: (cfg.precision == Precision::Fp16).then(|| GradScaler::new(device)),
            cfg: cfg.clone(),
            lr: cfg.lr,
            epoch: 0,
            step_in_epoch: 0,
            global_step: 0,
            dist: None,
            bn_chunks: cfg.bn_groups.unwrap_or(1),
        })
    }

    /// Cross-entropy of the supernet under the softmax relaxation, and the batch accuracy.
    /// With `through_alphas` false the mixing weights are constants, which spares the
    /// backward pass the alpha gradients a weight step throws away.
    pub fn loss(&self, batch: &Batch, through_alphas: bool) -> (Tensor, f64) {
        let mix = if through_alphas {
            self.arch.softmax()
        } else {
            self.arch.softmax_detached()
        };
        self.loss_with(batch, &mix)
    }

    /// Cross-entropy (train-mode BN) and batch accuracy under the given mixing weights.
    /// With `bn_chunks` > 1 each of that many equal parts of the batch has its own BN
    /// statistics and the loss is the mean of the parts' losses: what as many
    /// data-parallel ranks compute together.
    pub fn loss_with(&self, batch: &Batch, mix: &ArchWeights) -> (Tensor, f64) {
        self.loss_at(batch, mix, Precision::Fp32)
            .expect("float32 needs no autocast")
    }

    /// [`Self::loss_with`] with the forward pass autocast to `precision`; the logits are
    /// taken back to float32 for the loss, as autocast does for `cross_entropy`. The
    /// backward pass runs outside autocast, as PyTorch prescribes. With BN groups, the
    /// batch is cut into them and the loss is the mean of theirs.
    pub fn loss_at(
        &self,
        batch: &Batch,
        mix: &ArchWeights,
        precision: Precision,
    ) -> Result<(Tensor, f64)> {
        let n = self.bn_chunks as i64;
        if n <= 1 {
            return self.loss_of(&batch.images, &batch.labels, mix, precision);
        }
        let mut losses = Vec::new();
        let mut acc = 0.0;
        for (images, labels) in batch
            .images
            .chunk(n, 0)
            .iter()
            .zip(batch.labels.chunk(n, 0))
        {
            let (loss, a) = self.loss_of(images, &labels, mix, precision)?;
            losses.push(loss);
            acc += a;
        }
        Ok((Tensor::stack(&losses, 0).mean(Kind::Float), acc / n as f64))
    }

    fn loss_of(
        &self,
        images: &Tensor,
        labels: &Tensor,
        mix: &ArchWeights,
        precision: Precision,
    ) -> Result<(Tensor, f64)> {
        let logits = crate::backend::autocast(self.device, precision, || {
            self.net.forward_t(images, mix, true)
        })?
        .to_kind(Kind::Float);
        let loss = logits.cross_entropy_for_logits(labels);
        let acc = accuracy(&logits, labels);
        Ok((loss, acc))
    }

    /// Replace `grads` by their mean over the data-parallel ranks (a no-op in a single
    /// process): the gradient of the global batch, split evenly over the ranks.
    pub fn average(&self, grads: &[Tensor], what: &str) -> Result<()> {
        match &self.dist {
            Some(group) => group.average(grads, what),
            None => Ok(()),
        }
    }

    /// The loss under `mix` (a constant), the batch accuracy and the gradients of `wrt`, as
    /// `torch.autograd.grad(..., materialize_grads=True)` gives them (zeros where the loss
    /// does not depend on one); the forward pass at `cfg.arch_precision` (these are the
    /// alpha step's passes); with `cfg.recompute`, cell by cell (see [`super::recompute`]).
    pub fn grads_of(
        &self,
        batch: &Batch,
        mix: &ArchWeights,
        wrt: &[Tensor],
    ) -> (Tensor, f64, Vec<Tensor>) {
        let (loss, acc, grads) = if self.cfg.recompute {
            recompute::loss_and_grads(self, batch, mix, Wrt::These(wrt))
        } else {
            let (loss, acc) = self
                .loss_at(batch, mix, self.cfg.arch_precision)
                .expect("autocast settings are validated with the config");
            let grads = Tensor::run_backward(&[&loss], wrt, false, false);
            (loss.detach(), acc, grads)
        };
        // Zeros where the loss does not depend on a tensor (`materialize_grads`): the
        // normal-cell alphas of a network whose every cell is a reduction cell, say.
        let grads = grads
            .into_iter()
            .zip(wrt)
            .map(|(g, w)| if g.defined() { g } else { w.zeros_like() })
            .collect();
        (loss, acc, grads)
    }

    /// The loss under `mix` and its backward pass into the `.grad` of every weight it
    /// depends on, as `loss.backward()`; the forward pass at `cfg.precision` (float16: the
    /// gradients are those of the scaled loss); with `cfg.recompute`, cell by cell.
    pub fn backward(&self, batch: &Batch, mix: &ArchWeights) -> (Tensor, f64) {
        if self.cfg.recompute {
            let (loss, acc, _) = recompute::loss_and_grads(self, batch, mix, Wrt::AllLeaves);
            return (loss, acc);
        }
        let (loss, acc) = self
            .loss_at(batch, mix, self.cfg.precision)
            .expect("autocast settings are validated with the config");
        match &self.scaler {
            Some(s) => s.scale_loss(&loss).backward(),
            None => loss.backward(),
        }
        (loss.detach(), acc)
    }

    /// A random stream that is a pure function of (seed, purpose, global step).
    pub fn step_rng(&self, purpose: u64) -> Rng {
        Rng::from_key(&[self.cfg.seed, purpose, self.global_step])
    }

    /// Which trainable weights `mix` computes with (in `weights` order): everything except
    /// the operations of edges whose op column is not active. A sampled path leaves the
    /// other operations without a gradient, and PyTorch's SGD then skips them (no momentum,
    /// no weight decay); [`Self::weight_step_with`] does the same with this mask.
    pub fn active_weights(&self, mix: &ArchWeights) -> Vec<bool> {
        let cells = self.net.cell_types();
        let edges: Vec<String> = self.space.cell.edges().iter().map(|e| e.key()).collect();
        let n_ops = self.space.ops.len();
        self.weight_names
            .iter()
            .map(|name| {
                let parts: Vec<&str> = name.split('.').collect();
                let ["cells", i, "edges", key, op, ..] = parts.as_slice() else {
                    return true;
                };
                let (Some(Some(t)), Some(e), Some(k)) = (
                    i.parse::<usize>().ok().and_then(|i| cells.get(i)),
                    edges.iter().position(|x| x == key),
                    self.space.ops.iter().position(|o| o.name() == *op),
                ) else {
                    return true;
                };
                mix.get(*t).active_ops(e, n_ops).any(|a| a == k)
            })
            .collect()
    }

    pub fn zero_arch_grad(&self) {
        zero_grad(&self.arch.tensors());
    }

    /// Gradient of the validation loss with respect to the alphas (weights untouched).
    pub fn arch_backward(&self, val: &Batch) -> Result<(f64, f64)> {
        self.arch_backward_with(val, &self.arch.softmax())
    }

    /// Gradient of the validation loss under `mix` (which must depend on the alphas) with
    /// respect to the alphas, added to their gradient buffers.
    pub fn arch_backward_with(&self, val: &Batch, mix: &ArchWeights) -> Result<(f64, f64)> {
        let alphas = self.arch.tensors();
        let (loss, acc, grads) = self.grads_of(val, mix, &alphas);
        let value = finite(loss.double_value(&[]), "validation loss", self)?;
        tch::no_grad(|| {
            for (a, g) in alphas.iter().zip(&grads) {
                let _ = a.grad().g_add_(g);
            }
        });
        Ok((value, acc))
    }

    /// Adam step on the alphas with their current gradients (beta-DARTS: plus the
    /// gradient of its regulariser, see [`Self::add_beta_decay_grad`]).
    pub fn arch_update(&mut self) -> Result<()> {
        self.add_beta_decay_grad();
        let alphas = self.arch.tensors();
        let grads: Vec<Tensor> = alphas.iter().map(|a| a.grad()).collect();
        self.average(&grads, "the alpha gradient all-reduce")?;
        finite(grad_norm(&alphas), "architecture gradient", self)?;
        self.adam.step(&alphas, self.cfg.arch_lr);
        Ok(())
    }

    /// beta-DARTS: add the gradient of `lambda(epoch)` times its regulariser
    /// ([`super::remedies::beta_decay_loss`]) to the alphas' gradients (the betas of PC-DARTS are not regularised). The same on
    /// every data-parallel rank, so the average leaves it as it is.
    pub fn add_beta_decay_grad(&self) {
        let Some(lambda) = self
            .cfg
            .remedies
            .beta_decay_lambda(self.epoch, self.cfg.epochs)
        else {
            return;
        };
        let alphas: Vec<Tensor> = self
            .arch
            .alphas
            .iter()
            .map(|(_, a)| a.shallow_clone())
            .collect();
        let loss = super::remedies::beta_decay_loss(&alphas) * lambda;
        let grads = Tensor::run_backward(&[&loss], &alphas, false, false);
        tch::no_grad(|| {
            for (a, g) in alphas.iter().zip(&grads) {
                let _ = a.grad().g_add_(g);
            }
        });
    }

    /// SGD step of the weights on a training batch (clipped gradient), under the softmax
    /// of the alphas (SDARTS-RS: with the noise of [`crate::arch::ArchParams::perturbed_detached`],
    /// a pure function of (seed, global step)).
    pub fn weight_step(&mut self, train: &Batch) -> Result<crate::run::StepStats> {
        let mix = match self
            .cfg
            .remedies
            .sdarts_epsilon(self.epoch, self.cfg.epochs)
        {
            Some(eps) => self
                .arch
                .perturbed_detached(eps, &mut self.step_rng(crate::rng::PURPOSE_SDARTS)),
            None => self.arch.softmax_detached(),
        };
        self.weight_step_with(train, &mix, false)
    }

    /// SGD step of the weights on a training batch under the constant mixing weights
    /// `mix`. With `only_active`, weights `mix` does not compute with are not touched
    /// (see [`Self::active_weights`]).
    pub fn weight_step_with(
        &mut self,
        train: &Batch,
        mix: &ArchWeights,
        only_active: bool,
    ) -> Result<crate::run::StepStats> {
        zero_grad(&self.weights);
        let (loss, acc) = self.backward(train, mix);
        let value = finite(loss.double_value(&[]), "training loss", self)?;
        let grads: Vec<Tensor> = self.weights.iter().map(|w| w.grad()).collect();
        self.average(&grads, "the weight gradient all-reduce")?;
        if let Some(scaler) = &self.scaler {
            scaler.unscale(&self.weights);
        }
        let norm = clip_grad_norm(&self.weights, self.cfg.grad_clip);
        // GradScaler: a float16 step whose scaled gradients overflowed is skipped and the
        // scale halves (the loss itself was finite); without scaling it stops the run.
        let overflowed = match &mut self.scaler {
            Some(scaler) => {
                scaler.update(!norm.is_finite());
                !norm.is_finite()
            }
            None => finite(norm, "weight gradient", self).map(|_| false)?,
        };
        if !overflowed {
            self.step_weights(mix, only_active);
        }
        Ok(crate::run::StepStats {
            train_loss: value,
            train_acc: acc,
            grad_norm: norm,
            ..Default::default()
        })
    }

    /// SGD on the weights (with `only_active`, those `mix` computes with).
    fn step_weights(&mut self, mix: &ArchWeights, only_active: bool) {
        if only_active {
            let active = self.active_weights(mix);
            self.sgd.step_where(&self.weights, self.lr, |i| active[i]);
        } else {
            self.sgd.step(&self.weights, self.lr);
        }
    }

    pub fn save_bn_stats(&self) -> Vec<Tensor> {
        self.buffers.iter().map(|b| b.detach().copy()).collect()
    }

    pub fn restore_bn_stats(&self, saved: &[Tensor]) {
        tch::no_grad(|| {
            for (b, s) in self.buffers.iter().zip(saved) {
                b.shallow_clone().copy_(s);
            }
        });
    }
}
