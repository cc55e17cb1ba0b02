//! One integration test binary (every test binary links libtorch).
mod data;
mod reference;
mod search;
mod space;
mod supernet;
