//! `supernet search`: the DARTS bi-level search loop. It owns data, the run file,
//! checkpoints, signals and progress; the [`Strategy`] owns the step.
pub mod checkpoint;
mod config;
pub mod preset;
pub(crate) mod progress;
mod recompute;
mod state;
mod strategy;

pub use config::{parse_device, SearchConfig, StrategyKind};
pub use state::{accuracy, split_variables, Batch, SearchState};
pub use strategy::{
    finite_difference_hvp, FirstOrder, Gdas, SecondOrder, Spos, StepStats, Strategy,
};

use crate::data::{DataSets, Loader, LoaderConfig, SearchLoaders, SearchSplit};
use crate::evaluate::evaluate;
use crate::optim::cosine_lr;
use crate::record::{read_run, write_run, AlphaRecord, RunLog, RunMeta};
use crate::space::{CellType, Genotype, SearchSpace};
use crate::supernet::InputShape;
use crate::{Error, Result};
use checkpoint::Position;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

pub const RUN_FILE: &str = "run.h5";
pub const CONFIG_FILE: &str = "config.toml";

/// How a search call ended.
#[derive(Debug)]
pub enum Outcome {
    Finished {
        genotype: Genotype,
        dir: PathBuf,
    },
    /// Stopped by SIGINT/SIGTERM after checkpointing.
    Interrupted {
        dir: PathBuf,
        global_step: u64,
    },
}

/// How a search is run (not part of its config).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub quiet: bool,
    /// The `supernet` binary, to predict the step's peak memory before the first step
    /// (see [`crate::memory`]); no prediction without it.
    pub memory_probe: Option<PathBuf>,
    /// The memory the step may use, in bytes [default: what the system has available].
    pub memory_limit: Option<u64>,
}

impl RunOptions {
    pub fn quiet() -> Self {
        RunOptions {
            quiet: true,
            ..Default::default()
        }
    }
}

/// Start a new search writing into `dir` (which must not hold a run yet).
pub fn start(cfg: SearchConfig, dir: &Path, opts: &RunOptions) -> Result<Outcome> {
    cfg.validate()?;
    let space = SearchSpace::from_file(&cfg.space)?.with_overrides(cfg.network)?;
    cfg.partial().check_space(&space)?;
    crate::rundir::create_new(dir)?;
    run(cfg, dir, false, opts)
}

