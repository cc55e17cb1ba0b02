//! Everything a search step reads and changes: the network and its weights, the alphas,
//! both optimizers, the position in the schedule.
use super::config::SearchConfig;
use super::strategy::finite;
use crate::arch::ArchParams;
use crate::optim::{clip_grad_norm, grad_norm, zero_grad, Adam, Sgd};
use crate::space::SearchSpace;
use crate::supernet::{InputShape, Supernet};
use crate::Result;
use tch::{nn, Device, Kind, Tensor};

/// A batch on the search device.
pub struct Batch {
    pub images: Tensor,
    pub labels: Tensor,
}

impl Batch {
    pub fn to_device(b: &crate::data::Batch, device: Device) -> Self {
        Batch {
            images: b.images.to_device(device),
            labels: b.labels.to_device(device),
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
    pub cfg: SearchConfig,
    /// Learning rate of the current epoch.
    pub lr: f64,
    /// Where the loop is, for error messages (the checkpointed position is `Position`).
    pub epoch: usize,
    pub step_in_epoch: usize,
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
        tch::manual_seed(cfg.seed as i64);
        let vs = nn::VarStore::new(device);
        let net = Supernet::new(&vs.root(), space, input)?;
        let arch = ArchParams::new(space, device);
        let (weight_names, weights, buffers) = split_variables(&vs);
        let sgd = Sgd::new(&weights, cfg.momentum, cfg.weight_decay);
        let alphas = arch.tensors();
        let adam = Adam::new(
            &alphas,
            (cfg.arch_beta1, cfg.arch_beta2),
            cfg.arch_weight_decay,
        );
        // Every alpha gets a gradient buffer now, so strategies can write into it.
        Tensor::stack(
            &alphas
                .iter()
                .map(|a| a.sum(Kind::Float))
                .collect::<Vec<_>>(),
            0,
        )
        .sum(Kind::Float)
        .backward();
        zero_grad(&alphas);
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
            cfg: cfg.clone(),
            lr: cfg.lr,
            epoch: 0,
            step_in_epoch: 0,
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
        let logits = self.net.forward_t(&batch.images, &mix, true);
        let loss = logits.cross_entropy_for_logits(&batch.labels);
        let acc = accuracy(&logits, &batch.labels);
        (loss, acc)
    }

    pub fn zero_arch_grad(&self) {
        zero_grad(&self.arch.tensors());
    }

    /// Gradient of the validation loss with respect to the alphas (weights untouched).
    pub fn arch_backward(&self, val: &Batch) -> Result<(f64, f64)> {
        let (loss, acc) = self.loss(val, true);
        let value = finite(loss.double_value(&[]), "validation loss", self)?;
        let alphas = self.arch.tensors();
        let grads = Tensor::run_backward(&[&loss], &alphas, false, false);
        tch::no_grad(|| {
            for (a, g) in alphas.iter().zip(&grads) {
                let _ = a.grad().g_add_(g);
            }
        });
        Ok((value, acc))
    }

    /// Adam step on the alphas with their current gradients.
    pub fn arch_update(&mut self) -> Result<()> {
        let alphas = self.arch.tensors();
        finite(grad_norm(&alphas), "architecture gradient", self)?;
        self.adam.step(&alphas, self.cfg.arch_lr);
        Ok(())
    }

    /// SGD step of the weights on a training batch (clipped gradient).
    pub fn weight_step(&mut self, train: &Batch) -> Result<super::strategy::StepStats> {
        zero_grad(&self.weights);
        let (loss, acc) = self.loss(train, false);
        let value = finite(loss.double_value(&[]), "training loss", self)?;
        loss.backward();
        let norm = finite(
            clip_grad_norm(&self.weights, self.cfg.grad_clip),
            "weight gradient",
            self,
        )?;
        self.sgd.step(&self.weights, self.lr);
        Ok(super::strategy::StepStats {
            train_loss: value,
            train_acc: acc,
            grad_norm: norm,
            ..Default::default()
        })
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

/// Names and tensors of the trainable weights, and the BN buffers, of a store, each in a
/// stable (name-sorted) order.
pub fn split_variables(vs: &nn::VarStore) -> (Vec<String>, Vec<Tensor>, Vec<Tensor>) {
    let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let (w, b): (Vec<_>, Vec<_>) = named.into_iter().partition(|(_, t)| t.requires_grad());
    let (names, weights) = w.into_iter().unzip();
    (names, weights, b.into_iter().map(|x| x.1).collect())
}

/// Fraction of correct top-1 predictions.
pub fn accuracy(logits: &Tensor, labels: &Tensor) -> f64 {
    let correct = logits
        .argmax(-1, false)
        .eq_tensor(labels)
        .sum(Kind::Int64)
        .int64_value(&[]);
    correct as f64 / labels.size()[0] as f64
}
