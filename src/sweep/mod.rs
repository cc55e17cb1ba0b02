//! `supernet sweep`: many searches (or trainings) over a declared space of settings. Optuna
//! proposes the settings and stops trials early (ASHA on each epoch's validation accuracy);
//! each trial is an ordinary run directory written by a child process of this binary, so
//! it is resumable like any run; the study's journal lets a killed sweep continue where it
//! was without re-running finished trials.
mod driver;
mod spec;

pub use driver::python;
pub use spec::{Param, PrunerKind, SamplerKind, SweepSpec, Verb};

use crate::record::{read_run, Column, Table};
use crate::{Error, Result};
use driver::{Driver, TrialInfo};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct SweepOptions {
    /// Trials run at once (each with one thread).
    pub jobs: usize,
    /// This binary, which runs the trials.
    pub exe: PathBuf,
    pub quiet: bool,
}

/// Where a sweep's results went.
pub struct SweepReport {
    pub trials: usize,
    pub best: Option<(usize, f64)>,
    pub csv: PathBuf,
    pub h5: PathBuf,
    pub plots: Vec<PathBuf>,
}

struct Running {
    number: usize,
    dir: PathBuf,
    child: Child,
    reported: usize,
    pruned: bool,
}

/// Run (or continue) the sweep of `spec` in `out`.
pub fn run(
    spec: &SweepSpec,
    spec_text: &str,
    out: &Path,
    opts: &SweepOptions,
) -> Result<SweepReport> {
    crate::run::check::at_least_one("--jobs", opts.jobs)?;
    std::fs::create_dir_all(out.join("trials")).map_err(|e| Error::io(out, e))?;
    let stored = out.join("sweep.toml");
    match std::fs::read_to_string(&stored) {
        Ok(old) if old != spec_text => {
            return Err(Error::bad_file(
                &stored,
                format!(
                    "{} holds a sweep of other settings; continue it with its own sweep.toml, or give another --out",
                    out.display()
                ),
            ))
        }
        Ok(_) => {}
        Err(_) => crate::fs::write_atomic(&stored, spec_text.as_bytes())?,
    }
    // One sweep process per directory (the trials' runs have their own locks).
    let _lock =
        crate::fs::FileLock::try_take(&out.join("sweep.lock"), crate::fs::LockMode::Exclusive)
            .map_err(|e| match e {
                crate::fs::LockError::Held(holders) => Error::Other(format!(
                    "{}: another sweep is running in it ({})",
                    out.display(),
                    holders.join("; ")
                )),
                crate::fs::LockError::Io(e) => e,
            })?;
    let mut driver = Driver::start(out, &spec.driver_config(&out.join("journal.log")))?;
    let say = |s: String| {
        if !opts.quiet {
            eprintln!("{s}");
        }
    };

    // Trials a killed sweep left running continue from their checkpoints.
    let known = driver.trials()?;
    let mut pending: Vec<TrialInfo> = known
        .iter()
        .filter(|t| t.state == "running")
        .cloned()
        .collect();
    let mut started = known.len();
    let total = spec.trial_count();
    if started > 0 {
        say(format!(
            "sweep: continuing {} ({} trials known, {} to resume)",
            out.display(),
            started,
            pending.len()
        ));
    }
    let mut running: Vec<Running> = Vec::new();
    loop {
        while running.len() < opts.jobs {
            let (trial, resume) = if let Some(t) = pending.pop() {
                (t, true)
            } else if started < total {
                started += 1;
                (driver.ask()?, false)
            } else {
                break;
            };
            let dir = trial_dir(out, trial.number);
            if resume && dir.join(crate::run::LOCK_FILE).is_file() {
                // A trial the killed sweep left may still be checkpointing on its
                // SIGTERM: wait until it lets go of its run.
                drop(crate::fs::FileLock::wait_exclusive(
                    &dir.join(crate::run::LOCK_FILE),
                )?);
            }
            if resume && run_finished(&dir) {
                // Finished before the sweep was killed, but not yet told.
                let value = epoch_accuracies(&dir).last().copied();
                driver.tell(trial.number, "complete", value)?;
                say(format!("trial {}: finished before the kill", trial.number));
                continue;
            }
            say(format!(
                "trial {}: {}{}",
                trial.number,
                describe(&trial.params),
                if resume { " (resumed)" } else { "" }
            ));
            let child = spawn(spec, opts, &dir, &trial, resume)?;
            running.push(Running {
                number: trial.number,
                dir,
                child,
                reported: 0,
                pruned: false,
            });
        }
        if running.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
        let mut still = Vec::new();
        for mut r in running.drain(..) {
            let exited = r.child.try_wait().map_err(|e| Error::io(&r.dir, e))?;
            let accs = epoch_accuracies(&r.dir);
            while r.reported < accs.len() && !r.pruned {
                let prune = driver.report(r.number, r.reported + 1, accs[r.reported])?;
                r.reported += 1;
                if prune && exited.is_none() {
                    // SIGTERM: the trial checkpoints and stops; its run stays resumable.
                    unsafe { libc::kill(r.child.id() as i32, libc::SIGTERM) };
                    let _ = r.child.wait();
                    r.pruned = true;
                }
            }
            if r.pruned {
                driver.tell(r.number, "pruned", None)?;
                say(format!(
                    "trial {}: stopped by ASHA after {} epochs (accuracy {:.2}%)",
                    r.number,
                    r.reported,
                    100.0 * accs.last().copied().unwrap_or(0.0)
                ));
                continue;
            }
            match exited {
                None => still.push(r),
                Some(status) if status.success() && !accs.is_empty() => {
                    let value = *accs.last().expect("checked");
                    driver.tell(r.number, "complete", Some(value))?;
                    say(format!(
                        "trial {}: accuracy {:.2}%",
                        r.number,
                        100.0 * value
                    ));
                }
                Some(status) => {
                    driver.tell(r.number, "fail", None)?;
                    say(format!(
                        "trial {}: failed ({status}); see {}",
                        r.number,
                        log_file(&r.dir).display()
                    ));
                }
            }
        }
        running = still;
    }
    let trials = driver.trials()?;
    drop(driver);
    results(spec, out, &trials)
}

