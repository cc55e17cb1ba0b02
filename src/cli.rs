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
    /// the derived cells, rank-check scatter plots. Reads only the run file.
    Plot(PlotArgs),
    /// A short forward/backward on a device, saying whether CUDA was used.
    Check(CheckArgs),
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
    Sample(SampleArgs),
    /// Evolutionary (SPOS-style) or random architecture search on a trained supernet,
    /// with inherited-weight accuracy as the fitness.
    Evolve(EvolveArgs),
    /// Derive one architecture from a run by a chosen rule.
    Derive(DeriveArgs),
    /// Run one search step of a config at a small batch on random data and print the
    /// process's peak resident bytes (used by `search` to predict its memory).
    #[command(hide = true)]
    MemoryProbe(MemoryProbeArgs),
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
}

/// How sub-networks are scored (shared by sample, evolve and derive).
#[derive(clap::Args, Debug)]
pub struct ScoreArgs {
    /// Run directory (a finished or interrupted search: config.toml, checkpoint, run.h5).
    #[arg(long)]
    pub run: PathBuf,
    /// BN statistics: batch (of each evaluation batch), recalibrate:K (re-estimated on K
    /// training batches per sub-network) or running (the supernet's).
    #[arg(long, default_value = "recalibrate:10")]
    pub bn: String,
    /// Score on at most this many evaluation batches of the architecture half [default: all].
    #[arg(long)]
    pub batches: Option<usize>,
    /// CPU threads for libtorch [default: the run's setting]. Give each of several
    /// concurrent jobs a share of the cores: oversubscribed threads are many times slower.
    #[arg(long)]
    pub threads: Option<usize>,
    /// No progress lines.
    #[arg(long)]
    pub quiet: bool,
}

impl ScoreArgs {
    fn scorer(&self) -> anyhow::Result<crate::sample::Scorer> {
        let bn: crate::sample::BnMode = self.bn.parse()?;
        let scorer = crate::sample::Scorer::open(&self.run, bn, self.batches)?;
        if let Some(t) = self.threads.filter(|&t| t > 0) {
            tch::set_num_threads(t as i32);
        }
        Ok(scorer)
    }

