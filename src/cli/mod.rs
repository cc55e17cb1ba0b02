//! Command-line verbs. Each verb resolves its flags into a validated config and calls the
//! library; nothing here does numerical work. [`main`] prints an error once, in full, and
//! sets the exit code: 0 done, 1 failed, 128 + signal when a run stopped on a signal (130
//! for Ctrl-C) after checkpointing.
mod args;
mod chain;
mod device;
mod few_shot;
mod flags;
mod profile;
mod search;
mod subnet;
mod sweep;
mod tabulate;
mod train;

use crate::inspect::{Architecture, Summary};
use crate::space::{Genotype, NetworkOverrides, SearchSpace};
use crate::supernet::{InputShape, OpStyle};
use args::{device_parser, with_config_defaults, with_notes};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "supernet",
    version,
    about = "Weight-sharing one-shot NAS (DARTS) on libtorch"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Versions, CPU threads, CUDA devices and where the default data set is.
    Info,
    /// Describe the supernet a space file builds, or the network of one genotype.
    Inspect(InspectArgs),
    /// Measure a latency lookup table of a chain space on a device (every choice of every
    /// layer, stem and head), check its prediction against whole sampled networks, and
    /// write it for `search --latency-table` and `sample`/`evolve --latency-table`.
    Profile(profile::ProfileArgs),
    /// Train a supernet with DARTS (bi-level) and record how the alphas evolve.
    Search(Box<search::SearchArgs>),
    /// Plot a run: alpha evolution per edge, final alphas, collapse diagnostics, losses,
    /// the derived cells, rank-check scatter plots. Reads only the run file.
    Plot(PlotArgs),
    /// Write RUN/report.md: a one-page Markdown report of a search (settings, time, loss and
    /// accuracy per epoch, the genotype and its stability, alpha separation, sampled
    /// sub-networks and the derived one's rank, links to the plots). Reads only the run.
    Report(ReportArgs),
    /// A short forward/backward on a device, saying whether CUDA was used.
    Check(CheckArgs),
    /// Time search steps (or forward passes) of one configuration on a device: one JSON
    /// line with the median step time, the peak memory, the predicted peak and a
    /// fingerprint of the final state (scripts/gpu-check runs it beside
    /// scripts/reference.py bench).
    Bench(Box<device::BenchArgs>),
    /// Compare a device with the CPU op path by op path (logits, loss, BN statistics,
    /// weight and alpha gradients); fails when a difference is over its bound.
    Parity(device::ParityArgs),
    /// Train a derived architecture on its own (DARTS evaluation network or NAS-Bench-201
    /// network) and export it.
    Train(Box<train::TrainArgs>),
    /// Export the sub-network of a searched supernet with its inherited weights.
    Extract(train::ExtractArgs),
    /// Train K sampled sub-networks on their own and report how well their inherited-weight
    /// scores rank them (Kendall tau, Spearman rho, top-k overlap).
    RankCheck(train::RankCheckArgs),
    /// Draw sub-networks of a trained supernet and score them with the weights they
    /// inherit (on the run's architecture half); a table in the run file and a CSV.
    Sample(subnet::SampleArgs),
    /// Evolutionary (SPOS-style) or random architecture search on a trained supernet,
    /// with inherited-weight accuracy as the fitness.
    Evolve(subnet::EvolveArgs),
    /// Derive one architecture from a run by a chosen rule.
    Derive(subnet::DeriveArgs),
    /// Few-shot supernets: split a trained supernet on one edge of its normal cell into
    /// one sub-supernet per op of that edge, each starting from the parent's weights and
    /// fine-tuned for a few steps (score with `--score few-shot`).
    FewShot(few_shot::FewShotArgs),
    /// Run many searches or trainings over a space of settings (a TOML file): grid,
    /// random or Bayesian (TPE) sampling and ASHA early stopping, all Optuna's; resumable.
    Sweep(sweep::SweepArgs),
    /// Train every architecture of a small space on its own with K seeds under one short
    /// budget: a ground-truth table (HDF5) of test accuracies; resumable, in parallel
    /// worker processes with --jobs.
    Tabulate(tabulate::TabulateArgs),
    /// A worker process of `tabulate` (tasks on stdin, results on stdout).
    #[command(hide = true)]
    TabulateWorker(tabulate::TabulateWorkerArgs),
    /// Run one search step of a config at a small batch on random data and print the
    /// process's peak resident bytes (used by `search` to predict its memory).
    #[command(hide = true)]
    MemoryProbe(MemoryProbeArgs),
}

