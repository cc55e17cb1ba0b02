//! A stand-alone network of one genotype, and its export format: `model.safetensors`
//! (every variable under its network name, BN statistics included) beside `model.json`
//! (what the network is and where it came from). `scripts/rebuild_model.py` rebuilds it in
//! PyTorch from those two files alone. A cell network is described by its cell space and
//! genotype, a chain network ([`chain`]) by its chain space and one choice per layer.
mod chain;

pub use chain::{ChainModel, ChainModelSpec};

use crate::data::Loader;
use crate::evaluate::{evaluate, evaluate_with, Score};
use crate::info::{LIBTORCH_VERSION, SOURCE_REVISION};
use crate::space::chain::Choice;
use crate::space::{Genotype, SearchSpace};
use crate::supernet::{ArchWeights, InputShape, Logits, OpStyle, Pass, Supernet};
use crate::tensorfile::TensorMap;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::{nn, Device, Tensor};

pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const DESCRIPTION_FILE: &str = "model.json";
/// A few fixed random images and the logits `supernet` computes for them (eval mode), so
/// a rebuilt network anywhere can check itself against this one.
pub const PROBE_FILE: &str = "model.probe.safetensors";
const PROBE_IMAGES: i64 = 4;
pub const FORMAT: &str = "supernet-model";
pub const FORMAT_VERSION: u32 = 1;
/// Parameter names of the auxiliary head start with this.
pub const AUXILIARY_PREFIX: &str = "auxiliary_head.";

/// Everything that fixes a stand-alone network's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    /// The space file as given, and the space resolved from it (sizes applied).
    pub space_file: PathBuf,
    pub space: SearchSpace,
    pub genotype: Genotype,
    pub input: InputShape,
    pub style: OpStyle,
    pub auxiliary: bool,
}

/// The network of a [`ModelSpec`] with its variables.
pub struct Model {
    pub spec: ModelSpec,
    pub vs: nn::VarStore,
    pub net: Supernet,
    mix: ArchWeights,
}

/// What kind of network a description holds; files written before chain networks existed
/// hold cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkKind {
    #[default]
    Cell,
    Chain,
}

/// `model.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Description {
    pub format: String,
    pub format_version: u32,
    #[serde(default)]
    pub network: NetworkKind,
    /// A cell network's genotype.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub genotype: Option<Genotype>,
    /// A chain network's choice per searchable layer, in layer order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<Vec<Choice>>,
    /// The DARTS or NAS-Bench-201 text form of `genotype`, or the chain architecture's
    /// text form (choices comma-separated).
    pub genotype_text: String,
    pub space_file: PathBuf,
    /// The resolved space (TOML) and its fingerprint (hex).
    pub space: String,
    pub space_hash: String,
    pub input: InputShape,
    /// Cell networks only; a chain network has one form (`standalone`, no auxiliary head).
    pub style: OpStyle,
    pub auxiliary: bool,
    pub parameters: i64,
    pub parameters_without_auxiliary: i64,
    pub macs_per_image: u64,
    pub seed: u64,
    /// What produced the weights (a training run, an extraction from a supernet).
    pub origin: String,
    pub source_revision: String,
    pub supernet_version: String,
    pub libtorch_version: String,
    /// Name and shape of every tensor in `model.safetensors`.
    pub tensors: Vec<TensorEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorEntry {
    pub name: String,
    pub shape: Vec<i64>,
}

impl Model {
    /// Build with fresh (PyTorch-style) initial weights from libtorch's generator.
    pub fn new(spec: ModelSpec, device: Device) -> Result<Self> {
        let vs = nn::VarStore::new(device);
        let net = Supernet::standalone(
            &vs.root(),
            &spec.space,
            spec.input,
            &spec.genotype,
            spec.style,
            spec.auxiliary,
        )?;
        let mix = ArchWeights::from_genotype(&spec.genotype, &spec.space, device)?;
        Ok(Model { spec, vs, net, mix })
    }

