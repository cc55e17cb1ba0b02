//! Command-line verbs. Each verb resolves its flags into a validated config and calls the
//! library; nothing here does numerical work.
mod train;

use crate::data::DataSource;
use crate::inspect::{Architecture, Summary};
use crate::search::{Outcome, SearchConfig};
use crate::space::{Genotype, NetworkOverrides, SearchSpace};
use crate::supernet::{InputShape, OpStyle};
use clap::{Parser, Subcommand};
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
    /// Train a supernet with DARTS (bi-level) and record how the alphas evolve.
    Search(Box<SearchArgs>),
    /// Plot a run: alpha evolution per edge, final alphas, collapse diagnostics, losses,
    /// the derived cells. Reads only the run file.
    Plot(PlotArgs),
    /// A short forward/backward on a device, saying whether CUDA was used.
    Check(CheckArgs),
    /// Train a derived architecture on its own (DARTS evaluation network or NAS-Bench-201
    /// network) and export it.
    Train(Box<train::TrainArgs>),
    /// Export the sub-network of a searched supernet with its inherited weights.
    Extract(train::ExtractArgs),
}

#[derive(clap::Args, Debug)]
pub struct PlotArgs {
    /// Run directory (or its run.h5).
    #[arg(long)]
    pub run: PathBuf,
    /// png or svg.
    #[arg(long, default_value = "png")]
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
pub struct CheckArgs {
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    #[arg(long, default_value = "supernets/darts_cnn.toml")]
    pub space: PathBuf,
    #[arg(long, default_value = "3x32x32")]
    pub input: String,
    #[arg(long, default_value_t = 64)]
    pub batch: i64,
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
}

#[derive(clap::Args, Debug)]
pub struct SearchArgs {
    /// Continue the run in this directory from its last checkpoint (its config is used;
    /// other flags are ignored, except --space which must match, and --quiet).
    #[arg(long, value_name = "DIR")]
    pub resume: Option<PathBuf>,
    /// Start from this config file (a run's config.toml, say); flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Search-space file [default: supernets/darts_cnn.toml].
    #[arg(long)]
    pub space: Option<PathBuf>,
    /// Data directory or file [default: Fashion-MNIST from /usr/share/datasets/fashion-mnist].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Data format (fashion-mnist, mnist, idx, cifar10, cifar100, hdf5); default: detected.
    #[arg(long)]
    pub format: Option<String>,
    /// Use this many training images (class-balanced, seeded) before the 50/50 split.
    #[arg(long)]
    pub subset: Option<usize>,
    /// first-order or second-order [default: first-order].
    #[arg(long)]
    pub strategy: Option<String>,
    #[arg(long)]
    pub epochs: Option<usize>,
    #[arg(long)]
    pub batch_size: Option<usize>,
    #[arg(long)]
    pub lr: Option<f64>,
    #[arg(long)]
    pub lr_min: Option<f64>,
    #[arg(long)]
    pub momentum: Option<f64>,
    #[arg(long)]
    pub weight_decay: Option<f64>,
    #[arg(long)]
    pub grad_clip: Option<f64>,
    #[arg(long)]
    pub arch_lr: Option<f64>,
    #[arg(long)]
    pub arch_weight_decay: Option<f64>,
    /// DARTS: number of cells; NAS-Bench-201: cells per stage.
    #[arg(long)]
    pub layers: Option<usize>,
    #[arg(long)]
    pub channels: Option<usize>,
    /// Random-crop padding (0 = off); default: per data format.
    #[arg(long)]
    pub crop_padding: Option<usize>,
    /// Random horizontal flips; default: per data format.
    #[arg(long)]
    pub flip: Option<bool>,
    /// Cutout length (0 = off).
    #[arg(long)]
    pub cutout: Option<usize>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// auto, cpu, cuda or cuda:N [default: auto].
    #[arg(long)]
    pub device: Option<String>,
    /// Record the alphas every this many steps [default: 10].
    #[arg(long)]
    pub alpha_every: Option<usize>,
    /// Also checkpoint every this many steps (0: only at epoch ends) [default: 0].
    #[arg(long)]
    pub checkpoint_every: Option<usize>,
    /// CPU threads for libtorch (0: libtorch's default).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Run directory [default: runs/<space>-seed<seed>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// No progress output.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// Search-space file (see supernets/README.md).
    #[arg(long)]
    pub space: PathBuf,
    /// Input shape CxHxW; default: the default data set (Fashion-MNIST, 1x28x28).
    #[arg(long, default_value = "1x28x28")]
    pub input: String,
    #[arg(long, default_value_t = 10)]
    pub classes: i64,
    /// DARTS: number of cells; NAS-Bench-201: cells per stage.
    #[arg(long)]
    pub layers: Option<usize>,
    /// Initial channels.
    #[arg(long)]
    pub channels: Option<usize>,
    /// Describe the network of this genotype (a file, or the DARTS / NAS-Bench-201 /
    /// JSON text itself); DARTS networks then default to the evaluation size (20 cells,
    /// 36 channels, auxiliary head), as `train` builds them.
    #[arg(long)]
    pub genotype: Option<String>,
    /// With --genotype: standalone (trained from scratch) or inherited (the supernet's
    /// sub-network and its weights).
    #[arg(long, default_value = "standalone")]
    pub style: OpStyle,
    /// With --genotype: the auxiliary head is built when this is above 0 [default: DARTS
    /// 0.4, NAS-Bench-201 0].
    #[arg(long)]
    pub auxiliary_weight: Option<f64>,
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Info => {
            println!("{}", crate::info::Info::gather());
            Ok(())
        }
        Command::Inspect(a) => inspect(a),
        Command::Search(a) => search(*a),
        Command::Train(a) => train::train(*a),
        Command::Extract(a) => train::extract(a),
        Command::Plot(a) => plot(a),
        Command::Check(a) => {
            let space = SearchSpace::from_file(&a.space)?;
            let input = InputShape::parse(&a.input, 10)?;
            let device = crate::search::parse_device(&a.device)?;
            println!(
                "{}",
                crate::devcheck::check(&space, input, a.batch, a.steps, device)?
            );
            Ok(())
        }
    }
}

