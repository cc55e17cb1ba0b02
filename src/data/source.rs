//! Where the data comes from (`--data PATH`, format detected or given) and loading it into
//! a train and a test `Dataset`.
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use super::augment::Augment;
use super::cifar::{self, CifarKind, CIFAR100_SUBDIR, CIFAR10_SUBDIR};
use super::dataset::{Dataset, Normalization};
use super::h5file::{self, Hdf5Options};
use super::idx::{self, IdxFlavor};
use crate::error::DataError;

/// Where Debian's `dataset-fashion-mnist` puts the default data set.
pub const DEFAULT_DATA_DIR: &str = "/usr/share/datasets/fashion-mnist";
const FASHION_HINT: &str =
    "install the Debian package dataset-fashion-mnist (scripts/setup does), \
    which puts the files in /usr/share/datasets/fashion-mnist, or download them from \
    https://github.com/zalandoresearch/fashion-mnist";
const IDX_HINT: &str = "expected train-images-idx3-ubyte, train-labels-idx1-ubyte, \
    t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (each optionally .gz), as published for \
    MNIST and Fashion-MNIST (https://github.com/zalandoresearch/fashion-mnist)";
const HDF5_SIGNATURE: [u8; 8] = *b"\x89HDF\r\n\x1a\n";

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum DataFormat {
    /// IDX files with Fashion-MNIST's 10 classes and normalisation.
    #[value(alias = "fashion", alias = "fmnist")]
    FashionMnist,
    /// IDX files with MNIST's 10 classes and normalisation.
    Mnist,
    /// Any other IDX set: classes from the labels, normalisation computed.
    Idx,
    /// CIFAR-10 binary files (data_batch_*.bin, test_batch.bin).
    Cifar10,
    /// CIFAR-100 binary files (train.bin, test.bin; fine labels).
    Cifar100,
    /// An HDF5 file with an image dataset and an integer label dataset.
    #[value(alias = "h5")]
    Hdf5,
}

impl DataFormat {
    pub const ALL: [DataFormat; 6] = [
        DataFormat::FashionMnist,
        DataFormat::Mnist,
        DataFormat::Idx,
        DataFormat::Cifar10,
        DataFormat::Cifar100,
        DataFormat::Hdf5,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DataFormat::FashionMnist => "fashion-mnist",
            DataFormat::Mnist => "mnist",
            DataFormat::Idx => "idx",
            DataFormat::Cifar10 => "cifar10",
            DataFormat::Cifar100 => "cifar100",
            DataFormat::Hdf5 => "hdf5",
        }
    }

    /// DARTS-style training augmentation for this format and image size: random crop with
    /// zero padding (4 for >= 32 pixels, else 2), flip only for natural images (CIFAR).
    pub fn default_augment(self, height: usize, width: usize) -> Augment {
        let side = height.min(width);
        let pad = match side {
            32.. => 4,
            16.. => 2,
            _ => 0,
        };
        Augment {
            crop_padding: pad,
            flip: matches!(self, DataFormat::Cifar10 | DataFormat::Cifar100),
            cutout: 0,
        }
    }
}

impl fmt::Display for DataFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DataFormat {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self, DataError> {
        let key = s.to_ascii_lowercase().replace(['_', '-'], "");
        DataFormat::ALL
            .into_iter()
            .find(|f| f.name().replace('-', "") == key)
            .or(match key.as_str() {
                "fashion" | "fmnist" => Some(DataFormat::FashionMnist),
                "h5" => Some(DataFormat::Hdf5),
                _ => None,
            })
            .ok_or_else(|| {
                DataError::invalid(
                    "data format",
                    s,
                    DataFormat::ALL.map(|f| f.name()).join(", "),
                )
            })
    }
}

/// A path (directory or file) plus an optional explicit format and options.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DataSource {
    pub path: PathBuf,
    /// `None`: detected from the path's contents.
    pub format: Option<DataFormat>,
    #[serde(default)]
    pub hdf5: Hdf5Options,
    /// Replaces the per-format (or computed) normalisation.
    #[serde(default)]
    pub normalization: Option<Normalization>,
}

impl Default for DataSource {
    fn default() -> Self {
        DataSource::fashion_mnist()
    }
}

/// The loaded data: the training set (to be split for the search) and the test set.
#[derive(Clone, Debug)]
pub struct DataSets {
    pub format: DataFormat,
    pub train: Arc<Dataset>,
    pub test: Arc<Dataset>,
}

impl DataSets {
    /// The format's default training augmentation for these images.
    pub fn default_augment(&self) -> Augment {
        self.format
            .default_augment(self.train.height(), self.train.width())
    }
}

impl DataSource {
    /// The default: Fashion-MNIST from Debian's `dataset-fashion-mnist`.
    pub fn fashion_mnist() -> Self {
        DataSource {
            path: DEFAULT_DATA_DIR.into(),
            format: Some(DataFormat::FashionMnist),
            hdf5: Hdf5Options::default(),
            normalization: None,
        }
    }

