//! `supernet search`: the DARTS family of search strategies, as a [`Job`] of the run loop.
//! The loop (in [`crate::run`]) owns epochs, checkpoints, signals and the run file; the
//! [`Strategy`] owns what one step does to the weights and the alphas.
pub mod chain;
pub mod chain_derive;
pub mod chain_extract;
mod chain_job;
mod checkpoint;
mod config;
pub mod controller;
pub mod enas;
pub mod few_shot;
pub mod hardware;
pub mod hessian;
mod parallel;
pub mod perturbation;
pub mod preset;
mod recompute;
pub mod remedies;
pub mod speed;
mod state;
mod strategy;

pub use chain_job::{load_trained_chain, TrainedChain};
pub use config::{SearchConfig, StrategyKind};
pub use few_shot::{few_shot, FewShotConfig, FewShotOutcome, FineTune, FEW_SHOT_DIR};
pub use state::{Batch, SearchState};
pub use strategy::{
    finite_difference_hvp, FirstOrder, Gdas, SecondOrder, Spos, StepStats, Strategy,
};

use crate::arch::AuxSkip;
use crate::data::{DataSets, Loader, LoaderConfig, PairIter, SearchLoaders, SearchSplit};
use crate::evaluate::evaluate;
use crate::optim::cosine_lr;
use crate::record::{AlphaRecord, RunLog};
use crate::run::{
    begin, device_name, drive, parse_device, EpochEnd, Job, MetaSource, Position, Progress, RunDir,
    Schedule, StopFlag, Stopped,
};
use crate::space::chain::ChainArch;
use crate::space::{CellType, Genotype, SearchSpace, Space};
use crate::supernet::InputShape;
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tch::Device;

/// How a search call ended.
#[derive(Debug)]
pub enum Outcome {
    Finished {
        genotype: Genotype,
        dir: PathBuf,
        /// Why it ended before its last epoch (DARTS+ early stopping).
        stop_reason: Option<String>,
    },
    /// A chain-space search finished with this derived architecture.
    FinishedChain { arch: ChainArch, dir: PathBuf },
    /// Stopped by SIGINT/SIGTERM after checkpointing.
    Interrupted(Stopped),
}

/// A check run before the first step, once the data fixes the input shape (the memory
/// prediction of [`crate::memory`], which the command line passes in): a line to print, or
/// an error that stops the start.
pub type Preflight<'a> =
    &'a dyn Fn(&SearchConfig, &SearchSpace, InputShape, Device) -> Result<String>;

/// How a search is run (not part of its config).
#[derive(Default, Clone, Copy)]
pub struct RunOptions<'a> {
    pub quiet: bool,
    pub preflight: Option<Preflight<'a>>,
    /// The data-parallel group when this process is one rank of several.
    pub dist: Option<&'a Arc<crate::distrib::Group>>,
}

impl RunOptions<'_> {
    pub fn quiet() -> Self {
        RunOptions {
            quiet: true,
            preflight: None,
            dist: None,
        }
    }

    /// A data-parallel rank other than 0: it reads the run but writes nothing.
    fn follower(&self) -> bool {
        self.dist.is_some_and(|g| !g.is_root())
    }
}

/// Start a new search writing into `dir` (which must not hold a run yet). A start that
/// fails leaves nothing behind.
pub fn start(cfg: SearchConfig, dir: &Path, opts: &RunOptions) -> Result<Outcome> {
    if let Some(space) = chain_space(&cfg)? {
        chain_job::check_config(&cfg, opts)?;
        let mut dir = RunDir::create(dir)?;
        return chain_job::run(cfg, space, &mut dir, false, opts);
    }
    let space = cfg.validate_with_space()?;
    let mut dir = if opts.follower() {
        RunDir::follower(dir)?
    } else {
        RunDir::create(dir)?
    };
    run(cfg, space, &mut dir, false, opts)
}

