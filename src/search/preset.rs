//! Published search settings, applied in one word: `Preset::Gdas.apply(&mut cfg)` sets every
//! field the publication fixes and leaves the others (data, seed, device, ...) alone, so
//! explicit settings given after it win. The values are plain data ([`Preset::settings`]);
//! each names its source, and README "Presets" has the same table.
//!
//! What the presets do not reproduce: the data pipeline (augmentation, the 50/50 split is
//! ours for every preset), GDAS's hand-designed reduction cell (GDAS-FRC), and SPOS's own
//! ImageNet/ShuffleNet setting (see [`Preset::Spos`]).
use super::config::{SearchConfig, StrategyKind};
use crate::space::NetworkOverrides;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// DARTS (Liu et al., ICLR 2019), second order as in the paper's CIFAR-10 cell:
    /// quark0/darts `cnn/train_search.py` defaults with `--unrolled`.
    Darts,
    /// PC-DARTS (Xu et al., ICLR 2020): yuhuixu1993/PC-DARTS `train_search.py` defaults
    /// (batch 256, lr 0.1, arch lr 6e-4, alphas frozen for the first 15 epochs) and
    /// `model_search.py` (K = 4).
    PcDarts,
    /// GDAS (Dong & Yang, CVPR 2019) in the DARTS space, searching both cells: xautodl
    /// `scripts-search/GDAS-search-NASNet-space.sh`, `configs/search-opts/
    /// GDAS-NASNet-CIFAR.config`, `configs/search-archs/GDAS-NASNet-CIFAR.config`.
    Gdas,
    /// GDAS in NAS-Bench-201 (Dong & Yang, ICLR 2020): xautodl
    /// `scripts-search/NAS-Bench-201-algos/GDAS.sh`, `configs/nas-benchmark/algos/GDAS.config`.
    Nb201Gdas,
    /// Uniform single-path supernet training in NAS-Bench-201, the SPOS training rule as
    /// NAS-Bench-201 ran it for random search with weight sharing: xautodl
    /// `scripts-search/NAS-Bench-201-algos/RANDOM-NAS.sh`, `configs/nas-benchmark/algos/
    /// RANDOM.config`. (SPOS itself, Guo et al. ECCV 2020, published only its ImageNet
    /// ShuffleNet setting: batch 1024, lr 0.5 with linear decay, weight decay 4e-5.)
    Spos,
    /// DARTS (second order) in NAS-Bench-201 (Dong & Yang, ICLR 2020): xautodl
    /// `scripts-search/NAS-Bench-201-algos/DARTS-V2.sh`, `configs/nas-benchmark/algos/DARTS.config`.
    Nb201Darts,
}

/// Everything a preset sets, as data.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// A shipped space (see [`crate::space::is_shipped`]).
    pub space: &'static str,
    pub layers: usize,
    pub channels: usize,
    pub strategy: StrategyKind,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub lr_min: f64,
    pub momentum: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
    pub grad_clip: f64,
    pub arch_lr: f64,
    pub arch_betas: (f64, f64),
    pub arch_weight_decay: f64,
    pub arch_warmup_epochs: usize,
    /// GDAS temperature (max, min), annealed linearly over the epochs.
    pub tau: Option<(f64, f64)>,
    pub partial_channels: usize,
}

/// DARTS `cnn/train_search.py`: `--batch_size 64 --learning_rate 0.025
/// --learning_rate_min 0.001 --momentum 0.9 --weight_decay 3e-4 --epochs 50
/// --init_channels 16 --layers 8 --grad_clip 5 --arch_learning_rate 3e-4
/// --arch_weight_decay 1e-3`; Adam betas (0.5, 0.999) in `cnn/architect.py`.
const DARTS: Settings = Settings {
    space: "darts_cnn",
    layers: 8,
    channels: 16,
    strategy: StrategyKind::SecondOrder,
    epochs: 50,
    batch_size: 64,
    lr: 0.025,
    lr_min: 0.001,
    momentum: 0.9,
    nesterov: false,
    weight_decay: 3e-4,
    grad_clip: 5.0,
    arch_lr: 3e-4,
    arch_betas: (0.5, 0.999),
    arch_weight_decay: 1e-3,
    arch_warmup_epochs: 0,
    tau: None,
    partial_channels: 1,
};

