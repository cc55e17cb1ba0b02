//! One run directory: the names of its files, who may write them when, and a start that
//! either completes or leaves nothing behind.
//!
//! Writers hold `run.lock` (an `flock`, released by the kernel however its holder ends):
//! a search or a training run holds it exclusively for its whole life (it rewrites the run
//! file from memory), while `sample`, `evolve`, `derive` and `rank-check` hold it shared
//! (any number of them at once, never beside a search) and serialise their short
//! read-modify-writes of the run file on `tables.lock`. Readers (plots, h5py) need no lock:
//! every file is replaced atomically, so they always see a complete one.
use super::paths::ConfigFile;
use crate::fs::{self, FileLock, LockError, LockMode};
use crate::record::{read_run, write_run, RunLog, RUN_FILE};
use crate::space::chain::ChainArch;
use crate::space::Genotype;
use crate::{Error, Result};
use std::path::{Path, PathBuf};

pub const CONFIG_FILE: &str = "config.toml";
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
pub const LOCK_FILE: &str = "run.lock";
const TABLES_LOCK_FILE: &str = "tables.lock";
/// Room a table writer wants free beyond the run file's size before it starts.
const WRITE_MARGIN: u64 = 16 << 20;

/// A run directory held by this process.
#[derive(Debug)]
pub struct RunDir {
    path: PathBuf,
    /// `None` for a follower (see [`Self::follower`]).
    lock: Option<FileLock>,
    mode: LockMode,
    /// Set while a new run is being started: what to remove if the start fails.
    start: Option<Start>,
}

/// What a new run's start created, so that a failed start removes exactly that.
#[derive(Debug)]
struct Start {
    created_dir: bool,
    /// Files of a run that did not exist before the start.
    new_files: Vec<PathBuf>,
}

impl RunDir {
    /// Start a new run in `path` (created if missing), holding it exclusively. A directory
    /// with a checkpoint holds a run and is refused. Until [`Self::started`] is called,
    /// dropping the value removes every run file the start wrote (and the directory if the
    /// start created it): a failed start leaves nothing behind.
    pub fn create(path: &Path) -> Result<Self> {
        let created_dir = !path.exists();
        std::fs::create_dir_all(path).map_err(|e| Error::io(path, e))?;
        let path = absolute(path)?;
        let new_files = [CONFIG_FILE, RUN_FILE, CHECKPOINT_FILE, LOCK_FILE]
            .iter()
            .map(|f| path.join(f))
            .filter(|f| !f.exists())
            .collect();
        let start = Start {
            created_dir,
            new_files,
        };
        let lock = match take(&path, LockMode::Exclusive) {
            Ok(lock) => lock,
            Err(e) => {
                // Someone else holds the directory: touch none of its files (the lock
                // file is theirs), only the directory if this call made it and it is empty.
                if created_dir {
                    let _ = std::fs::remove_dir(&path);
                }
                return Err(e);
            }
        };
        let dir = RunDir {
            path,
            lock: Some(lock),
            mode: LockMode::Exclusive,
            start: Some(start),
        };
        if dir.checkpoint_file().exists() {
            return Err(Error::invalid(
                "--out",
                dir.path.display(),
                "a directory without a run in it (continue that run with --resume, or choose another --out)",
            ));
        }
        fs::remove_stale_temps(&dir.path);
        Ok(dir)
    }

    /// The run in `path`, to continue it from its checkpoint, held exclusively.
    pub fn resume(path: &Path) -> Result<Self> {
        let dir = Self::existing(path, LockMode::Exclusive)?;
        if !dir.checkpoint_file().is_file() {
            return Err(Error::bad_file(
                dir.checkpoint_file(),
                "no checkpoint: nothing to resume in this directory (a run that never \
                 finished its start; start it again with --out)",
            ));
        }
        Ok(dir)
    }

    /// The run in `path`, to add results beside it (`sample`, `evolve`, `derive`,
    /// `rank-check`), held shared: refused while its search or training runs. Checked
    /// before any work: its run file reads, and its directory takes writes.
    pub fn attach(path: &Path) -> Result<Self> {
        let dir = Self::existing(path, LockMode::Shared)?;
        let run_file = dir.run_file();
        read_run(&run_file)?;
        let probe = fs::temp_path(&dir.path.join("write-test"));
        std::fs::write(&probe, b"")
            .and_then(|()| std::fs::remove_file(&probe))
            .map_err(|e| {
                Error::io(
                    &dir.path,
                    std::io::Error::new(e.kind(), format!("cannot write results here: {e}")),
                )
            })?;
        let size = std::fs::metadata(&run_file).map_or(0, |m| m.len());
        if let Some(free) = fs::free_bytes(&dir.path) {
            if free < size + WRITE_MARGIN {
                return Err(Error::io(
                    &dir.path,
                    std::io::Error::other(format!(
                        "only {free} bytes free; adding results to this run needs about {} \
                         (a new copy of {RUN_FILE} and a margin)",
                        size + WRITE_MARGIN
                    )),
                ));
            }
        }
        Ok(dir)
    }

    fn existing(path: &Path, mode: LockMode) -> Result<Self> {
        if !path.is_dir() {
            return Err(Error::bad_file(
                path,
                "no such run directory (a directory written by `supernet search` or `supernet train`)",
            ));
        }
        let path = absolute(path)?;
        let config = path.join(CONFIG_FILE);
        if !config.is_file() {
            return Err(Error::bad_file(
                config,
                "no such file: not a run directory (one written by `supernet search` or `supernet train`)",
            ));
        }
        let lock = take(&path, mode)?;
        fs::remove_stale_temps(&path);
        Ok(RunDir {
            path,
            lock: Some(lock),
            mode,
            start: None,
        })
    }

