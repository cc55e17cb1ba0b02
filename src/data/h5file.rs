//! A generic HDF5 file: an image dataset (uint8 or any number type, NHWC, NCHW or NHW) and
//! an integer label dataset, with the test set in the same file or in a second one.
use std::path::{Path, PathBuf};

use hdf5::types::{IntSize, TypeDescriptor};
use rayon::prelude::*;

use super::dataset::{Dataset, ImageShape, Normalization, Pixels};
use super::labels::{check_labels, infer_classes};
use crate::error::DataError;

/// Axis order of a rank-4 image dataset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// NCHW if axis 1 has 1, 3 or 4 entries and axis 3 not; NHWC the other way round.
    #[default]
    Auto,
    Nhwc,
    Nchw,
}

/// Where the images and labels are inside the file(s).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Hdf5Options {
    pub images: String,
    pub labels: String,
    pub test_images: String,
    pub test_labels: String,
    /// A separate file with the test set (datasets `test_images`/`test_labels`, or else
    /// `images`/`labels`); without it the test datasets must be in the main file.
    pub test_file: Option<PathBuf>,
    pub layout: Layout,
}

impl Default for Hdf5Options {
    fn default() -> Self {
        Hdf5Options {
            images: "images".into(),
            labels: "labels".into(),
            test_images: "test_images".into(),
            test_labels: "test_labels".into(),
            test_file: None,
            layout: Layout::Auto,
        }
    }
}

/// More classes than this is taken for a broken label dataset.
const MAX_CLASSES: usize = 1 << 16;

fn h5err(path: &Path, what: &str, e: hdf5::Error) -> DataError {
    DataError::Hdf5 {
        path: path.into(),
        message: format!("{what}: {e}"),
    }
}

fn open(path: &Path) -> Result<hdf5::File, DataError> {
    if !path.is_file() {
        return Err(DataError::NotFound {
            path: path.into(),
            hint: "give an existing HDF5 file".into(),
        });
    }
    // Read-only input: no HDF5 file lock. HDF5 opens files without close-on-exec, so a
    // child process started while a writer (another program, or a test) held the file
    // keeps that writer's lock, and a locking open here would fail with errno 11.
    hdf5::File::with_options()
        .with_fapl(|p| p.file_locking(false))
        .open(path)
        .map_err(|e| h5err(path, "cannot open", e))
}

fn dataset(file: &hdf5::File, path: &Path, name: &str) -> Result<hdf5::Dataset, DataError> {
    if !file.link_exists(name) {
        let available = file.member_names().unwrap_or_default().join(", ");
        return Err(DataError::MissingDataset {
            path: path.into(),
            name: name.into(),
            available,
        });
    }
    file.dataset(name)
        .map_err(|e| h5err(path, &format!("dataset '{name}'"), e))
}

/// Images in NCHW order plus their shape.
fn read_images(
    ds: &hdf5::Dataset,
    path: &Path,
    name: &str,
    layout: Layout,
) -> Result<(ImageShape, usize, Pixels), DataError> {
    let dims = ds.shape();
    let bad = |msg: String| DataError::format(path, format!("dataset '{name}': {msg}"));
    let (n, shape, nhwc) = match (dims.len(), layout) {
        (3, _) => (dims[0], ImageShape::new(1, dims[1], dims[2]), false),
        (4, Layout::Nchw) => (dims[0], ImageShape::new(dims[1], dims[2], dims[3]), false),
        (4, Layout::Nhwc) => (dims[0], ImageShape::new(dims[3], dims[1], dims[2]), true),
        (4, Layout::Auto) => {
            let chan = |d: usize| matches!(d, 1 | 3 | 4);
            match (chan(dims[1]), chan(dims[3])) {
                (true, false) => (dims[0], ImageShape::new(dims[1], dims[2], dims[3]), false),
                (false, true) => (dims[0], ImageShape::new(dims[3], dims[1], dims[2]), true),
                _ => {
                    return Err(bad(format!(
                        "cannot tell NCHW from NHWC for shape {dims:?}; set the layout"
                    )))
                }
            }
        }
        _ => {
            return Err(bad(format!(
                "shape {dims:?}: expected [N,H,W], [N,C,H,W] or [N,H,W,C]"
            )))
        }
    };
    if n == 0 || shape.numel() == 0 {
        return Err(bad(format!("empty image array {dims:?}")));
    }
    let desc = ds
        .dtype()
        .and_then(|t| t.to_descriptor())
        .map_err(|e| h5err(path, &format!("type of '{name}'"), e))?;
    let read_err = |e| h5err(path, &format!("reading '{name}'"), e);
    let pixels = match desc {
        TypeDescriptor::Unsigned(IntSize::U1) => {
            let v = ds.read_raw::<u8>().map_err(read_err)?;
            Pixels::U8(if nhwc { to_nchw(&v, shape) } else { v })
        }
        TypeDescriptor::Unsigned(_) | TypeDescriptor::Integer(_) | TypeDescriptor::Float(_) => {
            let v = ds.read_raw::<f32>().map_err(read_err)?;
            Pixels::F32(if nhwc { to_nchw(&v, shape) } else { v })
        }
        other => return Err(bad(format!("type {other} is not a number type"))),
    };
    Ok((shape, n, pixels))
}