impl Preset {
    pub const ALL: [Preset; 6] = [
        Preset::Darts,
        Preset::PcDarts,
        Preset::Gdas,
        Preset::Nb201Gdas,
        Preset::Spos,
        Preset::Nb201Darts,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Preset::Darts => "darts",
            Preset::PcDarts => "pc-darts",
            Preset::Gdas => "gdas",
            Preset::Nb201Gdas => "nb201-gdas",
            Preset::Spos => "spos",
            Preset::Nb201Darts => "nb201-darts",
        }
    }

    /// The published values (see each variant for the source files).
    pub fn settings(self) -> Settings {
        match self {
            Preset::Darts => DARTS,
            // PC-DARTS train_search.py: --batch_size 256 --learning_rate 0.1
            // --learning_rate_min 0.001 --arch_learning_rate 6e-4, `if epoch >= 15:
            // architect.step(...)`, unrolled off; model_search.py MixedOp `k = 4`.
            Preset::PcDarts => Settings {
                strategy: StrategyKind::FirstOrder,
                batch_size: 256,
                lr: 0.1,
                arch_lr: 6e-4,
                arch_warmup_epochs: 15,
                partial_channels: 4,
                ..DARTS
            },
            // GDAS-NASNet-CIFAR.config (search-opts): LR 0.025, eta_min 0.001, epochs 250,
            // decay 5e-4, momentum 0.9, nesterov 1, batch_size 256; (search-archs): C 16,
            // N 2 (NASNetworkGDAS: 3N = 6 cells); GDAS-search-NASNet-space.sh: --tau_max 10
            // --tau_min 0.1 --arch_learning_rate 3e-4 --arch_weight_decay 1e-3; GDAS.py:
            // Adam betas (0.5, 0.999), clip_grad_norm_ 5.
            Preset::Gdas => Settings {
                layers: 6,
                strategy: StrategyKind::Gdas,
                epochs: 250,
                batch_size: 256,
                nesterov: true,
                weight_decay: 5e-4,
                tau: Some((10.0, 0.1)),
                ..DARTS
            },
            // NAS-Bench-201-algos/GDAS.sh: --channel 16 --num_cells 5 --tau_max 10
            // --tau_min 0.1 --arch_learning_rate 3e-4 --arch_weight_decay 1e-3;
            // nas-benchmark/algos/GDAS.config: LR 0.025, eta_min 0.001, epochs 240, decay
            // 5e-4, momentum 0.9, nesterov 1, batch_size 64.
            Preset::Nb201Gdas => Settings {
                space: "nb201",
                layers: 5,
                epochs: 240,
                batch_size: 64,
                ..Preset::Gdas.settings()
            },
            // RANDOM-NAS.sh: --channel 16 --num_cells 5; nas-benchmark/algos/RANDOM.config:
            // LR 0.025, eta_min 0.001, epochs 250, decay 5e-4, momentum 0.9, nesterov 1,
            // batch_size 64; RANDOM-NAS.py: clip_grad_norm_ 5. No alphas are trained.
            Preset::Spos => Settings {
                space: "nb201",
                layers: 5,
                strategy: StrategyKind::Spos,
                epochs: 250,
                nesterov: true,
                weight_decay: 5e-4,
                ..DARTS
            },
            // NAS-Bench-201-algos/DARTS-V2.sh: --channel 16 --num_cells 5
            // --arch_learning_rate 3e-4 --arch_weight_decay 1e-3; nas-benchmark/algos/
            // DARTS.config: LR 0.025, eta_min 0.001, epochs 50, decay 5e-4, momentum 0.9,
            // nesterov 1, batch_size 64; DARTS-V2.py: Adam betas (0.5, 0.999), clip 5.
            Preset::Nb201Darts => Settings {
                space: "nb201",
                layers: 5,
                nesterov: true,
                weight_decay: 5e-4,
                ..DARTS
            },
        }
    }

    /// Overwrite the fields this preset fixes (space, network size, strategy, schedule,
    /// both optimizers, GDAS temperature, PC-DARTS K and warm-up) and record the preset.
    pub fn apply(self, cfg: &mut SearchConfig) {
        let s = self.settings();
        cfg.space = PathBuf::from(s.space);
        cfg.network = NetworkOverrides {
            layers: Some(s.layers),
            channels: Some(s.channels),
        };
        cfg.strategy = s.strategy;
        cfg.epochs = s.epochs;
        cfg.batch_size = s.batch_size;
        cfg.lr = s.lr;
        cfg.lr_min = s.lr_min;
        cfg.momentum = s.momentum;
        cfg.nesterov = s.nesterov;
        cfg.weight_decay = s.weight_decay;
        cfg.grad_clip = s.grad_clip;
        cfg.arch_lr = s.arch_lr;
        (cfg.arch_beta1, cfg.arch_beta2) = s.arch_betas;
        cfg.arch_weight_decay = s.arch_weight_decay;
        cfg.arch_warmup_epochs = s.arch_warmup_epochs;
        if let Some((max, min)) = s.tau {
            (cfg.tau_max, cfg.tau_min) = (max, min);
        }
        cfg.partial_channels = s.partial_channels;
        cfg.preset = Some(self);
    }
}

impl std::fmt::Display for Preset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Preset {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Preset::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Preset::ALL.iter().map(|p| p.name()).collect();
                Error::invalid("preset", s, names.join(", "))
            })
    }
}
