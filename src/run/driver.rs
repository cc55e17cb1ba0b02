//! The one training loop that searches and stand-alone trainings both run: epochs and
//! steps, the checkpoint rule, SIGINT/SIGTERM, the NaN guard, progress, and the run-file
//! records. What a step and an epoch's evaluation do is the [`Job`]'s business.
use super::checkpoint::Position;
use super::dir::RunDir;
use super::progress::Progress;
use super::signal::StopFlag;
use crate::record::{read_run, RunLog, RunMeta, StepRecord};
use crate::space::SearchSpace;
use crate::Result;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What one step measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct StepStats {
    pub train_loss: f64,
    pub train_acc: f64,
    /// NaN when the step has no validation half (stand-alone training).
    pub val_loss: f64,
    pub val_acc: f64,
    /// Norm of the weight gradient before clipping.
    pub grad_norm: f64,
}

impl StepStats {
    /// The run-file record of this step.
    pub fn record(&self, step: u64, epoch: usize, lr: f64, seconds: f64) -> StepRecord {
        StepRecord {
            step,
            epoch: epoch as u32,
            train_loss: self.train_loss,
            train_acc: self.train_acc,
            val_loss: self.val_loss,
            val_acc: self.val_acc,
            lr,
            grad_norm: self.grad_norm,
            seconds,
        }
    }
}

/// An epoch's evaluation, as the loop records and prints it.
#[derive(Debug, Clone)]
pub struct EpochEnd {
    pub loss: f64,
    pub accuracy: f64,
    /// The genotype of the epoch (text form): what the search derives, or what is trained.
    pub genotype: String,
    /// What is shown after the learning rate (e.g. the drop-path rate); may be empty.
    pub note: String,
    /// Whether the console line ends with the genotype.
    pub show_genotype: bool,
    /// The job is done after this epoch although the schedule has more (an early stop):
    /// the loop checkpoints it and returns as at the schedule's end.
    pub finish: bool,
    /// The epoch's Hessian eigenvalue (R-DARTS), when the job computed one.
    pub hessian_eigenvalue: Option<f64>,
}

/// A run the loop can drive.
pub trait Job {
    type Batch;
    type Batches: Iterator<Item = Self::Batch>;

    /// The batches of `epoch` from step `start` on (a pure function of both).
    fn batches(&self, epoch: usize, start: usize) -> Self::Batches;
    /// Set up `epoch` (schedules); returns its learning rate.
    fn start_epoch(&mut self, epoch: usize) -> f64;
    /// One step. A non-finite loss or gradient is an [`crate::Error::NonFinite`].
    fn step(&mut self, batch: Self::Batch, at: &Position) -> Result<StepStats>;
    /// Evaluate at the end of `epoch`.
    fn end_epoch(&mut self, epoch: usize) -> Result<EpochEnd>;
    /// Add what the job records beside steps and epochs (the alphas); `epoch_end` says
    /// whether `pos` is an epoch's end.
    fn record(&self, _log: &mut RunLog, _pos: &Position, _epoch_end: bool) {}
    /// Write the checkpoint for `pos`.
    fn save(&self, dir: &RunDir, pos: &Position) -> Result<()>;
    /// Restore the job from the checkpoint of the run in `dir`; the position it holds.
    fn load(&mut self, dir: &Path) -> Result<Position>;
    /// Whether to stop now, given this process's stop request (a data-parallel job makes
    /// its ranks agree, so that they stop after the same step).
    fn agree_stop(&mut self, requested: bool) -> Result<bool> {
        Ok(requested)
    }
}

/// The loop's settings.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub epochs: usize,
    pub steps_per_epoch: usize,
    /// Checkpoint every this many steps as well (0: only at epoch ends).
    pub checkpoint_every: usize,
    /// "epoch" lines say "val" or "test" for the evaluation.
    pub eval_name: &'static str,
}

/// A run the loop stopped on a signal, after checkpointing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopped {
    pub dir: PathBuf,
    /// Steps done (and checkpointed).
    pub global_step: u64,
    /// SIGINT or SIGTERM.
    pub signal: i32,
}

/// Whether the loop checkpoints after a step: when interrupted or every `every` steps
/// (0: never), but not after an epoch's last step, whose checkpoint follows the epoch's
/// evaluation.
fn checkpoint_after_step(
    interrupted: bool,
    every: usize,
    global_step: u64,
    mid_epoch: bool,
) -> bool {
    let due = every > 0 && global_step.is_multiple_of(every as u64);
    (interrupted || due) && mid_epoch
}

/// The log and position a run continues from: when `resuming`, the job restored from its
/// checkpoint and the run file cut back to it; otherwise a new log of `meta` (and the
/// job's first records), written with `config.toml` and the first checkpoint, which
/// completes the run's start.
pub fn begin<J: Job>(
    job: &mut J,
    dir: &mut RunDir,
    resuming: bool,
    meta: RunMeta,
) -> Result<(RunLog, Position)> {
    if resuming {
        let pos = job.load(dir.path())?;
        let mut log = read_run(&dir.run_file())?;
        log.truncate_to(pos.global_step, pos.epoch as u32);
        return Ok((log, pos));
    }
    dir.write(super::CONFIG_FILE, meta.config.as_bytes())?;
    let pos = Position::default();
    let mut log = RunLog {
        meta,
        ..Default::default()
    };
    job.record(&mut log, &pos, false);
    persist(job, dir, &log, &pos)?;
    dir.started();
    Ok((log, pos))
}

/// Write the run file, then the checkpoint: a kill between the two leaves a run file ahead
/// of the checkpoint, which resuming truncates.
fn persist<J: Job>(job: &J, dir: &RunDir, log: &RunLog, pos: &Position) -> Result<()> {
    dir.write_run(log)?;
    job.save(dir, pos)
}

