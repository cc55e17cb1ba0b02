//! A stand-alone chain network: the blocks of one architecture of a chain space, named as
//! in the chain supernet (so that it inherits the supernet's weights by name), exported in
//! the same format as cell networks with `network = "chain"`, the resolved chain space and
//! the choice per searchable layer.
use super::{Description, NetworkKind, Standalone};
use crate::space::chain::{arch_cost, ChainArch, ChainSpace};
use crate::supernet::{image_shape, ChainNet, InputShape, Logits, MixWeights, OpStyle, Pass};
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use tch::{nn, Device, Tensor};

/// Everything that fixes a stand-alone chain network's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainModelSpec {
    /// The space file as given, and the space read from it.
    pub space_file: PathBuf,
    pub space: ChainSpace,
    pub arch: ChainArch,
    pub input: InputShape,
}

pub struct ChainModel {
    pub spec: ChainModelSpec,
    pub vs: nn::VarStore,
    pub net: ChainNet,
    mix: MixWeights,
}

impl ChainModel {
    /// Build with fresh (PyTorch-style) initial weights from libtorch's generator.
    pub fn new(spec: ChainModelSpec, device: Device) -> Result<Self> {
        let vs = nn::VarStore::new(device);
        let net = ChainNet::of_arch(&vs.root(), &spec.space, spec.input, &spec.arch)?;
        let mix = MixWeights::one_hot_rows(
            &spec.arch.columns(&spec.space),
            spec.space.choices().len(),
            device,
        );
        Ok(ChainModel { spec, vs, net, mix })
    }

    /// Exact multiply-adds per image (the cost model's count).
    pub fn macs_per_image(&self) -> u64 {
        let s = &self.spec;
        arch_cost(&s.space, &s.arch, image_shape(s.input)).macs
    }
}

impl Standalone for ChainModel {
    fn input(&self) -> InputShape {
        self.spec.input
    }

    /// A chain network has no auxiliary head and no drop-path.
    fn forward(&self, xs: &Tensor, pass: Pass) -> Logits {
        Logits {
            main: self.net.forward_t(xs, &self.mix, pass.train),
            auxiliary: None,
        }
    }

    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    fn arch_text(&self) -> String {
        self.spec.arch.to_text()
    }

    fn arch_json(&self) -> String {
        serde_json::to_string(&self.spec.arch.layers).expect("choices serialise")
    }

    fn form(&self) -> String {
        format!("chain ('{}')", self.spec.space.name)
    }

    fn describe(&self, seed: u64, origin: &str) -> Description {
        let s = &self.spec;
        Description {
            network: NetworkKind::Chain,
            architecture: Some(s.arch.layers.clone()),
            genotype_text: s.arch.to_text(),
            space_file: s.space_file.clone(),
            space: s.space.to_toml(),
            space_hash: format!("{:016x}", s.space.fingerprint()),
            style: OpStyle::Standalone,
            auxiliary: false,
            ..Description::common(self, seed, origin, self.macs_per_image())
        }
    }
}

impl Description {
    /// The chain network this description fixes; `path` (its file) names errors.
    pub fn chain_spec(&self, path: &Path) -> Result<ChainModelSpec> {
        let layers = match (self.network, &self.architecture) {
            (NetworkKind::Chain, Some(a)) => a.clone(),
            (NetworkKind::Chain, None) => {
                return Err(Error::bad_file(
                    path,
                    "a chain network without an 'architecture'",
                ))
            }
            (NetworkKind::Cell, _) => {
                return Err(Error::bad_file(
                    path,
                    "a cell network, where a chain network is needed",
                ))
            }
        };
        let space = ChainSpace::from_toml(&self.space)
            .map_err(|e| Error::bad_file(path, format!("field 'space': {e}")))?;
        let arch = ChainArch { layers };
        arch.validate(&space)
            .map_err(|e| Error::bad_file(path, format!("field 'architecture': {e}")))?;
        Ok(ChainModelSpec {
            space_file: self.space_file.clone(),
            space,
            arch,
            input: self.input,
        })
    }
}
