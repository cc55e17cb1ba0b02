//! `supernet extract`: the sub-network of a trained supernet with the weights it inherits,
//! as a stand-alone model file that `supernet train --init` fine-tunes from.
use crate::model::{Model, ModelSpec};
use crate::run::RunDir;
use crate::search::load_trained;
use crate::space::Genotype;
use crate::supernet::OpStyle;
use crate::Result;
use std::path::{Path, PathBuf};

/// Export the sub-network of `genotype` (default: the run's current derivation) of the
/// supernet in `run_dir` into `out`; returns the path of its `model.json`.
pub fn extract(run_dir: &Path, genotype: Option<Genotype>, out: &Path) -> Result<PathBuf> {
    let run = RunDir::attach(run_dir)?;
    let trained = load_trained(run.path())?;
    trained
        .cfg
        .require_full_channels("extracting a sub-network")?;
    let st = &trained.state;
    let space = trained.setup.space.clone();
    let genotype = match genotype {
        Some(g) => g,
        None => st.arch.genotype(&space)?,
    };
    genotype.validate(&space)?;
    let spec = ModelSpec {
        space_file: trained.cfg.space.clone(),
        space,
        genotype,
        input: trained.setup.input,
        style: OpStyle::Inherited,
        auxiliary: false,
    };
    let model = Model::new(spec, tch::Device::Cpu)?;
    crate::model::inherit(&model, &st.vs.variables(), run_dir)?;
    let origin = format!(
        "supernet extract, run {}, after {} steps ({} epochs)",
        run_dir.display(),
        trained.global_step,
        trained.epoch
    );
    model.export(out, trained.cfg.seed, &origin)
}
