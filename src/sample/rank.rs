//! Rank agreement between two scorings of the same architectures (for example inherited
//! weights vs stand-alone training): Kendall's tau-b, Spearman's rho (with average ranks
//! for ties), top-k overlap, sparse Kendall tau (NAS-Bench-301) and top-k Kendall tau. Pure functions on host numbers; `None` where the measure is
//! undefined (fewer than two items, or a constant vector).

/// Kendall's tau-b: `(concordant - discordant) / sqrt((n0 - ties_x) (n0 - ties_y))` with
/// `n0 = n (n - 1) / 2`; pairs tied in both vectors count in both tie terms (as SciPy).
pub fn kendall_tau_b(x: &[f64], y: &[f64]) -> Option<f64> {
    if x.len() != y.len() {
        return None;
    }
    let n = x.len();
    let (mut conc, mut disc, mut tx, mut ty) = (0i64, 0i64, 0i64, 0i64);
    for i in 0..n {
        for j in i + 1..n {
            let dx = x[i].partial_cmp(&x[j])?;
            let dy = y[i].partial_cmp(&y[j])?;
            use std::cmp::Ordering::Equal;
            match (dx, dy) {
                (Equal, Equal) => {
                    tx += 1;
                    ty += 1;
                }
                (Equal, _) => tx += 1,
                (_, Equal) => ty += 1,
                (a, b) if a == b => conc += 1,
                _ => disc += 1,
            }
        }
    }
    let n0 = (n * n.saturating_sub(1) / 2) as i64;
    let denom = (((n0 - tx) as f64) * ((n0 - ty) as f64)).sqrt();
    (denom > 0.0).then(|| (conc - disc) as f64 / denom)
}

/// Ranks from 1, ties sharing their average rank. `None` on NaN.
pub fn average_ranks(x: &[f64]) -> Option<Vec<f64>> {
    if x.iter().any(|v| v.is_nan()) {
        return None;
    }
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut ranks = vec![0.0; x.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && x[order[j + 1]] == x[order[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = avg;
        }
        i = j + 1;
    }
    Some(ranks)
}

/// Spearman's rho: the Pearson correlation of the average ranks.
pub fn spearman_rho(x: &[f64], y: &[f64]) -> Option<f64> {
    if x.len() != y.len() {
        return None;
    }
    if x.len() < 2 {
        return None;
    }
    let (rx, ry) = (average_ranks(x)?, average_ranks(y)?);
    let n = rx.len() as f64;
    let (mx, my) = (rx.iter().sum::<f64>() / n, ry.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in rx.iter().zip(&ry) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    (sxx > 0.0 && syy > 0.0).then(|| sxy / (sxx * syy).sqrt())
}

/// Indices of the `k` largest values (ties: the lower index first).
pub fn top_k(x: &[f64], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|&a, &b| x[b].total_cmp(&x[a]).then(a.cmp(&b)));
    order.truncate(k);
    order
}

/// Fraction of the top `k` items by `x` that are also in the top `k` by `y` (higher is
/// better in both); `None` when `k` is 0 or larger than the number of items.
pub fn top_k_overlap(x: &[f64], y: &[f64], k: usize) -> Option<f64> {
    if x.len() != y.len() {
        return None;
    }
    if k == 0 || k > x.len() {
        return None;
    }
    let (a, b) = (top_k(x, k), top_k(y, k));
    Some(a.iter().filter(|i| b.contains(i)).count() as f64 / k as f64)
}

/// Sparse Kendall tau (Siems et al. 2020, NAS-Bench-301): [`kendall_tau_b`] after rounding
/// both accuracies (fractions in [0, 1]) to 0.1%, so that differences below the noise of
/// one training count as ties.
pub fn sparse_kendall_tau(x: &[f64], y: &[f64]) -> Option<f64> {
    kendall_tau_b(&round_accuracy(x), &round_accuracy(y))
}

/// Accuracies (fractions) rounded to 0.1%.
pub fn round_accuracy(x: &[f64]) -> Vec<f64> {
    x.iter().map(|a| (a * 1000.0).round() / 1000.0).collect()
}

/// The agreement of one scoring with a ground truth (higher is better in both).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fidelity {
    pub kendall_tau: Option<f64>,
    /// With the ground truth rounded to 0.1% (and the scores too when they are accuracies).
    pub sparse_kendall_tau: Option<f64>,
    pub spearman_rho: Option<f64>,
    pub top_overlap: Option<f64>,
    pub top_kendall_tau: Option<f64>,
}

