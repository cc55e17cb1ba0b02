//! Measuring a latency table: every part of a chain supernet timed on its own (eval mode,
//! no autograd, random inputs of the layer's shape, warm-up forwards, then the median of
//! the timed ones), and the table's prediction checked against whole sampled networks
//! timed the same way.
use super::table::{LatencyTable, LayerLatency, TABLE_FORMAT};
use crate::ops::channels_last;
use crate::rng::Rng;
use crate::run::device_name;
use crate::space::chain::{uniform_arch, ChainArch, ChainSpace};
use crate::supernet::{image_shape, ChainNet, InputShape, MixWeights};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Instant;
use tch::{nn, Device, Kind, Tensor};

#[derive(Debug, Clone)]
pub struct ProfileOptions {
    pub input: InputShape,
    pub batch: i64,
    pub warmup: usize,
    pub repeats: usize,
    pub device: Device,
}

/// Median wall time in ms of `repeats` calls of `f` after `warmup` untimed ones, without
/// autograd; on CUDA each call is waited for.
pub fn time_ms(device: Device, warmup: usize, repeats: usize, f: impl Fn() -> Tensor) -> f64 {
    let sync = || {
        if let Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
    };
    tch::no_grad(|| {
        for _ in 0..warmup {
            drop(f());
        }
        sync();
        let times: Vec<f64> = (0..repeats.max(1))
            .map(|_| {
                let t = Instant::now();
                let y = f();
                sync();
                let ms = t.elapsed().as_secs_f64() * 1e3;
                drop(y);
                ms
            })
            .collect();
        crate::numeric::median(&times).expect("at least one timed call")
    })
}

fn random(device: Device, shape: &[i64]) -> Tensor {
    channels_last(&Tensor::randn(shape, (Kind::Float, device)))
}

/// Time every part of `space`'s supernet on `opts.device` into a table.
pub fn profile(space: &ChainSpace, opts: &ProfileOptions) -> Result<LatencyTable> {
    if opts.batch < 1 || opts.repeats < 1 {
        return Err(Error::invalid(
            "batch/repeats",
            format!("{}/{}", opts.batch, opts.repeats),
            "at least 1 each",
        ));
    }
    tch::manual_seed(0);
    let vs = nn::VarStore::new(opts.device);
    let net = ChainNet::supernet(&vs.root(), space, opts.input)?;
    let image = image_shape(opts.input);
    let time = |f: &dyn Fn() -> Tensor| time_ms(opts.device, opts.warmup, opts.repeats, f);
    let b = opts.batch;
    let x = Tensor::randn(
        [b, opts.input.channels, opts.input.height, opts.input.width],
        (Kind::Float, opts.device),
    );
    let stem_ms = time(&|| net.stem_t(&x, false));
    let plan = space.plan(image.hw);
    let mut layers = Vec::with_capacity(plan.len());
    for (i, layer) in plan.iter().enumerate() {
        let xs = random(
            opts.device,
            &[b, layer.c_in as i64, layer.hw.0 as i64, layer.hw.1 as i64],
        );
        let mut ms = BTreeMap::new();
        for &c in &layer.choices {
            let v = if c.is_skip() {
                0.0
            } else {
                // A fixed layer's block answers any column.
                let column = space.column_of(c).unwrap_or(0);
                time(&|| {
                    net.layer_t(i, column, &xs, false)
                        .expect("the supernet holds every choice")
                })
            };
            ms.insert(c.name(), v);
        }
        layers.push(LayerLatency {
            row: layer.searchable,
            ms,
        });
    }
    let last = plan.last();
    let (c, hw) = match last {
        Some(l) => (l.c_out, l.out_hw()),
        None => (space.network.stem.channels, (image.hw.0, image.hw.1)),
    };
    let feat = random(opts.device, &[b, c as i64, hw.0 as i64, hw.1 as i64]);
    let head_ms = time(&|| net.head_t(&feat, false));
    Ok(LatencyTable {
        format: TABLE_FORMAT.into(),
        space: space.name.clone(),
        space_hash: format!("{:016x}", space.fingerprint()),
        device: device_name(opts.device),
        threads: tch::get_num_threads().max(0) as usize,
        input: [image.channels, image.hw.0, image.hw.1],
        classes: image.classes,
        batch: b as usize,
        libtorch: crate::info::LIBTORCH_VERSION.into(),
        warmup: opts.warmup,
        repeats: opts.repeats,
        stem_ms,
        head_ms,
        layers,
        check: None,
    })
}

