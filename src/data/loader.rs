//! Batches from a subset: a seeded per-epoch shuffle, augmentation and normalisation in
//! parallel (rayon) into one contiguous f32 NCHW buffer, prefetched on a background thread.
//! Batch k of epoch e depends only on (seed, e, k), so a run can resume at any batch.
use std::sync::Arc;

use rayon::prelude::*;
use tch::{Device, Tensor};

use super::augment::{render, Augment, Normalizer};
use super::prefetch::Prefetch;
use super::split::Subset;
use super::tensor::cpu_tensor;
use crate::error::DataError;
use crate::rng::{shuffle, Rng, PURPOSE_SHUFFLE};

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct LoaderConfig {
    pub batch_size: usize,
    /// A new seeded order every epoch; otherwise the subset's order.
    pub shuffle: bool,
    /// Drop the last incomplete batch (keeps batch statistics and step counts uniform).
    pub drop_last: bool,
    pub augment: Augment,
    pub seed: u64,
    /// Batches computed ahead on a background thread; 0 = computed on the caller's thread.
    pub prefetch: usize,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        LoaderConfig::train(64, Augment::none(), 0)
    }
}

impl LoaderConfig {
    /// Shuffled, incomplete last batch dropped, 3 batches prefetched.
    pub fn train(batch_size: usize, augment: Augment, seed: u64) -> Self {
        LoaderConfig {
            batch_size,
            shuffle: true,
            drop_last: true,
            augment,
            seed,
            prefetch: 3,
        }
    }

    /// In order, every sample once, no augmentation.
    pub fn eval(batch_size: usize) -> Self {
        LoaderConfig {
            batch_size,
            shuffle: false,
            drop_last: false,
            augment: Augment::none(),
            seed: 0,
            prefetch: 2,
        }
    }
}

/// One batch on the CPU: `images` f32 [B, C, H, W] normalised, `labels` i64 [B].
#[derive(Debug)]
pub struct Batch {
    pub images: Tensor,
    pub labels: Tensor,
    /// The data set indices of the samples, in batch order.
    pub indices: Vec<u32>,
    pub epoch: usize,
    /// The batch's index within its epoch.
    pub index: usize,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.indices.len()
    }
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// The same batch with both tensors on `device` (a no-op on the CPU).
    pub fn to_device(self, device: Device) -> Batch {
        Batch {
            images: self.images.to_device(device),
            labels: self.labels.to_device(device),
            ..self
        }
    }
}

/// Yields `Batch`es, computed ahead on a background thread when the loader prefetches.
pub type EpochIter = Prefetch<Batch>;

#[derive(Clone)]
pub struct Loader {
    plan: Arc<Plan>,
}

struct Plan {
    subset: Subset,
    cfg: LoaderConfig,
    norm: Normalizer,
    /// (rank, world): this process makes rows `rank * B / world ..` of every batch of B
    /// (data-parallel); (0, 1) makes whole batches.
    shard: (usize, usize),
}

impl Loader {
    pub fn new(subset: Subset, cfg: LoaderConfig) -> Result<Self, DataError> {
        if cfg.batch_size == 0 {
            return Err(DataError::invalid("batch size", 0, "at least 1"));
        }
        if subset.is_empty() {
            return Err(DataError::invalid(
                format!("subset of {}", subset.dataset().name()),
                "empty",
                "at least one sample",
            ));
        }
        if cfg.drop_last && subset.len() < cfg.batch_size {
            return Err(DataError::invalid(
                "batch size",
                cfg.batch_size,
                format!(
                    "at most the subset's {} samples when incomplete batches are dropped",
                    subset.len()
                ),
            ));
        }
        let ds = subset.dataset();
        let norm = Normalizer::new(ds.pixels(), ds.normalization());
        Ok(Loader {
            plan: Arc::new(Plan {
                subset,
                cfg,
                norm,
                shard: (0, 1),
            }),
        })
    }

    /// The same loader making only rank `rank`'s part of every batch (of `world` equal
    /// parts): the rows, shuffle and augmentation draws of the whole batch at those
    /// positions, so the ranks together see exactly what one process would.
    pub fn shard(&self, rank: usize, world: usize) -> Result<Self, DataError> {
        let cfg = &self.plan.cfg;
        if !cfg.drop_last || !cfg.batch_size.is_multiple_of(world) || rank >= world {
            return Err(DataError::invalid(
                "batch size",
                cfg.batch_size,
                format!("a multiple of the {world} data-parallel processes"),
            ));
        }
        Ok(Loader {
            plan: Arc::new(Plan {
                subset: self.plan.subset.clone(),
                cfg: cfg.clone(),
                norm: Normalizer::new(
                    self.plan.subset.dataset().pixels(),
                    self.plan.subset.dataset().normalization(),
                ),
                shard: (rank, world),
            }),
        })
    }

    /// In-order iteration without augmentation (evaluation).
    pub fn eval(subset: Subset, batch_size: usize) -> Result<Self, DataError> {
        Loader::new(subset, LoaderConfig::eval(batch_size))
    }

    pub fn config(&self) -> &LoaderConfig {
        &self.plan.cfg
    }
    pub fn subset(&self) -> &Subset {
        &self.plan.subset
    }
    /// Samples per epoch before dropping an incomplete batch.
    pub fn len(&self) -> usize {
        self.plan.subset.len()
    }
    pub fn is_empty(&self) -> bool {
        self.plan.subset.is_empty()
    }

