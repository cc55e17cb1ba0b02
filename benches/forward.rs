//! Forward time of the supernet: full mixture vs a one-hot sub-network. (Filled in below.)
fn main() {}
