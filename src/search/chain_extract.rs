//! `supernet extract` on a chain search: the network of one architecture (default: what the
//! run's alphas derive to now) with the weights it inherits from the supernet's last
//! checkpoint, as a stand-alone model export that `supernet train --init` fine-tunes from.
//! From elastic weights the export holds each chosen block's slices (first channels,
//! transformed kernel centre), so it computes what the supernet computes on that path.
use super::chain::ChainSearch;
use super::chain_job::load_checkpoint;
use super::config::SearchConfig;
use crate::model::{inherit, write_export, ChainModel, ChainModelSpec};
use crate::run::RunDir;
use crate::space::chain::{ChainArch, ChainSpace};
use crate::supernet::InputShape;
use crate::Result;
use std::path::{Path, PathBuf};
use tch::Device;

/// Export the network of `arch` of the chain supernet in `run_dir` into `out`; returns the
/// path of its `model.json`.
pub fn extract(run_dir: &Path, arch: Option<ChainArch>, out: &Path) -> Result<PathBuf> {
    let run = RunDir::attach(run_dir)?;
    let cfg: SearchConfig = crate::run::read_config(run.path())?;
    let space = ChainSpace::load(&cfg.space)?;
    cfg.validate()?;
    let input = InputShape::of(&cfg.data.load()?.train);
    let mut search = ChainSearch::new(&space, input, &cfg, Device::Cpu)?;
    let pos = load_checkpoint(&mut search, run.path())?;
    let arch = match arch {
        Some(a) => a,
        None => search.derive(),
    };
    arch.validate(&space)?;
    // Elastic layers: the chosen blocks' slices, under the separate form's names.
    let materialised = search.net.materialised(&arch);
    let spec = ChainModelSpec {
        space_file: cfg.space.clone(),
        space,
        arch,
        input,
    };
    let model = ChainModel::new(spec, Device::Cpu)?;
    let mut supernet = search.vs.variables();
    supernet.extend(materialised);
    inherit(&model, &supernet, run_dir)?;
    let origin = format!(
        "supernet extract, run {}, after {} steps ({} epochs)",
        run_dir.display(),
        pos.global_step,
        pos.epoch
    );
    write_export(&model, out, cfg.seed, &origin)
}