/// Continue the run in `dir` from its last checkpoint, with its own config (checked as a
/// fresh start checks it). `space` (when given) must be the space the run was started with.
pub fn resume(dir: &Path, space: Option<&Path>, opts: &RunOptions) -> Result<Outcome> {
    let mut dir = if opts.follower() {
        RunDir::follower(dir)?
    } else {
        RunDir::resume(dir)?
    };
    let cfg: SearchConfig = dir.read_config()?;
    let chain = chain_space(&cfg)
        .map_err(|e| Error::bad_file(dir.config_file(), format!("the run's config: {e}")))?;
    if let Some(run_space) = chain {
        if let Some(space) = space {
            if crate::space::chain::ChainSpace::load(space)?.fingerprint()
                != run_space.fingerprint()
            {
                return Err(Error::invalid(
                    "--space",
                    space.display(),
                    format!("the space of the run in {}", dir.path().display()),
                ));
            }
        }
        return chain_job::run(cfg, run_space, &mut dir, true, opts);
    }
    let run_space = cfg
        .validate_with_space()
        .map_err(|e| Error::bad_file(dir.config_file(), format!("the run's config: {e}")))?;
    if let Some(space) = space {
        let given = SearchSpace::load(space)?.with_overrides(cfg.network)?;
        if given.fingerprint() != run_space.fingerprint() {
            return Err(Error::invalid(
                "--space",
                space.display(),
                format!(
                    "the space of the run in {} ({})",
                    dir.path().display(),
                    cfg.space.display()
                ),
            ));
        }
    }
    run(cfg, run_space, &mut dir, true, opts)
}

/// Whether the search run in `dir` searched a chain space.
pub fn is_chain_run(dir: &Path) -> Result<bool> {
    let cfg: SearchConfig = crate::run::read_config(dir)?;
    let space = Space::load(&cfg.space)
        .map_err(|e| Error::bad_file(dir.join(crate::run::CONFIG_FILE), e.to_string()))?;
    Ok(matches!(space, Space::Chain(_)))
}

/// The config's space when it is a chain space (validated, with the config).
fn chain_space(cfg: &SearchConfig) -> Result<Option<crate::space::chain::ChainSpace>> {
    match Space::load(&cfg.space)? {
        Space::Chain(space) => {
            cfg.validate()?;
            Ok(Some(space))
        }
        Space::Cell(_) => Ok(None),
    }
}

/// The supernet of a finished (or interrupted) search as its last checkpoint holds it,
/// with the run's config and data: what extraction and sub-network scoring start from.
pub struct TrainedSupernet {
    pub cfg: SearchConfig,
    pub state: SearchState,
    pub setup: Setup,
    /// Steps and epochs the checkpoint has seen.
    pub global_step: u64,
    pub epoch: usize,
}

/// Load the run in `dir` (its config, data and last checkpoint) without training. Needs
/// no lock: the config never changes and the checkpoint is replaced atomically.
pub fn load_trained(dir: &Path) -> Result<TrainedSupernet> {
    let mut cfg: SearchConfig = crate::run::read_config(dir)?;
    let space = cfg.validate_with_space()?;
    let setup = setup(&mut cfg, space)?;
    let (state, pos) = load_state(&cfg, &setup.space, setup.input, setup.device, dir)?;
    Ok(TrainedSupernet {
        cfg,
        state,
        setup,
        global_step: pos.global_step,
        epoch: pos.epoch,
    })
}

/// The state of the run in `dir` with config `cfg` as its last checkpoint holds it.
fn load_state(
    cfg: &SearchConfig,
    space: &SearchSpace,
    input: InputShape,
    device: Device,
    dir: &Path,
) -> Result<(SearchState, Position)> {
    let mut state = SearchState::new(space, input, cfg, device)?;
    let pos = checkpoint::load(&mut state, Vec::new(), dir)?;
    Ok((state, pos))
}

