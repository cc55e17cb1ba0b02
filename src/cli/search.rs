//! `supernet search`: flags into a [`SearchConfig`], the memory check, and the outcome.
use super::args::{overlay, refuse_ignored_flags};
use super::flags::{AugmentFlags, DataFlags, NetworkFlags, RunFlags};
use super::{default_out, Exit};
use crate::backend::Precision;
use crate::run::paths::{self, ConfigFile};
use crate::search::preset::Preset;
use crate::search::{Outcome, RunOptions, SearchConfig, StrategyKind};
use crate::space::chain::WeightSharing;
use crate::space::SearchSpace;
use crate::supernet::InputShape;
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct SearchArgs {
    /// Continue the run in this directory from its last checkpoint, with the config it
    /// was started with (flags that would change it are refused; --space must match).
    #[arg(long, value_name = "DIR")]
    pub resume: Option<PathBuf>,
    /// Start from this config file (a run's config.toml, say); flags override it. Its
    /// relative paths are relative to its directory.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// A published setting (space, network size, strategy, schedule, both optimizers;
    /// README "Presets" names the sources), applied over the config file; flags given win
    /// over it.
    #[arg(long, value_enum)]
    pub preset: Option<Preset>,
    #[command(flatten)]
    pub data: DataFlags,
    #[command(flatten)]
    pub set: SearchFlags,
    /// Start without predicting the step's peak memory first. The prediction runs the
    /// step at batches 8 and 16 in child processes (seconds) and refuses a search that
    /// would not fit in the available memory.
    #[arg(long)]
    pub no_memory_check: bool,
    /// Memory the search may use, in GiB, for the check above; the probe steps are held
    /// to it too [default: the memory the system has available].
    #[arg(long, value_name = "GIB")]
    pub memory_limit: Option<f64>,
    /// Run directory [default: runs/<space>-seed<seed>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// No progress output.
    #[arg(long)]
    pub quiet: bool,
}

/// The flags that set [`SearchConfig`] fields, named as the fields are (laid over the
/// config by name, see [`overlay`]).
#[derive(clap::Args, Debug, Serialize)]
pub struct SearchFlags {
    /// Search-space file, or the name of a shipped space (darts_cnn, nb201, fmnist_small,
    /// tiny).
    #[arg(long)]
    pub space: Option<PathBuf>,
    /// Use this many training images (class-balanced, seeded) before the 50/50 split
    /// [default: all].
    #[arg(long)]
    pub subset: Option<usize>,
    /// The search algorithm.
    #[arg(long, value_enum)]
    pub strategy: Option<StrategyKind>,
    /// Chain spaces: how a layer's choices hold their weights: separate blocks per choice
    /// (default) or Once-for-All's elastic (nested) weights, one largest block per layer.
    #[arg(long, value_enum)]
    pub weight_sharing: Option<WeightSharing>,
    /// Weights: Nesterov momentum.
    #[arg(long)]
    pub nesterov: Option<bool>,
    /// Alphas: Adam learning rate.
    #[arg(long)]
    pub arch_lr: Option<f64>,
    /// Alphas: Adam beta1.
    #[arg(long)]
    pub arch_beta1: Option<f64>,
    /// Alphas: Adam beta2.
    #[arg(long)]
    pub arch_beta2: Option<f64>,
    /// Alphas: L2 weight decay.
    #[arg(long)]
    pub arch_weight_decay: Option<f64>,
    /// Alphas: epochs at the start that train the weights only (PC-DARTS: 15).
    #[arg(long, value_name = "EPOCHS")]
    pub arch_warmup_epochs: Option<usize>,
    /// GDAS: initial Gumbel-softmax temperature.
    #[arg(long)]
    pub tau_max: Option<f64>,
    /// GDAS: final temperature (linear annealing over the epochs).
    #[arg(long)]
    pub tau_min: Option<f64>,
    /// Record the alphas every this many steps (and at every epoch end).
    #[arg(long)]
    pub alpha_every: Option<usize>,
    /// Recompute each cell's activations during the backward pass instead of keeping
    /// them (activation checkpointing): much less memory, about one more forward pass per
    /// backward pass. Same results up to float summation order.
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub recompute: bool,
    /// PC-DARTS: each edge's ops see 1/K of the channels (K must divide every cell's
    /// channels), and edges are normalised by learnt betas (1: off).
    #[arg(long, value_name = "K")]
    pub partial_channels: Option<usize>,
    /// Precision of the weight step's forward pass (autocast; fp16 with loss scaling).
    #[arg(long, value_enum)]
    pub precision: Option<Precision>,
    /// Precision of the alpha step's forward passes (fp32 or bf16).
    #[arg(long, value_enum)]
    pub arch_precision: Option<Precision>,
    /// CUDA: deterministic cuDNN algorithms and no autotuning, so that a run repeats bit
    /// for bit (slower).
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub deterministic: bool,
    /// CUDA: cuDNN autotuning of convolution algorithms (off with --deterministic).
    #[arg(long, value_name = "BOOL")]
    pub cudnn_benchmark: Option<bool>,
    /// CUDA: activations in channels-last layout (always so on the CPU).
    #[arg(long, value_name = "BOOL")]
    pub channels_last: Option<bool>,
    /// BN batch statistics over G equal groups of each batch (ghost batch norm); a
    /// data-parallel run has G / processes groups per rank [default: 1, or the number of
    /// processes of a data-parallel start: per-rank statistics as in PyTorch DDP].
    #[arg(long, value_name = "G")]
    pub bn_groups: Option<usize>,
    #[command(flatten)]
    pub enas: EnasFlags,
    #[command(flatten)]
    pub remedies: RemedyFlags,
    #[command(flatten)]
    pub hardware: HardwareFlags,
    #[command(flatten)]
    #[serde(flatten)]
    pub run: RunFlags,
    #[command(flatten)]
    pub network: NetworkFlags,
    #[command(flatten)]
    pub augment: AugmentFlags,
}

