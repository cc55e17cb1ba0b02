//! The peak memory of a search step, predicted before the search starts.
//!
//! A step's peak is a fixed part (libtorch, the weights, the optimizer state) plus the
//! autograd graph, which grows linearly with the batch. Both are measured, not modelled:
//! the real step runs at two small batches in child processes (`supernet memory-probe`),
//! each reporting its peak resident memory, and the line through the two points is
//! extrapolated to the chosen batch. That covers what a model of saved tensors would miss
//! (backward temporaries, oneDNN scratch space, allocator slack) for every space and
//! option (recomputation, partial channels, second order) alike. On CUDA the probes run on
//! the device and report the caching allocator's peak, and the prediction is compared with
//! the device's free memory.
pub use crate::info::{available_memory as available, current_rss, gib, mib, peak_rss};
use crate::search::{Batch, SearchConfig, SearchState};
use crate::space::SearchSpace;
use crate::supernet::InputShape;
use crate::{Error, Result};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
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

/// Run one search step of `cfg` on `device` at `batch` (random data of shape `input`) and
/// return its peak ([`peak_of`]): what `supernet memory-probe` prints.
pub fn probe(cfg: &SearchConfig, input: InputShape, batch: usize, device: Device) -> Result<u64> {
    let space = SearchSpace::load(&cfg.space)?.with_overrides(cfg.network)?;
    let mut st = SearchState::new(&space, input, cfg, device)?;
    let random_batch = || Batch {
        images: Tensor::randn(
            [batch as i64, input.channels, input.height, input.width],
            (Kind::Float, device),
        ),
        labels: Tensor::randint(input.classes, [batch as i64], (Kind::Int64, device)),
    };
    let mut strategy = crate::search::strategy(cfg.strategy, &mut st)?;
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
    peak_of(device)
}

/// This process's peak memory on `device` so far: resident bytes on the CPU; on CUDA the
/// caching allocator's peak reserved bytes (what the device gave up to this process's
/// tensors, cached blocks included; the CUDA context itself, about half a GiB, is not in it).
pub fn peak_of(device: Device) -> Result<u64> {
    if device.is_cuda() {
        Ok(crate::backend::allocator_stats(device)?.peak_reserved)
    } else {
        Ok(peak_rss())
    }
}

/// The memory a step on `device` may use: on the CPU what the system has available; on
/// CUDA the device's free memory (`cudaMemGetInfo`, after this process's own context).
pub fn available_on(device: Device) -> Result<u64> {
    if device.is_cuda() {
        Ok(crate::backend::device_memory(device)?.0)
    } else {
        Ok(available())
    }
}

/// What the probes found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Probed {
    Predicted(Prediction),
    /// The probe at `batch` went past the memory limit (its resident memory reached `rss`)
    /// and was stopped there.
    OverLimit {
        batch: usize,
        rss: u64,
    },
}