/// Continue the run in `dir` from its last checkpoint, with its own config.
/// `space` (when given) must be the space the run was started with.
pub fn resume(dir: &Path, space: Option<&Path>, opts: &RunOptions) -> Result<Outcome> {
    let cfg: SearchConfig = crate::rundir::read_config(dir)?;
    if let Some(space) = space {
        let given = SearchSpace::from_file(space)?.with_overrides(cfg.network)?;
        let run_space = SearchSpace::from_file(&cfg.space)?.with_overrides(cfg.network)?;
        if given.fingerprint() != run_space.fingerprint() {
            return Err(Error::invalid(
                "--space",
                space.display(),
                format!(
                    "the space of the run in {} ({})",
                    dir.display(),
                    cfg.space.display()
                ),
            ));
        }
    }
    run(cfg, dir, true, opts)
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

/// Load the run in `dir` (its config, data and last checkpoint) without training.
pub fn load_trained(dir: &Path) -> Result<TrainedSupernet> {
    let mut cfg: SearchConfig = crate::rundir::read_config(dir)?;
    let setup = setup(&mut cfg)?;
    let mut state = SearchState::new(&setup.space, setup.input, &cfg, setup.device)?;
    let pos = checkpoint::load(&mut state, dir, setup.space.fingerprint())?;
    Ok(TrainedSupernet {
        cfg,
        state,
        setup,
        global_step: pos.global_step,
        epoch: pos.epoch,
    })
}

/// Everything fixed for the duration of a run.
pub struct Setup {
    pub space: SearchSpace,
    pub loaders: SearchLoaders,
    /// The architecture half, for evaluation.
    pub val: Loader,
    pub input: InputShape,
    pub device: tch::Device,
}

/// Load the space and the data; fills in what the config left to the data (augmentation).
pub(crate) fn setup(cfg: &mut SearchConfig) -> Result<Setup> {
    let space = SearchSpace::from_file(&cfg.space)?.with_overrides(cfg.network)?;
    let device = parse_device(&cfg.device)?;
    if cfg.threads > 0 {
        tch::set_num_threads(cfg.threads as i32);
    }
    let data: DataSets = cfg.data.load()?;
    let augment = *cfg.augment.get_or_insert_with(|| data.default_augment());
    let split = SearchSplit::new(&data.train, cfg.subset, cfg.seed)?;
    let loaders = SearchLoaders::new(
        &split,
        LoaderConfig::train(cfg.batch_size, augment, cfg.seed),
    )?;
    let val = Loader::eval(split.arch.clone(), cfg.batch_size.max(256))?;
    let t = &data.train;
    let input = InputShape {
        channels: t.channels() as i64,
        height: t.height() as i64,
        width: t.width() as i64,
        classes: t.num_classes() as i64,
    };
    Ok(Setup {
        space,
        loaders,
        val,
        input,
        device,
    })
}

fn meta(cfg: &SearchConfig, s: &Setup, steps_per_epoch: usize) -> RunMeta {
    let (a, b, c) = hdf5::library_version();
    RunMeta {
        kind: "search".into(),
        config: cfg.to_toml(),
        space: s.space.to_toml(),
        seed: cfg.seed,
        device: format!("{:?}", s.device),
        supernet_version: env!("CARGO_PKG_VERSION").into(),
        libtorch_version: crate::info::LIBTORCH_VERSION.into(),
        hdf5_version: format!("{a}.{b}.{c}"),
        ops: s.space.ops.iter().map(|o| o.name().to_string()).collect(),
        edges: s.space.cell.edges().iter().map(|e| e.key()).collect(),
        cell_types: s
            .space
            .network
            .cell_types()
            .iter()
            .map(|t| t.name().to_string())
            .collect(),
        steps_per_epoch: steps_per_epoch as u64,
    }
}

/// Predict the peak memory of a step (see [`crate::memory`]) and refuse to start a CPU
/// search that would not fit in the memory available, suggesting what would.
fn check_memory(exe: &Path, cfg: &SearchConfig, s: &Setup, limit: Option<u64>) -> Result<String> {
    let p = crate::memory::predict(exe, cfg, s.input, cfg.batch_size)?;
    if s.device != tch::Device::Cpu {
        return Ok(format!(
            "memory: {} (host memory of the same step on the CPU; the device holds about the same graph)",
            p.describe()
        ));
    }
    let available = limit.unwrap_or_else(crate::memory::available);
    if p.peak > available {
        let fits = p.largest_batch_within(available);
        return Err(Error::invalid(
            "batch size",
            cfg.batch_size,
            format!(
                "a step that fits in memory: {}, but {} is available. Try --batch-size {} \
                 (the largest predicted to fit){}{}, or --no-memory-check to start anyway",
                p.describe(),
                crate::memory::gib(available),
                fits.max(1),
                if cfg.recompute {
                    ""
                } else {
                    ", --recompute (one cell's activations at a time)"
                },
                ", --partial-channels 4 (PC-DARTS)",
            ),
        ));
    }
    Ok(format!(
        "memory: {}, {} available",
        p.describe(),
        crate::memory::gib(available)
    ))
}

/// The strategy a config names.
pub fn strategy(kind: StrategyKind) -> Box<dyn Strategy> {
    match kind {
        StrategyKind::FirstOrder => Box::new(FirstOrder),
        StrategyKind::SecondOrder => Box::new(SecondOrder),
        StrategyKind::Spos => Box::new(Spos),
        StrategyKind::Gdas => Box::new(Gdas),
    }
}

/// SIGINT/SIGTERM set a flag that the loop reads between steps.
pub(crate) fn stop_flag() -> Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, flag.clone())
            .map_err(|e| Error::Other(format!("cannot install the signal handler: {e}")))?;
    }
    Ok(flag)
}

fn alpha_record(st: &SearchState, step: u64, epoch: usize) -> AlphaRecord {
    AlphaRecord {
        step,
        epoch: epoch as u32,
        normal: st.arch.raw(CellType::Normal).expect("normal alphas"),
        reduce: st.arch.raw(CellType::Reduce),
        normal_betas: st.arch.raw_betas(CellType::Normal),
        reduce_betas: st.arch.raw_betas(CellType::Reduce),
    }
}

/// Write the run file, then the checkpoint: a kill between the two leaves a run file ahead
/// of the checkpoint, which resuming truncates.
fn persist(st: &SearchState, log: &RunLog, pos: &Position, dir: &Path) -> Result<()> {
    write_run(log, &dir.join(RUN_FILE))?;
    checkpoint::save(st, pos, dir)
}

