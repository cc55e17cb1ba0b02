//! The peak memory of a search step, predicted before the search starts.
//!
//! A step's peak is a fixed part (libtorch, the weights, the optimizer state) plus the
//! autograd graph, which grows linearly with the batch. Both are measured, not modelled:
//! the real step runs at two small batches in child processes (`supernet memory-probe`),
//! each reporting its peak resident memory, and the line through the two points is
//! extrapolated to the chosen batch. That covers what a model of saved tensors would miss
//! (backward temporaries, oneDNN scratch space, allocator slack) for every space and
//! option (recomputation, partial channels, second order) alike.
use crate::search::{Batch, SearchConfig, SearchState};
use crate::space::SearchSpace;
use crate::supernet::InputShape;
use crate::{Error, Result};
use std::path::Path;
use std::process::Command;
use tch::{Device, Kind, Tensor};

/// The batches the probes run at. Below 8 the allocator's own behaviour dominates: probes at
/// 4 and 8 put NAS-Bench-201 17% under its measured peak at batch 64, probes at 8 and 16
/// within 10% for the DARTS, NAS-Bench-201 and Fashion-MNIST spaces (results/BENCHMARKS.md).
pub const PROBE_BATCHES: [usize; 2] = [8, 16];

/// Steps each probe runs.
pub const PROBE_STEPS: usize = 3;

/// A predicted peak and what it is made of.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    pub batch: usize,
    /// Peak resident bytes of a step at `batch`.
    pub peak: u64,
    /// The batch-independent part, and the bytes each image adds.
    pub fixed: u64,
    pub per_image: u64,
}

impl Prediction {
    /// From the peaks measured at two batches.
    pub fn from_probes(probes: [(usize, u64); 2], batch: usize) -> Self {
        let [(b1, p1), (b2, p2)] = probes;
        let per_image = p2.saturating_sub(p1) / (b2 - b1) as u64;
        let fixed = p2.saturating_sub(per_image * b2 as u64);
        Prediction {
            batch,
            peak: fixed + per_image * batch as u64,
            fixed,
            per_image,
        }
    }

    /// The largest batch whose predicted peak stays within `bytes`.
    pub fn largest_batch_within(&self, bytes: u64) -> usize {
        match bytes.checked_sub(self.fixed) {
            Some(room) if self.per_image > 0 => (room / self.per_image) as usize,
            Some(_) => usize::MAX,
            None => 0,
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "predicted peak {} at batch {} ({} fixed + {} per image)",
            gib(self.peak),
            self.batch,
            gib(self.fixed),
            mib(self.per_image)
        )
    }
}

/// Run one search step of `cfg` on the CPU at `batch` (random data of shape `input`) and
/// return the process's peak resident bytes: what `supernet memory-probe` prints.
pub fn probe(cfg: &SearchConfig, input: InputShape, batch: usize) -> Result<u64> {
    let space = SearchSpace::from_file(&cfg.space)?.with_overrides(cfg.network)?;
    let mut st = SearchState::new(&space, input, cfg, Device::Cpu)?;
    let random_batch = || Batch {
        images: Tensor::randn(
            [batch as i64, input.channels, input.height, input.width],
            (Kind::Float, Device::Cpu),
        ),
        labels: Tensor::randint(input.classes, [batch as i64], (Kind::Int64, Device::Cpu)),
    };
    let mut strategy = crate::search::strategy(cfg.strategy);
    // The allocator's heap keeps growing for a step or two (fragmentation) before it
    // settles; the peak of a long search is that of a settled one.
    for _ in 0..PROBE_STEPS {
        // A non-finite loss (e.g. a huge learning rate) does not change the memory a step
        // takes; the search itself reports it with its epoch and step.
        match strategy.step(&mut st, &random_batch(), &random_batch()) {
            Ok(_) | Err(Error::NonFinite { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(peak_rss())
}

/// Predict the peak of a step of `cfg` at `batch` with two probes run by `exe` (the
/// `supernet` binary), each in its own process so that each peak is its own.
pub fn predict(
    exe: &Path,
    cfg: &SearchConfig,
    input: InputShape,
    batch: usize,
) -> Result<Prediction> {
    let dir = std::env::temp_dir().join(format!("supernet-probe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let config = dir.join("config.toml");
    crate::fsutil::write_atomic(&config, cfg.to_toml().as_bytes())?;
    let mut probes = [(0, 0); 2];
    for (slot, &b) in probes.iter_mut().zip(&PROBE_BATCHES) {
        let out = Command::new(exe)
            .args(["memory-probe", "--config"])
            .arg(&config)
            .args([
                "--input",
                &format!("{}x{}x{}", input.channels, input.height, input.width),
                "--classes",
                &input.classes.to_string(),
                "--batch",
                &b.to_string(),
            ])
            .output()
            .map_err(|e| Error::io(exe, e))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let peak = text
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|_| out.status.success());
        *slot = (
            b,
            peak.ok_or_else(|| {
                Error::Other(format!(
                    "memory probe at batch {b} failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            })?,
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Prediction::from_probes(probes, batch))
}

/// Peak resident memory of this process so far (`VmHWM`).
pub fn peak_rss() -> u64 {
    proc_status_kib("/proc/self/status", "VmHWM:") * 1024
}

/// Resident memory of this process now (`VmRSS`).
pub fn current_rss() -> u64 {
    proc_status_kib("/proc/self/status", "VmRSS:") * 1024
}

/// Memory the system can give to new allocations without swapping (`MemAvailable`).
pub fn available() -> u64 {
    proc_status_kib("/proc/meminfo", "MemAvailable:") * 1024
}

fn proc_status_kib(path: &str, key: &str) -> u64 {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .unwrap_or(0)
}

pub fn gib(bytes: u64) -> String {
    format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}
