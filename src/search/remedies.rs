//! Published remedies for the collapse of DARTS (cells that end as skip connections and
//! other parameter-free ops): their settings (config table `[remedies]`), schedules and
//! formulas. All are off by default; README "Collapse remedies" cites the sources.
use super::config::StrategyKind;
use crate::space::{CellGenotype, Genotype, OpKind, SearchSpace};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Remedies {
    /// beta-DARTS (Ye et al. 2022): weight `lambda` of the beta-decay regulariser (per cell
    /// type `mean over edges of logsumexp(alpha_edge)`, summed over the cell types) added
    /// to the architecture loss, linear
    /// from `beta_decay_min` (first epoch) towards `beta_decay` (0: off).
    pub beta_decay: f64,
    pub beta_decay_min: f64,
    /// SDARTS-RS (Chen & Hsieh 2020): in the weight step the softmax of the alphas gets
    /// uniform noise in `[-epsilon, epsilon]` (then clipped to [0, 1] and renormalised per
    /// edge), `epsilon` linear from `sdarts_epsilon_min` towards `sdarts_epsilon` (0: off).
    pub sdarts_epsilon: f64,
    pub sdarts_epsilon_min: f64,
    /// DARTS- (Chu et al. 2021): an auxiliary skip connection on every stride-1 edge,
    /// outside the softmax, with a weight decaying linearly from 1 to 0 over the epochs.
    pub aux_skip: bool,
    /// DARTS+ (Liang et al. 2019) early stopping: the search ends (genotype and run file
    /// written, the reason recorded) after the first epoch whose derived normal cell holds
    /// at least this many skip connections (DARTS+: 2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_at_skips: Option<usize>,
    /// Collapse warning: the epoch line warns when the derived normal cell's count of
    /// parameter-free ops (none, pools, skip connections) rises above this (unset: half
    /// its kept edges). A warning only: the search goes on unchanged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collapse_warn_above: Option<usize>,
    /// DARTS+ (Liang et al. 2019) second rule: the search ends after the first epoch whose
    /// derived genotype is the one derived after each of the `E` epochs before it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_when_stable: Option<usize>,
    /// R-DARTS (Zela et al. 2020): every this many epochs (0: never) the dominant
    /// eigenvalue of the Hessian of the validation loss w.r.t. the alphas
    /// ([`super::hessian`]), recorded per epoch.
    #[serde(skip_serializing_if = "is_zero")]
    pub hessian_every: usize,
    /// The epoch line warns when the eigenvalue exceeds this factor times the smallest one
    /// recorded before it in the run (default 4/3: R-DARTS stops when the ratio of its
    /// windowed averages, earlier over current, falls below 0.75).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hessian_warn_factor: Option<f64>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The default of [`Remedies::hessian_warn_factor`]: 1 / 0.75, R-DARTS's ratio.
pub const HESSIAN_WARN_FACTOR: f64 = 4.0 / 3.0;

impl Default for Remedies {
    fn default() -> Self {
        Remedies {
            beta_decay: 0.0,
            beta_decay_min: 0.0,
            sdarts_epsilon: 0.0,
            sdarts_epsilon_min: 0.03,
            aux_skip: false,
            stop_at_skips: None,
            collapse_warn_above: None,
            stop_when_stable: None,
            hessian_every: 0,
            hessian_warn_factor: None,
        }
    }
}

/// `epoch / epochs` (the linear ramps of the remedies: `epoch` counts from 0, so the last
/// epoch is at `(epochs - 1) / epochs`, as the reference codes count).
fn progress(epoch: usize, epochs: usize) -> f64 {
    epoch as f64 / epochs.max(1) as f64
}

impl Remedies {
    pub fn is_off(&self) -> bool {
        *self == Remedies::default()
    }

    /// The remedies that are on, for the start line (empty when none).
    pub fn describe(&self) -> String {
        let mut on = Vec::new();
        if self.beta_decay > 0.0 {
            on.push(format!(
                "beta-DARTS lambda {} -> {}",
                self.beta_decay_min, self.beta_decay
            ));
        }
        if self.sdarts_epsilon > 0.0 {
            on.push(format!(
                "SDARTS-RS epsilon {} -> {}",
                self.sdarts_epsilon_min, self.sdarts_epsilon
            ));
        }
        if self.aux_skip {
            on.push("DARTS- auxiliary skip 1 -> 0".to_string());
        }
        if let Some(n) = self.stop_at_skips {
            on.push(format!("DARTS+ stop at {n} skip connections"));
        }
        if let Some(n) = self.collapse_warn_above {
            on.push(format!("collapse warning above {n} parameter-free ops"));
        }
        if let Some(e) = self.stop_when_stable {
            on.push(format!(
                "DARTS+ stop when the genotype is stable for {e} epochs"
            ));
        }
        if self.hessian_every > 0 {
            on.push(format!(
                "R-DARTS Hessian eigenvalue every {} epochs (warns above {} x its running minimum)",
                self.hessian_every,
                self.warn_factor()
            ));
        }
        on.join(", ")
    }

    /// beta-DARTS weight of `epoch` (`None` when off): `min + (max - min) * epoch / epochs`.
    pub fn beta_decay_lambda(&self, epoch: usize, epochs: usize) -> Option<f64> {
        (self.beta_decay > 0.0).then(|| {
            self.beta_decay_min + (self.beta_decay - self.beta_decay_min) * progress(epoch, epochs)
        })
    }

    /// SDARTS-RS noise bound of `epoch` (`None` when off): `min + (max - min) * epoch /
    /// epochs` (SDARTS: `0.03 + (epsilon_alpha - 0.03) * epoch / epochs`).
    pub fn sdarts_epsilon(&self, epoch: usize, epochs: usize) -> Option<f64> {
        (self.sdarts_epsilon > 0.0).then(|| {
            self.sdarts_epsilon_min
                + (self.sdarts_epsilon - self.sdarts_epsilon_min) * progress(epoch, epochs)
        })
    }

    /// DARTS- auxiliary skip weight of `epoch` (`None` when off): `1 - epoch / epochs`.
    pub fn aux_skip_beta(&self, epoch: usize, epochs: usize) -> Option<f64> {
        self.aux_skip.then(|| 1.0 - progress(epoch, epochs))
    }

    /// The Hessian warning factor in force.
    pub fn warn_factor(&self) -> f64 {
        self.hessian_warn_factor.unwrap_or(HESSIAN_WARN_FACTOR)
    }

    /// Whether the Hessian eigenvalue is computed after `epoch` (0-based): after every
    /// `hessian_every`-th epoch.
    pub fn hessian_due(&self, epoch: usize) -> bool {
        self.hessian_every > 0 && (epoch + 1).is_multiple_of(self.hessian_every)
    }

    /// Reject negative or non-finite values and remedies that do not apply to `strategy`
    /// (all three change the softmax relaxation, which only first-order and second-order
    /// DARTS use) or to partial channels (DARTS-), naming the field and the reason.
    pub fn validate(&self, strategy: StrategyKind, partial_channels: usize) -> Result<()> {
        use crate::run::check::non_negative;
        for (field, v) in [
            ("remedies.beta_decay", self.beta_decay),
            ("remedies.beta_decay_min", self.beta_decay_min),
            ("remedies.sdarts_epsilon", self.sdarts_epsilon),
            ("remedies.sdarts_epsilon_min", self.sdarts_epsilon_min),
        ] {
            non_negative(field, v)?;
        }
        if let Some(n) = self.stop_at_skips {
            crate::run::check::at_least_one("remedies.stop_at_skips", n)?;
        }
        if let Some(e) = self.stop_when_stable {
            crate::run::check::at_least_one("remedies.stop_when_stable", e)?;
        }
        if let Some(f) = self.hessian_warn_factor {
            if self.hessian_every == 0 {
                return Err(Error::invalid(
                    "remedies.hessian_warn_factor",
                    f,
                    "left out without remedies.hessian_every (the warning compares Hessian eigenvalues, which only hessian_every >= 1 computes)",
                ));
            }
            if !(f.is_finite() && f >= 1.0) {
                return Err(Error::invalid(
                    "remedies.hessian_warn_factor",
                    f,
                    "a finite number >= 1 (a factor over the running minimum)",
                ));
            }
        }
        if self.beta_decay > 0.0 && self.beta_decay_min > self.beta_decay {
            return Err(Error::invalid(
                "remedies.beta_decay_min",
                self.beta_decay_min,
                format!("at most remedies.beta_decay = {}", self.beta_decay),
            ));
        }
        if self.sdarts_epsilon > 0.0 && self.sdarts_epsilon_min > self.sdarts_epsilon {
            return Err(Error::invalid(
                "remedies.sdarts_epsilon_min",
                self.sdarts_epsilon_min,
                format!("at most remedies.sdarts_epsilon = {}", self.sdarts_epsilon),
            ));
        }
        let darts = matches!(
            strategy,
            StrategyKind::FirstOrder | StrategyKind::SecondOrder
        );
        let on = [
            (
                "remedies.beta_decay",
                "beta-DARTS",
                self.beta_decay > 0.0,
                self.beta_decay.to_string(),
            ),
            (
                "remedies.sdarts_epsilon",
                "SDARTS-RS",
                self.sdarts_epsilon > 0.0,
                self.sdarts_epsilon.to_string(),
            ),
            (
                "remedies.aux_skip",
                "DARTS-",
                self.aux_skip,
                "true".to_string(),
            ),
        ];
        for (field, name, is_on, value) in on {
            if is_on && !darts {
                return Err(Error::invalid(
                    field,
                    value,
                    format!(
                        "off (0 or false) with the {} strategy ({name} changes the softmax relaxation of the alphas, which only the first-order and second-order strategies use)",
                        strategy.name()
                    ),
                ));
            }
        }
        if self.hessian_every > 0 && !darts {
            return Err(Error::invalid(
                "remedies.hessian_every",
                self.hessian_every,
                format!(
                    "0 with the {} strategy (R-DARTS's Hessian is that of the validation loss under the softmax relaxation of the alphas, which only the first-order and second-order strategies use)",
                    strategy.name()
                ),
            ));
        }
        if self.aux_skip && partial_channels > 1 {
            return Err(Error::invalid(
                "remedies.aux_skip",
                true,
                format!(
                    "false with partial_channels = {partial_channels} (DARTS-'s auxiliary skip connection is defined on the whole edge, PC-DARTS mixes C/K channels)"
                ),
            ));
        }
        Ok(())
    }

    /// The checks that need the space: DARTS- adds its weight to the space's skip
    /// connection, so the space must have one.
    pub fn check_space(&self, space: &SearchSpace) -> Result<()> {
        if self.aux_skip && skip_column(space).is_none() {
            return Err(Error::invalid(
                "remedies.aux_skip",
                true,
                format!(
                    "false with the space '{}', whose ops have no skip_connect for DARTS-'s auxiliary skip connection",
                    space.name
                ),
            ));
        }
        Ok(())
    }
}

/// DARTS+: why the search stops after `epoch` (0-based) with the derived `genotype`, if
/// its normal cell holds at least `stop_at` skip connections.
pub fn early_stop(genotype: &Genotype, stop_at: Option<usize>, epoch: usize) -> Option<String> {
    let n = genotype.normal.count(OpKind::SkipConnect);
    let stop_at = stop_at.filter(|&s| n >= s)?;
    Some(format!(
        "DARTS+ early stop: the normal cell derived after epoch {} holds {n} skip connections (stop_at_skips = {stop_at})",
        epoch + 1
    ))
}

/// DARTS+'s second rule: why the search stops after `epoch` (0-based), if the genotype
/// derived after it (`current`, text form) is the one derived after each of the
/// `stable` epochs before it (`earlier`: the genotypes of the epochs before, oldest first).
pub fn stable_stop(
    earlier: &[String],
    current: &str,
    stable: Option<usize>,
    epoch: usize,
) -> Option<String> {
    let e = stable?;
    let window = earlier
        .len()
        .checked_sub(e)
        .map(|start| &earlier[start..])?;
    window.iter().all(|g| g == current).then(|| {
        format!(
            "DARTS+ early stop: the genotype derived after epoch {} is the one derived after each of the {e} epochs before it (stop_when_stable = {e})",
            epoch + 1
        )
    })
}

/// R-DARTS-style warning for the Hessian eigenvalue `value` when it exceeds `factor`
/// times the smallest of the `earlier` ones.
pub fn hessian_warning(earlier: &[f64], value: f64, factor: f64) -> Option<String> {
    let min = earlier.iter().copied().fold(f64::INFINITY, f64::min);
    (min.is_finite() && value > factor * min).then(|| {
        format!(
            "WARNING Hessian: dominant eigenvalue {value:.4e} > {factor} x its running minimum {min:.4e}"
        )
    })
}

/// The kept edges of a cell and how many of them carry a parameter-free op.
pub fn parameter_free(cell: &CellGenotype) -> (usize, usize) {
    let kept: Vec<OpKind> = cell.nodes.iter().flatten().map(|e| e.op).collect();
    let free = kept.iter().filter(|k| k.is_parameter_free()).count();
    (free, kept.len())
}

/// The collapse warning for the normal cell derived after `epoch` (0-based): when its
/// parameter-free ops number more than `above` (unset: half its kept edges) and more than
/// after the epoch before (`previous`; `None` when unknown).
pub fn collapse_warning(
    genotype: &Genotype,
    above: Option<usize>,
    previous: Option<usize>,
) -> Option<String> {
    let (free, kept) = parameter_free(&genotype.normal);
    let above = above.unwrap_or(kept / 2);
    if free <= above || previous.is_some_and(|p| free <= p) {
        return None;
    }
    Some(format!(
        "WARNING collapse: {free} of the normal cell's {kept} kept ops are parameter-free ({} skip_connect; warns above {above})",
        genotype.normal.count(OpKind::SkipConnect)
    ))
}

/// The column of `skip_connect` among the space's ops.
pub fn skip_column(space: &SearchSpace) -> Option<usize> {
    space.ops.iter().position(|&k| k == OpKind::SkipConnect)
}

/// The beta-DARTS regulariser (without its weight): per cell type the mean over its edges
/// of `logsumexp` of the edge's alphas, summed over the cell types (as beta-DARTS ports
/// for the DARTS space add `mlc_loss(alphas_normal) + mlc_loss(alphas_reduce)`); a 0-D
/// tensor differentiable in the alphas.
pub fn beta_decay_loss(alphas: &[Tensor]) -> Tensor {
    let per_type: Vec<Tensor> = alphas
        .iter()
        .map(|a| {
            a.to_kind(Kind::Float)
                .logsumexp([-1i64].as_slice(), false)
                .mean(Kind::Float)
        })
        .collect();
    Tensor::stack(&per_type, 0).sum(Kind::Float)
}