/// How a command ended, for its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Done,
    /// A run stopped on `signal` after checkpointing.
    Interrupted {
        signal: i32,
    },
}

impl Exit {
    /// Report a run a signal stopped (how to continue it) and its exit.
    fn interrupted(verb: &str, stopped: crate::run::Stopped) -> Self {
        eprintln!(
            "{verb} interrupted after {} steps and checkpointed; continue with:\n  supernet {verb} --resume {}",
            stopped.global_step,
            stopped.dir.display()
        );
        Exit::Interrupted {
            signal: stopped.signal,
        }
    }

    pub fn code(self) -> i32 {
        match self {
            Exit::Done => 0,
            Exit::Interrupted { signal } => crate::run::exit_code(signal),
        }
    }
}

/// `runs/<prefix><space>-seed<seed>`: where a run goes without `--out`.
fn default_out(prefix: &str, space: &std::path::Path, seed: u64) -> PathBuf {
    let stem = space.file_stem().and_then(|s| s.to_str()).unwrap_or("run");
    PathBuf::from(format!("runs/{prefix}{stem}-seed{seed}"))
}

/// The `clap` command, with the config defaults filled into the help of the flags that
/// set config fields.
pub fn command() -> clap::Command {
    let cmd = Cli::command();
    let cmd = with_config_defaults::<search::SearchFlags>(
        cmd,
        "search",
        &crate::search::SearchConfig::default().to_toml(),
    );
    let cmd = with_config_defaults::<train::TrainFlags>(
        cmd,
        "train",
        &crate::train::TrainConfig::default().to_toml(),
    );
    // What the configs leave to the space and the data, per verb.
    let cmd = with_notes(
        cmd,
        "search",
        &[
            ("layers", "[default: the space file's]"),
            ("channels", "[default: the space file's]"),
            ("cutout", "[default: 0]"),
        ],
    );
    with_notes(
        cmd,
        "train",
        &[
            (
                "layers",
                "[default: DARTS 20, NAS-Bench-201 the space file's]",
            ),
            (
                "channels",
                "[default: DARTS 36, NAS-Bench-201 the space file's]",
            ),
            ("cutout", "[default: 16]"),
        ],
    )
}

/// Parse the command line, run it, print an error once; the process's exit code.
pub fn main() -> i32 {
    let matches = command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let sub = matches
        .subcommand()
        .map(|(_, m)| m.clone())
        .unwrap_or_default();
    match run(cli, &sub) {
        Ok(exit) => exit.code(),
        Err(err) => {
            eprintln!("error: {err:#}");
            match err.downcast_ref::<crate::Error>() {
                Some(crate::Error::Interrupted { signal, .. }) => crate::run::exit_code(*signal),
                _ => 1,
            }
        }
    }
}

