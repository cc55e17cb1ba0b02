//! Hardware-aware chain search: an expected-cost penalty in the architecture loss.
//!
//! The expected latency of ProxylessNAS (Cai et al., ICLR 2019, Eq. 5: per layer the sum
//! over its choices of probability x the choice's latency from a lookup table; here plus the
//! fixed parts) or, with `macs_target`, the expected multiply-adds of the exact cost model.
//! ProxylessNAS adds `lambda * E[lat]` to the loss unconditionally; here the term is a hinge
//! at a target, `weight * max(0, E / target - 1)`, so that the penalty is zero inside the
//! budget and does not push a network that already fits (our choice; the target makes the
//! weight unitless). Under GDAS the weights are the straight-through one-hot sample, so `E`
//! is the sampled path's cost and the gradient reaches the alphas through its
//! probabilities, as FBNet's Gumbel form.
use crate::profile::{CostMatrix, LatencyTable};
use crate::record::{Column, RunLog, Table};
use crate::space::chain::{ChainArch, ChainSpace, ImageShape};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};

/// Config table `[hardware]`; off (and left out of the config) when no target is set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hardware {
    /// A latency lookup table (`supernet profile`) of the run's space, device and input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_table: Option<PathBuf>,
    /// Expected latency budget in ms (needs `latency_table`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_target: Option<f64>,
    /// Weight of the latency hinge [default: 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_weight: Option<f64>,
    /// Expected multiply-adds budget per image (exact cost model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub macs_target: Option<f64>,
    /// Weight of the MACs hinge [default: 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub macs_weight: Option<f64>,
}

impl Hardware {
    pub fn is_off(&self) -> bool {
        *self == Hardware::default()
    }

    /// Settings that make sense on their own: a latency target needs a table, a table
    /// needs a target, weights need their target, targets and weights are positive.
    pub fn validate(&self) -> Result<()> {
        let positive = |field: &str, v: Option<f64>| match v {
            Some(x) if !(x.is_finite() && x > 0.0) => Err(Error::invalid(
                format!("hardware.{field}"),
                x,
                "a number > 0",
            )),
            _ => Ok(()),
        };
        positive("latency_target", self.latency_target)?;
        positive("latency_weight", self.latency_weight)?;
        positive("macs_target", self.macs_target)?;
        positive("macs_weight", self.macs_weight)?;
        let pairs = [
            (
                "latency_table",
                self.latency_table.is_some(),
                "latency_target",
                self.latency_target.is_some(),
            ),
            (
                "latency_weight",
                self.latency_weight.is_some(),
                "latency_target",
                self.latency_target.is_some(),
            ),
            (
                "macs_weight",
                self.macs_weight.is_some(),
                "macs_target",
                self.macs_target.is_some(),
            ),
            (
                "latency_target",
                self.latency_target.is_some(),
                "latency_table",
                self.latency_table.is_some(),
            ),
        ];
        for (field, set, needs, has) in pairs {
            if set && !has {
                return Err(Error::invalid(
                    format!("hardware.{field}"),
                    "set",
                    format!("also hardware.{needs} (--{})", needs.replace('_', "-")),
                ));
            }
        }
        Ok(())
    }

    /// Make the table's path absolute against `base` (the config file's directory).
    pub fn resolve_paths(&mut self, base: &std::path::Path) {
        if let Some(p) = &self.latency_table {
            self.latency_table = Some(crate::run::paths::from_config_file(p, base));
        }
    }
}

/// One hinge term: a cost matrix on the device, its target and weight.
pub struct Term {
    pub cost: CostMatrix,
    costs: Tensor,
    pub target: f64,
    pub weight: f64,
}

impl Term {
    pub fn new(cost: CostMatrix, target: f64, weight: f64, device: Device) -> Self {
        let rows = cost.per_choice.len() as i64;
        let flat: Vec<f64> = cost.per_choice.iter().flatten().copied().collect();
        let cols = if rows == 0 {
            0
        } else {
            flat.len() as i64 / rows
        };
        let costs = Tensor::from_slice(&flat)
            .view([rows, cols])
            .to_kind(Kind::Float)
            .to_device(device);
        Term {
            cost,
            costs,
            target,
            weight,
        }
    }

    /// `E = fixed + sum(w * costs)` as a 0-d tensor (differentiable in `w`).
    pub fn expected(&self, w: &Tensor) -> Tensor {
        (w * &self.costs).sum(Kind::Float) + self.cost.fixed
    }

