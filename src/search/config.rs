//! The fully resolved configuration of a search, with the DARTS paper settings as defaults.
//! Written as `config.toml` into the run directory and into the run file.
use crate::backend::Precision;
use crate::data::{AugmentOverrides, DataSource};
use crate::run::parse_device;
use crate::run::paths::{self, ConfigFile};
use crate::space::chain::WeightSharing;
use crate::space::{NetworkOverrides, SearchSpace};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum StrategyKind {
    /// DARTS first order: the alpha gradient at the current weights.
    FirstOrder,
    /// DARTS second order: the alpha gradient at the weights after a virtual SGD step.
    SecondOrder,
    /// Single-path one-shot (Guo et al. 2020): one uniform path per step, weights only.
    Spos,
    /// GDAS (Dong & Yang 2019): hard Gumbel-softmax sample per edge, straight-through
    /// gradient to the alphas.
    Gdas,
    /// ENAS (Pham et al. 2018): an LSTM controller samples paths, trained by REINFORCE on
    /// the sampled sub-network's validation accuracy.
    Enas,
    /// ProxylessNAS (Cai et al. 2019), chain spaces only: binarised paths; one path per
    /// layer sampled from softmax(alpha) trains the weights, two sampled paths per layer and
    /// the binary-gate gradient train the alphas.
    Proxyless,
}

