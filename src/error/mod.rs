//! The library's error types: every variant names what was wrong and where. Each message
//! is complete on its own (causes are part of the text, not a `source()` chain), so a
//! chain printed with `{:#}` says everything once.
mod data;

pub use data::DataError;

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {cause}", path = path.display())]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    /// A file that was read but whose content is wrong (space file, genotype, run file...).
    #[error("{path}: {message}", path = path.display())]
    BadFile { path: PathBuf, message: String },
    /// A value that does not fit: names the field, the value and what is allowed.
    #[error("invalid {field} = {value}: {expected}")]
    Invalid {
        field: String,
        value: String,
        expected: String,
    },
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("libtorch: {0}")]
    Torch(tch::TchError),
    #[error("HDF5: {0}")]
    Hdf5(hdf5::Error),
    /// The run stopped because a loss or gradient was not finite.
    #[error("non-finite {what} at epoch {epoch}, step {step}; the last checkpoint and the run file are intact")]
    NonFinite {
        what: String,
        epoch: usize,
        step: usize,
    },
    /// Stopped by a signal after checkpointing; `message` says how to continue.
    #[error("{message}")]
    Interrupted { signal: i32, message: String },
    /// Another process holds the run directory (see [`crate::fs::FileLock`]).
    #[error("{0}")]
    Busy(String),
    #[error("{0}")]
    Other(String),
}

impl From<tch::TchError> for Error {
    fn from(e: tch::TchError) -> Self {
        Error::Torch(e)
    }
}

impl From<hdf5::Error> for Error {
    fn from(e: hdf5::Error) -> Self {
        Error::Hdf5(e)
    }
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            cause: source,
        }
    }

    pub fn bad_file(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::BadFile {
            path: path.into(),
            message: message.into(),
        }
    }

    pub fn invalid(
        field: impl Into<String>,
        value: impl std::fmt::Display,
        expected: impl Into<String>,
    ) -> Self {
        Error::Invalid {
            field: field.into(),
            value: value.to_string(),
            expected: expected.into(),
        }
    }
}
