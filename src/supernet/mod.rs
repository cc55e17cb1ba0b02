//! The weight-sharing supernet and the mixing weights it is driven by.
mod cell;
mod mixed;
mod network;
mod weights;

pub use network::{InputShape, Supernet};
pub use weights::{edge_choice, ArchWeights, MixWeights};
