//! Everything that can be wrong with input data; each variant names the file or value.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file or directory that is not there, with how to obtain it.
    #[error("{path}: not found; {hint}", path = path.display())]
    NotFound { path: PathBuf, hint: String },
    #[error("{path}: {cause}", path = path.display())]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path}: bad magic number 0x{found:08x}, expected {expected}", path = path.display())]
    BadMagic {
        path: PathBuf,
        found: u32,
        expected: String,
    },
    #[error("{path}: truncated: {what}: {expected} bytes expected, the file has {actual}", path = path.display())]
    Truncated {
        path: PathBuf,
        what: String,
        expected: u64,
        actual: u64,
    },
    /// Content that does not fit the format (sizes, types, shapes).
    #[error("{path}: {message}", path = path.display())]
    Format { path: PathBuf, message: String },
    /// `origin` is the file (or data set name) the label came from.
    #[error("{origin}: label {label} of sample {index} is out of range 0..{num_classes}")]
    LabelOutOfRange {
        origin: String,
        index: usize,
        label: i64,
        num_classes: usize,
    },
    #[error("{images} holds {n_images} images but {labels} holds {n_labels} labels")]
    CountMismatch {
        images: String,
        n_images: usize,
        labels: String,
        n_labels: usize,
    },
    #[error("{path}: no dataset '{name}' (the file has: {available})", path = path.display())]
    MissingDataset {
        path: PathBuf,
        name: String,
        available: String,
    },
    #[error("{path}: HDF5: {message}", path = path.display())]
    Hdf5 { path: PathBuf, message: String },
    #[error("a subset of {requested} samples was requested, but {what} holds only {available}")]
    SubsetTooLarge {
        requested: usize,
        available: usize,
        what: String,
    },
    #[error("invalid {field} = {value}: {expected}")]
    Invalid {
        field: String,
        value: String,
        expected: String,
    },
    #[error("{path}: cannot tell the data format: {message}", path = path.display())]
    UnknownFormat { path: PathBuf, message: String },
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        if source.kind() == std::io::ErrorKind::NotFound {
            return DataError::NotFound {
                path,
                hint: "check the path".into(),
            };
        }
        DataError::Io {
            path,
            cause: source,
        }
    }

    pub(crate) fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        DataError::Format {
            path: path.into(),
            message: message.into(),
        }
    }

    pub(crate) fn invalid(
        field: impl Into<String>,
        value: impl std::fmt::Display,
        expected: impl Into<String>,
    ) -> Self {
        DataError::Invalid {
            field: field.into(),
            value: value.to_string(),
            expected: expected.into(),
        }
    }
}
