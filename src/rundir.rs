//! What searches and training runs share about their directory: a fresh one to start in,
//! and the resolved `config.toml` a resume reads back.
use crate::search::{checkpoint, CONFIG_FILE, RUN_FILE};
use crate::{Error, Result};
use serde::de::DeserializeOwned;
use std::path::Path;

/// Create `dir` for a new run; refuse one that already holds a run.
pub fn create_new(dir: &Path) -> Result<()> {
    if dir.join(RUN_FILE).exists() || dir.join(checkpoint::FILE).exists() {
        return Err(Error::invalid(
            "--out",
            dir.display(),
            "a directory without a run in it (continue that run with --resume, or choose another --out)",
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))
}

/// The config a run in `dir` was started with.
pub fn read_config<T: DeserializeOwned>(dir: &Path) -> Result<T> {
    let path = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    toml::from_str(&text).map_err(|e| Error::bad_file(&path, e.to_string()))
}

/// Whether the loop checkpoints after a step: when interrupted or every `every` steps
/// (0: never), but not after an epoch's last step, whose checkpoint follows the epoch's
/// evaluation.
pub fn checkpoint_after_step(
    interrupted: bool,
    every: usize,
    global_step: u64,
    mid_epoch: bool,
) -> bool {
    let due = every > 0 && global_step % every as u64 == 0;
    (interrupted || due) && mid_epoch
}

/// Field checks shared by the configs: each error names the field and the value.
pub mod check {
    use crate::{Error, Result};

    pub fn positive(field: &str, v: f64) -> Result<()> {
        if v > 0.0 && v.is_finite() {
            Ok(())
        } else {
            Err(Error::invalid(field, v, "a positive number"))
        }
    }

    pub fn non_negative(field: &str, v: f64) -> Result<()> {
        if v >= 0.0 && v.is_finite() {
            Ok(())
        } else {
            Err(Error::invalid(field, v, "a non-negative number"))
        }
    }

    pub fn fraction(field: &str, v: f64) -> Result<()> {
        if (0.0..1.0).contains(&v) {
            Ok(())
        } else {
            Err(Error::invalid(field, v, "a number in [0, 1)"))
        }
    }

    pub fn at_least_one(field: &str, v: usize) -> Result<()> {
        if v >= 1 {
            Ok(())
        } else {
            Err(Error::invalid(field, v, "at least 1"))
        }
    }
}