    pub fn batches_per_epoch(&self) -> usize {
        self.plan.batches_per_epoch()
    }

    /// The data set indices in the order epoch `epoch` visits them.
    pub fn order(&self, epoch: usize) -> Vec<u32> {
        self.plan.order(epoch)
    }

    /// (epoch, batch) of the `step`-th batch of an endless stream starting at epoch 0.
    pub fn position(&self, step: usize) -> (usize, usize) {
        let bpe = self.batches_per_epoch();
        (step / bpe, step % bpe)
    }

    /// Batch `index` of epoch `epoch`, computed on this thread (shuffles the whole epoch;
    /// iterate with `epoch` for many batches).
    pub fn batch(&self, epoch: usize, index: usize) -> Result<Batch, DataError> {
        if index >= self.batches_per_epoch() {
            return Err(DataError::invalid(
                "batch index",
                index,
                format!("below the {} batches per epoch", self.batches_per_epoch()),
            ));
        }
        Ok(self.plan.make_batch(&self.plan.order(epoch), epoch, index))
    }

    /// Batches `start_batch..` of epoch `epoch` (empty if `start_batch` is past the end).
    pub fn epoch(&self, epoch: usize, start_batch: usize) -> EpochIter {
        let mut cursor = Cursor::new(self.plan.clone());
        let end = self.batches_per_epoch();
        let start = start_batch.min(end);
        let iter = (start..end).map(move |k| cursor.batch(epoch, k));
        Prefetch::new(Box::new(iter), self.plan.cfg.prefetch, Some(end - start))
    }

    /// An endless stream over epochs 0, 1, ... starting at overall batch `start_step`
    /// (see `position`).
    pub fn stream(&self, start_step: usize) -> EpochIter {
        let mut cursor = Cursor::new(self.plan.clone());
        let iter = (start_step..).map(move |s| cursor.step(s));
        Prefetch::new(Box::new(iter), self.plan.cfg.prefetch, None)
    }

    /// A cursor producing batches on the caller's thread, for composing iterators that a
    /// single prefetch thread runs (see `SearchLoaders`).
    pub(crate) fn cursor(&self) -> Cursor {
        Cursor::new(self.plan.clone())
    }
}

impl Plan {
    fn batches_per_epoch(&self) -> usize {
        let (n, b) = (self.subset.len(), self.cfg.batch_size);
        if self.cfg.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    fn order(&self, epoch: usize) -> Vec<u32> {
        let mut order = self.subset.indices().to_vec();
        if self.cfg.shuffle {
            let mut rng = Rng::from_key(&[self.cfg.seed, PURPOSE_SHUFFLE, epoch as u64]);
            shuffle(&mut order, &mut rng);
        }
        order
    }

    fn make_batch(&self, order: &[u32], epoch: usize, index: usize) -> Batch {
        let b = self.cfg.batch_size;
        let (rank, world) = self.shard;
        let whole = &order[index * b..(index * b + b).min(order.len())];
        let part = whole.len() / world;
        // Positions in the epoch: they key the augmentation draws.
        let start = index * b + rank * part;
        let indices = whole[rank * part..(rank + 1) * part].to_vec();
        let ds = self.subset.dataset();
        let shape = ds.shape();
        let numel = shape.numel();
        let aug = self.cfg.augment;
        let dims = [
            indices.len() as i64,
            shape.channels as i64,
            shape.height as i64,
            shape.width as i64,
        ];
        let images = cpu_tensor::<f32>(&dims, |images| {
            images
                .par_chunks_mut(numel)
                .zip(indices.par_iter())
                .enumerate()
                // A few images per task: one image is too little work to hand to a thread.
                .with_min_len(8)
                .for_each(|(j, (out, &i))| {
                    let position = (start + j) as u64;
                    let draw = aug
                        .is_active()
                        .then(|| aug.draw(shape, self.cfg.seed, epoch as u64, position));
                    render(ds.pixels(), &self.norm, shape, i as usize, draw, out);
                })
        });
        let labels = cpu_tensor::<i64>(&[indices.len() as i64], |labels| {
            for (l, &i) in labels.iter_mut().zip(&indices) {
                *l = ds.labels()[i as usize] as i64;
            }
        });
        Batch {
            images,
            labels,
            indices,
            epoch,
            index,
        }
    }
}

/// Makes batches in any order, keeping the current epoch's shuffle.
pub(crate) struct Cursor {
    plan: Arc<Plan>,
    /// The epoch whose order is in `order` (`None` before the first batch).
    epoch: Option<usize>,
    order: Vec<u32>,
}

impl Cursor {
    fn new(plan: Arc<Plan>) -> Self {
        Cursor {
            plan,
            epoch: None,
            order: Vec::new(),
        }
    }

    pub(crate) fn batch(&mut self, epoch: usize, index: usize) -> Batch {
        if self.epoch != Some(epoch) {
            self.order = self.plan.order(epoch);
            self.epoch = Some(epoch);
        }
        self.plan.make_batch(&self.order, epoch, index)
    }

    /// The `step`-th batch of the endless stream.
    pub(crate) fn step(&mut self, step: usize) -> Batch {
        let bpe = self.plan.batches_per_epoch();
        self.batch(step / bpe, step % bpe)
    }
}