/// The table's prediction against the measured latency of whole networks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckReport {
    /// Architectures drawn uniformly from `(seed, i)`.
    pub seed: u64,
    pub archs: Vec<String>,
    pub predicted_ms: Vec<f64>,
    pub measured_ms: Vec<f64>,
    /// `(predicted - measured) / measured` per architecture; the mean and the maximum of
    /// their absolute values.
    pub rel_errors: Vec<f64>,
    pub mean_abs_rel_error: f64,
    pub max_abs_rel_error: f64,
}

/// One architecture timed as a whole network against the table's prediction.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchTiming {
    pub arch: String,
    pub predicted_ms: f64,
    pub measured_ms: f64,
    /// `(predicted - measured) / measured`.
    pub rel_error: f64,
}

/// Time each of `archs` as a whole network (fresh weights, eval mode, `opts`' batch, warm-up
/// and repeats) against `table`'s prediction.
pub fn time_archs(
    table: &LatencyTable,
    space: &ChainSpace,
    opts: &ProfileOptions,
    archs: &[ChainArch],
) -> Result<Vec<ArchTiming>> {
    let x = Tensor::randn(
        [
            opts.batch,
            opts.input.channels,
            opts.input.height,
            opts.input.width,
        ],
        (Kind::Float, opts.device),
    );
    let columns = space.choices().len();
    archs
        .iter()
        .map(|arch| {
            arch.validate(space)?;
            let vs = nn::VarStore::new(opts.device);
            let net = ChainNet::of_arch(&vs.root(), space, opts.input, arch)?;
            let w = MixWeights::one_hot_rows(&arch.columns(space), columns, opts.device);
            let measured_ms = time_ms(opts.device, opts.warmup, opts.repeats, || {
                net.forward_t(&x, &w, false)
            });
            let predicted_ms = table.predict(space, arch);
            Ok(ArchTiming {
                arch: arch.to_text(),
                predicted_ms,
                measured_ms,
                rel_error: (predicted_ms - measured_ms) / measured_ms,
            })
        })
        .collect()
}

/// Time `n` architectures drawn uniformly (from `(seed, i)`) as whole networks with
/// `table`'s settings, against the table's prediction.
pub fn check_table(
    table: &LatencyTable,
    space: &ChainSpace,
    opts: &ProfileOptions,
    n: usize,
    seed: u64,
) -> Result<CheckReport> {
    let archs: Vec<ChainArch> = (0..n as u64)
        .map(|i| uniform_arch(space, &mut Rng::from_key(&[seed, i])))
        .collect();
    let timings = time_archs(table, space, opts, &archs)?;
    let abs: Vec<f64> = timings.iter().map(|t| t.rel_error.abs()).collect();
    Ok(CheckReport {
        seed,
        archs: timings.iter().map(|t| t.arch.clone()).collect(),
        predicted_ms: timings.iter().map(|t| t.predicted_ms).collect(),
        measured_ms: timings.iter().map(|t| t.measured_ms).collect(),
        rel_errors: timings.iter().map(|t| t.rel_error).collect(),
        mean_abs_rel_error: abs.iter().sum::<f64>() / abs.len().max(1) as f64,
        max_abs_rel_error: abs.iter().copied().fold(0.0, f64::max),
    })
}
