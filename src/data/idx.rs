//! IDX files (MNIST, Fashion-MNIST), gzipped or not.
//! Format: two zero bytes, a type byte (0x08 = unsigned byte), the number of dimensions,
//! then each dimension as a big-endian u32, then the data.
use std::path::{Path, PathBuf};

use super::dataset::{Dataset, ImageShape, Normalization, Pixels};
use super::files::{find_in, read_maybe_gz};
use super::labels::{check_labels, infer_classes};
use crate::error::DataError;

/// Magic for unsigned-byte data; the low byte is the number of dimensions.
const UBYTE_MAGIC: u32 = 0x0800;

/// An IDX array of unsigned bytes.
pub(crate) struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Reads an IDX file and checks its magic (type u8 and `ndims` dimensions).
pub(crate) fn read_idx(path: &Path, ndims: u8) -> Result<IdxArray, DataError> {
    let bytes = read_maybe_gz(path)?;
    let expected_magic = UBYTE_MAGIC | ndims as u32;
    let describe = |m: u32| format!("0x{m:08x} (IDX, unsigned bytes, {ndims} dimension(s))");
    if bytes.len() < 4 {
        return Err(DataError::Truncated {
            path: path.into(),
            what: "IDX magic number".into(),
            expected: 4,
            actual: bytes.len() as u64,
        });
    }
    let magic = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if magic != expected_magic {
        return Err(DataError::BadMagic {
            path: path.into(),
            found: magic,
            expected: describe(expected_magic),
        });
    }
    let header = 4 + 4 * ndims as usize;
    if bytes.len() < header {
        return Err(DataError::Truncated {
            path: path.into(),
            what: "IDX header".into(),
            expected: header as u64,
            actual: bytes.len() as u64,
        });
    }
    let dims: Vec<usize> = bytes[4..header]
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect();
    let body: u64 = dims.iter().map(|&d| d as u64).product();
    let expected = header as u64 + body;
    let actual = bytes.len() as u64;
    if actual < expected {
        return Err(DataError::Truncated {
            path: path.into(),
            what: format!("header + data of dimensions {dims:?}"),
            expected,
            actual,
        });
    }
    if actual > expected {
        return Err(DataError::format(
            path,
            format!(
                "size does not match the header: dimensions {dims:?} need {expected} bytes, \
                 the file has {actual}"
            ),
        ));
    }
    let mut data = bytes;
    data.drain(..header);
    Ok(IdxArray { dims, data })
}

/// Which IDX data set: fixes the class count and the normalisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IdxFlavor {
    FashionMnist,
    Mnist,
    /// Any other IDX set: classes from the labels, normalisation computed.
    Generic,
}

const TRAIN_IMAGES: [&str; 2] = ["train-images-idx3-ubyte", "train-images.idx3-ubyte"];
const TRAIN_LABELS: [&str; 2] = ["train-labels-idx1-ubyte", "train-labels.idx1-ubyte"];
const TEST_IMAGES: [&str; 2] = ["t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"];
const TEST_LABELS: [&str; 2] = ["t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"];

/// True if `dir` holds IDX training images.
pub(crate) fn looks_like_idx_dir(dir: &Path) -> bool {
    find_in(dir, &TRAIN_IMAGES).is_some()
}

fn locate(dir: &Path, names: &[&str], hint: &str) -> Result<PathBuf, DataError> {
    find_in(dir, names).ok_or_else(|| DataError::NotFound {
        path: dir.join(format!("{}[.gz]", names[0])),
        hint: hint.to_string(),
    })
}

/// Loads the train and test sets from `dir`; `hint` says how to obtain missing files.
pub(crate) fn load_idx_dir(
    dir: &Path,
    flavor: IdxFlavor,
    hint: &str,
) -> Result<(Dataset, Dataset), DataError> {
    let paths = [
        locate(dir, &TRAIN_IMAGES, hint)?,
        locate(dir, &TRAIN_LABELS, hint)?,
        locate(dir, &TEST_IMAGES, hint)?,
        locate(dir, &TEST_LABELS, hint)?,
    ];
    let (train_images, train_labels) = read_pair(&paths[0], &paths[1])?;
    let (test_images, test_labels) = read_pair(&paths[2], &paths[3])?;
    let (shape, train_pixels) = train_images;
    let (test_shape, test_pixels) = test_images;
    if test_shape != shape {
        return Err(DataError::format(
            &paths[2],
            format!("test images are {test_shape} but training images are {shape}"),
        ));
    }
    let (name, num_classes, normalization) = match flavor {
        IdxFlavor::FashionMnist => ("fashion-mnist", 10, Normalization::fashion_mnist()),
        IdxFlavor::Mnist => ("mnist", 10, Normalization::mnist()),
        IdxFlavor::Generic => {
            let labels: Vec<i64> = train_labels.iter().map(|&l| i64::from(l)).collect();
            let classes = infer_classes(&paths[1].display().to_string(), &labels)?;
            let stats = Normalization::compute_u8(&train_pixels, shape);
            ("idx", classes, stats)
        }
    };
    check_labels(
        &paths[1].display().to_string(),
        train_labels.iter().map(|&l| l as i64),
        num_classes,
    )?;
    check_labels(
        &paths[3].display().to_string(),
        test_labels.iter().map(|&l| l as i64),
        num_classes,
    )?;
    let to_u32 = |v: Vec<u8>| v.into_iter().map(u32::from).collect::<Vec<_>>();
    let train = Dataset::new(
        format!("{name} train ({})", dir.display()),
        shape,
        Pixels::U8(train_pixels),
        to_u32(train_labels),
        num_classes,
        normalization.clone(),
    )?;
    let test = Dataset::new(
        format!("{name} test ({})", dir.display()),
        shape,
        Pixels::U8(test_pixels),
        to_u32(test_labels),
        num_classes,
        normalization,
    )?;
    Ok((train, test))
}

type Images = (ImageShape, Vec<u8>);

fn read_pair(images: &Path, labels: &Path) -> Result<(Images, Vec<u8>), DataError> {
    let img = read_idx(images, 3)?;
    let lab = read_idx(labels, 1)?;
    let (n, h, w) = (img.dims[0], img.dims[1], img.dims[2]);
    if lab.dims[0] != n {
        return Err(DataError::CountMismatch {
            images: images.display().to_string(),
            n_images: n,
            labels: labels.display().to_string(),
            n_labels: lab.dims[0],
        });
    }
    if n == 0 || h == 0 || w == 0 {
        return Err(DataError::format(
            images,
            format!("empty image array {:?}", img.dims),
        ));
    }
    Ok(((ImageShape::new(1, h, w), img.data), lab.data))
}
