//! `supernet search` on a chain space: the [`ChainSearch`] steps driven by the same run loop
//! as cell searches (epochs, cosine learning rate, checkpoints, SIGKILL-exact resume, signals,
//! NaN guard, the HDF5 run file). The alphas are recorded as a cell space's normal-cell
//! alphas are: one `[searchable layers, choices]` matrix per record, rows named `layer_{i}`,
//! columns by choice.
use super::chain::ChainSearch;
use super::checkpoint::SearchPosition;
use super::config::{SearchConfig, StrategyKind};
use super::state::Batch;
use super::{data_setup, Outcome, RunOptions};
use crate::data::{Loader, PairIter, SearchLoaders};
use crate::evaluate::evaluate_with;
use crate::optim::cosine_lr;
use crate::record::{AlphaRecord, RunLog, RunMeta};
use crate::run::{
    begin, checkpoint, device_name, drive, EpochEnd, Job, MetaSource, MetaSpace, Position,
    Progress, RunDir, Schedule, StepStats, StopFlag,
};
use crate::space::chain::{ChainArch, ChainSpace};
use crate::supernet::MixWeights;
use crate::{Error, Result};
use std::path::Path;
use tch::Tensor;

/// What a chain search refuses: the strategies and settings that have no chain form yet.
pub fn check_config(cfg: &SearchConfig, opts: &RunOptions) -> Result<()> {
    if !matches!(
        cfg.strategy,
        StrategyKind::FirstOrder
            | StrategyKind::Spos
            | StrategyKind::Gdas
            | StrategyKind::Proxyless
    ) {
        return Err(Error::invalid(
            "strategy",
            cfg.strategy.name(),
            "first-order, gdas, spos or proxyless for a chain space",
        ));
    }
    if cfg.network.layers.is_some() || cfg.network.channels.is_some() {
        return Err(Error::invalid(
            "network",
            "--layers/--channels",
            "nothing for a chain space (edit its stages instead)",
        ));
    }
    if opts.dist.is_some() {
        return Err(Error::invalid(
            "launch",
            "data-parallel",
            "one process for a chain space",
        ));
    }
    if !cfg.hardware.is_off() && cfg.strategy == StrategyKind::Spos {
        return Err(Error::invalid(
            "hardware",
            "a latency or MACs target with the spos strategy",
            "first-order or gdas (SPOS has no alphas to penalise; limit `sample`/`evolve` instead)",
        ));
    }
    if !cfg.remedies.is_off() {
        return Err(Error::invalid(
            "remedies",
            "a collapse remedy or diagnostic (--beta-decay, --sdarts-epsilon, --aux-skip, --stop-*, --hessian-every, ...)",
            "none for a chain space (they are defined on cells)",
        ));
    }
    Ok(())
}

/// Every tensor a chain search checkpoint holds, as live handles.
fn tensors(s: &ChainSearch) -> Vec<(String, Tensor)> {
    let mut named: Vec<(String, Tensor)> =
        s.vs.variables()
            .into_iter()
            .map(|(k, v)| (format!("net.{k}"), v))
            .collect();
    named.push(("arch.chain".into(), s.arch.alphas.shallow_clone()));
    for (name, buf) in s.weight_names.iter().zip(&s.sgd.buffers) {
        named.push((format!("sgd.{name}"), buf.shallow_clone()));
    }
    named.push(("adam.m.chain".into(), s.adam.exp_avg[0].shallow_clone()));
    named.push(("adam.v.chain".into(), s.adam.exp_avg_sq[0].shallow_clone()));
    named
}

/// Restore `s` from the checkpoint in `dir`, refused when it was written for another space.
pub(super) fn load_checkpoint(s: &mut ChainSearch, dir: &Path) -> Result<Position> {
    let mut map = checkpoint::open(dir)?;
    let record: SearchPosition = checkpoint::decode_record(&mut map)?;
    if record.space_hash != s.space.fingerprint() {
        return Err(
            map.error("this checkpoint was written for a different chain space than the run's")
        );
    }
    for (key, dst) in tensors(s) {
        map.copy_into(&key, &dst)?;
    }
    s.adam.step = record.adam_step;
    Ok(record.pos)
}

