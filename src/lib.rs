//! supernet: weight-sharing one-shot neural architecture search on libtorch.
//!
//! Modules form layers, and a module imports only from lower layers (README, "Layers";
//! `tests/integration/layers.rs` checks it). From the top:
//! cli; sweep; report; plot, inspect, devcheck; sample, memory, tabulate; search, train; model, profile; run;
//! arch, optim, evaluate, distrib; supernet; ops, info; data, record, tensorfile; derive; space;
//! numeric, rng, fs, backend; error.
pub mod arch;
pub mod backend;
pub mod cli;
pub mod data;
pub mod derive;
pub mod devcheck;
pub mod distrib;
pub mod error;
pub mod evaluate;
pub mod fs;
pub mod info;
pub mod inspect;
pub mod memory;
pub mod model;
pub mod numeric;
pub mod ops;
pub mod optim;
pub mod plot;
pub mod profile;
pub mod record;
pub mod report;
pub mod rng;
pub mod run;
pub mod sample;
pub mod search;
pub mod space;
pub mod supernet;
pub mod sweep;
pub mod tabulate;
pub mod tensorfile;
pub mod train;

pub use error::{Error, Result};