/// Predict the peak of a step of `cfg` at `batch` on `device` with two probes run by `exe`
/// (the `supernet` binary), each in its own process so that each peak is its own. With
/// `limit` (CPU), a probe whose resident memory goes past it is stopped (it is watched
/// every few milliseconds), so the check never takes much more than the memory it allows.
pub fn predict(
    exe: &Path,
    cfg: &SearchConfig,
    input: InputShape,
    batch: usize,
    device: Device,
    limit: Option<u64>,
) -> Result<Probed> {
    let dir = std::env::temp_dir().join(format!("supernet-probe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let config = dir.join("config.toml");
    let probed = crate::fs::write_atomic(&config, cfg.to_toml().as_bytes()).and_then(|()| {
        let mut probes = [(0, 0); 2];
        for (slot, &b) in probes.iter_mut().zip(&PROBE_BATCHES) {
            let mut command = Command::new(exe);
            command
                .args(["memory-probe", "--config"])
                .arg(&config)
                .args([
                    "--input",
                    &format!("{}x{}x{}", input.channels, input.height, input.width),
                    "--classes",
                    &input.classes.to_string(),
                    "--batch",
                    &b.to_string(),
                    "--device",
                    &crate::run::device_name(device),
                ]);
            match run_probe(command, exe, b, limit)? {
                Ok(peak) => *slot = (b, peak),
                Err(rss) => return Ok(Probed::OverLimit { batch: b, rss }),
            }
        }
        Ok(Probed::Predicted(Prediction::from_probes(probes, batch)))
    });
    let _ = std::fs::remove_dir_all(&dir);
    probed
}

/// Run one probe; its peak, or (`Err`) the resident memory at which it went past `limit`.
fn run_probe(
    mut command: Command,
    exe: &Path,
    batch: usize,
    limit: Option<u64>,
) -> Result<std::result::Result<u64, u64>> {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io(exe, e))?;
    let status_file = format!("/proc/{}/status", child.id());
    if let Some(limit) = limit {
        while child.try_wait().map_err(|e| Error::io(exe, e))?.is_none() {
            let rss = crate::info::rss_of(&status_file);
            if rss > limit {
                let _ = child.kill();
                let _ = child.wait();
                return Ok(Err(rss));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let out = child.wait_with_output().map_err(|e| Error::io(exe, e))?;
    let text = String::from_utf8_lossy(&out.stdout);
    match text.trim().parse::<u64>() {
        Ok(peak) if out.status.success() => Ok(Ok(peak)),
        _ => Err(Error::Other(format!(
            "memory probe at batch {batch} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))),
    }
}

/// Predict the peak memory of a step of `cfg` (whose resolved space is `space`) on `device`
/// and refuse to start a search that would not fit in `limit` bytes (default: the memory
/// available there: the system's for the CPU, the device's free memory for CUDA),
/// suggesting what would: the check `supernet search` runs before its first step. Returns
/// the line it prints.
pub fn check(
    exe: &Path,
    cfg: &SearchConfig,
    space: &SearchSpace,
    input: InputShape,
    device: Device,
    limit: Option<u64>,
) -> Result<String> {
    let available = match limit {
        Some(l) => l,
        None => available_on(device)?,
    };
    let on = if device.is_cuda() {
        format!(" on {}", crate::run::device_name(device))
    } else {
        String::new()
    };
    // A space whose lower bound alone does not fit is refused without probing.
    let bound = space.size_bound(input.height as usize, input.width as usize);
    let at_probe = *PROBE_BATCHES.iter().max().expect("two probe batches");
    crate::run::check::fits_in_memory(
        bound,
        &format!("the supernet of '{}' on {input}{on}", space.name),
        at_probe,
        Some(available),
    )?;
    // The probes' resident memory is watched on the CPU only; a CUDA probe that does not
    // fit fails with libtorch's out-of-memory error, which is reported.
    let probe_limit = (!device.is_cuda()).then_some(available);
    let p = match predict(exe, cfg, input, cfg.batch_size, device, probe_limit)? {
        Probed::Predicted(p) => p,
        Probed::OverLimit { batch, rss } => {
            return Err(Error::invalid(
                "batch size",
                cfg.batch_size,
                format!(
                    "a step that fits in {}: the probe step at batch {batch} alone went past it \
                     (stopped at {} resident), so no peak could be predicted. Try a smaller \
                     --batch-size{}{}, or --no-memory-check to start anyway",
                    gib(available),
                    gib(rss),
                    recompute_hint(cfg),
                    ", --partial-channels 4 (PC-DARTS)",
                ),
            ));
        }
    };
    let what = if device.is_cuda() {
        "free on the device"
    } else {
        "available"
    };
    if p.peak > available {
        let fits = p.largest_batch_within(available);
        return Err(Error::invalid(
            "batch size",
            cfg.batch_size,
            format!(
                "a step that fits in memory{on}: {}, but {} is {what}. Try --batch-size {} \
                 (the largest predicted to fit){}{}{}, or --no-memory-check to start anyway",
                p.describe(),
                gib(available),
                fits.max(1),
                recompute_hint(cfg),
                ", --partial-channels 4 (PC-DARTS)",
                if device.is_cuda() && cfg.precision == crate::backend::Precision::Fp32 {
                    ", --precision bf16"
                } else {
                    ""
                },
            ),
        ));
    }
    Ok(format!(
        "memory: {}{on}, {} {what}",
        p.describe(),
        gib(available)
    ))
}

fn recompute_hint(cfg: &SearchConfig) -> &'static str {
    if cfg.recompute {
        ""
    } else {
        ", --recompute (one cell's activations at a time)"
    }
}
