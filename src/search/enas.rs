//! ENAS (Pham et al. 2018) as a [`Strategy`]: the controller samples a path, the shared
//! weights train on it (only its ops computed and updated), then the controller samples
//! another path, scores it on the validation batch with the inherited weights, and takes a
//! REINFORCE step on that reward.
use super::controller::{Controller, EnasSettings, Rollout};
use super::state::{Batch, SearchState};
use super::strategy::{finite, StepStats, Strategy};
use crate::optim::{clip_grad_norm, Adam};
use crate::rng::{PURPOSE_ENAS_ARCH, PURPOSE_ENAS_WEIGHTS};
use crate::supernet::ArchWeights;
use crate::Result;
use tch::{Kind, Tensor};

pub struct Enas {
    pub controller: Controller,
    settings: EnasSettings,
    adam: Adam,
    /// Everything else that must survive a resume, as tensors so that the checkpoint holds
    /// them by name: the moving-average baseline (f64), the controller samples taken and
    /// the Adam steps (i64).
    baseline: Tensor,
    samples: Tensor,
    adam_step: Tensor,
}

impl Enas {
    /// A fresh controller (drawn from libtorch's generator after the supernet and the
    /// alphas), and the alphas set to its edge probabilities.
    pub fn new(st: &mut SearchState) -> Result<Self> {
        let settings = st.cfg.enas.clone();
        let controller = Controller::new(&st.space, &settings, st.device)?;
        let params = controller.tensors();
        for p in &params {
            // A gradient buffer up front, so that the checkpoint always has one to hold.
            p.sum(Kind::Float).backward();
        }
        crate::optim::zero_grad(&params);
        let mut adam = Adam::new(&params, (settings.beta1, settings.beta2), 0.0);
        adam.eps = settings.eps;
        let enas = Enas {
            controller,
            settings,
            adam,
            baseline: Tensor::from(0.0f64),
            samples: Tensor::from(0i64),
            adam_step: Tensor::from(0i64),
        };
        enas.write_alphas(st);
        Ok(enas)
    }

    /// The controller's edge probabilities, as log-probabilities, into the alphas: the run
    /// file, the plots and the per-epoch genotype then show the policy (softmax(log p) = p).
    pub fn write_alphas(&self, st: &SearchState) {
        for (t, p) in self.controller.edge_probabilities() {
            let alpha = st
                .arch
                .get(t)
                .expect("the controller samples the space's cells");
            let logp = Tensor::from_slice(&p)
                .clamp_min(f64::from(f32::MIN_POSITIVE))
                .log()
                .view(alpha.size().as_slice())
                .to_device(alpha.device());
            tch::no_grad(|| alpha.shallow_clone().copy_(&logp));
        }
    }

    /// The REINFORCE loss of one sample for `reward`: `-(R - b) * log p(arch)`, with the
    /// baseline `b` moved towards `R` first (ENAS: `b -= (1 - decay) * (b - R)`, from 0).
    pub fn reinforce_loss(&self, rollout: &Rollout, reward: f64) -> Tensor {
        let b = self.baseline.double_value(&[]);
        let b = b - (1.0 - self.settings.baseline_decay) * (b - reward);
        let _ = tch::no_grad(|| self.baseline.shallow_clone().fill_(b));
        -(&rollout.log_prob * (reward - b))
    }

    /// Accumulate one sample's REINFORCE gradient (averaged over `aggregate` samples) and
    /// take the Adam step when `aggregate` samples are in.
    fn controller_update(&mut self, st: &SearchState, rollout: &Rollout, acc: f64) -> Result<()> {
        let reward = acc + self.settings.entropy_weight * rollout.entropy;
        let loss = self.reinforce_loss(rollout, reward) / self.settings.aggregate as f64;
        loss.backward();
        let samples = self.samples.int64_value(&[]) + 1;
        let _ = tch::no_grad(|| self.samples.shallow_clone().fill_(samples));
        if (samples as usize).is_multiple_of(self.settings.aggregate) {
            let params = self.controller.tensors();
            finite(
                clip_grad_norm(&params, self.settings.grad_clip),
                "controller gradient",
                st,
            )?;
            self.adam.step = self.adam_step.int64_value(&[]);
            self.adam.step(&params, self.settings.lr);
            let _ = tch::no_grad(|| self.adam_step.shallow_clone().fill_(self.adam.step));
            crate::optim::zero_grad(&params);
            self.write_alphas(st);
        }
        Ok(())
    }
}

