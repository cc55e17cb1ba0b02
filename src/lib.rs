//! supernet: weight-sharing one-shot neural architecture search on libtorch.
pub mod arch;
pub mod cli;
pub mod data;
pub mod derive;
pub mod devcheck;
pub mod error;
pub mod evaluate;
pub mod fsutil;
pub mod info;
pub mod inspect;
pub mod memory;
pub mod model;
pub mod ops;
pub mod optim;
pub mod plot;
pub mod record;
pub mod rundir;
pub mod sample;
pub mod search;
pub mod space;
pub mod supernet;
pub mod tensorfile;
pub mod train;

pub use error::{Error, Result};
