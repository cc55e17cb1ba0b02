//! Hardware cost models of chain spaces: latency lookup tables measured with libtorch on a
//! target device (`supernet profile`), read back and checked against the run that uses
//! them, and per-choice cost matrices (latency, or the exact multiply-adds and parameters
//! of the cost model) that the search penalty and the sampling limits evaluate.
mod matrix;
mod measure;
mod table;

pub use matrix::CostMatrix;
pub use measure::{
    check_table, profile, time_archs, time_ms, ArchTiming, CheckReport, ProfileOptions,
};
pub use table::{LatencyTable, LayerLatency, TABLE_FORMAT};
