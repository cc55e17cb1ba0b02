//! The data-parallel side of a search step (see [`crate::distrib`]): what the ranks agree
//! on before the first step, and what they exchange and check around every step. The
//! gradient averages themselves sit where the gradients are made ([`SearchState::average`]).
use super::config::SearchConfig;
use super::state::SearchState;
use crate::distrib::{fingerprint, Group};
use crate::run::StepStats;
use crate::Result;
use tch::Tensor;

/// Settle what a data-parallel start records (`bn_groups`: one per process unless given)
/// and check that every rank runs the same config; the BN groups of each rank.
pub fn agree_on_config(cfg: &mut SearchConfig, group: &Group, resuming: bool) -> Result<usize> {
    if !resuming && cfg.bn_groups.is_none() {
        cfg.bn_groups = Some(group.world());
    }
    let local = cfg.check_bn_groups(group.world())?;
    let text = cfg.to_toml();
    group.check_identical(
        crate::rng::hash_key(&text.bytes().map(u64::from).collect::<Vec<_>>()),
        "the configs (every rank must be started with the same command line)",
    )?;
    Ok(local)
}

/// Rank 0's weights, BN statistics and alphas on every rank (as DDP does when it wraps a
/// model), then the check that they are identical.
pub fn broadcast_state(st: &SearchState, group: &Group) -> Result<()> {
    let mut all: Vec<Tensor> = st.weights.iter().map(|w| w.shallow_clone()).collect();
    all.extend(st.buffers.iter().map(|b| b.shallow_clone()));
    all.extend(st.arch.tensors());
    group.broadcast(&all, 0, "the start (broadcast of rank 0's state)")?;
    check_in_sync(st, group)
}

/// Before a step: rank 0's BN running statistics on every rank (DDP's `broadcast_buffers`).
pub fn before_step(st: &SearchState, group: &Group) -> Result<()> {
    group.broadcast(&st.buffers, 0, "the BN statistics broadcast")
}

/// After a step: the step's measurements averaged over the ranks (the gradient norm is
/// already the global one), and the check that weights and alphas are bit-identical.
pub fn after_step(st: &SearchState, group: &Group, stats: StepStats) -> Result<StepStats> {
    let m = group.mean_f64(
        &[
            stats.train_loss,
            stats.train_acc,
            stats.val_loss,
            stats.val_acc,
        ],
        "the step statistics all-reduce",
    )?;
    // Fault injection for the tests: this rank's alphas drift by one ulp-sized step.
    fail::fail_point!("distrib::diverge", |_| {
        tch::no_grad(|| {
            let _ = st.arch.tensors()[0].shallow_clone().g_add_scalar_(1e-7);
        });
        check_in_sync(st, group).map(|()| stats)
    });
    check_in_sync(st, group)?;
    Ok(StepStats {
        train_loss: m[0],
        train_acc: m[1],
        val_loss: m[2],
        val_acc: m[3],
        ..stats
    })
}

/// An error unless every rank's weights and alphas have the same bits (one checksum per
/// rank, gathered).
pub fn check_in_sync(st: &SearchState, group: &Group) -> Result<()> {
    let alphas = st.arch.tensors();
    let sums = [fingerprint(&alphas)?, fingerprint(&st.weights)?];
    group.check_identical(
        crate::rng::hash_key(&sums),
        &format!(
            "the weights and alphas after global step {}",
            st.global_step + 1
        ),
    )
}
