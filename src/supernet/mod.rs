//! The weight-sharing supernet and the mixing weights it is driven by.
mod auxiliary;
mod cell;
mod mixed;
mod network;
mod partial;
mod weights;

pub use network::{InputShape, Logits, OpStyle, Pass, Supernet};
pub use partial::{channel_shuffle, normalise_edges, PartialChannels};
pub use weights::{edge_choice, ArchWeights, MixWeights};