    /// The run in `path` as a data-parallel rank other than 0 sees it: it reads the
    /// config and checkpoint (when resuming) but takes no lock and writes nothing; every
    /// write is left to rank 0, which holds the directory.
    pub fn follower(path: &Path) -> Result<Self> {
        Ok(RunDir {
            path: absolute(path)?,
            lock: None,
            mode: LockMode::Exclusive,
            start: None,
        })
    }

    /// Whether this process writes the run's files (false for a follower).
    pub fn is_writer(&self) -> bool {
        self.lock.is_some()
    }

    /// The new run has its first checkpoint: from now on it is a run to resume, and a
    /// failure no longer removes anything.
    pub fn started(&mut self) {
        self.start = None;
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    pub fn run_file(&self) -> PathBuf {
        self.file(RUN_FILE)
    }

    pub fn config_file(&self) -> PathBuf {
        self.file(CONFIG_FILE)
    }

    pub fn checkpoint_file(&self) -> PathBuf {
        self.file(CHECKPOINT_FILE)
    }

    /// A note for the console when the lock file names holders that no longer run (a
    /// crashed or killed run).
    pub fn stale_note(&self) -> Option<String> {
        let stale = &self.lock.as_ref()?.stale;
        (!stale.is_empty()).then(|| {
            format!(
                "note: {} was last taken by {}, which no longer runs (it crashed or was killed); the run continues from its last checkpoint",
                self.file(LOCK_FILE).display(),
                stale.join("; ")
            )
        })
    }

    /// The config the run was started with.
    pub fn read_config<T: ConfigFile>(&self) -> Result<T> {
        read_config(&self.path)
    }

    /// Write `bytes` into the file `name` of the run, atomically.
    pub fn write(&self, name: &str, bytes: &[u8]) -> Result<PathBuf> {
        let path = self.file(name);
        if !self.is_writer() {
            return Ok(path);
        }
        fs::write_atomic(&path, bytes)?;
        Ok(path)
    }

    /// Write `genotype` as `<stem>.txt` (its text form) and `<stem>.json`; their paths.
    pub fn write_genotype(&self, stem: &str, genotype: &Genotype) -> Result<(PathBuf, PathBuf)> {
        let txt = self.write(
            &format!("{stem}.txt"),
            format!("{}\n", genotype.to_text()).as_bytes(),
        )?;
        let json = self.write(
            &format!("{stem}.json"),
            format!("{}\n", genotype.to_json()).as_bytes(),
        )?;
        Ok((txt, json))
    }

    /// A chain architecture as `<stem>.txt` (its text form) and `<stem>.json` (the choice
    /// names), as a chain search writes `genotype.txt` and `genotype.json`.
    pub fn write_chain_arch(&self, stem: &str, arch: &ChainArch) -> Result<(PathBuf, PathBuf)> {
        let json = self.write(&format!("{stem}.json"), arch.to_json().as_bytes())?;
        let txt = self.write(
            &format!("{stem}.txt"),
            format!("{}\n", arch.to_text()).as_bytes(),
        )?;
        Ok((txt, json))
    }

    /// Replace the run file with `log` (the run's owner writes it from memory).
    pub fn write_run(&self, log: &RunLog) -> Result<()> {
        debug_assert!(self.mode == LockMode::Exclusive);
        if !self.is_writer() {
            return Ok(());
        }
        write_run(log, &self.run_file())
    }

    /// Change the run file by read-modify-write, one writer at a time (for the processes
    /// that attached to the run; the run's owner is not running meanwhile).
    pub fn update_run(&self, change: impl FnOnce(&mut RunLog)) -> Result<()> {
        if !self.is_writer() {
            return Ok(());
        }
        let _tables = FileLock::wait_exclusive(&self.file(TABLES_LOCK_FILE))?;
        let path = self.run_file();
        let mut log = read_run(&path)?;
        change(&mut log);
        write_run(&log, &path)
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if let Some(start) = self.start.take() {
            start.undo();
        }
    }
}

impl Start {
    /// Remove what a failed start wrote (with the lock still held).
    fn undo(&self) {
        for f in &self.new_files {
            let _ = std::fs::remove_file(f);
        }
        if let Some(dir) = self.new_files.first().and_then(|f| f.parent()) {
            fs::remove_stale_temps(dir);
            if self.created_dir {
                let _ = std::fs::remove_dir(dir);
            }
        }
    }
}

fn take(dir: &Path, mode: LockMode) -> Result<FileLock> {
    let path = dir.join(LOCK_FILE);
    FileLock::try_take(&path, mode).map_err(|e| match e {
        LockError::Io(e) => e,
        LockError::Held(holders) => {
            let who = if holders.is_empty() {
                "another supernet process".to_string()
            } else {
                holders.join("; ")
            };
            let what = match mode {
                LockMode::Exclusive => "wait for it to finish (or stop it) and try again",
                LockMode::Shared => {
                    "results can be added to a run only while its search or training is not running; wait for it to finish"
                }
            };
            Error::Busy(format!(
                "run directory {} is in use by {who}; {what}",
                dir.display()
            ))
        }
    })
}

/// `path` made absolute (against the working directory), without resolving links.
fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).map_err(|e| Error::io(path, e))
}

/// The config a run in `dir` was started with (no lock needed: it never changes).
pub fn read_config<T: ConfigFile>(dir: &Path) -> Result<T> {
    T::from_file(&dir.join(CONFIG_FILE))
}
