//! `supernet train`, `supernet extract` and `supernet rank-check`: flags into configs, and
//! the outcome.
use super::args::{overlay, refuse_ignored_flags};
use super::flags::{AugmentFlags, DataFlags, NetworkFlags, RunFlags};
use super::{default_out, Exit};
use crate::run::paths::{self, ConfigFile};
use crate::space::{Genotype, NetworkOverrides, NetworkSpec, SearchSpace};
use crate::supernet::OpStyle;
use crate::train::{Outcome, TrainConfig, EVAL_CHANNELS, EVAL_LAYERS};
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// Continue the training run in this directory from its last checkpoint, with the
    /// config it was started with (flags that would change it are refused).
    #[arg(long, value_name = "DIR")]
    pub resume: Option<PathBuf>,
    /// Start from this config file (a training run's config.toml); flags override it. Its
    /// relative paths are relative to its directory.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub data: DataFlags,
    /// The weight of the auxiliary head's loss; 0 builds no head [default: DARTS 0.4,
    /// NAS-Bench-201 0].
    #[arg(long)]
    pub auxiliary_weight: Option<f64>,
    #[command(flatten)]
    pub set: TrainFlags,
    /// Run directory [default: runs/train-<space>-seed<seed>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// No progress output.
    #[arg(long)]
    pub quiet: bool,
}

/// The flags that set [`TrainConfig`] fields, named as the fields are.
#[derive(clap::Args, Debug, Serialize)]
pub struct TrainFlags {
    /// The architecture: a file (genotype.txt / .json of a search) or the DARTS /
    /// NAS-Bench-201 / JSON text itself.
    #[arg(long)]
    pub genotype: Option<String>,
    /// Search-space file the genotype belongs to, or the name of a shipped space.
    #[arg(long)]
    pub space: Option<PathBuf>,
    /// Fine-tune this exported model (a `supernet extract` or `train` output directory)
    /// instead of training fresh weights; its description fixes the network.
    #[arg(long, value_name = "DIR")]
    pub init: Option<PathBuf>,
    /// How the operations are built: standalone (affine BN, no BN after pooling: the
    /// evaluation network) or inherited (the supernet's operations).
    #[arg(long, value_enum)]
    pub style: Option<OpStyle>,
    /// Drop-path probability, ramped from 0 over the epochs.
    #[arg(long)]
    pub drop_path: Option<f64>,
    /// Train on this many training images (class-balanced, seeded) [default: all].
    #[arg(long)]
    pub subset: Option<usize>,
    /// Evaluate on this many test images (class-balanced, seeded) [default: all].
    #[arg(long)]
    pub test_subset: Option<usize>,
    #[command(flatten)]
    #[serde(flatten)]
    pub run: RunFlags,
    #[command(flatten)]
    pub network: NetworkFlags,
    #[command(flatten)]
    pub augment: AugmentFlags,
}