/// Run a parsed command; `matches` are those of its subcommand (which flags were given).
pub fn run(cli: Cli, matches: &clap::ArgMatches) -> anyhow::Result<Exit> {
    match cli.command {
        Command::Info => {
            println!("{}", crate::info::Info::gather());
            Ok(Exit::Done)
        }
        Command::Inspect(a) => inspect(a).map(|()| Exit::Done),
        Command::Profile(a) => profile::profile(a).map(|()| Exit::Done),
        Command::Search(a) => search::search(*a, matches),
        Command::Train(a) => train::train(*a, matches),
        Command::Extract(a) => train::extract(a).map(|()| Exit::Done),
        Command::RankCheck(a) => train::rank_check(a).map(|()| Exit::Done),
        Command::Sample(a) => subnet::sample(a).map(|()| Exit::Done),
        Command::Evolve(a) => subnet::evolve(a).map(|()| Exit::Done),
        Command::Derive(a) => subnet::derive(a).map(|()| Exit::Done),
        Command::FewShot(a) => few_shot::few_shot(a),
        Command::Sweep(a) => sweep::sweep(a).map(|()| Exit::Done),
        Command::Tabulate(a) => tabulate::tabulate(a).map(|()| Exit::Done),
        Command::TabulateWorker(a) => {
            crate::tabulate::serve(&a.plan)?;
            Ok(Exit::Done)
        }
        Command::MemoryProbe(a) => {
            let cfg = crate::search::SearchConfig::from_file(&a.config)?;
            if cfg.threads > 0 {
                tch::set_num_threads(cfg.threads as i32);
            }
            let input = InputShape::parse(&a.input, a.classes)?;
            let device = crate::run::parse_device(&a.device)?;
            println!("{}", crate::memory::probe(&cfg, input, a.batch, device)?);
            Ok(Exit::Done)
        }
        Command::Plot(a) => plot(a),
        Command::Report(a) => {
            println!("{}", crate::report::write_report(&a.run)?.display());
            Ok(Exit::Done)
        }
        Command::Bench(a) => device::bench(*a),
        Command::Parity(a) => device::parity(a),
        Command::Check(a) => {
            let space = SearchSpace::load(&a.space)?;
            let input = InputShape::parse(&a.input, 10)?;
            let device = crate::run::parse_device(&a.device)?;
            println!(
                "{}",
                crate::devcheck::check(&space, input, a.batch, a.steps, device)?
            );
            Ok(Exit::Done)
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct MemoryProbeArgs {
    /// A search config.toml.
    #[arg(long)]
    pub config: PathBuf,
    /// CxHxW
    #[arg(long)]
    pub input: String,
    #[arg(long)]
    pub classes: i64,
    #[arg(long)]
    pub batch: usize,
    /// Where the step runs (the search's device).
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

#[derive(clap::Args, Debug)]
pub struct PlotArgs {
    /// Run directory (or its run.h5).
    #[arg(long)]
    pub run: PathBuf,
    /// Image format of the charts.
    #[arg(long, value_enum, default_value_t = crate::plot::Format::Png)]
    pub format: crate::plot::Format,
    /// Output directory [default: RUN/plots].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Keep redrawing whenever the run file changes, until the search has finished
    /// (or Ctrl-C).
    #[arg(long)]
    pub watch: bool,
}

#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// Run directory of a search (or its run.h5); report.md is written into the directory.
    #[arg(long)]
    pub run: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// The device to check.
    #[arg(long, default_value = "auto", value_parser = device_parser())]
    pub device: String,
    /// Search-space file, or the name of a shipped space.
    #[arg(long, default_value = "darts_cnn")]
    pub space: PathBuf,
    /// Input shape CxHxW.
    #[arg(long, default_value = "3x32x32")]
    pub input: String,
    /// Images per step.
    #[arg(long, default_value_t = 64)]
    pub batch: i64,
    /// Forward/backward steps.
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
}

#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// Search-space file (see supernets/README.md), or the name of a shipped space.
    #[arg(long)]
    pub space: PathBuf,
    /// Input shape CxHxW (the default is the default data set's, Fashion-MNIST).
    #[arg(long, default_value = "1x28x28")]
    pub input: String,
    /// Classes of the data set.
    #[arg(long, default_value_t = 10)]
    pub classes: i64,
    /// DARTS: number of cells; NAS-Bench-201: cells per stage [default: the space file's].
    #[arg(long)]
    pub layers: Option<usize>,
    /// Initial channels [default: the space file's].
    #[arg(long)]
    pub channels: Option<usize>,
    /// Describe the network of this genotype (a file, or the DARTS / NAS-Bench-201 /
    /// JSON text itself); DARTS networks then default to the evaluation size (20 cells,
    /// 36 channels, auxiliary head), as `train` builds them. For a chain space: one
    /// choice per searchable layer, comma-separated (`mbconv_k3_e6,skip,...`).
    #[arg(long)]
    pub genotype: Option<String>,
    /// With --genotype: how the network's operations are built.
    #[arg(long, value_enum, default_value_t = OpStyle::Standalone)]
    pub style: OpStyle,
    /// With --genotype: the auxiliary head is built when this is above 0 [default: DARTS
    /// 0.4, NAS-Bench-201 0].
    #[arg(long)]
    pub auxiliary_weight: Option<f64>,
}

fn inspect(a: InspectArgs) -> anyhow::Result<()> {
    if let crate::space::Space::Chain(space) = crate::space::Space::load(&a.space)? {
        return inspect_chain(a, space);
    }
    let mut network = NetworkOverrides {
        layers: a.layers,
        channels: a.channels,
    };
    let input = InputShape::parse(&a.input, a.classes)?;
    let architecture = match &a.genotype {
        None => None,
        Some(g) => {
            let style = a.style;
            let mut aux = a.auxiliary_weight;
            if style == OpStyle::Standalone {
                train::evaluation_defaults(&a.space, &mut network, &mut aux)?;
            }
            Some(Architecture {
                genotype: Genotype::from_arg(g)?,
                style,
                auxiliary: aux.unwrap_or(0.0) > 0.0,
            })
        }
    };
    let space = SearchSpace::load(&a.space)?.with_overrides(network)?;
    let (h, w) = (input.height as usize, input.width as usize);
    let (bound, what) = match &architecture {
        Some(arch) => (
            space.size_bound_of(&arch.genotype, h, w),
            format!("the network of this genotype in '{}'", space.name),
        ),
        None => (
            space.size_bound(h, w),
            format!("the supernet of '{}'", space.name),
        ),
    };
    crate::run::check::fits_in_memory(bound, &what, 0, None)?;
    println!("{}", Summary::new(&space, input, architecture.as_ref())?);
    Ok(())
}

/// `inspect` of a chain space: the cost model's description (see [`ChainSummary`]).
fn inspect_chain(a: InspectArgs, space: crate::space::chain::ChainSpace) -> anyhow::Result<()> {
    for (flag, given) in [
        ("--layers", a.layers.is_some()),
        ("--channels", a.channels.is_some()),
        ("--auxiliary-weight", a.auxiliary_weight.is_some()),
    ] {
        if given {
            anyhow::bail!(
                "{flag} applies to cell spaces; '{}' is a chain space (edit its stages instead)",
                space.name
            );
        }
    }
    let input = InputShape::parse(&a.input, a.classes)?;
    let architecture = match &a.genotype {
        None => None,
        Some(text) => {
            let path = std::path::Path::new(text);
            let text = if path.is_file() {
                std::fs::read_to_string(path).map_err(|e| crate::Error::io(path, e))?
            } else {
                text.clone()
            };
            let arch = crate::space::chain::ChainArch::parse(text.trim())?;
            arch.validate(&space)?;
            Some(arch)
        }
    };
    let summary = crate::inspect::ChainSummary {
        space,
        input: crate::supernet::image_shape(input),
        architecture,
    };
    println!("{summary}");
    Ok(())
}

fn plot(a: PlotArgs) -> anyhow::Result<Exit> {
    let run_dir = if a.run.is_file() {
        a.run.parent().map(PathBuf::from).unwrap_or_default()
    } else {
        a.run.clone()
    };
    let out = a.out.clone().unwrap_or_else(|| run_dir.join("plots"));
    let print = |r: &crate::plot::PlotReport| {
        for f in &r.files {
            println!("{}", f.display());
        }
        for s in &r.skipped {
            eprintln!("skipped {s}");
        }
    };
    if a.watch {
        let stop = crate::run::StopFlag::install()?;
        let draws = crate::plot::watch_with(
            &a.run,
            &out,
            a.format,
            std::time::Duration::from_secs(2),
            || stop.requested(),
            print,
        )?;
        eprintln!("plot --watch: {draws} redraw(s) into {}", out.display());
    } else {
        print(&crate::plot::plot_run_report(&a.run, &out, a.format)?);
    }
    Ok(Exit::Done)
}
