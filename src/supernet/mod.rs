//! The weight-sharing supernet and the mixing weights it is driven by.
mod auxiliary;
mod cell;
mod chain;
mod mixed;
mod network;
mod partial;
mod weights;

pub use chain::{image_shape, ChainNet};
pub use network::{InputShape, Logits, OpStyle, Pass, Supernet};
pub use partial::{channel_shuffle, normalise_edges, PartialChannels};
pub use weights::{edge_choice, ArchWeights, MixWeights};
