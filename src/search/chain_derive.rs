//! `supernet derive` on a chain search: per searchable layer the strongest choice of the
//! last alphas the run file recorded (the rule `argmax`, as the search derives), with the
//! architecture's exact multiply-adds and parameters and, when the search had a latency
//! table, its predicted latency, each beside the search's target when it had one.
use super::config::SearchConfig;
use crate::derive::derive_chain;
use crate::profile::LatencyTable;
use crate::space::chain::{arch_cost, ChainArch, ChainSpace};
use crate::supernet::{image_shape, InputShape};
use crate::{Error, Result};
use std::path::Path;

/// One cost of a derived architecture.
#[derive(Debug, Clone, PartialEq)]
pub struct DerivedCost {
    /// `latency_ms`, `macs` or `params`.
    pub name: &'static str,
    pub value: f64,
    /// The search's hardware target for this cost, when it had one.
    pub target: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChainDerived {
    pub arch: ChainArch,
    /// The recorded step of the alphas it was derived from.
    pub step: u64,
    pub costs: Vec<DerivedCost>,
}

/// Derive the chain run in `dir` from its run file's last alpha record.
pub fn derive_chain_run(dir: &Path) -> Result<ChainDerived> {
    let cfg: SearchConfig = crate::run::read_config(dir)?;
    let space = ChainSpace::load(&cfg.space)?;
    cfg.validate()?;
    let path = crate::record::run_file(dir);
    let log = crate::record::read_run(&path)?;
    let rec = log
        .alphas
        .last()
        .ok_or_else(|| Error::bad_file(&path, "no alpha records yet: nothing to derive from"))?;
    let arch = derive_chain(&space, &rec.normal).map_err(|e| {
        Error::bad_file(&path, format!("the alpha record at step {}: {e}", rec.step))
    })?;
    let input = image_shape(InputShape::of(&cfg.data.load()?.train));
    let cost = arch_cost(&space, &arch, input);
    let hw = &cfg.hardware;
    let mut costs = Vec::new();
    if let Some(table_path) = &hw.latency_table {
        let table = LatencyTable::read(table_path)?;
        table.check_for(
            table_path,
            &space,
            &log.meta.device,
            [input.channels, input.hw.0, input.hw.1],
            input.classes,
        )?;
        costs.push(DerivedCost {
            name: "latency_ms",
            value: table.predict(&space, &arch),
            target: hw.latency_target,
        });
    }
    costs.push(DerivedCost {
        name: "macs",
        value: cost.macs as f64,
        target: hw.macs_target,
    });
    costs.push(DerivedCost {
        name: "params",
        value: cost.params as f64,
        target: None,
    });
    Ok(ChainDerived {
        arch,
        step: rec.step,
        costs,
    })
}
