//! Scoring chain architectures with the weights they inherit from a trained chain supernet
//! (one-hot mixing weights, so only the path runs) on the architecture half, BN statistics
//! as [`BnMode`] says (recalibrated per architecture as cell sampling does, the supernet's
//! own restored after each), and their exact or predicted costs under hard limits. What
//! `sample` and `evolve` on a chain run both score with.
use super::BnMode;
use crate::data::Loader;
use crate::evaluate::evaluate_with;
use crate::profile::{CostMatrix, LatencyTable};
use crate::record::Column;
use crate::search::TrainedChain;
use crate::space::chain::ChainArch;
use crate::supernet::{image_shape, MixWeights};
use crate::{Error, Result};
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

/// The supernet of a chain run ready to score architectures, with their cost models.
pub struct ChainScorer<'a> {
    trained: &'a TrainedChain,
    limits: ChainLimits,
    bn: BnMode,
    max_batches: Option<usize>,
    latency: Option<CostMatrix>,
    macs: CostMatrix,
    params: CostMatrix,
    /// The supernet's BN running statistics, and their values to restore after each score.
    buffers: Vec<Tensor>,
    saved: Vec<Tensor>,
}

impl<'a> ChainScorer<'a> {
    /// Refused when `--max-latency-ms` comes without a table, or the table was not
    /// measured for the run's space, device and input.
    pub fn new(
        trained: &'a TrainedChain,
        limits: &ChainLimits,
        bn: BnMode,
        max_batches: Option<usize>,
    ) -> Result<Self> {
        let s = &trained.search;
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
        let buffers = bn_buffers(&s.vs);
        let saved = buffers.iter().map(|b| b.detach().copy()).collect();
        Ok(ChainScorer {
            trained,
            limits: limits.clone(),
            bn,
            max_batches,
            latency,
            macs: CostMatrix::macs(&s.space, input),
            params: CostMatrix::params(&s.space, input),
            buffers,
            saved,
        })
    }

    /// Whether `arch` is within every limit (its costs are counted without a forward).
    pub fn within(&self, arch: &ChainArch) -> bool {
        let space = &self.trained.search.space;
        let lat_ok = match (&self.latency, self.limits.max_latency_ms) {
            (Some(m), Some(max)) => m.of_arch(space, arch) <= max,
            _ => true,
        };
        lat_ok
            && self
                .limits
                .max_macs
                .is_none_or(|m| self.macs.of_arch(space, arch) <= m as f64)
            && self
                .limits
                .max_params
                .is_none_or(|m| self.params.of_arch(space, arch) <= m as f64)
    }

    /// Validation accuracy and loss of `arch` with inherited weights, and its costs.
    pub fn score(&self, arch: ChainArch) -> Result<ChainScore> {
        let (s, trained) = (&self.trained.search, self.trained);
        let space = &s.space;
        let device = s.vs.device();
        let w = MixWeights::one_hot_rows(&arch.columns(space), space.choices().len(), device);
        let forward = |xs: &Tensor, train: bool| s.net.forward_t(xs, &w, train);
        let (val, batches) = (&trained.val, self.max_batches);
        let score = match self.bn {
            BnMode::Running => evaluate_with(|x| forward(x, false), val, device, batches),
            BnMode::Batch => evaluate_with(|x| forward(x, true), val, device, batches),
            BnMode::Recalibrate(k) => {
                recalibrate(&self.buffers, &trained.loaders.weights, k, |x| {
                    drop(forward(&x.to_device(device), true))
                })?;
                evaluate_with(|x| forward(x, false), val, device, batches)
            }
        };
        tch::no_grad(|| {
            for (b, v) in self.buffers.iter().zip(&self.saved) {
                b.shallow_clone().copy_(v);
            }
        });
        Ok(ChainScore {
            accuracy: score.accuracy,
            loss: score.loss,
            params: self.params.of_arch(space, &arch) as u64,
            macs: self.macs.of_arch(space, &arch) as u64,
            latency_ms: self.latency.as_ref().map(|m| m.of_arch(space, &arch)),
            arch,
        })
    }

    /// What the Pareto front is taken against: `latency_ms` with a table, else `macs`.
    pub fn cost_name(&self) -> &'static str {
        match self.latency {
            Some(_) => "latency_ms",
            None => "macs",
        }
    }

    /// The cost of a score this scorer made, as [`Self::cost_name`] names it.
    pub fn cost(&self, s: &ChainScore) -> f64 {
        s.latency_ms.unwrap_or(s.macs as f64)
    }

    /// The table columns of scored architectures: `arch`, `accuracy`, `loss`, `params`,
    /// `macs`, and `latency_ms` with a table.
    pub fn columns(&self, scores: &[&ChainScore]) -> Vec<(String, Column)> {
        let f64s = |f: fn(&ChainScore) -> f64| Column::F64(scores.iter().map(|s| f(s)).collect());
        let u64s = |f: fn(&ChainScore) -> u64| Column::U64(scores.iter().map(|s| f(s)).collect());
        let mut cols = vec![
            (
                "arch".to_string(),
                Column::Text(scores.iter().map(|s| s.arch.to_text()).collect()),
            ),
            ("accuracy".into(), f64s(|s| s.accuracy)),
            ("loss".into(), f64s(|s| s.loss)),
            ("params".into(), u64s(|s| s.params)),
            ("macs".into(), u64s(|s| s.macs)),
        ];
        if self.latency.is_some() {
            cols.push((
                "latency_ms".into(),
                Column::F64(scores.iter().filter_map(|s| s.latency_ms).collect()),
            ));
        }
        cols
    }

    /// Images of the architecture half each architecture is scored on.
    pub fn val_images(&self) -> usize {
        let val = &self.trained.val;
        let b = val.config().batch_size;
        self.max_batches
            .map_or(val.len(), |m| (m * b).min(val.len()))
    }

    /// The table attributes that say how the rows were scored and limited: `bn`,
    /// `val_images`, `pareto_cost`, and each limit that was set.
    pub fn attrs(&self) -> Vec<(String, String)> {
        let mut attrs = vec![
            ("bn".to_string(), self.bn.name()),
            ("val_images".into(), self.val_images().to_string()),
            ("pareto_cost".into(), self.cost_name().into()),
        ];
        let l = &self.limits;
        for (k, v) in [
            ("max_latency_ms", l.max_latency_ms.map(|v| v.to_string())),
            ("max_macs", l.max_macs.map(|v| v.to_string())),
            ("max_params", l.max_params.map(|v| v.to_string())),
        ] {
            if let Some(v) = v {
                attrs.push((k.into(), v));
            }
        }
        attrs
    }
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
