//! CIFAR-10 and CIFAR-100 binary versions: fixed-size records of label byte(s) followed by
//! 3072 pixel bytes (1024 red, 1024 green, 1024 blue, rows of 32), i.e. already CHW.
use std::path::{Path, PathBuf};

use super::dataset::{Dataset, ImageShape, Normalization, Pixels};
use super::labels::check_labels;
use crate::error::DataError;

const PIXELS: usize = 3 * 32 * 32;
const CIFAR10_TRAIN: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
const CIFAR10_TEST: &str = "test_batch.bin";
const CIFAR100_TRAIN: &str = "train.bin";
const CIFAR100_TEST: &str = "test.bin";
/// The folders the official archives unpack to; a parent directory is accepted too.
pub(crate) const CIFAR10_SUBDIR: &str = "cifar-10-batches-bin";
pub(crate) const CIFAR100_SUBDIR: &str = "cifar-100-binary";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CifarKind {
    Cifar10,
    Cifar100,
}

impl CifarKind {
    fn label_bytes(self) -> usize {
        match self {
            CifarKind::Cifar10 => 1,
            CifarKind::Cifar100 => 2, // coarse, fine: the fine label is used
        }
    }
    fn classes(self) -> usize {
        match self {
            CifarKind::Cifar10 => 10,
            CifarKind::Cifar100 => 100,
        }
    }
    fn name(self) -> &'static str {
        match self {
            CifarKind::Cifar10 => "cifar10",
            CifarKind::Cifar100 => "cifar100",
        }
    }
    fn hint(self) -> &'static str {
        match self {
            CifarKind::Cifar10 => {
                "download and unpack the CIFAR-10 binary version \
                 (https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz)"
            }
            CifarKind::Cifar100 => {
                "download and unpack the CIFAR-100 binary version \
                 (https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz)"
            }
        }
    }
}

pub(crate) fn looks_like_cifar(dir: &Path) -> Option<CifarKind> {
    if dir.join(CIFAR10_TRAIN[0]).is_file() {
        Some(CifarKind::Cifar10)
    } else if dir.join(CIFAR100_TRAIN).is_file() {
        Some(CifarKind::Cifar100)
    } else {
        None
    }
}

/// Reads whole records from one file: pixels appended to `pixels`, labels to `labels`.
fn read_records(
    path: &Path,
    kind: CifarKind,
    pixels: &mut Vec<u8>,
    labels: &mut Vec<u32>,
) -> Result<(), DataError> {
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => DataError::NotFound {
            path: path.into(),
            hint: kind.hint().into(),
        },
        _ => DataError::io(path, e),
    })?;
    let record = kind.label_bytes() + PIXELS;
    if bytes.is_empty() || bytes.len() % record != 0 {
        return Err(DataError::format(
            path,
            format!(
                "size {} is not a positive multiple of the {record}-byte {} record \
                 (truncated, or not a {} binary file)",
                bytes.len(),
                kind.name(),
                kind.name()
            ),
        ));
    }
    let first = labels.len();
    for rec in bytes.chunks_exact(record) {
        labels.push(rec[kind.label_bytes() - 1] as u32);
        pixels.extend_from_slice(&rec[kind.label_bytes()..]);
    }
    check_labels(
        &path.display().to_string(),
        labels[first..].iter().map(|&l| l as i64),
        kind.classes(),
    )
}

fn load_files(
    dir: &Path,
    files: &[&str],
    kind: CifarKind,
    split: &str,
) -> Result<Dataset, DataError> {
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for f in files {
        let path: PathBuf = dir.join(f);
        read_records(&path, kind, &mut pixels, &mut labels)?;
    }
    let normalization = match kind {
        CifarKind::Cifar10 => Normalization::cifar10(),
        CifarKind::Cifar100 => Normalization::cifar100(),
    };
    Dataset::new(
        format!("{} {split} ({})", kind.name(), dir.display()),
        ImageShape::new(3, 32, 32),
        Pixels::U8(pixels),
        labels,
        kind.classes(),
        normalization,
    )
}

pub(crate) fn load_cifar_dir(dir: &Path, kind: CifarKind) -> Result<(Dataset, Dataset), DataError> {
    let (train, test): (&[&str], &[&str]) = match kind {
        CifarKind::Cifar10 => (&CIFAR10_TRAIN, &[CIFAR10_TEST]),
        CifarKind::Cifar100 => (&[CIFAR100_TRAIN], &[CIFAR100_TEST]),
    };
    Ok((
        load_files(dir, train, kind, "train")?,
        load_files(dir, test, kind, "test")?,
    ))
}