    /// `weight * max(0, E / target - 1)`.
    pub fn penalty(&self, w: &Tensor) -> Tensor {
        (self.expected(w) / self.target - 1.0).relu() * self.weight
    }
}

/// The penalty terms of a chain search (latency, MACs or both).
pub struct HardwarePenalty {
    pub terms: Vec<Term>,
}

impl HardwarePenalty {
    /// The terms `hw` asks for; `None` when it asks for none. The latency table is read
    /// and refused unless it was measured for `space`, `device` and `input`.
    pub fn new(
        hw: &Hardware,
        space: &ChainSpace,
        input: ImageShape,
        device: Device,
    ) -> Result<Option<Self>> {
        hw.validate()?;
        let mut terms = Vec::new();
        if let (Some(path), Some(target)) = (&hw.latency_table, hw.latency_target) {
            let table = LatencyTable::read(path)?;
            table.check_for(
                path,
                space,
                &crate::run::device_name(device),
                [input.channels, input.hw.0, input.hw.1],
                input.classes,
            )?;
            let cost = CostMatrix::latency(&table, space);
            terms.push(Term::new(
                cost,
                target,
                hw.latency_weight.unwrap_or(1.0),
                device,
            ));
        }
        if let Some(target) = hw.macs_target {
            let cost = CostMatrix::macs(space, input);
            terms.push(Term::new(
                cost,
                target,
                hw.macs_weight.unwrap_or(1.0),
                device,
            ));
        }
        Ok((!terms.is_empty()).then_some(HardwarePenalty { terms }))
    }

    /// The sum of the terms under mixing weights `w` (`[searchable layers, choices]`).
    pub fn value(&self, w: &Tensor) -> Tensor {
        self.terms
            .iter()
            .map(|t| t.penalty(w))
            .reduce(|a, b| a + b)
            .expect("at least one term")
    }

    /// Per term: its name, the expected cost under `probabilities` and the cost of `arch`.
    pub fn report(
        &self,
        space: &ChainSpace,
        probabilities: &[Vec<f32>],
        arch: &ChainArch,
    ) -> Vec<(&'static str, f64, f64)> {
        self.terms
            .iter()
            .map(|t| {
                (
                    t.cost.name,
                    t.cost.expected(probabilities),
                    t.cost.of_arch(space, arch),
                )
            })
            .collect()
    }
}

/// The run-file table of a penalised search: per epoch, per term, the expected cost of the
/// alphas and the cost of the derived architecture; the targets and weights as attributes.
pub const HARDWARE_TABLE: &str = "hardware/search";

impl HardwarePenalty {
    /// Put epoch `epoch`'s `report` (from [`HardwarePenalty::report`]) into `log`'s table,
    /// dropping rows of this epoch and later (a resumed run records them again).
    pub fn record(&self, log: &mut RunLog, epoch: u32, report: &[(&'static str, f64, f64)]) {
        let keep: Vec<usize> = match log.table(HARDWARE_TABLE).and_then(|t| t.column("epoch")) {
            Some(Column::U64(epochs)) => (0..epochs.len())
                .filter(|&i| epochs[i] < epoch as u64)
                .collect(),
            _ => Vec::new(),
        };
        let old = |name: &str| -> Vec<f64> {
            match log.table(HARDWARE_TABLE).and_then(|t| t.column(name)) {
                Some(Column::F64(v)) => keep.iter().filter_map(|&i| v.get(i).copied()).collect(),
                _ => Vec::new(),
            }
        };
        let mut epochs: Vec<u64> = match log.table(HARDWARE_TABLE).and_then(|t| t.column("epoch")) {
            Some(Column::U64(v)) => keep.iter().map(|&i| v[i]).collect(),
            _ => Vec::new(),
        };
        epochs.push(epoch as u64);
        let mut columns = vec![("epoch".to_string(), Column::U64(epochs))];
        let mut attrs = Vec::new();
        for (term, (name, expected, derived)) in self.terms.iter().zip(report) {
            for (column, v) in [
                (format!("expected_{name}"), *expected),
                (format!("derived_{name}"), *derived),
            ] {
                let mut values = old(&column);
                values.push(v);
                columns.push((column, Column::F64(values)));
            }
            attrs.push((format!("{name}_target"), term.target.to_string()));
            attrs.push((format!("{name}_weight"), term.weight.to_string()));
        }
        log.put_table(Table {
            group: HARDWARE_TABLE.into(),
            attrs,
            columns,
        });
    }
}