impl Fidelity {
    /// Every measure of `score` against `truth` (accuracies), the top sets of size `top`;
    /// `score_is_accuracy` says whether the sparse tau rounds the scores too. Otherwise the
    /// scores are a proxy's, whose undefined (NaN) values rank last (as `-inf`).
    pub fn new(score: &[f64], truth: &[f64], top: usize, score_is_accuracy: bool) -> Self {
        let proxy: Vec<f64>;
        let score = match score_is_accuracy {
            true => score,
            false => {
                proxy = score
                    .iter()
                    .map(|&v| if v.is_nan() { f64::NEG_INFINITY } else { v })
                    .collect();
                &proxy
            }
        };
        let sparse = match score_is_accuracy {
            true => sparse_kendall_tau(score, truth),
            false => kendall_tau_b(score, &round_accuracy(truth)),
        };
        Fidelity {
            kendall_tau: kendall_tau_b(score, truth),
            sparse_kendall_tau: sparse,
            spearman_rho: spearman_rho(score, truth),
            top_overlap: top_k_overlap(score, truth, top),
            top_kendall_tau: top_k_kendall_tau(score, truth, top),
        }
    }

    /// The names of the measures, in the order of [`Fidelity::named`].
    pub const MEASURES: [&'static str; 5] = [
        "kendall_tau",
        "sparse_kendall_tau",
        "spearman_rho",
        "top_overlap",
        "top_kendall_tau",
    ];

    /// (name, value) of each measure, in a fixed order.
    pub fn named(&self) -> [(&'static str, Option<f64>); 5] {
        let values = [
            self.kendall_tau,
            self.sparse_kendall_tau,
            self.spearman_rho,
            self.top_overlap,
            self.top_kendall_tau,
        ];
        std::array::from_fn(|i| (Self::MEASURES[i], values[i]))
    }
}

/// Top-k Kendall tau: [`kendall_tau_b`] over the `k` items best by the ground truth `truth`
/// (higher is better; ties: the lower index first), how well `score` orders the best
/// architectures. `None` when `k < 2`, `k` exceeds the items, or the tau is undefined there.
pub fn top_k_kendall_tau(score: &[f64], truth: &[f64], k: usize) -> Option<f64> {
    if score.len() != truth.len() || k < 2 || k > truth.len() {
        return None;
    }
    let best = top_k(truth, k);
    let pick = |v: &[f64]| -> Vec<f64> { best.iter().map(|&i| v[i]).collect() };
    kendall_tau_b(&pick(score), &pick(truth))
}

/// Where one scored architecture stands among the scores of a table (itself included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// 1 + the number of architectures that score better.
    pub rank: usize,
    /// Architectures in the table.
    pub n: usize,
    /// The others that score better, and worse (the rest tie with it).
    pub better: usize,
    pub worse: usize,
}

/// [`Placement`] of item `i` by `(accuracy, loss)`: higher accuracy is better, ties broken
/// by lower loss (`evolve`'s fitness); equal in both is a tie. `None` when `i` is out of
/// range or the columns differ in length.
pub fn placement(accuracy: &[f64], loss: &[f64], i: usize) -> Option<Placement> {
    if accuracy.len() != loss.len() || i >= accuracy.len() {
        return None;
    }
    // Greater: item j scores better than item i.
    let cmp = |j: usize| {
        accuracy[j]
            .total_cmp(&accuracy[i])
            .then(loss[i].total_cmp(&loss[j]))
    };
    let others = (0..accuracy.len()).filter(|&j| j != i);
    let better = others.clone().filter(|&j| cmp(j).is_gt()).count();
    let worse = others.filter(|&j| cmp(j).is_lt()).count();
    Some(Placement {
        rank: better + 1,
        n: accuracy.len(),
        better,
        worse,
    })
}

/// The seed-vs-seed ceiling of a rank check: the same architectures trained stand-alone
/// with different seeds rank them this consistently, so no cheap scorer can be expected to
/// agree with stand-alone accuracy more. Mean over all pairs of seeds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ceiling {
    pub kendall_tau: Option<f64>,
    pub spearman_rho: Option<f64>,
}

impl Ceiling {
    /// From one accuracy column per seed (at least two); a measure is `None` when it is
    /// undefined for any pair.
    pub fn new(seeds: &[Vec<f64>]) -> Option<Self> {
        if seeds.len() < 2 {
            return None;
        }
        let mean = |f: fn(&[f64], &[f64]) -> Option<f64>| {
            let mut values = Vec::new();
            for a in 0..seeds.len() {
                for b in a + 1..seeds.len() {
                    values.push(f(&seeds[a], &seeds[b])?);
                }
            }
            Some(values.iter().sum::<f64>() / values.len() as f64)
        };
        Some(Ceiling {
            kendall_tau: mean(kendall_tau_b),
            spearman_rho: mean(spearman_rho),
        })
    }
}
