//! One integration test binary (every test binary links libtorch).
mod data;
mod device;
mod layers;
mod pcdarts;
mod plot;
mod precision;
mod preset;
mod reference;
mod runs;
mod sample;
mod search;
mod space;
mod supernet;
mod train;
mod upstream;