/// A few-shot sub-supernet of a run whose data is already loaded (`input`, `device`): its
/// config and its state after its fine-tuning, refused while that is unfinished.
pub fn load_sub_supernet(
    dir: &Path,
    input: InputShape,
    device: Device,
) -> Result<(SearchConfig, SearchState)> {
    let cfg: SearchConfig = crate::run::read_config(dir)?;
    let space = cfg
        .validate_with_space()
        .map_err(|e| Error::bad_file(dir.join(crate::run::CONFIG_FILE), e.to_string()))?;
    let Some(f) = &cfg.few_shot else {
        return Err(Error::bad_file(
            dir.join(crate::run::CONFIG_FILE),
            "not a few-shot sub-supernet (no [few_shot] table)",
        ));
    };
    let (state, pos) = load_state(&cfg, &space, input, device, dir)?;
    if pos.epoch < cfg.epochs {
        return Err(Error::bad_file(
            dir.join(crate::run::CHECKPOINT_FILE),
            format!(
                "its fine-tuning has not finished (step {} of {}); run `supernet few-shot` again to finish it",
                pos.global_step, f.steps
            ),
        ));
    }
    Ok((cfg, state))
}

/// Everything fixed for the duration of a run.
pub struct Setup {
    pub space: SearchSpace,
    pub loaders: SearchLoaders,
    /// The architecture half, for evaluation.
    pub val: Loader,
    pub input: InputShape,
    pub device: Device,
}

/// The device, threads and data of a search of either space kind: the two halves' loaders,
/// the architecture half for evaluation, the input shape.
fn data_setup(cfg: &mut SearchConfig) -> Result<(SearchLoaders, Loader, InputShape, Device)> {
    let device = parse_device(&cfg.device)?;
    if cfg.threads > 0 {
        tch::set_num_threads(cfg.threads as i32);
    }
    let data: DataSets = cfg.data.load()?;
    let augment = cfg.augment.resolve(data.default_augment());
    cfg.augment = augment.into();
    let split = SearchSplit::new(&data.train, cfg.subset, cfg.seed)?;
    let loaders = SearchLoaders::new(
        &split,
        LoaderConfig::train(cfg.batch_size, augment, cfg.seed),
    )?;
    let val = Loader::eval(split.arch.clone(), cfg.batch_size.max(256))?;
    Ok((loaders, val, InputShape::of(&data.train), device))
}

/// Load the data for `space`; fills in what the config left to the data (augmentation).
fn setup(cfg: &mut SearchConfig, space: SearchSpace) -> Result<Setup> {
    let (loaders, val, input, device) = data_setup(cfg)?;
    crate::run::check::fits_in_memory(
        space.size_bound(input.height as usize, input.width as usize),
        &format!("the supernet of '{}' on {input}", space.name),
        cfg.batch_size,
        None,
    )?;
    Ok(Setup {
        space,
        loaders,
        val,
        input,
        device,
    })
}

/// The strategy a config names, for the fresh state `st` (ENAS sets up its controller).
pub fn strategy(kind: StrategyKind, st: &mut SearchState) -> Result<Box<dyn Strategy>> {
    Ok(match kind {
        StrategyKind::FirstOrder => Box::new(FirstOrder),
        StrategyKind::SecondOrder => Box::new(SecondOrder),
        StrategyKind::Spos => Box::new(Spos),
        StrategyKind::Gdas => Box::new(Gdas),
        StrategyKind::Enas => Box::new(enas::Enas::new(st)?),
        StrategyKind::Proxyless => {
            return Err(Error::invalid(
                "strategy",
                "proxyless",
                format!(
                    "a cell-space strategy for the cell space '{}' (proxyless binarises the paths of chain spaces only)",
                    st.space.name
                ),
            ))
        }
    })
}