#[derive(clap::Args, Debug)]
pub struct ExtractArgs {
    /// Search run directory (with config.toml and checkpoint.safetensors).
    #[arg(long)]
    pub run: PathBuf,
    /// The sub-network to extract [default: what the run's alphas derive to now].
    #[arg(long)]
    pub genotype: Option<String>,
    /// Output directory for model.safetensors and model.json [default: RUN/extracted].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// The size and head DARTS trains derived cells with (`train.py`), where flags and the
/// config file leave them open; NAS-Bench-201 networks keep the space file's size.
pub fn evaluation_defaults(
    space: &Path,
    network: &mut NetworkOverrides,
    auxiliary_weight: &mut Option<f64>,
) -> anyhow::Result<()> {
    let darts = matches!(SearchSpace::load(space)?.network, NetworkSpec::Darts { .. });
    if darts {
        network.layers.get_or_insert(EVAL_LAYERS);
        network.channels.get_or_insert(EVAL_CHANNELS);
    }
    auxiliary_weight.get_or_insert(if darts { 0.4 } else { 0.0 });
    Ok(())
}

pub fn train(a: TrainArgs, matches: &clap::ArgMatches) -> anyhow::Result<Exit> {
    let outcome = match &a.resume {
        Some(dir) => {
            refuse_ignored_flags(matches, &["quiet"], "train", dir)?;
            crate::train::resume(dir, a.quiet)?
        }
        None => {
            let cfg = train_config(&a)?;
            let out = a
                .out
                .clone()
                .unwrap_or_else(|| default_out("train-", &cfg.space, cfg.seed));
            crate::train::start(cfg, &out, a.quiet)?
        }
    };
    Ok(match outcome {
        Outcome::Finished { test, dir, model } => {
            println!(
                "test accuracy {:.2}% (loss {:.4}, {} images)",
                100.0 * test.accuracy,
                test.loss,
                test.samples
            );
            eprintln!(
                "training finished: {}/run.h5, model {}",
                dir.display(),
                model.display()
            );
            Exit::Done
        }
        Outcome::Interrupted(stopped) => Exit::interrupted("train", stopped),
    })
}

/// Config file (or the DARTS evaluation defaults for the space), then flags.
fn train_config(a: &TrainArgs) -> anyhow::Result<TrainConfig> {
    let mut base = match &a.config {
        Some(path) => TrainConfig::from_file(path)?,
        None => TrainConfig::default(),
    };
    let mut aux = a.auxiliary_weight;
    if a.config.is_none() {
        let space = a
            .set
            .space
            .as_deref()
            .map(paths::from_command_line)
            .unwrap_or_else(|| base.space.clone());
        if trains_chain(a.set.init.as_deref(), &space)? {
            // No auxiliary head and no drop-path in a chain network.
            aux.get_or_insert(0.0);
            base.drop_path = 0.0;
        } else if a.set.init.is_none() {
            evaluation_defaults(&space, &mut base.network, &mut aux)?;
        }
    }
    if let Some(w) = aux {
        base.auxiliary_weight = w;
    }
    let mut c: TrainConfig = overlay(&base, &a.set)?;
    a.data.apply(&mut c.data);
    // Paths given on the command line are relative to the working directory.
    c.resolve_paths(Path::new("."));
    c.validate()?;
    Ok(c)
}

/// Whether the network to train is a chain network: `--init`'s description says, or else
/// the space.
fn trains_chain(init: Option<&Path>, space: &Path) -> anyhow::Result<bool> {
    Ok(match init {
        Some(init) => {
            let json = crate::model::locate(&paths::from_command_line(init)).1;
            crate::model::read_description(&json)?.network == crate::model::NetworkKind::Chain
        }
        None => matches!(
            crate::space::Space::load(space)?,
            crate::space::Space::Chain(_)
        ),
    })
}

pub fn extract(a: ExtractArgs) -> anyhow::Result<()> {
    let out = a.out.clone().unwrap_or_else(|| a.run.join("extracted"));
    let json = if crate::search::is_chain_run(&a.run)? {
        let arch = a
            .genotype
            .as_deref()
            .map(crate::space::chain::ChainArch::from_arg)
            .transpose()?;
        crate::search::chain_extract::extract(&a.run, arch, &out)?
    } else {
        let genotype = a.genotype.as_deref().map(Genotype::from_arg).transpose()?;
        crate::sample::extract(&a.run, genotype, &out)?
    };
    println!("{}", json.display());
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct RankCheckArgs {
    /// Run directory of a search with a sample table (`supernet sample`).
    #[arg(long)]
    pub run: PathBuf,
    /// Sub-networks to train on their own, spread over the sampled score range.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// Sample table (/samples/NAME) [default: the run's only one].
    #[arg(long, value_name = "NAME")]
    pub samples: Option<String>,
    /// Size of the top sets whose overlap is reported.
    #[arg(long, default_value_t = 3)]
    pub top: usize,
    /// Stand-alone training budget: epochs each.
    #[arg(long, default_value_t = 3)]
    pub epochs: usize,
    /// Training images (class-balanced, seeded).
    #[arg(long, default_value_t = 5000)]
    pub subset: usize,
    /// Test images evaluated (class-balanced, seeded).
    #[arg(long, default_value_t = 2000)]
    pub test_subset: usize,
    /// Images per training step.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Stand-alone network size: cells (DARTS) or cells per stage [default: the supernet's].
    #[arg(long)]
    pub layers: Option<usize>,
    /// Stand-alone network initial channels [default: the supernet's].
    #[arg(long)]
    pub channels: Option<usize>,
    /// Seed of the stand-alone trainings.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// CPU threads for libtorch (0: libtorch's default).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Also score the checked sub-networks with this zero-cost proxy and compare it with
    /// stand-alone accuracy (repeatable; `inherited`, the sample table's scores, always is).
    #[arg(long, value_parser = super::args::score_parser())]
    pub score: Vec<crate::sample::ScoreKind>,
    /// The few-shot set `--score few-shot` uses (implies it) [default: the run's only set].
    #[arg(long, value_name = "NAME")]
    pub few_shot: Option<String>,
    /// Stand-alone trainings per sub-network (seeds SEED, SEED + 1, ...): their mean
    /// accuracy is the truth, and with 2 or more their seed-vs-seed Kendall tau and
    /// Spearman rho (mean over seed pairs) are reported as the ceiling.
    #[arg(long, default_value_t = 1)]
    pub seeds: usize,
    /// No progress lines.
    #[arg(long)]
    pub quiet: bool,
    /// Train nothing: compare every sample table of the run (or the one of --samples),
    /// whatever scored it, with this `supernet tabulate` table, next to its seed-vs-seed
    /// ceiling.
    #[arg(long, value_name = "TABLE", conflicts_with_all = ["k", "score"])]
    pub ground_truth: Option<PathBuf>,
}

pub fn rank_check(a: RankCheckArgs) -> anyhow::Result<()> {
    if let Some(table) = &a.ground_truth {
        return against_ground_truth(&a, table);
    }
    let cfg = crate::sample::RankCheckConfig {
        k: a.k,
        samples: a.samples.clone(),
        top: a.top,
        epochs: a.epochs,
        subset: Some(a.subset),
        test_subset: Some(a.test_subset),
        batch_size: a.batch_size,
        layers: a.layers,
        channels: a.channels,
        seed: a.seed,
        threads: a.threads,
        proxies: a
            .score
            .iter()
            .filter_map(|s| s.proxy())
            .fold(Vec::new(), |mut v, p| {
                if !v.contains(&p) {
                    v.push(p);
                }
                v
            }),
        few_shot: (a.few_shot.is_some() || a.score.contains(&crate::sample::ScoreKind::FewShot))
            .then(|| a.few_shot.clone()),
        seeds: a.seeds,
    };
    let report = crate::sample::rank_check(&a.run, &cfg, |i, r| {
        if !a.quiet {
            let seeds = match r.per_seed.len() {
                1 => String::new(),
                _ => {
                    let each: Vec<String> = r
                        .per_seed
                        .iter()
                        .map(|a| format!("{:.2}", 100.0 * a))
                        .collect();
                    format!(" (mean of {}%)", each.join(", "))
                }
            };
            eprintln!(
                "{i:>3}  inherited {:6.2}%  stand-alone {:6.2}%{seeds}  {}",
                100.0 * r.inherited,
                100.0 * r.standalone,
                r.architecture
            );
        }
    })?;
    let show = |v: Option<f64>| v.map_or("undefined".to_string(), |v| format!("{v:.3}"));
    // The seed-vs-seed ceiling beside each scorer's tau and rho.
    let ceiling = |v: fn(&crate::sample::rank::Ceiling) -> Option<f64>| {
        report
            .ceiling
            .as_ref()
            .map_or(String::new(), |c| format!(" (ceiling {})", show(v(c))))
    };
    let line = |f: &crate::sample::rank::Fidelity| {
        format!(
            "Kendall tau {}{}  sparse Kendall tau {}  Spearman rho {}{}  top-{} overlap {}  top-{} Kendall tau {}  ({} sub-networks)",
            show(f.kendall_tau),
            ceiling(|c| c.kendall_tau),
            show(f.sparse_kendall_tau),
            show(f.spearman_rho),
            ceiling(|c| c.spearman_rho),
            a.top,
            show(f.top_overlap),
            a.top,
            show(f.top_kendall_tau),
            report.rows.len()
        )
    };
    println!("{}", line(&report.inherited));
    if let Some((_, f)) = &report.few_shot {
        println!("few-shot: {}", line(f));
    }
    for (p, _, f) in &report.proxies {
        println!("{}: {}", p.name(), line(f));
    }
    if let Some(c) = &report.ceiling {
        println!(
            "seed-vs-seed ceiling ({} seeds): Kendall tau {}  Spearman rho {}",
            a.seeds,
            show(c.kendall_tau),
            show(c.spearman_rho)
        );
    }
    eprintln!("stored in /{} and {}", report.group, report.csv.display());
    Ok(())
}

fn against_ground_truth(a: &RankCheckArgs, table: &std::path::Path) -> anyhow::Result<()> {
    let cfg = crate::sample::TruthConfig {
        table: table.to_path_buf(),
        samples: a.samples.iter().cloned().collect(),
        top: a.top,
    };
    let report = crate::sample::against_ground_truth(&a.run, &cfg)?;
    let show = |v: Option<f64>| v.map_or("undefined".to_string(), |v| format!("{v:.3}"));
    for r in &report.rows {
        let f = &r.fidelity;
        println!(
            "{} [{}]: Kendall tau {}  sparse {}  Spearman rho {}  top-{} overlap {}  top-{} tau {}  \
             ({} architectures; seed-vs-seed ceiling: tau {}, rho {})",
            r.samples,
            r.scorer,
            show(f.kendall_tau),
            show(f.sparse_kendall_tau),
            show(f.spearman_rho),
            a.top,
            show(f.top_overlap),
            a.top,
            show(f.top_kendall_tau),
            r.architectures,
            show(r.ceiling.kendall_tau),
            show(r.ceiling.spearman_rho),
        );
    }
    eprintln!("stored in /fidelity/truth and {}", report.csv.display());
    Ok(())
}
