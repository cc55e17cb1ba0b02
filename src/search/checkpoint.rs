//! Checkpoints: one safetensors file holding the network (weights and BN statistics), the
//! alphas, both optimizers' state and the position in the run, written atomically. The data
//! order and augmentation are pure functions of (seed, epoch, step), so the position is
//! the whole RNG state.
use super::state::SearchState;
use crate::tensorfile::TensorMap;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;
use tch::{Kind, Tensor};

pub const FILE: &str = "checkpoint.safetensors";

/// Where the run stands: the next step to run is `step_in_epoch` of `epoch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub epoch: usize,
    pub step_in_epoch: usize,
    /// Steps completed since the start of the run.
    pub global_step: u64,
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
    named
}

pub fn save(st: &SearchState, pos: &Position, dir: &Path) -> Result<()> {
    let mut named = state_tensors(st);
    named.push(("position".into(), encode_position(pos)));
    // On failure the previous checkpoint is untouched.
    crate::tensorfile::save(named, &dir.join(FILE))
}

/// A JSON record as a byte tensor, so the position travels in the same atomic file.
pub fn encode_position(pos: &impl Serialize) -> Tensor {
    let json = serde_json::to_vec(pos).expect("a position always serialises");
    Tensor::from_slice(&json)
}

pub fn decode_position<P: for<'de> Deserialize<'de>>(map: &mut TensorMap) -> Result<P> {
    let json = Vec::<u8>::try_from(map.take("position")?.to_kind(Kind::Uint8))
        .map_err(|e| map.error(e.to_string()))?;
    serde_json::from_slice(&json).map_err(|e| map.error(format!("bad position record: {e}")))
}

/// Open the checkpoint of `dir`, with a message that says why resuming needs one.
pub fn open(dir: &Path) -> Result<TensorMap> {
    let path = dir.join(FILE);
    if !path.is_file() {
        return Err(Error::bad_file(
            &path,
            "no checkpoint: nothing to resume in this directory",
        ));
    }
    TensorMap::read(&path)
}

/// Restore `st` in place from `dir`'s checkpoint; returns the position to continue from.
pub fn load(st: &mut SearchState, dir: &Path, space_hash: u64) -> Result<Position> {
    let mut map = open(dir)?;
    let pos: Position = decode_position(&mut map)?;
    if pos.space_hash != space_hash {
        return Err(map.error(
            "this checkpoint was written for a different search space (or network size) than the run's",
        ));
    }
    for (key, dst) in state_tensors(st) {
        map.copy_into(&key, &dst)?;
    }
    st.adam.step = pos.adam_step;
    Ok(pos)
}
