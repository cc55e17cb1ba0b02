//! The library's error type: every variant names what was wrong and where.
use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file that was read but whose content is wrong (space file, genotype, run file...).
    #[error("{path}: {message}")]
    BadFile { path: PathBuf, message: String },
    /// A value that does not fit: names the field, the value and what is allowed.
    #[error("invalid {field} = {value}: {expected}")]
    Invalid {
        field: String,
        value: String,
        expected: String,
    },
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    #[error("HDF5: {0}")]
    Hdf5(#[from] hdf5::Error),
    /// The search stopped because a loss or gradient was not finite.
    #[error("non-finite {what} at epoch {epoch}, step {step}; the last checkpoint and the run file are intact")]
    NonFinite {
        what: String,
        epoch: usize,
        step: usize,
    },
    #[error("{0}")]
    Other(String),
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
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
