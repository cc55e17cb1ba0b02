//! Which process of which job this is, from the standard variables of the launcher that
//! started it: torchrun (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`), Open MPI's mpirun
//! (`OMPI_COMM_WORLD_*`) or Slurm's srun (`SLURM_PROCID`, `SLURM_STEP_NUM_TASKS`,
//! `SLURM_LOCALID`). The rendezvous address is torchrun's `MASTER_ADDR`/`MASTER_PORT`,
//! which mpirun and srun jobs export themselves (README, "Data-parallel search").
use crate::{Error, Result};

/// The environment variable that sets the collective timeout, in seconds.
pub const TIMEOUT_VAR: &str = "SUPERNET_DIST_TIMEOUT";
/// Default collective and rendezvous timeout: a rank that hangs ends the job after this.
pub const DEFAULT_TIMEOUT_S: u64 = 300;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    pub launcher: &'static str,
    pub rank: usize,
    pub world: usize,
    /// The process's index on its machine (picks `cuda:LOCAL_RANK`).
    pub local_rank: usize,
    pub master_addr: String,
    pub master_port: u16,
    pub timeout_s: u64,
    /// Whether rank 0 serves the rendezvous store; torchrun's agent serves it itself at
    /// `MASTER_PORT` when it sets `TORCHELASTIC_USE_AGENT_STORE=True`.
    pub serve_store: bool,
}

/// The launch this process is part of, read through `var`; `None` for a plain
/// single-process run (no launcher variables, or a world of 1 without `MASTER_ADDR`).
pub fn detect(var: impl Fn(&str) -> Option<String>) -> Result<Option<Launch>> {
    let sets: [(&'static str, [&str; 3]); 3] = [
        ("torchrun", ["RANK", "WORLD_SIZE", "LOCAL_RANK"]),
        (
            "mpirun",
            [
                "OMPI_COMM_WORLD_RANK",
                "OMPI_COMM_WORLD_SIZE",
                "OMPI_COMM_WORLD_LOCAL_RANK",
            ],
        ),
        (
            "srun",
            ["SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_LOCALID"],
        ),
    ];
    let Some((launcher, [rank_var, world_var, local_var])) = sets
        .into_iter()
        .find(|(_, [r, w, _])| var(r).is_some() && var(w).is_some())
    else {
        return Ok(None);
    };
    let number = |name: &str| -> Result<Option<usize>> {
        var(name)
            .map(|v| {
                v.trim().parse::<usize>().map_err(|_| {
                    Error::invalid(
                        format!("environment variable {name}"),
                        &v,
                        "a non-negative integer",
                    )
                })
            })
            .transpose()
    };
    let rank = number(rank_var)?.unwrap_or(0);
    let world = number(world_var)?.unwrap_or(1);
    if world == 0 || rank >= world {
        return Err(Error::invalid(
            format!("environment variable {rank_var}"),
            rank,
            format!("a rank below {world_var} = {world}"),
        ));
    }
    let master_addr = var("MASTER_ADDR");
    if world == 1 && master_addr.is_none() {
        return Ok(None);
    }
    let Some(master_addr) = master_addr else {
        return Err(Error::invalid(
            "environment variable MASTER_ADDR",
            "unset",
            format!(
                "the host of rank 0 for a {world}-process {launcher} job (export MASTER_ADDR and MASTER_PORT to every process)"
            ),
        ));
    };
    let port = var("MASTER_PORT").unwrap_or_else(|| "29500".into());
    let master_port = port
        .trim()
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| {
            Error::invalid(
                "environment variable MASTER_PORT",
                &port,
                "a TCP port, 1..65535",
            )
        })?;
    let timeout_s = match var(TIMEOUT_VAR) {
        Some(v) => v
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|t| *t > 0)
            .ok_or_else(|| {
                Error::invalid(
                    format!("environment variable {TIMEOUT_VAR}"),
                    &v,
                    "a positive number of seconds",
                )
            })?,
        None => DEFAULT_TIMEOUT_S,
    };
    Ok(Some(Launch {
        launcher,
        rank,
        world,
        local_rank: number(local_var)?.unwrap_or(0),
        master_addr,
        master_port,
        timeout_s,
        serve_store: rank == 0 && var("TORCHELASTIC_USE_AGENT_STORE").as_deref() != Some("True"),
    }))
}
