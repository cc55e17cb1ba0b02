//! Data sets, splits, augmentation and batching.
//!
//! `DataSource::load` reads IDX (MNIST, Fashion-MNIST; the default is Debian's
//! Fashion-MNIST), CIFAR-10/100 binaries or a generic HDF5 file into a train and a test
//! `Dataset`. `SearchSplit` cuts the training set into the DARTS weight and architecture
//! halves; `Loader` turns a `Subset` into `Batch`es. Every shuffle and augmentation draw is
//! a pure function of (seed, epoch, position), so batches are reproducible and a run can
//! resume mid-epoch bit-identically.
mod augment;
mod cifar;
mod dataset;
mod files;
mod h5file;
mod idx;
mod labels;
mod loader;
mod prefetch;
mod search;
mod source;
mod split;
mod synthetic;
mod tensor;
mod throughput;

pub use crate::error::DataError;
pub use augment::{Augment, AugmentOverrides};
pub use dataset::{Dataset, ImageShape, Normalization, Pixels};
pub use h5file::{Hdf5Options, Layout};
pub use loader::{Batch, EpochIter, Loader, LoaderConfig};
pub use prefetch::Prefetch;
pub use search::{PairIter, SearchLoaders};
pub use source::{DataFormat, DataSets, DataSource, DEFAULT_DATA_DIR};
pub use split::{SearchSplit, Subset};
pub use throughput::{measure_throughput, Throughput};
