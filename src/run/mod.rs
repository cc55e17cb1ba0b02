//! One run: its directory (file names, the lock that lets one writer in at a time, a start
//! that completes or leaves nothing), its checkpoint encoding, its device, the stop request
//! of SIGINT/SIGTERM, console progress, and the one training loop ([`drive`]) that the
//! search and the stand-alone training both run as [`Job`]s.
pub mod check;
pub mod checkpoint;
mod device;
mod dir;
mod driver;
pub mod paths;
mod progress;
mod signal;

pub use checkpoint::Position;
pub use device::{device_name, parse_device, DEVICE_FORMS};
pub use dir::{read_config, RunDir, CHECKPOINT_FILE, CONFIG_FILE, LOCK_FILE};
pub use driver::{
    begin, drive, EpochEnd, Job, MetaSource, MetaSpace, Schedule, StepStats, Stopped,
};
pub use progress::Progress;
pub use signal::{exit_code, StopFlag};

pub use crate::record::RUN_FILE;
