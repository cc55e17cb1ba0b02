//! supernet: weight-sharing one-shot neural architecture search on libtorch.
pub mod cli;
pub mod data;
pub mod derive;
pub mod error;
pub mod info;
pub mod inspect;
pub mod ops;
pub mod space;
pub mod supernet;

pub use error::{Error, Result};
