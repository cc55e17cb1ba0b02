//! `supernet train` and `supernet extract`: flags into a [`TrainConfig`], and the outcome.
use crate::data::DataSource;
use crate::space::{NetworkOverrides, NetworkSpec, SearchSpace};
use crate::supernet::OpStyle;
use crate::train::{Outcome, TrainConfig, EVAL_CHANNELS, EVAL_LAYERS};
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// Continue the training run in this directory from its last checkpoint (its config
    /// is used; other flags are ignored, except --quiet).
    #[arg(long, value_name = "DIR")]
    pub resume: Option<PathBuf>,
    /// Start from this config file (a training run's config.toml); flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The architecture: a file (genotype.txt / .json of a search) or the DARTS /
    /// NAS-Bench-201 / JSON text itself.
    #[arg(long)]
    pub genotype: Option<String>,
    /// Search-space file the genotype belongs to [default: supernets/darts_cnn.toml].
    #[arg(long)]
    pub space: Option<PathBuf>,
    /// Fine-tune this exported model (a `supernet extract` or `train` output directory)
    /// instead of training fresh weights; its description fixes the network.
    #[arg(long, value_name = "DIR")]
    pub init: Option<PathBuf>,
    /// standalone (affine BN, no BN after pooling: the evaluation network) or inherited
    /// (the supernet's operations) [default: standalone].
    #[arg(long)]
    pub style: Option<OpStyle>,
    /// DARTS: number of cells [default: 20]; NAS-Bench-201: cells per stage [default: the
    /// space file's].
    #[arg(long)]
    pub layers: Option<usize>,
    /// Initial channels [default: DARTS 36, NAS-Bench-201 the space file's].
    #[arg(long)]
    pub channels: Option<usize>,
    /// Weight of the auxiliary head's loss; 0 builds no head [default: DARTS 0.4,
    /// NAS-Bench-201 0].
    #[arg(long)]
    pub auxiliary_weight: Option<f64>,
    /// Drop-path probability, ramped from 0 over the epochs [default: 0.2].
    #[arg(long)]
    pub drop_path: Option<f64>,
    /// Cutout length (0 = off) [default: 16].
    #[arg(long)]
    pub cutout: Option<usize>,
    /// Random-crop padding (0 = off); default: per data format.
    #[arg(long)]
    pub crop_padding: Option<usize>,
    /// Random horizontal flips; default: per data format.
    #[arg(long)]
    pub flip: Option<bool>,
    /// Data directory or file [default: Fashion-MNIST from /usr/share/datasets/fashion-mnist].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Data format (fashion-mnist, mnist, idx, cifar10, cifar100, hdf5); default: detected.
    #[arg(long)]
    pub format: Option<String>,
    /// Train on this many training images (class-balanced, seeded) [default: all].
    #[arg(long)]
    pub subset: Option<usize>,
    /// Evaluate on this many test images (class-balanced, seeded) [default: all].
    #[arg(long)]
    pub test_subset: Option<usize>,
    /// [default: 600]
    #[arg(long)]
    pub epochs: Option<usize>,
    /// [default: 96]
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// [default: 0.025]
    #[arg(long)]
    pub lr: Option<f64>,
    /// [default: 0]
    #[arg(long)]
    pub lr_min: Option<f64>,
    #[arg(long)]
    pub momentum: Option<f64>,
    #[arg(long)]
    pub weight_decay: Option<f64>,
    #[arg(long)]
    pub grad_clip: Option<f64>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// auto, cpu, cuda or cuda:N [default: auto].
    #[arg(long)]
    pub device: Option<String>,
    /// Also checkpoint every this many steps (0: only at epoch ends) [default: 0].
    #[arg(long)]
    pub checkpoint_every: Option<usize>,
    /// CPU threads for libtorch (0: libtorch's default).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Run directory [default: runs/train-<space>-seed<seed>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// No progress output.
    #[arg(long)]
    pub quiet: bool,
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
    let darts = matches!(
        SearchSpace::from_file(space)?.network,
        NetworkSpec::Darts { .. }
    );
    if darts {
        network.layers.get_or_insert(EVAL_LAYERS);
        network.channels.get_or_insert(EVAL_CHANNELS);
    }
    auxiliary_weight.get_or_insert(if darts { 0.4 } else { 0.0 });
    Ok(())
}

