//! The two loaders of a DARTS search step in lockstep: each step takes one batch from the
//! weight half and one from the architecture half. The weight loader defines the epoch; the
//! architecture loader runs as an endless stream, so its batch for step k of epoch e is its
//! overall batch e * steps_per_epoch + k, whatever the two halves' sizes.
use super::loader::{Batch, Loader, LoaderConfig};
use super::prefetch::Prefetch;
use super::split::SearchSplit;
use crate::error::DataError;
use crate::rng::{hash_key, PURPOSE_STREAM};

/// Yields (weight batch, architecture batch) pairs.
pub type PairIter = Prefetch<(Batch, Batch)>;

#[derive(Clone)]
pub struct SearchLoaders {
    pub weights: Loader,
    pub arch: Loader,
}

impl SearchLoaders {
    /// Both loaders with `cfg`; the architecture loader's seed is derived from `cfg.seed` so
    /// that the two halves are not shuffled and augmented with the same draws.
    pub fn new(split: &SearchSplit, cfg: LoaderConfig) -> Result<Self, DataError> {
        let arch_cfg = LoaderConfig {
            seed: hash_key(&[cfg.seed, PURPOSE_STREAM]),
            ..cfg.clone()
        };
        Ok(SearchLoaders {
            weights: Loader::new(split.weights.clone(), cfg)?,
            arch: Loader::new(split.arch.clone(), arch_cfg)?,
        })
    }

    /// Both loaders making only rank `rank`'s part of each batch (see [`Loader::shard`]).
    pub fn shard(&self, rank: usize, world: usize) -> Result<Self, DataError> {
        Ok(SearchLoaders {
            weights: self.weights.shard(rank, world)?,
            arch: self.arch.shard(rank, world)?,
        })
    }

    pub fn steps_per_epoch(&self) -> usize {
        self.weights.batches_per_epoch()
    }

    /// Steps `start_step..` of epoch `epoch`, both batches made by one prefetch thread.
    pub fn epoch(&self, epoch: usize, start_step: usize) -> PairIter {
        let steps = self.steps_per_epoch();
        let start = start_step.min(steps);
        let mut w = self.weights.cursor();
        let mut a = self.arch.cursor();
        let iter = (start..steps).map(move |k| (w.batch(epoch, k), a.step(epoch * steps + k)));
        Prefetch::new(
            Box::new(iter),
            self.weights.config().prefetch,
            Some(steps - start),
        )
    }

    /// Overall steps `start..end` as a run of its own: overall step s is step
    /// `s % steps_per_epoch` of epoch `s / steps_per_epoch`, so the span crosses epoch
    /// boundaries (a few-shot fine-tuning continues its parent's data order this way).
    pub fn span(&self, start: usize, end: usize) -> PairIter {
        let steps = self.steps_per_epoch().max(1);
        let mut w = self.weights.cursor();
        let mut a = self.arch.cursor();
        let end = end.max(start);
        let iter = (start..end).map(move |s| (w.batch(s / steps, s % steps), a.step(s)));
        Prefetch::new(
            Box::new(iter),
            self.weights.config().prefetch,
            Some(end - start),
        )
    }
}
