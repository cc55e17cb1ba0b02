//! `sample` on a chain run: uniformly drawn architectures under hard limits (latency from a
//! lookup table, exact multiply-adds, parameters), scored with the weights they inherit from
//! the supernet (one-hot mixing weights, so only the path runs) on the architecture half,
//! BN statistics recalibrated per architecture as cell sampling does, and the Pareto front
//! of accuracy against latency (or multiply-adds without a table) marked in the table.
use super::{check_name, store_table, BnMode};
use crate::data::Loader;
use crate::evaluate::evaluate_with;
use crate::profile::{CostMatrix, LatencyTable};
use crate::record::{Column, Table};
use crate::rng::Rng;
use crate::run::RunDir;
use crate::search::TrainedChain;
use crate::space::chain::{uniform_arch, ChainArch};
use crate::supernet::{image_shape, MixWeights};
use crate::{Error, Result};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use tch::{nn, Tensor};

/// Hard limits on a drawn architecture; one over any of them is never scored.
#[derive(Debug, Clone, Default)]
pub struct ChainLimits {
    pub latency_table: Option<PathBuf>,
    pub max_latency_ms: Option<f64>,
    pub max_macs: Option<u64>,
    pub max_params: Option<u64>,
}

/// One scored chain architecture and its costs.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainScore {
    pub arch: ChainArch,
    pub accuracy: f64,
    pub loss: f64,
    pub params: u64,
    pub macs: u64,
    /// Predicted by the lookup table, when one is given.
    pub latency_ms: Option<f64>,
}

#[derive(Debug)]
pub struct ChainSampleReport {
    pub scores: Vec<ChainScore>,
    /// Rows on the Pareto front (accuracy up, latency or MACs down).
    pub pareto: Vec<bool>,
    pub rejected: usize,
    pub group: String,
    pub csv: PathBuf,
}

/// Indices not dominated: no other row at least as accurate and at most as costly, and
/// better in one of the two.
pub fn pareto_front(accuracy: &[f64], cost: &[f64]) -> Vec<bool> {
    (0..accuracy.len())
        .map(|i| {
            !(0..accuracy.len()).any(|j| {
                accuracy[j] >= accuracy[i]
                    && cost[j] <= cost[i]
                    && (accuracy[j] > accuracy[i] || cost[j] < cost[i])
            })
        })
        .collect()
}