fn inspect(a: InspectArgs) -> anyhow::Result<()> {
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
    let space = SearchSpace::from_file(&a.space)?.with_overrides(network)?;
    println!("{}", Summary::new(&space, input, architecture.as_ref())?);
    Ok(())
}

fn search(a: SearchArgs) -> anyhow::Result<()> {
    let outcome = match &a.resume {
        Some(dir) => crate::search::resume(dir, a.space.as_deref(), a.quiet)?,
        None => {
            let cfg = search_config(&a)?;
            let out = a.out.clone().unwrap_or_else(|| {
                let stem = cfg
                    .space
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or("search");
                PathBuf::from(format!("runs/{stem}-seed{}", cfg.seed))
            });
            crate::search::start(cfg, &out, a.quiet)?
        }
    };
    match outcome {
        Outcome::Finished { genotype, dir } => {
            println!("{}", genotype.to_text());
            eprintln!(
                "search finished: {0}/run.h5, {0}/genotype.txt, {0}/genotype.json",
                dir.display()
            );
        }
        Outcome::Interrupted { dir, global_step } => {
            eprintln!(
                "search interrupted after {global_step} steps and checkpointed; continue with:\n  supernet search --resume {}",
                dir.display()
            );
        }
    }
    Ok(())
}

fn plot(a: PlotArgs) -> anyhow::Result<()> {
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
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(sig, stop.clone())?;
        }
        let draws = crate::plot::watch_with(
            &a.run,
            &out,
            a.format,
            std::time::Duration::from_secs(2),
            || stop.load(std::sync::atomic::Ordering::Relaxed),
            print,
        )?;
        eprintln!("plot --watch: {draws} redraw(s) into {}", out.display());
    } else {
        print(&crate::plot::plot_run_report(&a.run, &out, a.format)?);
    }
    Ok(())
}

/// Config file (or the DARTS defaults), then flags.
fn search_config(a: &SearchArgs) -> anyhow::Result<SearchConfig> {
    let mut c = match &a.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| crate::Error::io(path, e))?;
            SearchConfig::from_toml(&text, path)?
        }
        None => SearchConfig::default(),
    };
    macro_rules! set {
        ($($field:ident),*) => { $( if let Some(v) = a.$field.clone() { c.$field = v; } )* };
    }
    set!(
        space,
        epochs,
        batch_size,
        lr,
        lr_min,
        momentum,
        weight_decay,
        grad_clip,
        arch_lr
    );
    set!(
        arch_weight_decay,
        seed,
        device,
        alpha_every,
        checkpoint_every,
        threads
    );
    if let Some(s) = &a.strategy {
        c.strategy = s.parse()?;
    }
    if a.subset.is_some() {
        c.subset = a.subset;
    }
    if let Some(path) = &a.data {
        c.data = DataSource::new(path);
    }
    if let Some(f) = &a.format {
        c.data = c
            .data
            .clone()
            .with_format(f.parse().map_err(crate::Error::from)?);
    }
    if a.layers.is_some() {
        c.network.layers = a.layers;
    }
    if a.channels.is_some() {
        c.network.channels = a.channels;
    }
    if a.crop_padding.is_some() || a.flip.is_some() || a.cutout.is_some() {
        let mut aug = c.augment.unwrap_or_default();
        aug.crop_padding = a.crop_padding.unwrap_or(aug.crop_padding);
        aug.flip = a.flip.unwrap_or(aug.flip);
        aug.cutout = a.cutout.unwrap_or(aug.cutout);
        c.augment = Some(aug);
    }
    c.validate()?;
    Ok(c)
}
