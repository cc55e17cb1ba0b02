//! Loader throughput, for benches and for scripts that report images/s.
use std::time::Instant;

use super::loader::Loader;

#[derive(Clone, Copy, Debug)]
pub struct Throughput {
    pub images: usize,
    pub batches: usize,
    pub seconds: f64,
    pub images_per_s: f64,
}

/// Times `batches` batches of the loader's endless stream (prefetching as configured),
/// consumed as fast as they come.
pub fn measure_throughput(loader: &Loader, batches: usize) -> Throughput {
    let t0 = Instant::now();
    let images: usize = loader.stream(0).take(batches).map(|b| b.len()).sum();
    let seconds = t0.elapsed().as_secs_f64();
    Throughput {
        images,
        batches,
        seconds,
        images_per_s: images as f64 / seconds.max(1e-12),
    }
}
