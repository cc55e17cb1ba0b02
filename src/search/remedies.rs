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
}

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