    pub fn forward(&self, xs: &Tensor, pass: Pass) -> Logits {
        self.net.forward_pass(xs, &self.mix, pass)
    }

    /// The one-hot mixing weights that select the genotype's operations.
    pub fn arch_weights(&self) -> &ArchWeights {
        &self.mix
    }

    /// Variables by name, sorted (weights and BN statistics).
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        sorted_variables(&self.vs)
    }

    /// Trainable parameters and multiply-adds per image of the network of `spec`, built on
    /// the CPU to count them.
    pub fn cost(spec: ModelSpec) -> Result<(u64, u64)> {
        let model = Model::new(spec, Device::Cpu)?;
        Ok((
            model.parameter_counts().0 as u64,
            model.net.macs_per_image(),
        ))
    }

    /// Trainable parameters: all, and without the auxiliary head.
    pub fn parameter_counts(&self) -> (i64, i64) {
        parameter_counts(&self.vs)
    }

    pub fn describe(&self, seed: u64, origin: &str) -> Description {
        let s = &self.spec;
        Description {
            network: NetworkKind::Cell,
            genotype: Some(s.genotype.clone()),
            genotype_text: s.genotype.to_text(),
            space_file: s.space_file.clone(),
            space: s.space.to_toml(),
            space_hash: format!("{:016x}", s.space.fingerprint()),
            style: s.style,
            auxiliary: s.auxiliary,
            ..Description::common(self, seed, origin, self.net.macs_per_image())
        }
    }

    /// Write `dir/model.safetensors`, the probe, then `dir/model.json`, each atomically.
    pub fn export(&self, dir: &Path, seed: u64, origin: &str) -> Result<PathBuf> {
        write_export(self, dir, seed, origin)
    }

    /// `images` (standard normal, from `seed`) and their eval-mode `logits`.
    pub fn probe(&self, seed: u64) -> Vec<(String, Tensor)> {
        probe(self, seed)
    }

    /// Load an exported cell network: `path` is its directory or its `model.json`.
    pub fn load(path: &Path, device: Device) -> Result<(Self, Description)> {
        let (dir, json_path) = locate(path);
        let desc = read_description(&json_path)?;
        let model = Model::new(desc.spec(&json_path)?, device)
            .map_err(|e| Error::bad_file(&json_path, format!("cannot build its network: {e}")))?;
        model.load_weights(&dir)?;
        Ok((model, desc))
    }

    /// Copy every tensor of the export in `dir` into this network (same names and shapes,
    /// nothing left over).
    pub fn load_weights(&self, dir: &Path) -> Result<()> {
        load_weights(self, dir)
    }
}

/// A stand-alone network of either kind, as training and export see it.
pub trait Standalone {
    fn input(&self) -> InputShape;
    fn forward(&self, xs: &Tensor, pass: Pass) -> Logits;
    fn var_store(&self) -> &nn::VarStore;
    /// The architecture's text form and its JSON form (as a search's `genotype.json`).
    fn arch_text(&self) -> String;
    fn arch_json(&self) -> String;
    /// How it is built, for progress lines.
    fn form(&self) -> String;
    fn describe(&self, seed: u64, origin: &str) -> Description;
    /// Loss and accuracy on `loader` in eval mode.
    fn score(&self, loader: &Loader, device: Device) -> Score {
        evaluate_with(
            |xs| self.forward(xs, Pass::new(false)).main,
            loader,
            device,
            None,
        )
    }
}

impl Standalone for Model {
    fn input(&self) -> InputShape {
        self.spec.input
    }

    fn forward(&self, xs: &Tensor, pass: Pass) -> Logits {
        Model::forward(self, xs, pass)
    }

    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    fn arch_text(&self) -> String {
        self.spec.genotype.to_text()
    }

    fn arch_json(&self) -> String {
        self.spec.genotype.to_json()
    }

    fn form(&self) -> String {
        format!("{} cell", self.spec.style.name())
    }