    fn progress(&self) -> impl FnMut(usize, &crate::sample::ArchScore) + '_ {
        move |i, s| {
            if !self.quiet {
                eprintln!(
                    "{i:>4}  acc {:6.2}%  loss {:.4}  params {:>8}  MACs {:>11}  {}",
                    100.0 * s.accuracy,
                    s.loss,
                    s.parameters,
                    s.macs,
                    s.text
                );
            }
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct SampleArgs {
    #[command(flatten)]
    pub score: ScoreArgs,
    /// Number of distinct architectures.
    #[arg(long)]
    pub n: usize,
    /// uniform (every choice uniform, under the space's derivation rule) or alphas
    /// (drawn from softmax(alphas)).
    #[arg(long, default_value = "uniform")]
    pub from: String,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Table name (/samples/NAME, RUN/samples-NAME.csv) [default: FROM-BN-seedSEED].
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct EvolveArgs {
    #[command(flatten)]
    pub score: ScoreArgs,
    #[arg(long, default_value_t = 50)]
    pub population: usize,
    #[arg(long, default_value_t = 20)]
    pub generations: usize,
    /// Probability that each choice (a node's inputs, an edge's op) is re-drawn.
    #[arg(long, default_value_t = 0.1)]
    pub mutation_prob: f64,
    /// The best this many candidates so far are the parents of the next generation.
    #[arg(long, default_value_t = 10)]
    pub parents: usize,
    /// Random search instead of evolution: N distinct uniform candidates.
    #[arg(long, value_name = "N")]
    pub random: Option<usize>,
    /// Only candidates with at most this many parameters.
    #[arg(long)]
    pub max_params: Option<u64>,
    /// Only candidates with at most this many multiply-adds per image (the "FLOPs" of
    /// NAS papers).
    #[arg(long, alias = "max-flops")]
    pub max_macs: Option<u64>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// History name (/evolution/NAME, RUN/evolution-NAME.csv) [default: MODE-seedSEED].
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct DeriveArgs {
    /// top2 (DARTS: 2 strongest incoming edges per node, none excluded), argmax (per
    /// edge) or sample-top:K (K architectures from softmax(alphas), scored, the best).
    #[arg(long, default_value = "top2")]
    pub rule: String,
    /// Seed of sample-top:K.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub score: ScoreArgs,
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
    /// first-order, second-order (DARTS), spos (single path, uniform) or gdas (Gumbel)
    /// [default: first-order].
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
    /// GDAS: initial Gumbel-softmax temperature [default: 10].
    #[arg(long)]
    pub tau_max: Option<f64>,
    /// GDAS: final temperature (linear annealing over the epochs) [default: 0.1].
    #[arg(long)]
    pub tau_min: Option<f64>,
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
    /// Recompute each cell's activations during the backward pass instead of keeping
    /// them (activation checkpointing): much less memory, about one more forward pass per
    /// backward pass. Same results up to float summation order.
    #[arg(long)]
    pub recompute: bool,
    /// Start without predicting the step's peak memory first. The prediction runs the
    /// step at batches 8 and 16 in child processes (seconds) and refuses a search that
    /// would not fit in the available memory.
    #[arg(long)]
    pub no_memory_check: bool,
    /// Memory the search may use, in GiB, for the check above [default: the memory the
    /// system has available].
    #[arg(long)]
    pub memory_limit: Option<f64>,
    /// PC-DARTS: each edge's ops see 1/K of the channels (K must divide every cell's
    /// channels), and edges are normalised by learnt betas [default: 1, off].
    #[arg(long)]
    pub partial_channels: Option<usize>,
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
        Command::RankCheck(a) => train::rank_check(a),
        Command::Sample(a) => sample(a),
        Command::Evolve(a) => evolve(a),
        Command::Derive(a) => derive(a),
        Command::MemoryProbe(a) => {
            let text =
                std::fs::read_to_string(&a.config).map_err(|e| crate::Error::io(&a.config, e))?;
            let cfg = SearchConfig::from_toml(&text, &a.config)?;
            if cfg.threads > 0 {
                tch::set_num_threads(cfg.threads as i32);
            }
            let input = InputShape::parse(&a.input, a.classes)?;
            println!("{}", crate::memory::probe(&cfg, input, a.batch)?);
            Ok(())
        }
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

fn run_options(a: &SearchArgs) -> crate::search::RunOptions {
    crate::search::RunOptions {
        quiet: a.quiet,
        memory_probe: if a.no_memory_check {
            None
        } else {
            std::env::current_exe().ok()
        },
        memory_limit: a.memory_limit.map(|g| (g * (1u64 << 30) as f64) as u64),
    }
}

fn search(a: SearchArgs) -> anyhow::Result<()> {
    let outcome = match &a.resume {
        Some(dir) => crate::search::resume(dir, a.space.as_deref(), &run_options(&a))?,
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
            crate::search::start(cfg, &out, &run_options(&a))?
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

fn sample(a: SampleArgs) -> anyhow::Result<()> {
    let scorer = a.score.scorer()?;
    let cfg = crate::sample::SampleConfig {
        n: a.n,
        from: a.from.parse()?,
        seed: a.seed,
        name: a.name.clone(),
    };
    let r = crate::sample::sample(&a.score.run, &scorer, &cfg, a.score.progress())?;
    if r.duplicates > 0 {
        eprintln!("{} duplicate draws skipped", r.duplicates);
    }
    if r.scores.len() < a.n {
        eprintln!(
            "only {} distinct architectures found in {} draws",
            r.scores.len(),
            20 * a.n
        );
    }
    eprintln!(
        "{} architectures scored on {} images: {}/run.h5 /{}, {}",
        r.scores.len(),
        scorer.val_images(),
        a.score.run.display(),
        r.group,
        r.csv.display()
    );
    Ok(())
}

fn evolve(a: EvolveArgs) -> anyhow::Result<()> {
    let scorer = a.score.scorer()?;
    let cfg = crate::sample::EvolveConfig {
        population: a.population,
        generations: a.generations,
        mutation_prob: a.mutation_prob,
        parents: a.parents,
        max_params: a.max_params,
        max_macs: a.max_macs,
        seed: a.seed,
        random: a.random,
        name: a.name.clone(),
    };
    let r = crate::sample::evolve(&a.score.run, &scorer, &cfg, a.score.progress())?;
    println!("{}", r.best.text);
    eprintln!(
        "best of {} candidates: accuracy {:.2}%, loss {:.4}, {} parameters, {} MACs; history {}/run.h5 /{}, {}; genotype {}, {}",
        r.history.len(),
        100.0 * r.best.accuracy,
        r.best.loss,
        r.best.parameters,
        r.best.macs,
        a.score.run.display(),
        r.group,
        r.csv.display(),
        r.best_text.display(),
        r.best_json.display()
    );
    Ok(())
}

fn derive(a: DeriveArgs) -> anyhow::Result<()> {
    use crate::derive::RuleArg;
    let rule: RuleArg = a.rule.parse()?;
    let dir = &a.score.run;
    let genotype = match rule {
        RuleArg::SampleTop(k) => {
            let scorer = a.score.scorer()?;
            let cfg = crate::sample::SampleConfig {
                n: k,
                from: crate::sample::SampleFrom::Alphas,
                seed: a.seed,
                name: Some(format!("derive-{}-seed{}", rule.name(), a.seed)),
            };
            let r = crate::sample::sample(dir, &scorer, &cfg, a.score.progress())?;
            let best = r
                .scores
                .iter()
                .max_by(|x, y| {
                    x.accuracy
                        .total_cmp(&y.accuracy)
                        .then(y.loss.total_cmp(&x.loss))
                })
                .expect("sample scores at least one architecture");
            eprintln!(
                "best of {} sampled: accuracy {:.2}% (scores in /{})",
                r.scores.len(),
                100.0 * best.accuracy,
                r.group
            );
            best.genotype.clone()
        }
        _ => crate::derive::derive_run(dir, rule)?,
    };
    let stem = dir.join(format!("genotype-{}", rule.name()));
    let (txt, json) = (stem.with_extension("txt"), stem.with_extension("json"));
    crate::fsutil::write_atomic(&txt, format!("{}\n", genotype.to_text()).as_bytes())?;
    crate::fsutil::write_atomic(&json, format!("{}\n", genotype.to_json()).as_bytes())?;
    println!("{}", genotype.to_text());
    eprintln!("written {}, {}", txt.display(), json.display());
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
        tau_max,
        tau_min,
        seed,
        device,
        alpha_every,
        checkpoint_every,
        threads,
        partial_channels
    );
    if let Some(s) = &a.strategy {
        c.strategy = s.parse()?;
    }
    c.recompute |= a.recompute;
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