/// Drive `job` from `pos` to the end of its schedule, recording into `log` and persisting
/// into `dir`; `Some` when a signal stopped it first.
pub fn drive<J: Job>(
    job: &mut J,
    schedule: Schedule,
    dir: &RunDir,
    log: &mut RunLog,
    mut pos: Position,
    progress: &Progress,
    stop: &StopFlag,
) -> Result<Option<Stopped>> {
    let Schedule {
        epochs,
        steps_per_epoch: steps,
        checkpoint_every,
        eval_name,
    } = schedule;
    while pos.epoch < epochs {
        let epoch = pos.epoch;
        let lr = job.start_epoch(epoch);
        let bar = progress.epoch_bar(epoch, epochs, steps, pos.step_in_epoch);
        for batch in job.batches(epoch, pos.step_in_epoch) {
            let t0 = Instant::now();
            let stats = match job.step(batch, &pos) {
                Ok(stats) => stats,
                Err(e) => {
                    // The log up to the last good step is written; the checkpoint is untouched.
                    let _ = dir.write_run(log);
                    return Err(e);
                }
            };
            let seconds = t0.elapsed().as_secs_f64();
            log.steps
                .push(stats.record(pos.global_step, epoch, lr, seconds));
            pos.global_step += 1;
            pos.step_in_epoch += 1;
            let mid_epoch = pos.step_in_epoch < steps;
            if mid_epoch {
                job.record(log, &pos, false);
            }
            progress.step(&bar, &stats);
            let interrupted = job.agree_stop(stop.requested())?;
            if checkpoint_after_step(interrupted, checkpoint_every, pos.global_step, mid_epoch) {
                persist(job, dir, log, &pos)?;
            }
            if interrupted {
                bar.abandon();
                if !mid_epoch {
                    break; // finish the epoch's bookkeeping first, then stop below
                }
                return Ok(Some(stopped(dir, &pos, stop)));
            }
        }
        bar.finish_and_clear();

        let eval_start = Instant::now();
        let end = job.end_epoch(epoch)?;
        let finish = end.finish;
        let mut record = log.epoch_summary(
            epoch as u32,
            lr,
            (end.loss, end.accuracy),
            eval_start.elapsed().as_secs_f64(),
            &end.genotype,
        );
        record.hessian_eigenvalue = end.hessian_eigenvalue;
        let note = if end.note.is_empty() {
            String::new()
        } else {
            format!("  {}", end.note)
        };
        let genotype = if end.show_genotype {
            format!("  {}", record.genotype)
        } else {
            String::new()
        };
        progress.line(&format!(
            "epoch {:>3}/{}  train loss {:.4} acc {:.2}%  {eval_name} loss {:.4} acc {:.2}%  lr {:.5}{note}  {:.1}s{genotype}",
            epoch + 1,
            epochs,
            record.train_loss,
            100.0 * record.train_acc,
            record.val_loss,
            100.0 * record.val_acc,
            lr,
            record.seconds,
        ));
        log.epochs.push(record);
        pos.epoch += 1;
        pos.step_in_epoch = 0;
        job.record(log, &pos, true);
        persist(job, dir, log, &pos)?;
        if finish {
            break;
        }
        if job.agree_stop(stop.requested())? {
            return Ok(Some(stopped(dir, &pos, stop)));
        }
    }
    Ok(None)
}

fn stopped(dir: &RunDir, pos: &Position, stop: &StopFlag) -> Stopped {
    Stopped {
        dir: dir.path().to_path_buf(),
        global_step: pos.global_step,
        signal: stop.signal().unwrap_or(signal_hook::consts::SIGINT),
    }
}

/// The space of a run: its alpha rows and columns come from it.
#[derive(Clone, Copy)]
pub enum MetaSpace<'a> {
    Cell(&'a SearchSpace),
    /// Rows `layer_{i}` (searchable layers), columns the choices, one cell type "normal".
    Chain(&'a crate::space::chain::ChainSpace),
}

/// The root attributes of a run file: what produced it.
pub struct MetaSource<'a> {
    pub kind: &'a str,
    pub config: String,
    pub space: MetaSpace<'a>,
    pub seed: u64,
    pub device: tch::Device,
    pub steps_per_epoch: usize,
    pub classes: usize,
}

impl MetaSource<'_> {
    pub fn meta(self) -> RunMeta {
        let (a, b, c) = hdf5::library_version();
        let (space, ops, edges, cell_types) = match self.space {
            MetaSpace::Cell(space) => (
                space.to_toml(),
                space.ops.iter().map(|o| o.name().to_string()).collect(),
                space.cell.edges().iter().map(|e| e.key()).collect(),
                space
                    .network
                    .cell_types()
                    .iter()
                    .map(|t| t.name().to_string())
                    .collect(),
            ),
            MetaSpace::Chain(space) => (
                space.to_toml(),
                space.choices().iter().map(|c| c.name()).collect(),
                (0..space.num_searchable())
                    .map(|i| format!("layer_{i}"))
                    .collect(),
                vec!["normal".to_string()],
            ),
        };
        RunMeta {
            kind: self.kind.into(),
            config: self.config,
            space,
            seed: self.seed,
            device: super::device::device_name(self.device),
            supernet_version: env!("CARGO_PKG_VERSION").into(),
            libtorch_version: crate::info::LIBTORCH_VERSION.into(),
            hdf5_version: format!("{a}.{b}.{c}"),
            ops,
            edges,
            cell_types,
            steps_per_epoch: self.steps_per_epoch as u64,
            classes: self.classes as u64,
        }
    }
}
