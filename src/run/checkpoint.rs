//! Checkpoints: one safetensors file holding a job's named tensors (network, optimizer
//! state, alphas) and its position record, written atomically. The data order and
//! augmentation are pure functions of (seed, epoch, step), so the position is the whole RNG
//! state.
use super::dir::RunDir;
use crate::tensorfile::TensorMap;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;
use tch::{Kind, Tensor};

/// Where a run stands: the next step to run is `step_in_epoch` of `epoch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Position {
    pub epoch: usize,
    pub step_in_epoch: usize,
    /// Steps completed since the start of the run.
    pub global_step: u64,
}

/// Write the checkpoint of the run in `dir`: `tensors` and the position `record` (any
/// serialisable record that holds the [`Position`]). On failure the previous checkpoint
/// is untouched.
pub fn save(
    dir: &RunDir,
    mut tensors: Vec<(String, Tensor)>,
    record: &impl Serialize,
) -> Result<()> {
    if !dir.is_writer() {
        return Ok(());
    }
    tensors.push(("position".into(), encode_record(record)));
    crate::tensorfile::save(tensors, &dir.checkpoint_file())
}

/// Open the checkpoint of the run in `dir`.
pub fn open(dir: &Path) -> Result<TensorMap> {
    let path = dir.join(super::CHECKPOINT_FILE);
    if !path.is_file() {
        return Err(Error::bad_file(
            &path,
            "no checkpoint: no run to continue or to read in this directory",
        ));
    }
    TensorMap::read(&path)
}

/// A JSON record as a byte tensor, so the position travels in the same atomic file.
fn encode_record(record: &impl Serialize) -> Tensor {
    let json = serde_json::to_vec(record).expect("a position record always serialises");
    Tensor::from_slice(&json)
}

/// The position record of a checkpoint.
pub fn decode_record<P: for<'de> Deserialize<'de>>(map: &mut TensorMap) -> Result<P> {
    let json = Vec::<u8>::try_from(map.take("position")?.to_kind(Kind::Uint8))
        .map_err(|e| map.error(e.to_string()))?;
    serde_json::from_slice(&json).map_err(|e| map.error(format!("bad position record: {e}")))
}
