//! A stand-alone network of one genotype, and its export format: `model.safetensors`
//! (every variable under its network name, BN statistics included) beside `model.json`
//! (what the network is and where it came from). `scripts/rebuild_model.py` rebuilds it in
//! PyTorch from those two files alone.
use crate::info::{LIBTORCH_VERSION, SOURCE_REVISION};
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

/// `model.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Description {
    pub format: String,
    pub format_version: u32,
    pub genotype: Genotype,
    /// The DARTS or NAS-Bench-201 text form of `genotype`.
    pub genotype_text: String,
    pub space_file: PathBuf,
    /// The resolved space (TOML) and its fingerprint (hex).
    pub space: String,
    pub space_hash: String,
    pub input: InputShape,
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
        let mut named: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        named
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
        let mut all = 0;
        let mut aux = 0;
        for (name, t) in self.vs.variables() {
            if t.requires_grad() {
                all += t.numel() as i64;
                if name.starts_with(AUXILIARY_PREFIX) {
                    aux += t.numel() as i64;
                }
            }
        }
        (all, all - aux)
    }

    pub fn describe(&self, seed: u64, origin: &str) -> Description {
        let s = &self.spec;
        let (parameters, parameters_without_auxiliary) = self.parameter_counts();
        Description {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            genotype: s.genotype.clone(),
            genotype_text: s.genotype.to_text(),
            space_file: s.space_file.clone(),
            space: s.space.to_toml(),
            space_hash: format!("{:016x}", s.space.fingerprint()),
            input: s.input,
            style: s.style,
            auxiliary: s.auxiliary,
            parameters,
            parameters_without_auxiliary,
            macs_per_image: self.net.macs_per_image(),
            seed,
            origin: origin.into(),
            source_revision: SOURCE_REVISION.into(),
            supernet_version: env!("CARGO_PKG_VERSION").into(),
            libtorch_version: LIBTORCH_VERSION.into(),
            tensors: self
                .named_tensors()
                .into_iter()
                .map(|(name, t)| TensorEntry {
                    name,
                    shape: t.size(),
                })
                .collect(),
        }
    }

    /// Write `dir/model.safetensors`, the probe, then `dir/model.json`, each atomically.
    pub fn export(&self, dir: &Path, seed: u64, origin: &str) -> Result<PathBuf> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        crate::tensorfile::save(self.named_tensors(), &dir.join(WEIGHTS_FILE))?;
        crate::tensorfile::save(self.probe(seed), &dir.join(PROBE_FILE))?;
        let json = serde_json::to_string_pretty(&self.describe(seed, origin))
            .expect("a Description always serialises");
        let path = dir.join(DESCRIPTION_FILE);
        crate::fs::write_atomic(&path, format!("{json}\n").as_bytes())?;
        Ok(path)
    }

    /// `images` (standard normal, from `seed`) and their eval-mode `logits`.
    pub fn probe(&self, seed: u64) -> Vec<(String, Tensor)> {
        let i = self.spec.input;
        let gen_seed = crate::rng::hash_key(&[seed, crate::rng::PURPOSE_PROBE]);
        tch::manual_seed(gen_seed as i64);
        let images = Tensor::randn(
            [PROBE_IMAGES, i.channels, i.height, i.width],
            (tch::Kind::Float, Device::Cpu),
        );
        let logits = tch::no_grad(|| {
            self.forward(&images.to_device(self.vs.device()), Pass::new(false))
                .main
                .to_device(Device::Cpu)
        });
        vec![("images".into(), images), ("logits".into(), logits)]
    }

    /// Load an exported model: `path` is its directory or its `model.json`.
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
        let mut map = TensorMap::read(&dir.join(WEIGHTS_FILE))?;
        for (name, dst) in self.named_tensors() {
            map.copy_into(&name, &dst)?;
        }
        map.finish()
    }
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
    /// The network this description fixes; `path` (its file) names errors.
    pub fn spec(&self, path: &Path) -> Result<ModelSpec> {
        let space = SearchSpace::from_toml(&self.space)
            .map_err(|e| Error::bad_file(path, format!("field 'space': {e}")))?;
        Ok(ModelSpec {
            space_file: self.space_file.clone(),
            space,
            genotype: self.genotype.clone(),
            input: self.input,
            style: self.style,
            auxiliary: self.auxiliary,
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