fn run(mut cfg: SearchConfig, dir: &Path, resuming: bool, opts: &RunOptions) -> Result<Outcome> {
    let s = setup(&mut cfg)?;
    let progress = progress::Progress::new(opts.quiet);
    if let Some(exe) = &opts.memory_probe {
        progress.line(&check_memory(exe, &cfg, &s, opts.memory_limit)?);
    }
    if !resuming {
        crate::fsutil::write_atomic(&dir.join(CONFIG_FILE), cfg.to_toml().as_bytes())?;
    }
    let steps = s.loaders.steps_per_epoch();
    let space_hash = s.space.fingerprint();
    let mut st = SearchState::new(&s.space, s.input, &cfg, s.device)?;
    let mut log;
    let mut pos;
    if resuming {
        pos = checkpoint::load(&mut st, dir, space_hash)?;
        log = read_run(&dir.join(RUN_FILE))?;
        log.truncate_to(pos.global_step, pos.epoch as u32);
    } else {
        pos = Position {
            epoch: 0,
            step_in_epoch: 0,
            global_step: 0,
            adam_step: 0,
            space_hash,
        };
        log = RunLog {
            meta: meta(&cfg, &s, steps),
            ..Default::default()
        };
        log.alphas.push(alpha_record(&st, 0, 0));
        persist(&st, &log, &pos, dir)?;
    }
    let mut strat = strategy(cfg.strategy);
    let stop = stop_flag()?;
    progress.line(&format!(
        "search: space '{}', {} strategy{}, {} epochs x {steps} steps, batch {}, device {:?}, run dir {}",
        s.space.name,
        strat.name(),
        if cfg.partial().is_on() {
            format!(" with partial channels K = {}", cfg.partial_channels)
        } else {
            String::new()
        },
        cfg.epochs,
        cfg.batch_size,
        s.device,
        dir.display()
    ));

    while pos.epoch < cfg.epochs {
        let epoch = pos.epoch;
        st.lr = cosine_lr(cfg.lr, cfg.lr_min, epoch, cfg.epochs);
        let bar = progress.epoch_bar(epoch, cfg.epochs, steps, pos.step_in_epoch);
        for (wb, ab) in s.loaders.epoch(epoch, pos.step_in_epoch) {
            let t0 = Instant::now();
            (st.epoch, st.step_in_epoch) = (epoch, pos.step_in_epoch);
            st.global_step = pos.global_step;
            let train = Batch::to_device(&wb, s.device);
            let val = Batch::to_device(&ab, s.device);
            let stats = match strat.step(&mut st, &train, &val) {
                Ok(stats) => stats,
                Err(e) => {
                    // The log up to the last good step is written; the checkpoint is untouched.
                    let _ = write_run(&log, &dir.join(RUN_FILE));
                    return Err(e);
                }
            };
            let seconds = t0.elapsed().as_secs_f64();
            log.steps
                .push(stats.record(pos.global_step, epoch, st.lr, seconds));
            pos.global_step += 1;
            pos.step_in_epoch += 1;
            pos.adam_step = st.adam.step;
            if pos.global_step % cfg.alpha_every as u64 == 0 && pos.step_in_epoch < steps {
                log.alphas.push(alpha_record(&st, pos.global_step, epoch));
            }
            progress.step(&bar, &stats);
            let interrupted = stop.load(Ordering::Relaxed);
            if crate::rundir::checkpoint_after_step(
                interrupted,
                cfg.checkpoint_every,
                pos.global_step,
                pos.step_in_epoch < steps,
            ) {
                persist(&st, &log, &pos, dir)?;
            }
            if interrupted {
                bar.abandon();
                if pos.step_in_epoch >= steps {
                    break; // finish the epoch's bookkeeping first, then stop below
                }
                return Ok(Outcome::Interrupted {
                    dir: dir.to_path_buf(),
                    global_step: pos.global_step,
                });
            }
        }
        bar.finish_and_clear();

        // Epoch end: evaluate the supernet on the architecture half, derive, record.
        let eval_start = Instant::now();
        let score = evaluate(
            &st.net,
            &st.arch.softmax_detached(),
            &s.val,
            s.device,
            false,
        );
        let genotype = st.arch.genotype(&s.space);
        let record = log.epoch_summary(
            epoch as u32,
            st.lr,
            (score.loss, score.accuracy),
            eval_start.elapsed().as_secs_f64(),
            &genotype.to_text(),
        );
        progress.line(&format!(
            "epoch {:>3}/{}  train loss {:.4} acc {:.2}%  val loss {:.4} acc {:.2}%  lr {:.5}  {:.1}s  {}",
            epoch + 1,
            cfg.epochs,
            record.train_loss,
            100.0 * record.train_acc,
            record.val_loss,
            100.0 * record.val_acc,
            st.lr,
            record.seconds,
            record.genotype
        ));
        log.epochs.push(record);
        pos.epoch += 1;
        pos.step_in_epoch = 0;
        log.alphas.push(alpha_record(&st, pos.global_step, epoch));
        persist(&st, &log, &pos, dir)?;
        if stop.load(Ordering::Relaxed) {
            return Ok(Outcome::Interrupted {
                dir: dir.to_path_buf(),
                global_step: pos.global_step,
            });
        }
    }

    let genotype = st.arch.genotype(&s.space);
    let text = genotype.to_text();
    let json = genotype.to_json();
    crate::fsutil::write_atomic(&dir.join("genotype.txt"), format!("{text}\n").as_bytes())?;
    crate::fsutil::write_atomic(&dir.join("genotype.json"), format!("{json}\n").as_bytes())?;
    log.genotype = Some((text, json));
    write_run(&log, &dir.join(RUN_FILE))?;
    Ok(Outcome::Finished {
        genotype,
        dir: dir.to_path_buf(),
    })
}
