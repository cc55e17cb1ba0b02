//! SIGINT and SIGTERM during a run: the first one asks the loop to stop after the current
//! step (it checkpoints, and the command exits with 128 + the signal number, 130 for
//! Ctrl-C); a second one ends the process at once with that code (the last checkpoint
//! stays intact: checkpoints are replaced atomically).
use crate::{Error, Result};
use signal_hook::consts::{SIGINT, SIGTERM};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// The stop request of this process (one for all the runs it drives).
#[derive(Debug, Clone)]
pub struct StopFlag {
    signal: Arc<AtomicUsize>,
}

impl StopFlag {
    /// Install the handlers (once per process) and return the flag they set.
    pub fn install() -> Result<Self> {
        static FLAG: OnceLock<std::result::Result<StopFlag, String>> = OnceLock::new();
        FLAG.get_or_init(|| {
            let signal = Arc::new(AtomicUsize::new(0));
            let requested = Arc::new(AtomicBool::new(false));
            for sig in [SIGINT, SIGTERM] {
                // Registered first, so it sees the flag as the previous signal left it.
                signal_hook::flag::register_conditional_shutdown(
                    sig,
                    exit_code(sig),
                    requested.clone(),
                )
                .and_then(|_| signal_hook::flag::register(sig, requested.clone()))
                .and_then(|_| signal_hook::flag::register_usize(sig, signal.clone(), sig as usize))
                .map_err(|e| format!("cannot install the signal handler: {e}"))?;
            }
            Ok(StopFlag { signal })
        })
        .clone()
        .map_err(Error::Other)
    }

    /// The signal that asked to stop, if one did.
    pub fn signal(&self) -> Option<i32> {
        match self.signal.load(Ordering::Relaxed) {
            0 => None,
            s => Some(s as i32),
        }
    }

    pub fn requested(&self) -> bool {
        self.signal().is_some()
    }
}

/// The exit code of a command stopped by `signal` (the shell's convention).
pub fn exit_code(signal: i32) -> i32 {
    128 + signal
}