struct ChainJob {
    s: ChainSearch,
    loaders: SearchLoaders,
    val: Loader,
    lr: f64,
    /// GDAS temperature of the current epoch.
    tau: f64,
    /// The hardware report of the last finished epoch (penalised searches).
    hardware: Vec<(&'static str, f64, f64)>,
}

impl ChainJob {
    fn alpha_record(&self, step: u64, epoch: usize) -> AlphaRecord {
        let a = self
            .s
            .arch
            .alphas
            .detach()
            .flatten(0, -1)
            .to_device(tch::Device::Cpu);
        AlphaRecord {
            step,
            epoch: epoch as u32,
            normal: Vec::<f32>::try_from(a).expect("float alphas"),
            reduce: None,
            normal_betas: None,
            reduce_betas: None,
        }
    }
}

impl Job for ChainJob {
    type Batch = (crate::data::Batch, crate::data::Batch);
    type Batches = PairIter;

    fn batches(&self, epoch: usize, start: usize) -> PairIter {
        self.loaders.epoch(epoch, start)
    }

    fn start_epoch(&mut self, epoch: usize) -> f64 {
        let cfg = &self.s.cfg;
        self.lr = cosine_lr(cfg.lr, cfg.lr_min, epoch, cfg.epochs);
        self.tau = cfg.tau(epoch);
        self.lr
    }

    fn step(&mut self, (wb, ab): Self::Batch, at: &Position) -> Result<StepStats> {
        let device = self.s.vs.device();
        self.s.global_step = at.global_step;
        let train = Batch::to_device(&wb, device);
        match self.s.cfg.strategy {
            StrategyKind::Spos => Ok(self.s.spos_step(&train, self.lr)?.1),
            StrategyKind::Gdas => {
                let val = Batch::to_device(&ab, device);
                self.s.gdas_step(&train, &val, self.lr, self.tau)
            }
            StrategyKind::Proxyless => {
                let val = Batch::to_device(&ab, device);
                self.s.proxyless_step(&train, &val, self.lr)
            }
            _ => {
                let val = Batch::to_device(&ab, device);
                self.s.darts_step(&train, &val, self.lr)
            }
        }
    }

    fn end_epoch(&mut self, _epoch: usize) -> Result<EpochEnd> {
        let device = self.s.vs.device();
        let derived = self.s.derive();
        // The supernet is scored as its strategy trains it: SPOS and ProxylessNAS only ever
        // train single paths (ProxylessNAS validates its argmax path too), so the mixture of
        // all paths would score near chance; the relaxed strategies score the mixture.
        let mix = match self.s.cfg.strategy {
            StrategyKind::Spos | StrategyKind::Proxyless => MixWeights::one_hot_rows(
                &derived.columns(&self.s.space),
                self.s.space.choices().len(),
                device,
            ),
            _ => self.s.arch.softmax_detached(),
        };
        let mut note = String::new();
        if let Some(p) = &self.s.penalty {
            self.hardware = p.report(&self.s.space, &self.s.arch.probabilities(), &derived);
            let parts: Vec<String> = self
                .hardware
                .iter()
                .map(|(name, e, d)| format!("E[{name}] {e:.4} derived {d:.4}"))
                .collect();
            note = parts.join(", ");
        }
        let score = evaluate_with(
            |xs| self.s.net.forward_t(xs, &mix, false),
            &self.val,
            device,
            None,
        );
        Ok(EpochEnd {
            loss: score.loss,
            accuracy: score.accuracy,
            genotype: derived.to_text(),
            note,
            show_genotype: true,
            finish: false,
            hessian_eigenvalue: None,
        })
    }

    fn record(&self, log: &mut RunLog, pos: &Position, epoch_end: bool) {
        if epoch_end {
            log.alphas
                .push(self.alpha_record(pos.global_step, pos.epoch - 1));
            if let Some(p) = &self.s.penalty {
                p.record(log, pos.epoch as u32 - 1, &self.hardware);
            }
        } else if pos
            .global_step
            .is_multiple_of(self.s.cfg.alpha_every as u64)
        {
            log.alphas
                .push(self.alpha_record(pos.global_step, pos.epoch));
        }
    }

    fn save(&self, dir: &RunDir, pos: &Position) -> Result<()> {
        let record = SearchPosition {
            pos: *pos,
            adam_step: self.s.adam.step,
            space_hash: self.s.space.fingerprint(),
        };
        checkpoint::save(dir, tensors(&self.s), &record)
    }