/// Draw up to `n` distinct architectures within `limits` (at most `20 n` draws, from
/// `(seed, i)`), score them and store `/samples/<name>` and `DIR/samples-<name>.csv`.
#[allow(clippy::too_many_arguments)]
pub fn sample_chain(
    dir: &RunDir,
    trained: &TrainedChain,
    n: usize,
    seed: u64,
    limits: &ChainLimits,
    bn: BnMode,
    max_batches: Option<usize>,
    name: &str,
) -> Result<ChainSampleReport> {
    check_name(name)?;
    let s = &trained.search;
    let space = &s.space;
    let device = s.vs.device();
    let input = image_shape(s.net.input);
    let latency = match (&limits.latency_table, limits.max_latency_ms) {
        (Some(path), _) => Some(latency_matrix(path, trained)?),
        (None, Some(_)) => {
            return Err(Error::invalid(
                "--max-latency-ms",
                "set",
                "also --latency-table (a `supernet profile` table of the run's space, device and input)",
            ))
        }
        (None, None) => None,
    };
    let macs = CostMatrix::macs(space, input);
    let params = CostMatrix::params(space, input);
    let within = |a: &ChainArch| {
        let lat_ok = match (&latency, limits.max_latency_ms) {
            (Some(m), Some(max)) => m.of_arch(space, a) <= max,
            _ => true,
        };
        lat_ok
            && limits
                .max_macs
                .is_none_or(|m| macs.of_arch(space, a) <= m as f64)
            && limits
                .max_params
                .is_none_or(|m| params.of_arch(space, a) <= m as f64)
    };
    let mut seen = HashSet::new();
    let mut archs = Vec::new();
    let mut rejected = 0;
    for i in 0..20 * n as u64 {
        if archs.len() == n {
            break;
        }
        let a = uniform_arch(space, &mut Rng::from_key(&[seed, i]));
        if !seen.insert(a.clone()) {
            continue;
        }
        if within(&a) {
            archs.push(a);
        } else {
            rejected += 1;
        }
    }
    let buffers = bn_buffers(&s.vs);
    let saved: Vec<Tensor> = buffers.iter().map(|b| b.detach().copy()).collect();
    let columns = space.choices().len();
    let mut scores = Vec::with_capacity(archs.len());
    for arch in archs {
        let w = MixWeights::one_hot_rows(&arch.columns(space), columns, device);
        let forward = |xs: &Tensor, train: bool| s.net.forward_t(xs, &w, train);
        let score = match bn {
            BnMode::Running => {
                evaluate_with(|x| forward(x, false), &trained.val, device, max_batches)
            }
            BnMode::Batch => evaluate_with(|x| forward(x, true), &trained.val, device, max_batches),
            BnMode::Recalibrate(k) => {
                recalibrate(&buffers, &trained.loaders.weights, k, |x| {
                    drop(forward(&x.to_device(device), true))
                })?;
                evaluate_with(|x| forward(x, false), &trained.val, device, max_batches)
            }
        };
        tch::no_grad(|| {
            for (b, v) in buffers.iter().zip(&saved) {
                b.shallow_clone().copy_(v);
            }
        });
        scores.push(ChainScore {
            accuracy: score.accuracy,
            loss: score.loss,
            params: params.of_arch(space, &arch) as u64,
            macs: macs.of_arch(space, &arch) as u64,
            latency_ms: latency.as_ref().map(|m| m.of_arch(space, &arch)),
            arch,
        });
    }
    let acc: Vec<f64> = scores.iter().map(|s| s.accuracy).collect();
    let cost: Vec<f64> = scores
        .iter()
        .map(|s| s.latency_ms.unwrap_or(s.macs as f64))
        .collect();
    let pareto = pareto_front(&acc, &cost);
    let group = format!("samples/{name}");
    let mut cols = vec![
        (
            "arch".to_string(),
            Column::Text(scores.iter().map(|s| s.arch.to_text()).collect()),
        ),
        ("accuracy".into(), Column::F64(acc)),
        (
            "loss".into(),
            Column::F64(scores.iter().map(|s| s.loss).collect()),
        ),
        (
            "params".into(),
            Column::U64(scores.iter().map(|s| s.params).collect()),
        ),
        (
            "macs".into(),
            Column::U64(scores.iter().map(|s| s.macs).collect()),
        ),
    ];
    if latency.is_some() {
        cols.push((
            "latency_ms".into(),
            Column::F64(scores.iter().filter_map(|s| s.latency_ms).collect()),
        ));
    }
    cols.push((
        "pareto".into(),
        Column::U64(pareto.iter().map(|&p| p as u64).collect()),
    ));
    let mut attrs = vec![
        ("bn".to_string(), bn.name()),
        ("seed".into(), seed.to_string()),
        (
            "pareto_cost".into(),
            if latency.is_some() {
                "latency_ms"
            } else {
                "macs"
            }
            .into(),
        ),
    ];
    for (k, v) in [
        (
            "max_latency_ms",
            limits.max_latency_ms.map(|v| v.to_string()),
        ),
        ("max_macs", limits.max_macs.map(|v| v.to_string())),
        ("max_params", limits.max_params.map(|v| v.to_string())),
    ] {
        if let Some(v) = v {
            attrs.push((k.into(), v));
        }
    }
    let table = Table {
        group: group.clone(),
        attrs,
        columns: cols,
    };
    let csv = store_table(dir, table, &format!("samples-{name}"))?;
    Ok(ChainSampleReport {
        scores,
        pareto,
        rejected,
        group,
        csv,
    })
}

fn latency_matrix(path: &Path, trained: &TrainedChain) -> Result<CostMatrix> {
    let s = &trained.search;
    let input = image_shape(s.net.input);
    let table = LatencyTable::read(path)?;
    table.check_for(
        path,
        &s.space,
        &crate::run::device_name(s.vs.device()),
        [input.channels, input.hw.0, input.hw.1],
        input.classes,
    )?;
    Ok(CostMatrix::latency(&table, &s.space))
}

/// The BN running statistics of the supernet (every variable that is not trainable).
fn bn_buffers(vs: &nn::VarStore) -> Vec<Tensor> {
    let mut named: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .filter(|(k, v)| {
            !v.requires_grad() && (k.ends_with("running_mean") || k.ends_with("running_var"))
        })
        .collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named.into_iter().map(|(_, v)| v).collect()
}

/// Running statistics := the plain average of the train-mode batch statistics over `k`
/// batches of the weight half (as [`super::Scorer`] recalibrates cell sub-networks):
/// libtorch's update from `r = 0` leaves `m s`, summed and divided by `k m`.
fn recalibrate(
    buffers: &[Tensor],
    train: &Loader,
    k: usize,
    forward: impl Fn(Tensor),
) -> Result<()> {
    let m = nn::BatchNormConfig::default().momentum;
    let mut sums: Vec<Tensor> = buffers.iter().map(|b| b.zeros_like()).collect();
    let batches = train.batches_per_epoch().max(1);
    tch::no_grad(|| {
        for i in 0..k {
            for b in buffers {
                let _ = b.shallow_clone().zero_();
            }
            let batch = train.batch(i / batches, i % batches)?;
            forward(batch.images);
            for (s, b) in sums.iter_mut().zip(buffers) {
                let _ = s.g_add_(b);
            }
        }
        for (b, s) in buffers.iter().zip(&sums) {
            b.shallow_clone().copy_(&(s / (k as f64 * m)));
        }
        Ok(())
    })
}
