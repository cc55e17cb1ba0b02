//! Data-parallel collectives: PyTorch's c10d (TCPStore rendezvous, Gloo process group)
//! through a small C ABI, the launch read from torchrun/mpirun/srun variables, and a
//! checksum to check that every rank holds the same tensors.
mod group;
mod launch;

pub use group::{fingerprint, Group};
pub use launch::{detect, Launch, DEFAULT_TIMEOUT_S, TIMEOUT_VAR};

/// The launch of this process from its environment (see [`detect`]).
pub fn from_env() -> crate::Result<Option<Launch>> {
    detect(|name| std::env::var(name).ok())
}