pub fn train(a: TrainArgs) -> anyhow::Result<()> {
    let outcome = match &a.resume {
        Some(dir) => crate::train::resume(dir, a.quiet)?,
        None => {
            let cfg = train_config(&a)?;
            let out = a.out.clone().unwrap_or_else(|| {
                let stem = cfg
                    .space
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or("model");
                PathBuf::from(format!("runs/train-{stem}-seed{}", cfg.seed))
            });
            crate::train::start(cfg, &out, a.quiet)?
        }
    };
    match outcome {
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
        }
        Outcome::Interrupted { dir, global_step } => eprintln!(
            "training interrupted after {global_step} steps and checkpointed; continue with:\n  supernet train --resume {}",
            dir.display()
        ),
    }
    Ok(())
}

/// Config file (or the DARTS evaluation defaults), then flags.
fn train_config(a: &TrainArgs) -> anyhow::Result<TrainConfig> {
    let mut c = match &a.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| crate::Error::io(path, e))?;
            toml::from_str(&text).map_err(|e| crate::Error::bad_file(path, e.to_string()))?
        }
        None => TrainConfig::default(),
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
        weight_decay
    );
    set!(
        grad_clip,
        drop_path,
        seed,
        device,
        checkpoint_every,
        threads,
        genotype
    );
    if a.init.is_some() {
        c.init = a.init.clone();
    }
    c.style = a.style.unwrap_or(c.style);
    c.subset = a.subset.or(c.subset);
    c.test_subset = a.test_subset.or(c.test_subset);
    if let Some(path) = &a.data {
        c.data = DataSource::new(path);
    }
    if let Some(f) = &a.format {
        c.data = c
            .data
            .clone()
            .with_format(f.parse().map_err(crate::Error::from)?);
    }
    c.network.layers = a.layers.or(c.network.layers);
    c.network.channels = a.channels.or(c.network.channels);
    let mut aux = a.auxiliary_weight;
    if a.config.is_none() && c.init.is_none() {
        evaluation_defaults(&c.space, &mut c.network, &mut aux)?;
    }
    if let Some(w) = aux {
        c.auxiliary_weight = w;
    }
    let aug = &mut c.augment;
    aug.crop_padding = a.crop_padding.or(aug.crop_padding);
    aug.flip = a.flip.or(aug.flip);
    aug.cutout = a.cutout.or(aug.cutout);
    c.validate()?;
    Ok(c)
}

pub fn extract(a: ExtractArgs) -> anyhow::Result<()> {
    let genotype = a
        .genotype
        .as_deref()
        .map(crate::space::Genotype::from_arg)
        .transpose()?;
    let out = a.out.clone().unwrap_or_else(|| a.run.join("extracted"));
    let json = crate::model::extract(&a.run, genotype, &out)?;
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
    /// Training images (class-balanced, seeded) [default: all].
    #[arg(long, default_value_t = 5000)]
    pub subset: usize,
    /// Test images evaluated (class-balanced, seeded).
    #[arg(long, default_value_t = 2000)]
    pub test_subset: usize,
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Stand-alone network size [default: the supernet's].
    #[arg(long)]
    pub layers: Option<usize>,
    #[arg(long)]
    pub channels: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// CPU threads for libtorch (0: libtorch's default).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// No progress lines.
    #[arg(long)]
    pub quiet: bool,
}

pub fn rank_check(a: RankCheckArgs) -> anyhow::Result<()> {
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
    };
    let report = crate::sample::rank_check(&a.run, &cfg, |i, r| {
        if !a.quiet {
            eprintln!(
                "{i:>3}  inherited {:6.2}%  stand-alone {:6.2}%  {}",
                100.0 * r.inherited,
                100.0 * r.standalone,
                r.architecture
            );
        }
    })?;
    let show = |v: Option<f64>| v.map_or("undefined".to_string(), |v| format!("{v:.3}"));
    println!(
        "Kendall tau {}  Spearman rho {}  top-{} overlap {}  ({} sub-networks)",
        show(report.kendall_tau),
        show(report.spearman_rho),
        a.top,
        show(report.top_overlap),
        report.rows.len()
    );
    eprintln!("stored in /{} and {}", report.group, report.csv.display());
    Ok(())
}