    fn describe(&self, seed: u64, origin: &str) -> Description {
        Model::describe(self, seed, origin)
    }

    fn score(&self, loader: &Loader, device: Device) -> Score {
        evaluate(&self.net, &self.mix, loader, device, false)
    }
}

/// Variables by name, sorted (weights and BN statistics).
pub fn sorted_variables(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named
}

/// Trainable parameters: all, and without the auxiliary head.
pub fn parameter_counts(vs: &nn::VarStore) -> (i64, i64) {
    let mut all = 0;
    let mut aux = 0;
    for (name, t) in vs.variables() {
        if t.requires_grad() {
            all += t.numel() as i64;
            if name.starts_with(AUXILIARY_PREFIX) {
                aux += t.numel() as i64;
            }
        }
    }
    (all, all - aux)
}

/// `images` (standard normal, from `seed`) and their eval-mode `logits`.
pub fn probe(model: &dyn Standalone, seed: u64) -> Vec<(String, Tensor)> {
    let i = model.input();
    let gen_seed = crate::rng::hash_key(&[seed, crate::rng::PURPOSE_PROBE]);
    tch::manual_seed(gen_seed as i64);
    let images = Tensor::randn(
        [PROBE_IMAGES, i.channels, i.height, i.width],
        (tch::Kind::Float, Device::Cpu),
    );
    let device = model.var_store().device();
    let logits = tch::no_grad(|| {
        model
            .forward(&images.to_device(device), Pass::new(false))
            .main
            .to_device(Device::Cpu)
    });
    vec![("images".into(), images), ("logits".into(), logits)]
}

/// Write `dir/model.safetensors`, the probe, then `dir/model.json`, each atomically.
pub fn write_export(
    model: &dyn Standalone,
    dir: &Path,
    seed: u64,
    origin: &str,
) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    crate::tensorfile::save(sorted_variables(model.var_store()), &dir.join(WEIGHTS_FILE))?;
    crate::tensorfile::save(probe(model, seed), &dir.join(PROBE_FILE))?;
    let json = serde_json::to_string_pretty(&model.describe(seed, origin))
        .expect("a Description always serialises");
    let path = dir.join(DESCRIPTION_FILE);
    crate::fs::write_atomic(&path, format!("{json}\n").as_bytes())?;
    Ok(path)
}

/// Copy every tensor of the export in `dir` into `model` (same names and shapes, nothing
/// left over).
pub fn load_weights(model: &dyn Standalone, dir: &Path) -> Result<()> {
    let mut map = TensorMap::read(&dir.join(WEIGHTS_FILE))?;
    for (name, dst) in sorted_variables(model.var_store()) {
        map.copy_into(&name, &dst)?;
    }
    map.finish()
}

/// Copy into every tensor of `model` the supernet tensor of the same name (`supernet`, the
/// variables of the run in `run_dir`).
pub fn inherit(
    model: &dyn Standalone,
    supernet: &std::collections::HashMap<String, Tensor>,
    run_dir: &Path,
) -> Result<()> {
    for (name, dst) in sorted_variables(model.var_store()) {
        let src = supernet.get(&name).ok_or_else(|| {
            Error::Other(format!(
                "the supernet of {} has no tensor '{name}' for this sub-network",
                run_dir.display()
            ))
        })?;
        tch::no_grad(|| dst.shallow_clone().copy_(src));
    }
    Ok(())
}

/// The network an export describes, of whichever kind, with its weights: `path` is its
/// directory or its `model.json`.
pub fn load_any(path: &Path, device: Device) -> Result<(Box<dyn Standalone>, Description)> {
    let (dir, json_path) = locate(path);
    let desc = read_description(&json_path)?;
    let model = desc.build(&json_path, device)?;
    load_weights(model.as_ref(), &dir)?;
    Ok((model, desc))
}

/// The directory and the `model.json` of an export given as either.
pub fn locate(path: &Path) -> (PathBuf, PathBuf) {
    if path.is_dir() {
        (path.to_path_buf(), path.join(DESCRIPTION_FILE))
    } else {
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        (dir, path.to_path_buf())
    }
}

