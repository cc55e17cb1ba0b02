//! Checkpoints: one safetensors file holding the network (weights and BN statistics), the
//! alphas, both optimizers' state and the position in the run, written atomically. The data
//! order and augmentation are pure functions of (seed, epoch, step), so the position is
//! the whole RNG state.
use super::state::SearchState;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;
use tch::{Device, Kind, Tensor};

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
    for (t, a) in &st.arch.alphas {
        named.push((format!("arch.{}", t.name()), a.shallow_clone()));
    }
    for (name, buf) in st.weight_names.iter().zip(&st.sgd.buffers) {
        named.push((format!("sgd.{name}"), buf.shallow_clone()));
    }
    let adam = st.adam.exp_avg.iter().zip(&st.adam.exp_avg_sq);
    for ((t, _), (m, v)) in st.arch.alphas.iter().zip(adam) {
        named.push((format!("adam.m.{}", t.name()), m.shallow_clone()));
        named.push((format!("adam.v.{}", t.name()), v.shallow_clone()));
    }
    named
}

pub fn save(st: &SearchState, pos: &Position, dir: &Path) -> Result<()> {
    let mut named = state_tensors(st);
    let json = serde_json::to_vec(pos).expect("a Position always serialises");
    named.push(("position".into(), Tensor::from_slice(&json)));
    let named: Vec<(String, Tensor)> = named
        .into_iter()
        .map(|(k, v)| (k, v.to_device(Device::Cpu)))
        .collect();

    let dest = dir.join(FILE);
    let tmp = dir.join(format!("{FILE}.tmp"));
    let result = Tensor::write_safetensors(&named, &tmp)
        .map_err(|e| Error::Other(format!("{}: writing checkpoint failed: {e}", tmp.display())))
        .and_then(|()| crate::fsutil::commit(&tmp, &dest));
    if result.is_err() {
        // The previous checkpoint is untouched.
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Restore `st` in place from `dir`'s checkpoint; returns the position to continue from.
pub fn load(st: &mut SearchState, dir: &Path, space_hash: u64) -> Result<Position> {
    let path = dir.join(FILE);
    if !path.is_file() {
        return Err(Error::bad_file(
            &path,
            "no checkpoint: nothing to resume in this directory",
        ));
    }
    let bad = |m: String| Error::bad_file(&path, m);
    let tensors =
        Tensor::read_safetensors(&path).map_err(|e| bad(format!("unreadable checkpoint: {e}")))?;
    let mut map: std::collections::HashMap<String, Tensor> = tensors.into_iter().collect();
    let mut take = |name: &str| {
        map.remove(name)
            .ok_or_else(|| bad(format!("missing tensor '{name}'")))
    };

    let json = Vec::<u8>::try_from(take("position")?.to_kind(Kind::Uint8))
        .map_err(|e| bad(e.to_string()))?;
    let pos: Position =
        serde_json::from_slice(&json).map_err(|e| bad(format!("bad position record: {e}")))?;
    if pos.space_hash != space_hash {
        return Err(bad(
            "this checkpoint was written for a different search space (or network size) than the run's".into(),
        ));
    }
    let copy = |dst: &Tensor, src: Tensor, name: &str| -> Result<()> {
        if dst.size() != src.size() {
            return Err(bad(format!(
                "'{name}' has shape {:?}, the network expects {:?}",
                src.size(),
                dst.size()
            )));
        }
        tch::no_grad(|| dst.shallow_clone().copy_(&src));
        Ok(())
    };
    for (key, dst) in state_tensors(st) {
        copy(&dst, take(&key)?, &key)?;
    }
    st.adam.step = pos.adam_step;
    Ok(pos)
}