/// ENAS controller settings (config table `[enas]`; README "ENAS" has the rest and the
/// sources of the defaults).
#[derive(clap::Args, Debug, Serialize)]
pub struct EnasFlags {
    /// ENAS: controller Adam learning rate [default: 1e-3].
    #[arg(long)]
    #[serde(rename = "lr", skip_serializing_if = "Option::is_none")]
    pub controller_lr: Option<f64>,
    /// ENAS: controller samples averaged into one update [default: 20].
    #[arg(long)]
    #[serde(rename = "aggregate", skip_serializing_if = "Option::is_none")]
    pub controller_aggregate: Option<usize>,
    /// ENAS: weight of the sample's entropy in the reward [default: 1e-4].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entropy_weight: Option<f64>,
    /// ENAS: decay of the reward's moving-average baseline [default: 0.99].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_decay: Option<f64>,
    /// ENAS: logits are tanh_constant * tanh(z / temperature) [default: 5].
    #[arg(long)]
    #[serde(rename = "temperature", skip_serializing_if = "Option::is_none")]
    pub controller_temperature: Option<f64>,
    /// ENAS: see --controller-temperature [default: 2.5].
    #[arg(long)]
    #[serde(rename = "tanh_constant", skip_serializing_if = "Option::is_none")]
    pub controller_tanh_constant: Option<f64>,
}

/// Hardware-aware chain search (config table `[hardware]`; README "Hardware-aware search"
/// has the formula and its source).
#[derive(clap::Args, Debug, Serialize)]
pub struct HardwareFlags {
    /// Chain spaces: the latency lookup table (`supernet profile`) of the run's space,
    /// device and input; needs --latency-target.
    #[arg(long, value_name = "LUT.json")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_table: Option<PathBuf>,
    /// Chain spaces: add weight * max(0, E[latency] / MS - 1) to the architecture loss,
    /// E[latency] the expected latency of the alphas under the table.
    #[arg(long, value_name = "MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_target: Option<f64>,
    /// Weight of the latency term [default: 1].
    #[arg(long, value_name = "W")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_weight: Option<f64>,
    /// Chain spaces: add weight * max(0, E[MACs] / N - 1) to the architecture loss, the
    /// expected multiply-adds per image of the exact cost model.
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub macs_target: Option<f64>,
    /// Weight of the MACs term [default: 1].
    #[arg(long, value_name = "W")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub macs_weight: Option<f64>,
}

