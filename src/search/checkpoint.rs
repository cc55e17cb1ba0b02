//! What a search checkpoint holds: the network (weights and BN statistics), the alphas
//! (and betas), both optimizers' state, and the position, under stable names.
use super::state::SearchState;
use crate::run::{checkpoint, Position, RunDir};
use crate::Result;
use serde::{Deserialize, Serialize};
use std::path::Path;
use tch::Tensor;

/// The position record of a search checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchPosition {
    #[serde(flatten)]
    pub pos: Position,
    pub adam_step: i64,
    /// Hash of the resolved space, to refuse resuming with another space.
    pub space_hash: u64,
}

/// Every tensor a checkpoint holds, by name, as live handles into the state: saving reads
/// them and loading copies into them, so the two cannot disagree.
fn state_tensors(st: &SearchState) -> Vec<(String, Tensor)> {
    let mut named: Vec<(String, Tensor)> = st
        .vs
        .variables()
        .into_iter()
        .map(|(k, v)| (format!("net.{k}"), v))
        .collect();
    // The alphas, then PC-DARTS's betas when the run has them (the Adam order).
    let arch = st.arch.named();
    for (name, a) in &arch {
        named.push((format!("arch.{name}"), a.shallow_clone()));
    }
    for (name, buf) in st.weight_names.iter().zip(&st.sgd.buffers) {
        named.push((format!("sgd.{name}"), buf.shallow_clone()));
    }
    let adam = st.adam.exp_avg.iter().zip(&st.adam.exp_avg_sq);
    for ((name, _), (m, v)) in arch.iter().zip(adam) {
        named.push((format!("adam.m.{name}"), m.shallow_clone()));
        named.push((format!("adam.v.{name}"), v.shallow_clone()));
    }
    if let Some(scaler) = &st.scaler {
        named.push(("amp.scale".into(), scaler.scale.shallow_clone()));
        named.push((
            "amp.growth_tracker".into(),
            scaler.growth_tracker.shallow_clone(),
        ));
    }
    named
}

/// `extra`: the strategy's own state ([`super::Strategy::state_tensors`]).
pub fn save(
    st: &SearchState,
    extra: Vec<(String, Tensor)>,
    dir: &RunDir,
    pos: &Position,
) -> Result<()> {
    let record = SearchPosition {
        pos: *pos,
        adam_step: st.adam.step,
        space_hash: st.space.fingerprint(),
    };
    let mut tensors = state_tensors(st);
    tensors.extend(extra);
    checkpoint::save(dir, tensors, &record)
}

/// Restore `st` in place from the checkpoint of the run in `dir`; returns the position to
/// continue from. `extra` as for [`save`] (empty: the strategy's own state is not read).
pub fn load(st: &mut SearchState, extra: Vec<(String, Tensor)>, dir: &Path) -> Result<Position> {
    let mut map = checkpoint::open(dir)?;
    let record: SearchPosition = checkpoint::decode_record(&mut map)?;
    if record.space_hash != st.space.fingerprint() {
        return Err(map.error(
            "this checkpoint was written for a different search space (or network size) than the run's",
        ));
    }
    for (key, dst) in state_tensors(st).into_iter().chain(extra) {
        map.copy_into(&key, &dst)?;
    }
    st.adam.step = record.adam_step;
    Ok(record.pos)
}
