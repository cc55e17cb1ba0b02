//! The fully resolved configuration of a stand-alone training run, with the DARTS
//! evaluation settings (`train.py`) as defaults. Written as `config.toml` into the run
//! directory and into the run file.
use crate::data::{Augment, AugmentOverrides, DataSource};
use crate::run::paths::{self, ConfigFile};
use crate::space::chain::ChainArch;
use crate::space::{Genotype, NetworkOverrides, Space};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// The architecture (any text form) and the space it belongs to, with the network size.
    pub genotype: String,
    pub space: PathBuf,
    #[serde(default)]
    pub network: NetworkOverrides,
    /// Start from this exported model (its network, weights and BN statistics) instead of
    /// fresh weights; its description then fixes the network.
    pub init: Option<PathBuf>,
    /// `standalone` (affine BN, trained from scratch) or `inherited` (the supernet's ops).
    pub style: crate::supernet::OpStyle,
    pub data: DataSource,
    /// Training images used (class-balanced, seeded); all if absent.
    pub subset: Option<usize>,
    /// Test images evaluated after each epoch (class-balanced, seeded); all if absent.
    pub test_subset: Option<usize>,
    /// Training augmentation: each part left open takes the data format's default
    /// (cutout: 16, see [`TrainConfig::augment_default`]).
    #[serde(default)]
    pub augment: AugmentOverrides,
    /// Weight of the auxiliary head's loss; 0 builds no head.
    pub auxiliary_weight: f64,
    /// Drop-path probability, ramped linearly from 0 over the epochs as in DARTS.
    pub drop_path: f64,
    pub epochs: usize,
    pub batch_size: usize,
    /// SGD with momentum, cosine schedule from `lr` to `lr_min`, gradient clipping.
    pub lr: f64,
    pub lr_min: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub grad_clip: f64,
    pub seed: u64,
    /// "auto", "cpu", "cuda" or "cuda:N".
    pub device: String,
    /// Checkpoint every this many steps (0: only at epoch ends).
    pub checkpoint_every: usize,
    /// CPU threads for libtorch (0: libtorch's default).
    pub threads: usize,
}

/// DARTS `train.py`: 20 cells, 36 channels, cutout 16 (set where the space is known).
pub const EVAL_LAYERS: usize = 20;
pub const EVAL_CHANNELS: usize = 36;
pub const EVAL_CUTOUT: usize = 16;

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            genotype: String::new(),
            space: PathBuf::from("darts_cnn"),
            network: NetworkOverrides::default(),
            init: None,
            style: crate::supernet::OpStyle::Standalone,
            data: DataSource::default(),
            subset: None,
            test_subset: None,
            augment: AugmentOverrides::default(),
            auxiliary_weight: 0.4,
            drop_path: 0.2,
            epochs: 600,
            batch_size: 96,
            lr: 0.025,
            lr_min: 0.0,
            momentum: 0.9,
            weight_decay: 3e-4,
            grad_clip: 5.0,
            seed: 0,
            device: "auto".into(),
            checkpoint_every: 0,
            threads: 0,
        }
    }
}

impl TrainConfig {
    /// What augmentation parts left open become: the data format's default, with DARTS's
    /// cutout of 16.
    pub fn augment_default(data_default: Augment) -> Augment {
        Augment {
            cutout: EVAL_CUTOUT,
            ..data_default
        }
    }

    /// Read a config file; its relative paths are relative to its directory.
    pub fn from_file(path: &Path) -> Result<Self> {
        <Self as ConfigFile>::from_file(path)
    }

    /// Parse the text of the config file `path`.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self> {
        <Self as ConfigFile>::from_toml(text, path)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a TrainConfig always serialises")
    }

    /// Reject values no training can run with, naming the field.
    pub fn validate(&self) -> Result<()> {
        use crate::run::check::{at_least_one, fraction, non_negative, positive};
        at_least_one("epochs", self.epochs)?;
        at_least_one("batch_size", self.batch_size)?;
        positive("lr", self.lr)?;
        positive("grad_clip", self.grad_clip)?;
        if !(0.0..=self.lr).contains(&self.lr_min) {
            return Err(Error::invalid(
                "lr_min",
                self.lr_min,
                format!("between 0 and lr = {}", self.lr),
            ));
        }
        fraction("momentum", self.momentum)?;
        fraction("drop_path", self.drop_path)?;
        non_negative("weight_decay", self.weight_decay)?;
        non_negative("auxiliary_weight", self.auxiliary_weight)?;
        if self.init.is_none() && self.genotype.trim().is_empty() {
            return Err(Error::invalid(
                "genotype",
                "(none)",
                "a genotype (--genotype FILE|STRING) or a model to start from (--init DIR)",
            ));
        }
        if self.init.is_none() {
            match Space::load(&self.space)? {
                Space::Cell(_) => {
                    Genotype::from_arg(&self.genotype)?;
                }
                Space::Chain(_) => {
                    self.refuse_cell_settings()?;
                    ChainArch::from_arg(&self.genotype)?;
                }
            }
        }
        if let Some(init) = &self.init {
            if !init.exists() {
                return Err(Error::invalid(
                    "init",
                    init.display(),
                    "an exported model (a directory with model.json and model.safetensors)",
                ));
            }
        }
        crate::run::parse_device(&self.device)?;
        Ok(())
    }
}

impl TrainConfig {
    /// A chain network has no auxiliary head, no drop-path, one op form and its size in its
    /// stages: refuse the settings that only cell networks have.
    pub fn refuse_cell_settings(&self) -> Result<()> {
        let refuse = |field: &str, value: String, expected: &str| {
            Err(Error::invalid(
                field,
                value,
                format!("{expected} for a chain network (cell networks only)"),
            ))
        };
        if self.auxiliary_weight != 0.0 {
            return refuse("auxiliary_weight", self.auxiliary_weight.to_string(), "0");
        }
        if self.drop_path != 0.0 {
            return refuse("drop_path", self.drop_path.to_string(), "0");
        }
        if self.style != crate::supernet::OpStyle::Standalone {
            return refuse("style", self.style.name().to_string(), "standalone");
        }
        if self.network != NetworkOverrides::default() {
            return refuse(
                "network",
                "--layers/--channels".to_string(),
                "none (edit the space's stages)",
            );
        }
        Ok(())
    }
}

impl ConfigFile for TrainConfig {
    fn resolve_paths(&mut self, base: &Path) {
        self.space = paths::from_config_file(&self.space, base);
        self.data.path = paths::from_config_file(&self.data.path, base);
        self.init = self.init.as_ref().map(|p| paths::from_config_file(p, base));
        if !Genotype::looks_like_text(&self.genotype)
            && !ChainArch::looks_like_text(&self.genotype)
            && !self.genotype.trim().is_empty()
        {
            let g = paths::from_config_file(Path::new(&self.genotype), base);
            self.genotype = g.display().to_string();
        }
    }
}