impl Strategy for Enas {
    fn name(&self) -> &'static str {
        "enas"
    }

    fn step(&mut self, st: &mut SearchState, train: &Batch, val: &Batch) -> Result<StepStats> {
        let path = tch::no_grad(|| {
            self.controller
                .rollout(Some(&mut st.step_rng(PURPOSE_ENAS_WEIGHTS)))
        });
        let mix = ArchWeights::from_genotype(&path.genotype, &st.space, st.device)?;
        let mut stats = st.weight_step_with(train, &mix, true)?;

        // The reward: the accuracy of a fresh sample on the validation batch with the
        // inherited weights, BN on batch statistics as ENAS's `build_valid_rl` computes it
        // (training mode); the running statistics are left as they were.
        let rollout = self
            .controller
            .rollout(Some(&mut st.step_rng(PURPOSE_ENAS_ARCH)));
        let mix = ArchWeights::from_genotype(&rollout.genotype, &st.space, st.device)?;
        let bn = st.save_bn_stats();
        let (val_loss, val_acc) = tch::no_grad(|| {
            let (l, a) = st.loss_with(val, &mix);
            (l.double_value(&[]), a)
        });
        st.restore_bn_stats(&bn);
        stats.val_loss = finite(val_loss, "validation loss", st)?;
        stats.val_acc = val_acc;
        self.controller_update(st, &rollout, val_acc)?;
        Ok(stats)
    }

    /// The controller's most likely architecture (greedy: the likeliest option at every
    /// decision).
    fn genotype(&self, _st: &SearchState) -> Result<crate::space::Genotype> {
        Ok(tch::no_grad(|| self.controller.rollout(None)).genotype)
    }

    /// One-hot weights of [`Self::genotype`]: the epoch's accuracy is the most likely
    /// architecture's, with the inherited weights.
    fn eval_weights(&self, st: &SearchState) -> Result<ArchWeights> {
        ArchWeights::from_genotype(&self.genotype(st)?, &st.space, st.device)
    }

    fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut named = Vec::new();
        let params = self.controller.parameters();
        for ((name, p), (m, v)) in params
            .iter()
            .zip(self.adam.exp_avg.iter().zip(&self.adam.exp_avg_sq))
        {
            named.push((format!("enas.net.{name}"), p.shallow_clone()));
            named.push((format!("enas.grad.{name}"), p.grad()));
            named.push((format!("enas.adam.m.{name}"), m.shallow_clone()));
            named.push((format!("enas.adam.v.{name}"), v.shallow_clone()));
        }
        named.push(("enas.baseline".into(), self.baseline.shallow_clone()));
        named.push(("enas.samples".into(), self.samples.shallow_clone()));
        named.push(("enas.adam_step".into(), self.adam_step.shallow_clone()));
        named
    }
}

/// The controller of the ENAS run in `dir` (config `cfg`, space `space`) as its last
/// checkpoint holds it, on the CPU.
pub fn load_controller(
    dir: &std::path::Path,
    cfg: &super::SearchConfig,
    space: &crate::space::SearchSpace,
) -> Result<Controller> {
    if cfg.strategy != super::StrategyKind::Enas {
        return Err(crate::Error::invalid(
            "strategy",
            cfg.strategy.name(),
            format!(
                "enas: the run in {} has no controller (searched with --strategy {})",
                dir.display(),
                cfg.strategy.name()
            ),
        ));
    }
    let controller = Controller::new(space, &cfg.enas, tch::Device::Cpu)?;
    let mut map = crate::run::checkpoint::open(dir)?;
    for (name, t) in controller.parameters() {
        map.copy_into(&format!("enas.net.{name}"), &t)?;
    }
    Ok(controller)
}