/// Transposes each HWC image to CHW.
fn to_nchw<T: Copy + Default + Send + Sync>(src: &[T], shape: ImageShape) -> Vec<T> {
    let (c, plane) = (shape.channels, shape.height * shape.width);
    let mut out = vec![T::default(); src.len()];
    out.par_chunks_mut(shape.numel())
        .zip(src.par_chunks(shape.numel()))
        .for_each(|(dst, img)| {
            for p in 0..plane {
                for ch in 0..c {
                    dst[ch * plane + p] = img[p * c + ch];
                }
            }
        });
    out
}

fn read_labels(ds: &hdf5::Dataset, path: &Path, name: &str) -> Result<Vec<i64>, DataError> {
    let dims = ds.shape();
    let bad = |msg: String| DataError::format(path, format!("dataset '{name}': {msg}"));
    if !(dims.len() == 1 || (dims.len() == 2 && dims[1] == 1)) {
        return Err(bad(format!("shape {dims:?}: expected [N] or [N,1]")));
    }
    let desc = ds
        .dtype()
        .and_then(|t| t.to_descriptor())
        .map_err(|e| h5err(path, &format!("type of '{name}'"), e))?;
    if !matches!(
        desc,
        TypeDescriptor::Unsigned(_) | TypeDescriptor::Integer(_)
    ) {
        return Err(bad(format!("labels must be integers, found {desc}")));
    }
    ds.read_raw::<i64>()
        .map_err(|e| h5err(path, &format!("reading '{name}'"), e))
}

struct Part {
    shape: ImageShape,
    pixels: Pixels,
    labels: Vec<i64>,
    origin: String,
}

fn read_part(
    file: &hdf5::File,
    path: &Path,
    images: &str,
    labels: &str,
    layout: Layout,
) -> Result<Part, DataError> {
    let (shape, n, pixels) = read_images(&dataset(file, path, images)?, path, images, layout)?;
    let labels_v = read_labels(&dataset(file, path, labels)?, path, labels)?;
    if labels_v.len() != n {
        return Err(DataError::CountMismatch {
            images: format!("{}:{images}", path.display()),
            n_images: n,
            labels: format!("{}:{labels}", path.display()),
            n_labels: labels_v.len(),
        });
    }
    Ok(Part {
        shape,
        pixels,
        labels: labels_v,
        origin: format!("{}:{labels}", path.display()),
    })
}

pub(crate) fn load_hdf5(path: &Path, opts: &Hdf5Options) -> Result<(Dataset, Dataset), DataError> {
    let file = open(path)?;
    let train = read_part(&file, path, &opts.images, &opts.labels, opts.layout)?;
    let test = match &opts.test_file {
        Some(test_path) => {
            let tf = open(test_path)?;
            let (ti, tl) = if tf.link_exists(&opts.test_images) {
                (&opts.test_images, &opts.test_labels)
            } else {
                (&opts.images, &opts.labels)
            };
            read_part(&tf, test_path, ti, tl, opts.layout)?
        }
        None => {
            if !file.link_exists(&opts.test_images) {
                return Err(DataError::MissingDataset {
                    path: path.into(),
                    name: opts.test_images.clone(),
                    available: format!(
                        "{}; put the test set there or give a separate test file",
                        file.member_names().unwrap_or_default().join(", ")
                    ),
                });
            }
            read_part(
                &file,
                path,
                &opts.test_images,
                &opts.test_labels,
                opts.layout,
            )?
        }
    };
    if test.shape != train.shape {
        return Err(DataError::format(
            path,
            format!(
                "test images are {} but training images are {}",
                test.shape, train.shape
            ),
        ));
    }
    // Negative (or absurd) labels are caught here; the class count is the largest training
    // label + 1.
    check_labels(&train.origin, train.labels.iter().copied(), MAX_CLASSES)?;
    let num_classes = infer_classes(&train.origin, &train.labels)?;
    check_labels(&test.origin, test.labels.iter().copied(), num_classes)?;
    let normalization = Normalization::compute(&train.pixels, train.shape);
    let stem = path.display();
    let make = |part: Part, split: &str| {
        Dataset::new(
            format!("hdf5 {split} ({stem})"),
            part.shape,
            part.pixels,
            part.labels.into_iter().map(|l| l as u32).collect(),
            num_classes,
            normalization.clone(),
        )
    };
    Ok((make(train, "train")?, make(test, "test")?))
}