    /// A path whose format is detected when loading.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        DataSource {
            path: path.into(),
            format: None,
            hdf5: Hdf5Options::default(),
            normalization: None,
        }
    }

    pub fn with_format(mut self, format: DataFormat) -> Self {
        self.format = Some(format);
        self
    }

    fn is_fashion(&self) -> bool {
        self.format == Some(DataFormat::FashionMnist)
    }

    fn missing_hint(&self) -> &'static str {
        if self.is_fashion() {
            FASHION_HINT
        } else {
            "give an existing directory (IDX or CIFAR files) or HDF5 file"
        }
    }

    /// The explicit format, or the one the path's contents show, and the directory or file
    /// to read (a parent of the CIFAR archive folders resolves to that folder).
    pub fn resolve(&self) -> Result<(DataFormat, PathBuf), DataError> {
        let path = &self.path;
        if !path.exists() {
            return Err(DataError::NotFound {
                path: path.clone(),
                hint: self.missing_hint().into(),
            });
        }
        if path.is_file() {
            if let Some(f) = self.format.filter(|&f| f != DataFormat::Hdf5) {
                return Err(DataError::format(
                    path,
                    format!("format {f} needs a directory, this is a file"),
                ));
            }
            if self.format.is_none() && !is_hdf5_file(path)? {
                return Err(DataError::UnknownFormat {
                    path: path.clone(),
                    message: "a file must be HDF5 (.h5/.hdf5); IDX and CIFAR sets are given \
                              as their directory"
                        .into(),
                });
            }
            return Ok((DataFormat::Hdf5, path.clone()));
        }
        let dir = match self.format {
            Some(DataFormat::Cifar10) => descend(path, CIFAR10_SUBDIR),
            Some(DataFormat::Cifar100) => descend(path, CIFAR100_SUBDIR),
            Some(DataFormat::Hdf5) => {
                return Err(DataError::format(
                    path,
                    "format hdf5 needs a file, this is a directory",
                ))
            }
            Some(_) => path.clone(),
            None => {
                let candidates = [
                    path.clone(),
                    path.join(CIFAR10_SUBDIR),
                    path.join(CIFAR100_SUBDIR),
                ];
                candidates
                    .into_iter()
                    .find(|d| cifar::looks_like_cifar(d).is_some() || idx::looks_like_idx_dir(d))
                    .unwrap_or_else(|| path.clone())
            }
        };
        let format = match self.format {
            Some(f) => f,
            None => detect_dir(&dir)?,
        };
        Ok((format, dir))
    }

    /// Loads the train and test sets.
    pub fn load(&self) -> Result<DataSets, DataError> {
        let (format, path) = self.resolve()?;
        let hint = if format == DataFormat::FashionMnist {
            FASHION_HINT
        } else {
            IDX_HINT
        };
        let (train, test) = match format {
            DataFormat::FashionMnist => idx::load_idx_dir(&path, IdxFlavor::FashionMnist, hint)?,
            DataFormat::Mnist => idx::load_idx_dir(&path, IdxFlavor::Mnist, hint)?,
            DataFormat::Idx => idx::load_idx_dir(&path, IdxFlavor::Generic, hint)?,
            DataFormat::Cifar10 => cifar::load_cifar_dir(&path, CifarKind::Cifar10)?,
            DataFormat::Cifar100 => cifar::load_cifar_dir(&path, CifarKind::Cifar100)?,
            DataFormat::Hdf5 => h5file::load_hdf5(&path, &self.hdf5)?,
        };
        let (train, test) = match &self.normalization {
            Some(n) => (
                train.with_normalization(n.clone())?,
                test.with_normalization(n.clone())?,
            ),
            None => (train, test),
        };
        Ok(DataSets {
            format,
            train: Arc::new(train),
            test: Arc::new(test),
        })
    }
}

fn descend(dir: &Path, sub: &str) -> PathBuf {
    let inner = dir.join(sub);
    if inner.is_dir() {
        inner
    } else {
        dir.to_path_buf()
    }
}

fn detect_dir(dir: &Path) -> Result<DataFormat, DataError> {
    if let Some(kind) = cifar::looks_like_cifar(dir) {
        return Ok(match kind {
            CifarKind::Cifar10 => DataFormat::Cifar10,
            CifarKind::Cifar100 => DataFormat::Cifar100,
        });
    }
    if idx::looks_like_idx_dir(dir) {
        // The IDX files do not say which set they are; the directory name usually does.
        let name = dir.to_string_lossy().to_ascii_lowercase();
        return Ok(if name.contains("fashion") {
            DataFormat::FashionMnist
        } else if name.contains("mnist") {
            DataFormat::Mnist
        } else {
            DataFormat::Idx
        });
    }
    Err(DataError::UnknownFormat {
        path: dir.into(),
        message: "found neither IDX files (train-images-idx3-ubyte[.gz], ...) nor CIFAR \
                  binaries (data_batch_1.bin ... or train.bin/test.bin); give the format \
                  explicitly if the names differ"
            .into(),
    })
}

fn is_hdf5_file(path: &Path) -> Result<bool, DataError> {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    if matches!(ext.as_deref(), Some("h5" | "hdf5" | "he5" | "hdf")) {
        return Ok(true);
    }
    use std::io::Read;
    let mut head = [0u8; 8];
    let mut f = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let n = f.read(&mut head).map_err(|e| DataError::io(path, e))?;
    Ok(n == 8 && head == HDF5_SIGNATURE)
}