    fn load(&mut self, dir: &Path) -> Result<Position> {
        load_checkpoint(&mut self.s, dir)
    }
}

/// The run-file attributes of a chain search.
fn meta(
    cfg: &SearchConfig,
    space: &ChainSpace,
    device: tch::Device,
    steps: usize,
    classes: usize,
) -> RunMeta {
    MetaSource {
        kind: "search",
        config: cfg.to_toml(),
        space: MetaSpace::Chain(space),
        seed: cfg.seed,
        device,
        steps_per_epoch: steps,
        classes,
    }
    .meta()
}

pub fn run(
    mut cfg: SearchConfig,
    space: ChainSpace,
    dir: &mut RunDir,
    resuming: bool,
    opts: &RunOptions,
) -> Result<Outcome> {
    check_config(&cfg, opts)?;
    let (loaders, val, input, device) = data_setup(&mut cfg)?;
    let progress = Progress::new(opts.quiet);
    if let Some(note) = dir.stale_note() {
        progress.line(&note);
    }
    let steps = loaders.steps_per_epoch();
    let meta = meta(&cfg, &space, device, steps, input.classes as usize);
    let s = ChainSearch::new(&space, input, &cfg, device)?;
    let mut job = ChainJob {
        s,
        loaders,
        val,
        lr: cfg.lr,
        tau: cfg.tau_max,
        hardware: Vec::new(),
    };
    let (mut log, pos) = begin(&mut job, dir, resuming, meta)?;
    let stop = StopFlag::install()?;
    progress.line(&format!(
        "search: chain space '{}' ({} searchable layers, {} choices, {} weights), {} strategy, {} epochs x {steps} steps, batch {}, {} classes, device {}, run dir {}",
        space.name,
        space.num_searchable(),
        space.choices().len(),
        cfg.weight_sharing.name(),
        cfg.strategy.name(),
        cfg.epochs,
        cfg.batch_size,
        input.classes,
        device_name(device),
        dir.path().display()
    ));
    let schedule = Schedule {
        epochs: cfg.epochs,
        steps_per_epoch: steps,
        checkpoint_every: cfg.checkpoint_every,
        eval_name: "val",
    };
    if let Some(stopped) = drive(&mut job, schedule, dir, &mut log, pos, &progress, &stop)? {
        return Ok(Outcome::Interrupted(stopped));
    }
    let arch = job.s.derive();
    finish(dir, &mut log, &arch)?;
    Ok(Outcome::FinishedChain {
        arch,
        dir: dir.path().to_path_buf(),
    })
}

/// `genotype.txt` and `genotype.json` (the choice per searchable layer), then the run file.
fn finish(dir: &RunDir, log: &mut RunLog, arch: &ChainArch) -> Result<()> {
    dir.write_chain_arch("genotype", arch)?;
    log.genotype = Some((arch.to_text(), arch.to_json()));
    dir.write_run(log)
}

/// A chain search as its last checkpoint holds it, with its config and data: what
/// `sample` on a chain run scores sub-networks of.
pub struct TrainedChain {
    pub cfg: SearchConfig,
    pub search: ChainSearch,
    /// The weight half's loaders (BN recalibration) and the architecture half.
    pub loaders: SearchLoaders,
    pub val: Loader,
}

/// Load the chain run in `dir` without training (errors name the run's files).
pub fn load_trained_chain(dir: &Path) -> Result<TrainedChain> {
    let mut cfg: SearchConfig = crate::run::read_config(dir)?;
    let space = match super::chain_space(&cfg)? {
        Some(s) => s,
        None => {
            return Err(Error::bad_file(
                dir.join(crate::run::CONFIG_FILE),
                "not a chain search (its space is a cell space)",
            ))
        }
    };
    let (loaders, val, input, device) = data_setup(&mut cfg)?;
    let search = ChainSearch::new(&space, input, &cfg, device)?;
    let mut job = ChainJob {
        s: search,
        loaders,
        val,
        lr: cfg.lr,
        tau: cfg.tau_max,
        hardware: Vec::new(),
    };
    job.load(dir)?;
    Ok(TrainedChain {
        cfg,
        search: job.s,
        loaders: job.loaders,
        val: job.val,
    })
}
