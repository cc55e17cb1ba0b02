//! `supernet bench`: search steps of one configuration timed the way `scripts/reference.py
//! bench` times PyTorch's (random data, the first step a warm-up, median seconds), with the
//! peak memory measured as PyTorch measures it on the device, the peak `supernet search`
//! predicts, and a fingerprint of the final state for repeatability checks. One JSON line.
use crate::memory::{peak_of, predict, Probed};
use crate::search::{Batch, SearchConfig, SearchState};
use crate::space::SearchSpace;
use crate::supernet::InputShape;
use crate::Result;
use serde_json::json;
use std::path::Path;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// What one bench run measures.
pub struct BenchSpec<'a> {
    pub cfg: &'a SearchConfig,
    pub input: InputShape,
    /// `forward` (no gradient) or a strategy's step (`cfg.strategy`).
    pub forward_only: bool,
    pub steps: usize,
    pub device: Device,
    /// The `supernet` binary, to predict the peak with the memory probes (None: skip).
    pub predict_with: Option<&'a Path>,
}

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// FNV-1a over the bits of every weight, BN statistic and alpha: equal for two runs that
/// computed the same thing bit for bit.
fn fingerprint(st: &SearchState) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    let mut named: Vec<(String, Tensor)> = st.vs.variables().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let tensors = named.into_iter().map(|(_, t)| t).chain(st.arch.tensors());
    for t in tensors {
        let v = Vec::<f32>::try_from(
            t.detach()
                .to_device(Device::Cpu)
                .to_kind(Kind::Float)
                .flatten(0, -1),
        )
        .expect("float tensors");
        for x in v {
            for b in x.to_bits().to_le_bytes() {
                h = (h ^ b as u64).wrapping_mul(0x100000001b3);
            }
        }
    }
    format!("{h:016x}")
}

pub fn bench(spec: &BenchSpec) -> Result<String> {
    let cfg = spec.cfg;
    let (input, device, batch) = (spec.input, spec.device, cfg.batch_size as i64);
    let space = SearchSpace::load(&cfg.space)?.with_overrides(cfg.network)?;
    let predicted = match spec.predict_with {
        Some(exe) if !spec.forward_only => {
            match predict(exe, cfg, input, cfg.batch_size, device, None)? {
                Probed::Predicted(p) => Some(p.peak),
                Probed::OverLimit { .. } => None,
            }
        }
        _ => None,
    };
    let mut st = SearchState::new(&space, input, cfg, device)?;
    let random_batch = || Batch {
        images: Tensor::randn(
            [batch, input.channels, input.height, input.width],
            (Kind::Float, device),
        ),
        labels: Tensor::randint(input.classes, [batch], (Kind::Int64, device)),
    };
    let mut strategy = crate::search::strategy(cfg.strategy, &mut st)?;
    let mut times = Vec::new();
    for i in 0..=spec.steps {
        let (train, val) = (random_batch(), random_batch());
        sync(device);
        let t = Instant::now();
        if spec.forward_only {
            let _ = tch::no_grad(|| {
                crate::backend::autocast(device, cfg.precision, || {
                    st.net
                        .forward_t(&train.images, &st.arch.softmax_detached(), false)
                })
            })?;
        } else {
            strategy.step(&mut st, &train, &val)?;
        }
        sync(device);
        if i > 0 {
            times.push(t.elapsed().as_secs_f64()); // step 0 is the warm-up
        }
    }
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0.0);
    let (peak, reserved) = if device.is_cuda() {
        let s = crate::backend::allocator_stats(device)?;
        (s.peak_allocated, s.peak_reserved)
    } else {
        let p = peak_of(device)?;
        (p, p)
    };
    let mode = if spec.forward_only {
        "forward"
    } else {
        cfg.strategy.name()
    };
    Ok(json!({
        "tool": "supernet",
        "space": space.name,
        "mode": mode,
        "device": crate::run::device_name(device),
        "batch": batch,
        "precision": cfg.precision.name(),
        "arch_precision": cfg.arch_precision.name(),
        "channels_last": cfg.channels_last,
        "cudnn_benchmark": cfg.cudnn_benchmark && !cfg.deterministic,
        "deterministic": cfg.deterministic,
        "recompute": cfg.recompute,
        "partial_channels": cfg.partial_channels,
        "threads": tch::get_num_threads(),
        "steps": spec.steps,
        "median_s": median,
        "times_s": times,
        // As PyTorch's bench: max_memory_allocated on CUDA, peak RSS on the CPU.
        "peak_memory_bytes": peak,
        "peak_reserved_bytes": reserved,
        "predicted_peak_bytes": predicted,
        "state_fingerprint": fingerprint(&st),
    })
    .to_string())
}