/// A search as the run loop drives it.
struct SearchJob {
    st: SearchState,
    strategy: Box<dyn Strategy>,
    loaders: SearchLoaders,
    val: Loader,
    /// DARTS+: why the search ended before its last epoch.
    early_stop: Option<String>,
    /// Parameter-free ops of the normal cell derived after the last epoch (for the
    /// collapse warning; unknown at a start or resume).
    free_ops: Option<usize>,
    /// The genotype (text) derived after each epoch so far (DARTS+'s stability rule).
    genotypes: Vec<String>,
    /// The Hessian eigenvalues recorded so far (R-DARTS's warning).
    eigenvalues: Vec<f64>,
    /// A few-shot fine-tuning: its one epoch is the overall data steps `first..first + n`.
    span: Option<(usize, usize)>,
}

impl SearchJob {
    fn group(&self) -> Option<Arc<crate::distrib::Group>> {
        self.st.dist.clone()
    }

    fn alpha_record(&self, step: u64, epoch: usize) -> AlphaRecord {
        let arch = &self.st.arch;
        AlphaRecord {
            step,
            epoch: epoch as u32,
            normal: arch.raw(CellType::Normal).expect("normal alphas"),
            reduce: arch.raw(CellType::Reduce),
            normal_betas: arch.raw_betas(CellType::Normal),
            reduce_betas: arch.raw_betas(CellType::Reduce),
        }
    }
}

impl Job for SearchJob {
    type Batch = (crate::data::Batch, crate::data::Batch);
    type Batches = PairIter;

    fn batches(&self, epoch: usize, start: usize) -> PairIter {
        match self.span {
            Some((first, n)) => self.loaders.span(first + start, first + n),
            None => self.loaders.epoch(epoch, start),
        }
    }

    fn start_epoch(&mut self, epoch: usize) -> f64 {
        let cfg = &self.st.cfg;
        self.st.lr = cosine_lr(cfg.lr, cfg.lr_min, epoch, cfg.epochs);
        let aux = cfg
            .remedies
            .aux_skip_beta(epoch, cfg.epochs)
            .map(|beta| AuxSkip {
                beta,
                column: remedies::skip_column(&self.st.space).expect("checked with the config"),
            });
        self.st.arch.set_aux_skip(aux);
        self.st.lr
    }

    fn step(&mut self, (wb, ab): Self::Batch, at: &Position) -> Result<StepStats> {
        let st = &mut self.st;
        (st.epoch, st.step_in_epoch) = (at.epoch, at.step_in_epoch);
        st.global_step = at.global_step;
        let train = Batch::to_device(&wb, st.device);
        let val = Batch::to_device(&ab, st.device);
        let Some(group) = st.dist.clone() else {
            return self.strategy.step(st, &train, &val);
        };
        parallel::before_step(st, &group)?;
        let stats = self.strategy.step(st, &train, &val)?;
        parallel::after_step(st, &group, stats)
    }

    fn end_epoch(&mut self, epoch: usize) -> Result<EpochEnd> {
        // The supernet on the architecture half, and what its alphas derive to.
        let genotype = self.strategy.genotype(&self.st)?;
        let text = genotype.to_text();
        let cfg = &self.st.cfg.remedies;
        // After the last epoch the search ends anyway: not an early stop.
        self.early_stop = stop_reason(cfg, &genotype, &self.genotypes, epoch)
            .filter(|_| epoch + 1 < self.st.cfg.epochs);
        let mut notes: Vec<String> =
            remedies::collapse_warning(&genotype, cfg.collapse_warn_above, self.free_ops)
                .into_iter()
                .collect();
        self.free_ops = Some(remedies::parameter_free(&genotype.normal).0);
        self.genotypes.push(text.clone());
        let hessian = if cfg.hessian_due(epoch) {
            let factor = cfg.warn_factor();
            let first = self.val.epoch(0, 0).next().ok_or_else(|| {
                Error::Other("the architecture half has no batch for the Hessian".into())
            })?;
            let batch = Batch::to_device(&first, self.st.device);
            let value = hessian::dominant_eigenvalue(&self.st, &batch, epoch)?;
            notes.push(format!("hessian {value:.4e}"));
            notes.extend(remedies::hessian_warning(&self.eigenvalues, value, factor));
            self.eigenvalues.push(value);
            Some(value)
        } else {
            None
        };
        let note = notes.join("  ");
        let st = &self.st;
        let score = evaluate(
            &st.net,
            &self.strategy.eval_weights(st)?,
            &self.val,
            st.device,
            false,
        );
        Ok(EpochEnd {
            loss: score.loss,
            accuracy: score.accuracy,
            genotype: text,
            note,
            show_genotype: true,
            finish: self.early_stop.is_some(),
            hessian_eigenvalue: hessian,
        })
    }