impl StrategyKind {
    pub fn name(self) -> &'static str {
        match self {
            StrategyKind::FirstOrder => "first-order",
            StrategyKind::SecondOrder => "second-order",
            StrategyKind::Spos => "spos",
            StrategyKind::Gdas => "gdas",
            StrategyKind::Enas => "enas",
            StrategyKind::Proxyless => "proxyless",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchConfig {
    /// The search-space file (absolute), or the name of a shipped space, and size
    /// overrides applied to it.
    pub space: PathBuf,
    #[serde(default)]
    pub network: NetworkOverrides,
    pub data: DataSource,
    /// Training images used (class-balanced, seeded) before the 50/50 split; all if absent.
    pub subset: Option<usize>,
    /// Training augmentation: each part left open takes the data format's default
    /// (resolved at the start and recorded as resolved).
    #[serde(default)]
    pub augment: AugmentOverrides,
    pub strategy: StrategyKind,
    pub epochs: usize,
    pub batch_size: usize,
    /// Weights: SGD with momentum, cosine schedule from `lr` to `lr_min`, gradient clipping.
    pub lr: f64,
    pub lr_min: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    /// Nesterov momentum for the weights (PyTorch `SGD(nesterov=True)`; the GDAS and
    /// NAS-Bench-201 search configs use it). The second-order virtual step keeps DARTS's
    /// plain-momentum formula either way, as xautodl's DARTS-V2 does.
    #[serde(default)]
    pub nesterov: bool,
    pub grad_clip: f64,
    /// Alphas: Adam.
    pub arch_lr: f64,
    pub arch_beta1: f64,
    pub arch_beta2: f64,
    pub arch_weight_decay: f64,
    /// Epochs at the start that train the weights only (PC-DARTS: `if epoch >= 15:
    /// architect.step(...)`); the alphas (and betas) stay as initialised meanwhile.
    #[serde(default)]
    pub arch_warmup_epochs: usize,
    /// GDAS: Gumbel-softmax temperature, annealed linearly from `tau_max` (first epoch) to
    /// `tau_min` (last epoch).
    #[serde(default = "default_tau_max")]
    pub tau_max: f64,
    #[serde(default = "default_tau_min")]
    pub tau_min: f64,
    pub seed: u64,
    /// "auto", "cpu", "cuda" or "cuda:N".
    pub device: String,
    /// Record the alphas every this many steps (and at every epoch end).
    pub alpha_every: usize,
    /// Checkpoint every this many steps (0: only at epoch ends).
    pub checkpoint_every: usize,
    /// CPU threads for libtorch (0: libtorch's default).
    pub threads: usize,
    /// Recompute each cell's activations in the backward pass instead of keeping them
    /// (activation checkpointing): the memory of one cell's graph instead of the whole
    /// network's, for about one more forward pass per backward pass.
    #[serde(default)]
    pub recompute: bool,
    /// PC-DARTS partial channel connections: each edge's ops see 1/K of the channels, and
    /// with K > 1 the edges are normalised by betas (1: plain DARTS).
    #[serde(default = "default_partial_channels")]
    pub partial_channels: usize,
    /// Precision of the weight step: fp32, or autocast to bf16 or fp16 (fp16 with loss
    /// scaling; a step whose scaled gradients overflow is skipped, as GradScaler does).
    #[serde(default)]
    pub precision: Precision,
    /// Precision of the alpha step (its forward and backward passes, and the second-order
    /// virtual step): fp32 or bf16.
    #[serde(default)]
    pub arch_precision: Precision,
    /// CUDA: deterministic cuDNN algorithms, no autotuning, deterministic algorithms where
    /// libtorch has them, so that a run repeats bit for bit.
    #[serde(default)]
    pub deterministic: bool,
    /// CUDA: cuDNN autotuning (`torch.backends.cudnn.benchmark`, which DARTS sets); off
    /// under `deterministic`.
    #[serde(default = "default_true")]
    pub cudnn_benchmark: bool,
    /// CUDA: activations in channels-last layout (always so on the CPU).
    #[serde(default)]
    pub channels_last: bool,
    /// BN batch statistics over this many equal groups of each batch ("ghost batch
    /// norm"); a data-parallel run's ranks each hold `bn_groups / world` of them, so its
    /// BN statistics are per rank as in PyTorch DDP. Unset: 1, or the number of processes
    /// of a data-parallel start (which records it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bn_groups: Option<usize>,
    /// ENAS controller settings (used by the enas strategy only).
    #[serde(default)]
    pub enas: super::controller::EnasSettings,
    /// Collapse remedies and signals (beta-DARTS, SDARTS-RS, DARTS-, DARTS+, R-DARTS); all off by default, and the table
    /// is left out of the config file then.
    #[serde(default, skip_serializing_if = "super::remedies::Remedies::is_off")]
    pub remedies: super::remedies::Remedies,
    /// A few-shot sub-supernet's fine-tuning (`supernet few-shot`): its split and budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub few_shot: Option<super::few_shot::FineTune>,
    /// Chain spaces: the expected-latency / expected-MACs penalty of the architecture loss
    /// (README "Hardware-aware search"); off, and left out of the config file, by default.
    #[serde(default, skip_serializing_if = "super::hardware::Hardware::is_off")]
    pub hardware: super::hardware::Hardware,
    /// Chain spaces: how the choices of a layer hold their weights: `separate` (one block
    /// per choice; the default, left out of the config file) or `elastic` (Once-for-All's
    /// nested weights: one largest block per layer).
    #[serde(default, skip_serializing_if = "WeightSharing::is_separate")]
    pub weight_sharing: WeightSharing,
    /// The preset these settings started from (`Preset::apply`), for the record; the values
    /// themselves are the fields above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<super::preset::Preset>,
}

impl Default for SearchConfig {
    fn default() -> Self {
        SearchConfig {
            space: PathBuf::from("darts_cnn"),
            network: NetworkOverrides::default(),
            data: DataSource::default(),
            subset: None,
            augment: AugmentOverrides::default(),
            strategy: StrategyKind::FirstOrder,
            epochs: 50,
            batch_size: 64,
            lr: 0.025,
            lr_min: 0.001,
            momentum: 0.9,
            weight_decay: 3e-4,
            nesterov: false,
            grad_clip: 5.0,
            arch_lr: 3e-4,
            arch_beta1: 0.5,
            arch_beta2: 0.999,
            arch_weight_decay: 1e-3,
            arch_warmup_epochs: 0,
            tau_max: default_tau_max(),
            tau_min: default_tau_min(),
            seed: 2,
            device: "auto".into(),
            alpha_every: 10,
            checkpoint_every: 0,
            threads: 0,
            recompute: false,
            partial_channels: default_partial_channels(),
            precision: Precision::Fp32,
            arch_precision: Precision::Fp32,
            deterministic: false,
            cudnn_benchmark: true,
            channels_last: false,
            bn_groups: None,
            enas: Default::default(),
            remedies: Default::default(),
            few_shot: None,
            hardware: Default::default(),
            weight_sharing: WeightSharing::Separate,
            preset: None,
        }
    }
}

fn default_tau_max() -> f64 {
    10.0
}

fn default_tau_min() -> f64 {
    0.1
}

fn default_partial_channels() -> usize {
    1
}

fn default_true() -> bool {
    true
}

impl SearchConfig {
    /// GDAS temperature of `epoch`: linear from `tau_max` to `tau_min` over the epochs.
    pub fn tau(&self, epoch: usize) -> f64 {
        let span = self.epochs.saturating_sub(1).max(1) as f64;
        self.tau_max - (self.tau_max - self.tau_min) * (epoch as f64 / span).min(1.0)
    }

    /// The partial channels of the search supernet (`K`).
    pub fn partial(&self) -> crate::supernet::PartialChannels {
        crate::supernet::PartialChannels(self.partial_channels as i64)
    }

    /// PC-DARTS edge normalisation (betas) is on exactly when partial channels are.
    pub fn edge_normalisation(&self) -> bool {
        self.partial_channels > 1
    }

    /// Sub-networks inherit the supernet's op weights by name and shape; a partial-channel
    /// supernet's ops hold only `C/K` channels, so `what` (extraction, scoring) refuses it.
    pub fn require_full_channels(&self, what: &str) -> Result<()> {
        if self.partial_channels > 1 {
            return Err(Error::invalid(
                "partial_channels",
                self.partial_channels,
                format!(
                    "1 for {what}: this supernet was searched with PC-DARTS partial channels, its operations hold only C/{} channels and a sub-network cannot inherit them (train the derived genotype from scratch with `supernet train`)",
                    self.partial_channels
                ),
            ));
        }
        Ok(())
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
        toml::to_string_pretty(self).expect("a SearchConfig always serialises")
    }

    /// [`Self::validate`], then the space it names with the network overrides applied,
    /// checked against the options that depend on it.
    pub fn validate_with_space(&self) -> Result<SearchSpace> {
        self.validate()?;
        let space = SearchSpace::load(&self.space)?.with_overrides(self.network)?;
        if self.strategy == StrategyKind::Proxyless {
            return Err(Error::invalid(
                "strategy",
                "proxyless",
                format!(
                    "first-order, second-order, spos, gdas or enas for the cell space '{}' (proxyless binarises the paths of chain spaces only)",
                    space.name
                ),
            ));
        }
        if !self.weight_sharing.is_separate() {
            return Err(Error::invalid(
                "weight_sharing",
                self.weight_sharing.name(),
                format!(
                    "separate for the cell space '{}' (elastic weights are defined on chain spaces)",
                    space.name
                ),
            ));
        }
        if !self.hardware.is_off() {
            return Err(Error::invalid(
                "hardware",
                "a latency or MACs target",
                format!(
                    "none for the cell space '{}' (they are defined on chain spaces)",
                    space.name
                ),
            ));
        }
        self.partial().check_space(&space)?;
        self.remedies.check_space(&space)?;
        if let Some(f) = &self.few_shot {
            f.check_space(&space)?;
        }
        Ok(space)
    }

    /// Reject values no search can run with, naming the field.
    pub fn validate(&self) -> Result<()> {
        use crate::run::check::{at_least_one, fraction, positive};
        at_least_one("epochs", self.epochs)?;
        at_least_one("batch_size", self.batch_size)?;
        at_least_one("alpha_every", self.alpha_every)?;
        self.hardware.validate()?;
        positive("lr", self.lr)?;
        positive("arch_lr", self.arch_lr)?;
        positive("grad_clip", self.grad_clip)?;
        positive("tau_min", self.tau_min)?;
        if !(self.tau_max >= self.tau_min && self.tau_max.is_finite()) {
            return Err(Error::invalid(
                "tau_max",
                self.tau_max,
                format!("a finite number >= tau_min = {}", self.tau_min),
            ));
        }
        if !(0.0..=self.lr).contains(&self.lr_min) {
            return Err(Error::invalid(
                "lr_min",
                self.lr_min,
                format!("between 0 and lr = {}", self.lr),
            ));
        }
        for (field, v) in [
            ("momentum", self.momentum),
            ("arch_beta1", self.arch_beta1),
            ("arch_beta2", self.arch_beta2),
        ] {
            fraction(field, v)?;
        }
        parse_device(&self.device)?;
        at_least_one("partial_channels", self.partial_channels)?;
        super::speed::validate(self)?;
        self.check_bn_groups(1)?;
        self.enas.validate()?;
        self.remedies
            .validate(self.strategy, self.partial_channels)?;
        // Options of the DARTS strategies only.
        let darts = matches!(
            self.strategy,
            StrategyKind::FirstOrder | StrategyKind::SecondOrder
        );
        let darts_only = |field: &str, value: usize, off: usize, what: &str| {
            if value == off || darts {
                return Ok(());
            }
            Err(Error::invalid(
                field,
                value,
                format!(
                    "{off} with the {} strategy ({what} first-order and second-order)",
                    self.strategy.name()
                ),
            ))
        };
        darts_only(
            "arch_warmup_epochs",
            self.arch_warmup_epochs,
            0,
            "a warm-up without alpha updates applies to",
        )?;
        darts_only(
            "partial_channels",
            self.partial_channels,
            1,
            "partial channels work with",
        )?;
        match &self.few_shot {
            Some(f) => f.validate(self),
            None => Ok(()),
        }
    }
}

impl SearchConfig {
    /// `bn_groups` (1 when unset) shared out over `world` processes: each rank's number
    /// of BN groups, or an error naming what does not divide.
    pub fn check_bn_groups(&self, world: usize) -> Result<usize> {
        let groups = self.bn_groups.unwrap_or(1);
        crate::run::check::at_least_one("bn_groups", groups)?;
        if !self.batch_size.is_multiple_of(groups) || !groups.is_multiple_of(world) {
            return Err(Error::invalid(
                "bn_groups",
                groups,
                format!(
                    "a divisor of batch_size = {} and a multiple of the {world} data-parallel process(es)",
                    self.batch_size
                ),
            ));
        }
        if !self.batch_size.is_multiple_of(world) {
            return Err(Error::invalid(
                "batch_size",
                self.batch_size,
                format!("a multiple of the {world} data-parallel processes (the global batch is split evenly)"),
            ));
        }
        let local = groups / world;
        if local > 1 && self.recompute {
            return Err(Error::invalid(
                "bn_groups",
                groups,
                format!("at most one BN group per process ({world}) with recompute"),
            ));
        }
        Ok(local)
    }
}

impl ConfigFile for SearchConfig {
    fn resolve_paths(&mut self, base: &Path) {
        self.space = paths::from_config_file(&self.space, base);
        self.data.path = paths::from_config_file(&self.data.path, base);
        self.hardware.resolve_paths(base);
    }
}
