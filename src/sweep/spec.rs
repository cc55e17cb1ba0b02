//! The settings file of a sweep (TOML): what every trial runs, the space of settings, the
//! sampler and the pruner. Every error names the file and the key.
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verb {
    Search,
    Train,
}

impl Verb {
    pub fn name(self) -> &'static str {
        match self {
            Verb::Search => "search",
            Verb::Train => "train",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SamplerKind {
    /// Every combination of the `values` of every setting (Optuna `GridSampler`).
    Grid,
    /// Independent uniform draws (Optuna `RandomSampler`).
    Random,
    /// Bayesian optimisation with a tree-structured Parzen estimator (Optuna `TPESampler`).
    Tpe,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrunerKind {
    None,
    /// Asynchronous successive halving (Optuna `SuccessiveHalvingPruner`).
    Asha,
}

/// One setting: a flag of the verb (the key, `_` for `-`), with `values` to choose from or
/// a `low`..`high` range (`int`, `log`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Param {
    pub values: Option<Vec<toml::Value>>,
    pub low: Option<f64>,
    pub high: Option<f64>,
    #[serde(default)]
    pub int: bool,
    #[serde(default)]
    pub log: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pruner {
    pub kind: PrunerKind,
    /// ASHA: epochs every trial runs before it can be stopped (the minimum resource).
    #[serde(default = "one")]
    pub min_epochs: usize,
    /// ASHA: 1 in this many trials goes on at each rung.
    #[serde(default = "three")]
    pub reduction_factor: usize,
}

fn one() -> usize {
    1
}

fn three() -> usize {
    3
}

impl Default for Pruner {
    fn default() -> Self {
        Pruner {
            kind: PrunerKind::None,
            min_epochs: 1,
            reduction_factor: 3,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSpec {
    /// `search` or `train`.
    pub command: Verb,
    /// Flags every trial gets (the settings' flags must not be among them).
    #[serde(default)]
    pub args: Vec<String>,
    pub sampler: SamplerKind,
    /// Trials to run (grid: at most the number of combinations; default all of them).
    pub trials: Option<usize>,
    #[serde(default)]
    pub seed: u64,
    /// TPE: random trials before the model is used (Optuna's default 10).
    #[serde(default = "ten")]
    pub startup_trials: usize,
    #[serde(default)]
    pub pruner: Pruner,
    pub params: BTreeMap<String, Param>,
}

fn ten() -> usize {
    10
}

impl SweepSpec {
    /// Read and check `path`; `has_flag(verb, flag)` says whether the verb takes `--flag`.
    pub fn load(path: &Path, has_flag: &dyn Fn(&str, &str) -> bool) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let spec: SweepSpec =
            toml::from_str(&text).map_err(|e| Error::bad_file(path, e.to_string()))?;
        spec.check(has_flag)
            .map_err(|e| Error::bad_file(path, e.to_string()))?;
        Ok(spec)
    }

    fn check(&self, has_flag: &dyn Fn(&str, &str) -> bool) -> Result<()> {
        let verb = self.command.name();
        if self.params.is_empty() {
            return Err(Error::invalid("params", "{}", "at least one setting"));
        }
        for (name, p) in &self.params {
            let key = |k: &str| format!("params.{name}.{k}");
            let flag = format!("--{}", name.replace('_', "-"));
            if !has_flag(verb, name) {
                return Err(Error::invalid(
                    format!("params.{name}"),
                    &flag,
                    format!("a flag of `supernet {verb}` (see `supernet {verb} --help`)"),
                ));
            }
            if self.args.iter().any(|a| a == &flag) {
                return Err(Error::invalid(
                    "args",
                    &flag,
                    format!("flags other than the swept ones (params.{name} sets {flag})"),
                ));
            }
            match (&p.values, p.low, p.high) {
                (Some(v), None, None) => {
                    if v.is_empty() {
                        return Err(Error::invalid(key("values"), "[]", "at least one value"));
                    }
                    if let Some(bad) = v.iter().find(|x| {
                        !matches!(
                            x,
                            toml::Value::String(_)
                                | toml::Value::Integer(_)
                                | toml::Value::Float(_)
                                | toml::Value::Boolean(_)
                        )
                    }) {
                        return Err(Error::invalid(
                            key("values"),
                            bad,
                            "strings, numbers or booleans",
                        ));
                    }
                    if p.int || p.log {
                        return Err(Error::invalid(
                            key(if p.int { "int" } else { "log" }),
                            true,
                            "absent with `values` (int and log describe a low..high range)",
                        ));
                    }
                }
                (None, Some(low), Some(high)) => {
                    if !(low < high && low.is_finite() && high.is_finite()) {
                        return Err(Error::invalid(
                            key("low"),
                            low,
                            format!("a finite number below high = {high}"),
                        ));
                    }
                    if p.log && low <= 0.0 {
                        return Err(Error::invalid(key("low"), low, "above 0 with log = true"));
                    }
                    if p.int && (low.fract() != 0.0 || high.fract() != 0.0) {
                        return Err(Error::invalid(
                            key("low"),
                            format!("{low}..{high}"),
                            "whole numbers with int = true",
                        ));
                    }
                    if self.sampler == SamplerKind::Grid {
                        return Err(Error::invalid(
                            format!("params.{name}"),
                            format!("{low}..{high}"),
                            "a list of `values` with sampler = \"grid\"",
                        ));
                    }
                }
                _ => {
                    return Err(Error::invalid(
                        format!("params.{name}"),
                        "(keys given)",
                        "either `values = [...]` or both `low` and `high`",
                    ))
                }
            }
        }
        if let Some(n) = self.trials {
            crate::run::check::at_least_one("trials", n)?;
            if self.sampler == SamplerKind::Grid && n > self.grid_size() {
                return Err(Error::invalid(
                    "trials",
                    n,
                    format!("at most the grid's {} combinations", self.grid_size()),
                ));
            }
        } else if self.sampler != SamplerKind::Grid {
            return Err(Error::invalid(
                "trials",
                "(absent)",
                "a number of trials (only a grid has a natural one)",
            ));
        }
        crate::run::check::at_least_one("pruner.min_epochs", self.pruner.min_epochs)?;
        if self.pruner.reduction_factor < 2 {
            return Err(Error::invalid(
                "pruner.reduction_factor",
                self.pruner.reduction_factor,
                "at least 2",
            ));
        }
        Ok(())
    }

    fn grid_size(&self) -> usize {
        self.params
            .values()
            .map(|p| p.values.as_ref().map_or(1, Vec::len))
            .product()
    }

    /// Each setting's name and whether it is searched on a log scale.
    pub fn params_log(&self) -> Vec<(String, bool)> {
        self.params
            .iter()
            .map(|(k, p)| (k.clone(), p.log))
            .collect()
    }

    /// Trials the sweep runs.
    pub fn trial_count(&self) -> usize {
        self.trials.unwrap_or_else(|| self.grid_size())
    }

    /// What the Optuna driver is started with.
    pub fn driver_config(&self, journal: &Path) -> serde_json::Value {
        let params: serde_json::Map<String, serde_json::Value> = self
            .params
            .iter()
            .map(|(k, p)| {
                let v = match &p.values {
                    Some(values) => serde_json::json!({
                        "values": values.iter().map(toml_to_json).collect::<Vec<_>>()
                    }),
                    None => serde_json::json!({
                        "low": p.low, "high": p.high, "int": p.int, "log": p.log
                    }),
                };
                (k.clone(), v)
            })
            .collect();
        serde_json::json!({
            "journal": journal.to_string_lossy(),
            "params": params,
            "seed": self.seed,
            "sampler": match self.sampler {
                SamplerKind::Grid => "grid",
                SamplerKind::Random => "random",
                SamplerKind::Tpe => "tpe",
            },
            "startup_trials": self.startup_trials,
            "pruner": match self.pruner.kind {
                PrunerKind::None => "none",
                PrunerKind::Asha => "asha",
            },
            "min_epochs": self.pruner.min_epochs,
            "reduction_factor": self.pruner.reduction_factor,
        })
    }
}

fn toml_to_json(v: &toml::Value) -> serde_json::Value {
    match v {
        toml::Value::String(s) => s.clone().into(),
        toml::Value::Integer(i) => (*i).into(),
        toml::Value::Float(f) => (*f).into(),
        toml::Value::Boolean(b) => (*b).into(),
        other => other.to_string().into(),
    }
}

/// A setting's value as its flag's argument.
pub fn flag_value(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