    fn record(&self, log: &mut RunLog, pos: &Position, epoch_end: bool) {
        if epoch_end {
            log.alphas
                .push(self.alpha_record(pos.global_step, pos.epoch - 1));
        } else if pos
            .global_step
            .is_multiple_of(self.st.cfg.alpha_every as u64)
        {
            log.alphas
                .push(self.alpha_record(pos.global_step, pos.epoch));
        }
    }

    fn save(&self, dir: &RunDir, pos: &Position) -> Result<()> {
        checkpoint::save(&self.st, self.strategy.state_tensors(), dir, pos)
    }

    fn load(&mut self, dir: &Path) -> Result<Position> {
        checkpoint::load(&mut self.st, self.strategy.state_tensors(), dir)
    }

    fn agree_stop(&mut self, requested: bool) -> Result<bool> {
        match self.group() {
            Some(group) => group.any(requested, "the stop agreement"),
            None => Ok(requested),
        }
    }
}

/// Why the search stops after `epoch` with the derived `genotype` (DARTS+'s skip count,
/// then its stability rule against the genotypes of the epochs `before`).
fn stop_reason(
    cfg: &remedies::Remedies,
    genotype: &Genotype,
    before: &[String],
    epoch: usize,
) -> Option<String> {
    remedies::early_stop(genotype, cfg.stop_at_skips, epoch)
        .or_else(|| remedies::stable_stop(before, &genotype.to_text(), cfg.stop_when_stable, epoch))
}