fn trial_dir(out: &Path, number: usize) -> PathBuf {
    out.join("trials").join(format!("{number:04}"))
}

fn log_file(dir: &Path) -> PathBuf {
    dir.with_extension("log")
}

fn describe(params: &serde_json::Map<String, serde_json::Value>) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{k} = {}", spec::flag_value(v)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Start a trial: a fresh run in `dir`, or `--resume` of the run a killed sweep left.
fn spawn(
    spec: &SweepSpec,
    opts: &SweepOptions,
    dir: &Path,
    t: &TrialInfo,
    resume: bool,
) -> Result<Child> {
    let verb = spec.command.name();
    let mut cmd = Command::new(&opts.exe);
    cmd.arg(verb);
    if resume && dir.join(crate::run::CHECKPOINT_FILE).is_file() {
        cmd.arg("--resume").arg(dir);
    } else {
        if dir.exists() {
            // A start that never reached its first checkpoint: nothing to keep.
            std::fs::remove_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        cmd.args(&spec.args);
        for (k, v) in &t.params {
            cmd.arg(format!("--{}", k.replace('_', "-")))
                .arg(spec::flag_value(v));
        }
        if !spec.args.iter().any(|a| a == "--threads") {
            cmd.args(["--threads", "1"]);
        }
        cmd.arg("--out").arg(dir);
    }
    cmd.arg("--quiet");
    if spec.command == Verb::Search {
        cmd.arg("--no-memory-check");
    }
    let log = std::fs::File::create(log_file(dir)).map_err(|e| Error::io(log_file(dir), e))?;
    cmd.stdout(Stdio::null())
        .stderr(log)
        .env("OMP_NUM_THREADS", "1");
    // The trial stops (checkpointing first, as on SIGTERM) when the sweep dies, so that a
    // resumed sweep finds its run unlocked and resumable.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    cmd.spawn().map_err(|e| Error::io(&opts.exe, e))
}

/// Whether the run in `dir` has done every epoch its config asks for.
fn run_finished(dir: &Path) -> bool {
    let epochs = std::fs::read_to_string(dir.join(crate::run::CONFIG_FILE))
        .ok()
        .and_then(|t| t.parse::<toml::Table>().ok())
        .and_then(|t| t.get("epochs").and_then(toml::Value::as_integer));
    matches!(epochs, Some(n) if n > 0 && epoch_accuracies(dir).len() >= n as usize)
}

/// The validation accuracy after each finished epoch of the run in `dir` (none while its
/// run file does not exist yet).
fn epoch_accuracies(dir: &Path) -> Vec<f64> {
    read_run(&dir.join("run.h5"))
        .map(|log| log.epochs.iter().map(|e| e.val_acc).collect())
        .unwrap_or_default()
}

/// The results table (`results.csv`, `results.h5` group `/sweep`) and its plots.
fn results(spec: &SweepSpec, out: &Path, trials: &[TrialInfo]) -> Result<SweepReport> {
    let mut cols: Vec<(String, Column)> = vec![
        (
            "trial".into(),
            Column::U64(trials.iter().map(|t| t.number as u64).collect()),
        ),
        (
            "state".into(),
            Column::Text(trials.iter().map(|t| t.state.clone()).collect()),
        ),
    ];
    for name in spec.params.keys() {
        let values: Vec<&serde_json::Value> = trials.iter().map(|t| &t.params[name]).collect();
        let col = if values.iter().all(|v| v.is_number()) {
            Column::F64(
                values
                    .iter()
                    .map(|v| v.as_f64().unwrap_or(f64::NAN))
                    .collect(),
            )
        } else {
            Column::Text(values.iter().map(|v| spec::flag_value(v)).collect())
        };
        cols.push((name.clone(), col));
    }
    let runs: Vec<Option<crate::record::RunLog>> = trials
        .iter()
        .map(|t| read_run(&trial_dir(out, t.number).join("run.h5")).ok())
        .collect();
    let last = |f: fn(&crate::record::EpochRecord) -> f64| -> Vec<f64> {
        runs.iter()
            .map(|r| r.as_ref().and_then(|r| r.epochs.last()).map_or(f64::NAN, f))
            .collect()
    };
    // Named so as not to meet a setting's name (`epochs` is one).
    cols.push((
        "epochs_run".into(),
        Column::U64(
            runs.iter()
                .map(|r| r.as_ref().map_or(0, |r| r.epochs.len() as u64))
                .collect(),
        ),
    ));
    cols.push(("val_acc".into(), Column::F64(last(|e| e.val_acc))));
    cols.push(("val_loss".into(), Column::F64(last(|e| e.val_loss))));
    cols.push(("train_acc".into(), Column::F64(last(|e| e.train_acc))));
    cols.push((
        "seconds".into(),
        Column::F64(
            runs.iter()
                .map(|r| {
                    r.as_ref()
                        .map_or(0.0, |r| r.epochs.iter().map(|e| e.seconds).sum())
                })
                .collect(),
        ),
    ));
    cols.push((
        "val_acc_per_epoch".into(),
        Column::Text(
            runs.iter()
                .map(|r| {
                    r.as_ref().map_or(String::new(), |r| {
                        r.epochs
                            .iter()
                            .map(|e| format!("{:.4}", e.val_acc))
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                })
                .collect(),
        ),
    ));
    cols.push((
        "genotype".into(),
        Column::Text(
            trials
                .iter()
                .map(|t| {
                    std::fs::read_to_string(trial_dir(out, t.number).join("genotype.txt"))
                        .map(|s| s.trim().to_string())
                        .unwrap_or_default()
                })
                .collect(),
        ),
    ));
    cols.push((
        "dir".into(),
        Column::Text(
            trials
                .iter()
                .map(|t| trial_dir(out, t.number).display().to_string())
                .collect(),
        ),
    ));
    let table = Table {
        group: "sweep".into(),
        attrs: vec![
            ("command".into(), spec.command.name().into()),
            ("args".into(), spec.args.join(" ")),
            (
                "sampler".into(),
                format!("{:?}", spec.sampler).to_lowercase(),
            ),
            (
                "pruner".into(),
                format!("{:?}", spec.pruner.kind).to_lowercase(),
            ),
            ("seed".into(), spec.seed.to_string()),
            (
                "metric".into(),
                "val_acc of the last epoch run (maximised)".into(),
            ),
        ],
        columns: cols,
    };
    let csv = out.join("results.csv");
    crate::fs::write_atomic(&csv, table.to_csv().as_bytes())?;
    let h5 = out.join("results.h5");
    crate::fs::write_atomic(
        &h5,
        &crate::record::tables_to_bytes(std::slice::from_ref(&table))?,
    )?;
    let plots = crate::plot::sweep_charts(&table, &spec.params_log(), &out.join("plots"))?;
    let best = trials
        .iter()
        .filter(|t| t.state == "complete")
        .filter_map(|t| t.value.map(|v| (t.number, v)))
        .max_by(|a, b| a.1.total_cmp(&b.1));
    Ok(SweepReport {
        trials: trials.len(),
        best,
        csv,
        h5,
        plots,
    })
}
