//! One integration test binary (every test binary links libtorch).
mod data;
mod distrib;
mod enas;
mod layers;
mod pcdarts;
mod plot;
mod preset;
mod reference;
mod runs;
mod sample;
mod search;
mod space;
mod supernet;
mod sweep;
mod train;
mod upstream;