/// Collapse remedies (config table `[remedies]`; README "Collapse remedies" has the
/// formulas and the sources of the defaults).
#[derive(clap::Args, Debug, Serialize)]
pub struct RemedyFlags {
    /// beta-DARTS: add lambda * mean over edges of logsumexp(alphas) to the architecture
    /// loss, lambda linear from --beta-decay-min to this over the epochs (the beta-DARTS
    /// code: 25 over its 50 epochs) [default: 0, off].
    #[arg(long, value_name = "LAMBDA_MAX")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beta_decay: Option<f64>,
    /// beta-DARTS: lambda of the first epoch [default: 0].
    #[arg(long, value_name = "LAMBDA_MIN")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beta_decay_min: Option<f64>,
    /// SDARTS-RS: uniform noise in [-epsilon, epsilon] on the softmax of the alphas in
    /// every weight step, epsilon linear from --sdarts-epsilon-min to this over the epochs
    /// (SDARTS: 0.3) [default: 0, off].
    #[arg(long, value_name = "EPSILON_MAX")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sdarts_epsilon: Option<f64>,
    /// SDARTS-RS: epsilon of the first epoch [default: 0.03].
    #[arg(long, value_name = "EPSILON_MIN")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sdarts_epsilon_min: Option<f64>,
    /// DARTS-: an auxiliary skip connection on every stride-1 edge, outside the softmax,
    /// weighted 1 - epoch/epochs.
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub aux_skip: bool,
    /// DARTS+: end the search after the first epoch whose derived normal cell holds at
    /// least N skip connections (DARTS+: 2); the genotype and run file are written and the
    /// reason recorded.
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_at_skips: Option<usize>,
    /// Warn on the epoch line when the derived normal cell's parameter-free ops (none,
    /// pools, skip connections) rise above N [default: half its kept edges].
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collapse_warn_above: Option<usize>,
    /// DARTS+ (second rule): end the search after the first epoch whose derived genotype
    /// is the one derived after each of the E epochs before it.
    #[arg(long, value_name = "E")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_when_stable: Option<usize>,
    /// R-DARTS: every N epochs, the dominant eigenvalue of the Hessian of the validation
    /// loss w.r.t. the alphas (power iteration on one fixed validation batch), recorded
    /// in /epochs/hessian_eigenvalue and on the epoch line [default: 0, off].
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hessian_every: Option<usize>,
    /// R-DARTS: warn when the eigenvalue exceeds F times the smallest recorded before it
    /// [default: 4/3, the inverse of R-DARTS's 0.75 stopping ratio].
    #[arg(long, value_name = "F")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hessian_warn_factor: Option<f64>,
}

/// The flags `--resume` takes besides itself: how to run, not what.
const RESUME_FLAGS: [&str; 5] = [
    "resume",
    "quiet",
    "space",
    "no_memory_check",
    "memory_limit",
];

pub fn search(a: SearchArgs, matches: &clap::ArgMatches) -> anyhow::Result<Exit> {
    let limit = a.memory_limit.map(|g| (g * (1u64 << 30) as f64) as u64);
    let exe = std::env::current_exe()?;
    let check = move |cfg: &SearchConfig, space: &SearchSpace, input: InputShape, device| {
        crate::memory::check(&exe, cfg, space, input, device, limit)
    };
    // One rank of a data-parallel job when a launcher (torchrun, mpirun, srun) started it.
    let group = match crate::distrib::from_env()? {
        Some(launch) => Some(std::sync::Arc::new(crate::distrib::Group::join(launch)?)),
        None => None,
    };
    let root = group.as_ref().is_none_or(|g| g.is_root());
    let opts = RunOptions {
        quiet: a.quiet || !root,
        preflight: (!a.no_memory_check).then_some(&check as _),
        dist: group.as_ref(),
    };
    let outcome = match &a.resume {
        Some(dir) => {
            refuse_ignored_flags(matches, &RESUME_FLAGS, "search", dir)?;
            let space = a.set.space.as_deref().map(paths::from_command_line);
            crate::search::resume(dir, space.as_deref(), &opts)?
        }
        None => {
            let cfg = search_config(&a)?;
            let out = a
                .out
                .clone()
                .unwrap_or_else(|| default_out("", &cfg.space, cfg.seed));
            crate::search::start(cfg, &out, &opts)?
        }
    };
    Ok(match outcome {
        Outcome::Finished { .. } if !root => Exit::Done,
        Outcome::Finished {
            genotype,
            dir,
            stop_reason,
        } => {
            if let Some(reason) = stop_reason {
                eprintln!("{reason}");
            }
            println!("{}", genotype.to_text());
            eprintln!(
                "search finished: {0}/run.h5, {0}/genotype.txt, {0}/genotype.json",
                dir.display()
            );
            Exit::Done
        }
        Outcome::FinishedChain { .. } if !root => Exit::Done,
        Outcome::FinishedChain { arch, dir } => {
            println!("{arch}");
            eprintln!(
                "search finished: {0}/run.h5, {0}/genotype.txt, {0}/genotype.json",
                dir.display()
            );
            Exit::Done
        }
        Outcome::Interrupted(stopped) => Exit::interrupted("search", stopped),
    })
}

/// Config file (or the DARTS defaults), then flags.
fn search_config(a: &SearchArgs) -> anyhow::Result<SearchConfig> {
    let mut base = match &a.config {
        Some(path) => SearchConfig::from_file(path)?,
        None => SearchConfig::default(),
    };
    if let Some(preset) = a.preset {
        preset.apply(&mut base);
    }
    let mut c: SearchConfig = overlay(&base, &a.set)?;
    a.data.apply(&mut c.data);
    // Paths given on the command line are relative to the working directory.
    c.resolve_paths(Path::new("."));
    c.validate()?;
    Ok(c)
}