fn run(
    mut cfg: SearchConfig,
    space: SearchSpace,
    dir: &mut RunDir,
    resuming: bool,
    opts: &RunOptions,
) -> Result<Outcome> {
    let group = opts.dist.cloned();
    let bn_chunks = match &group {
        Some(g) => parallel::agree_on_config(&mut cfg, g, resuming)?,
        None => cfg.check_bn_groups(1)?,
    };
    let mut s = setup(&mut cfg, space)?;
    if let Some(g) = &group {
        s.loaders = s.loaders.shard(g.rank(), g.world())?;
        // "cuda" and "auto" mean each process's own GPU: cuda:LOCAL_RANK.
        if matches!(s.device, Device::Cuda(_)) && !cfg.device.starts_with("cuda:") {
            s.device = Device::Cuda(g.launch().local_rank);
        }
    }
    let progress = Progress::new(opts.quiet);
    if let Some(note) = dir.stale_note() {
        progress.line(&note);
    }
    if let Some(preflight) = opts.preflight.filter(|_| !opts.follower()) {
        progress.line(&preflight(&cfg, &s.space, s.input, s.device)?);
    }
    let span = cfg
        .few_shot
        .as_ref()
        .map(|f| (f.parent_step as usize, f.steps));
    let steps = span.map_or(s.loaders.steps_per_epoch(), |(_, n)| n);
    let meta = MetaSource {
        kind: "search",
        config: cfg.to_toml(),
        space: crate::run::MetaSpace::Cell(&s.space),
        seed: cfg.seed,
        device: s.device,
        steps_per_epoch: steps,
        classes: s.input.classes as usize,
    }
    .meta();
    let mut st = SearchState::new(&s.space, s.input, &cfg, s.device)?;
    st.dist = group.clone();
    st.bn_chunks = bn_chunks;
    if let Some(f) = cfg.few_shot.as_ref().filter(|_| !resuming) {
        few_shot::inherit(&mut st, f)?;
    }
    let mut job = SearchJob {
        strategy: strategy(cfg.strategy, &mut st)?,
        st,
        loaders: s.loaders,
        val: s.val,
        early_stop: None,
        free_ops: None,
        genotypes: Vec::new(),
        eigenvalues: Vec::new(),
        span,
    };
    let (mut log, pos) = begin(&mut job, dir, resuming, meta)?;
    // What the stop rules and warnings compare with: the epochs before a resume.
    job.genotypes = log.epochs.iter().map(|e| e.genotype.clone()).collect();
    job.eigenvalues = log
        .epochs
        .iter()
        .filter_map(|e| e.hessian_eigenvalue)
        .collect();
    if let Some(g) = &group {
        parallel::broadcast_state(&job.st, g)?;
        progress.line(&format!(
            "data-parallel: {} processes ({}), Gloo over c10d, global batch {} = {} per process, {} BN group(s) per process, collective timeout {} s",
            g.world(),
            g.launch().launcher,
            cfg.batch_size,
            cfg.batch_size / g.world(),
            bn_chunks,
            g.launch().timeout_s
        ));
    }
    let stop = StopFlag::install()?;
    progress.line(&format!(
        "search: space '{}', {} strategy{}, {} epochs x {steps} steps, batch {}, {} classes, device {}, run dir {}",
        s.space.name,
        job.strategy.name(),
        if cfg.partial().is_on() {
            format!(" with partial channels K = {}", cfg.partial_channels)
        } else {
            String::new()
        },
        cfg.epochs,
        cfg.batch_size,
        s.input.classes,
        device_name(s.device),
        dir.path().display()
    ));
    let remedies = cfg.remedies.describe();
    if !remedies.is_empty() {
        progress.line(&format!("collapse remedies: {remedies}"));
    }
    let schedule = Schedule {
        epochs: cfg.epochs,
        steps_per_epoch: steps,
        checkpoint_every: cfg.checkpoint_every,
        eval_name: "val",
    };
    let first_step = pos.global_step;
    // A run resumed at the end of an epoch that stopped it early (killed before its
    // genotype was written, or resumed after it) is finished: it does not train on.
    if pos.step_in_epoch == 0 && (1..cfg.epochs).contains(&pos.epoch) {
        let genotype = job.strategy.genotype(&job.st)?;
        let before = &job.genotypes[..job.genotypes.len().saturating_sub(1)];
        job.early_stop = stop_reason(&cfg.remedies, &genotype, before, pos.epoch - 1);
    }
    let stopped = if job.early_stop.is_some() {
        None
    } else {
        drive(&mut job, schedule, dir, &mut log, pos, &progress, &stop)?
    };
    if let Some(g) = &group {
        // The communication share of this session's steps (waits for slower ranks included).
        let steps = log.steps.iter().filter(|s| s.step >= first_step);
        let step_seconds: f64 = steps.map(|s| s.seconds).sum();
        let comm = g.collective_seconds();
        progress.line(&format!(
            "data-parallel: {comm:.2} s of {step_seconds:.2} s of steps in collectives ({:.1}%)",
            100.0 * comm / step_seconds.max(1e-9)
        ));
    }
    if let Some(stopped) = stopped {
        return Ok(Outcome::Interrupted(stopped));
    }
    let genotype = job.strategy.genotype(&job.st)?;
    if let Some(g) = &group {
        let text = genotype.to_text();
        g.check_identical(
            crate::rng::hash_key(&text.bytes().map(u64::from).collect::<Vec<_>>()),
            "the derived genotypes",
        )?;
    }
    dir.write_genotype("genotype", &genotype)?;
    log.genotype = Some((genotype.to_text(), genotype.to_json()));
    log.stop_reason = job.early_stop.clone();
    dir.write_run(&log)?;
    Ok(Outcome::Finished {
        genotype,
        dir: dir.path().to_path_buf(),
        stop_reason: job.early_stop,
    })
}
