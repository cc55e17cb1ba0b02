//! Subsets (index lists into a data set) and the DARTS search split: the training set, or a
//! class-balanced seeded subset of it, cut 50/50 into a weight half and an architecture half.
use std::sync::Arc;

use super::dataset::Dataset;
use crate::error::DataError;
use crate::rng::{shuffle, Rng, PURPOSE_SPLIT};

/// Indices into a shared data set.
#[derive(Clone, Debug)]
pub struct Subset {
    dataset: Arc<Dataset>,
    indices: Arc<[u32]>,
}

impl Subset {
    /// The whole data set, in order.
    pub fn all(dataset: &Arc<Dataset>) -> Self {
        Subset {
            dataset: dataset.clone(),
            indices: (0..dataset.len() as u32).collect(),
        }
    }

    /// Given indices; each must be below the data set's length.
    pub fn new(dataset: &Arc<Dataset>, indices: Vec<u32>) -> Result<Self, DataError> {
        if let Some(&bad) = indices.iter().find(|&&i| i as usize >= dataset.len()) {
            return Err(DataError::invalid(
                format!("subset index into {}", dataset.name()),
                bad,
                format!("below the data set's length {}", dataset.len()),
            ));
        }
        Ok(Subset {
            dataset: dataset.clone(),
            indices: indices.into(),
        })
    }

    /// `n` samples drawn with `seed`, each class represented in proportion to its share of
    /// the data set (largest remainders, ties to the lower class), returned sorted.
    pub fn balanced(dataset: &Arc<Dataset>, n: usize, seed: u64) -> Result<Self, DataError> {
        let per_class = balanced_pick(dataset, n, seed)?;
        let mut indices: Vec<u32> = per_class.into_iter().flatten().collect();
        indices.sort_unstable();
        Subset::new(dataset, indices)
    }

    pub fn dataset(&self) -> &Arc<Dataset> {
        &self.dataset
    }
    pub fn indices(&self) -> &[u32] {
        &self.indices
    }
    pub fn len(&self) -> usize {
        self.indices.len()
    }
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    pub fn class_counts(&self) -> Vec<usize> {
        let labels = self.dataset.labels();
        let mut counts = vec![0; self.dataset.num_classes()];
        for &i in self.indices.iter() {
            counts[labels[i as usize] as usize] += 1;
        }
        counts
    }
}

/// For each class, a seeded random choice of its samples; together `n` samples.
fn balanced_pick(dataset: &Dataset, n: usize, seed: u64) -> Result<Vec<Vec<u32>>, DataError> {
    if n > dataset.len() {
        return Err(DataError::SubsetTooLarge {
            requested: n,
            available: dataset.len(),
            what: dataset.name().to_string(),
        });
    }
    let mut by_class: Vec<Vec<u32>> = vec![Vec::new(); dataset.num_classes()];
    for (i, &l) in dataset.labels().iter().enumerate() {
        by_class[l as usize].push(i as u32);
    }
    let total = dataset.len();
    // Quotas: floor of the proportional share, then the remainder by largest fraction.
    let mut quota: Vec<usize> = by_class
        .iter()
        .map(|c| c.len() * n / total.max(1))
        .collect();
    let mut rest: Vec<(usize, usize)> = by_class
        .iter()
        .enumerate()
        .map(|(k, c)| (c.len() * n % total.max(1), k))
        .collect();
    rest.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let missing = n - quota.iter().sum::<usize>();
    for &(_, k) in rest.iter().take(missing) {
        quota[k] += 1;
    }
    Ok(by_class
        .into_iter()
        .enumerate()
        .map(|(k, mut members)| {
            let mut rng = Rng::from_key(&[seed, PURPOSE_SPLIT, 0, k as u64]);
            shuffle(&mut members, &mut rng);
            members.truncate(quota[k]);
            members
        })
        .collect())
}

/// The two halves of the DARTS search data.
#[derive(Clone, Debug)]
pub struct SearchSplit {
    /// Trains the network weights.
    pub weights: Subset,
    /// Trains the architecture parameters (the DARTS "validation" half).
    pub arch: Subset,
}

impl SearchSplit {
    /// Takes `subset` samples (all if `None`) class-balanced with `seed`, then cuts each
    /// class's seeded shuffle in half, so both halves are class-balanced, disjoint, and
    /// differ in size by at most one.
    pub fn new(train: &Arc<Dataset>, subset: Option<usize>, seed: u64) -> Result<Self, DataError> {
        let n = subset.unwrap_or(train.len());
        if n < 2 {
            return Err(DataError::invalid(
                "search subset size",
                n,
                "at least 2 (one sample for each half)",
            ));
        }
        let per_class = balanced_pick(train, n, seed)?;
        let (mut weights, mut arch) =
            (Vec::with_capacity(n / 2 + 1), Vec::with_capacity(n / 2 + 1));
        // An odd class gives its extra sample alternately to each half.
        let mut extra_to_weights = true;
        for members in per_class {
            let mut half = members.len() / 2;
            if members.len() % 2 == 1 {
                if extra_to_weights {
                    half += 1;
                }
                extra_to_weights = !extra_to_weights;
            }
            weights.extend_from_slice(&members[..half]);
            arch.extend_from_slice(&members[half..]);
        }
        weights.sort_unstable();
        arch.sort_unstable();
        Ok(SearchSplit {
            weights: Subset::new(train, weights)?,
            arch: Subset::new(train, arch)?,
        })
    }
}