impl Description {
    /// What every export describes the same way; the caller fills in the network.
    fn common(model: &dyn Standalone, seed: u64, origin: &str, macs_per_image: u64) -> Self {
        let (parameters, parameters_without_auxiliary) = parameter_counts(model.var_store());
        Description {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            network: NetworkKind::Cell,
            genotype: None,
            architecture: None,
            genotype_text: String::new(),
            space_file: PathBuf::new(),
            space: String::new(),
            space_hash: String::new(),
            input: model.input(),
            style: OpStyle::Standalone,
            auxiliary: false,
            parameters,
            parameters_without_auxiliary,
            macs_per_image,
            seed,
            origin: origin.into(),
            source_revision: SOURCE_REVISION.into(),
            supernet_version: env!("CARGO_PKG_VERSION").into(),
            libtorch_version: LIBTORCH_VERSION.into(),
            tensors: sorted_variables(model.var_store())
                .into_iter()
                .map(|(name, t)| TensorEntry {
                    name,
                    shape: t.size(),
                })
                .collect(),
        }
    }

    /// The cell network this description fixes; `path` (its file) names errors.
    pub fn spec(&self, path: &Path) -> Result<ModelSpec> {
        let genotype = match (self.network, &self.genotype) {
            (NetworkKind::Cell, Some(g)) => g.clone(),
            (NetworkKind::Cell, None) => {
                return Err(Error::bad_file(path, "a cell network without a 'genotype'"))
            }
            (NetworkKind::Chain, _) => {
                return Err(Error::bad_file(
                    path,
                    "a chain network, where a cell network is needed",
                ))
            }
        };
        let space = SearchSpace::from_toml(&self.space)
            .map_err(|e| Error::bad_file(path, format!("field 'space': {e}")))?;
        Ok(ModelSpec {
            space_file: self.space_file.clone(),
            space,
            genotype,
            input: self.input,
            style: self.style,
            auxiliary: self.auxiliary,
        })
    }

    /// The network of either kind this description fixes.
    pub fn net_spec(&self, path: &Path) -> Result<NetSpec> {
        Ok(match self.network {
            NetworkKind::Cell => NetSpec::Cell(self.spec(path)?),
            NetworkKind::Chain => NetSpec::Chain(self.chain_spec(path)?),
        })
    }

    /// That network with fresh weights.
    pub fn build(&self, path: &Path, device: Device) -> Result<Box<dyn Standalone>> {
        self.net_spec(path)?
            .build(device)
            .map_err(|e| Error::bad_file(path, format!("cannot build its network: {e}")))
    }
}

/// The network of either kind an export or a training run fixes.
#[derive(Debug, Clone, PartialEq)]
pub enum NetSpec {
    Cell(ModelSpec),
    Chain(ChainModelSpec),
}

impl NetSpec {
    pub fn input(&self) -> InputShape {
        match self {
            NetSpec::Cell(s) => s.input,
            NetSpec::Chain(s) => s.input,
        }
    }

    /// The network with fresh weights from libtorch's generator.
    pub fn build(self, device: Device) -> Result<Box<dyn Standalone>> {
        Ok(match self {
            NetSpec::Cell(s) => Box::new(Model::new(s, device)?),
            NetSpec::Chain(s) => Box::new(ChainModel::new(s, device)?),
        })
    }
}

pub fn read_description(path: &Path) -> Result<Description> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let desc: Description = serde_json::from_str(&text)
        .map_err(|e| Error::bad_file(path, format!("not a model description: {e}")))?;
    if desc.format != FORMAT || desc.format_version != FORMAT_VERSION {
        return Err(Error::bad_file(
            path,
            format!(
                "format '{}' version {}, expected '{FORMAT}' version {FORMAT_VERSION}",
                desc.format, desc.format_version
            ),
        ));
    }
    Ok(desc)
}
