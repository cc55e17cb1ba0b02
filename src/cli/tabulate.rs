//! `supernet tabulate` (and its hidden worker verb): flags into a [`TabulateConfig`].
use super::flags::DataFlags;
use crate::data::DataSource;
use crate::run::paths;
use crate::tabulate::{data_name, Budget, Plan, TabulateConfig};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct TabulateArgs {
    /// Search-space file, or the name of a shipped space (e.g. micro): every architecture
    /// of it is trained.
    #[arg(long)]
    pub space: PathBuf,
    #[command(flatten)]
    pub data: DataFlags,
    /// Seeds per architecture (0..K).
    #[arg(long, default_value_t = 3)]
    pub seeds: usize,
    /// Trainings at once, each in a worker process of this binary (1: in this process).
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// The table (HDF5). An existing table of the same space and budget is continued.
    #[arg(long)]
    pub out: PathBuf,
    /// Epochs of each training. The learning rate anneals once per epoch, so a budget of
    /// few epochs ends at a high rate and a noisy accuracy: 6 epochs on 2000 images cost
    /// what 2 on 6000 do, with a third of the seed-to-seed spread (results/trust).
    #[arg(long, default_value_t = 6)]
    pub epochs: usize,
    /// Training images (class-balanced, seeded by the training's seed).
    #[arg(long, default_value_t = 2000)]
    pub subset: usize,
    /// Test images (class-balanced, seeded by the training's seed; the whole test set of
    /// Fashion-MNIST, MNIST or CIFAR by default, the same for every seed).
    #[arg(long, default_value_t = 10000)]
    pub test_subset: usize,
    /// Images per training step.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Initial SGD learning rate (cosine schedule to 0, momentum 0.9, weight decay 3e-4).
    #[arg(long, default_value_t = 0.05)]
    pub lr: f64,
    /// CPU threads of each training.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Refuse a space with more architectures than this.
    #[arg(long, default_value_t = 5000)]
    pub max_architectures: usize,
    /// No line per finished training.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(clap::Args, Debug)]
pub struct TabulateWorkerArgs {
    /// The plan, as JSON.
    pub plan: String,
}

pub fn tabulate(a: TabulateArgs) -> anyhow::Result<()> {
    let mut data = DataSource::default();
    a.data.apply(&mut data);
    data.path = paths::from_command_line(&data.path);
    let space = paths::from_command_line(&a.space);
    let budget = Budget {
        epochs: a.epochs,
        subset: a.subset,
        test_subset: a.test_subset,
        batch_size: a.batch_size,
        lr: a.lr,
        data: data_name(&data)?,
    };
    let cfg = TabulateConfig {
        plan: Plan {
            space,
            data,
            budget,
            threads: a.threads,
        },
        seeds: a.seeds,
        jobs: a.jobs,
        exe: std::env::current_exe()?,
        out: a.out.clone(),
        max_architectures: a.max_architectures,
    };
    let table = crate::tabulate::tabulate(&cfg, |f| {
        if !a.quiet {
            eprintln!(
                "[{}/{}] {:6.2}%  {:5.1}s  seed {}  {}",
                f.done,
                f.total,
                100.0 * f.accuracy,
                f.seconds,
                f.seed,
                f.genotype
            );
        }
    })?;
    let n = table.architectures.len();
    let means: Vec<f64> = (0..n).map(|i| table.mean(i)).collect();
    let best = (0..n).max_by(|&i, &j| means[i].total_cmp(&means[j]));
    let (lo, hi) = means
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &m| {
            (lo.min(m), hi.max(m))
        });
    println!(
        "{}: {n} architectures x {} seeds; mean accuracy {:.2}% to {:.2}%",
        a.out.display(),
        table.seeds.len(),
        100.0 * lo,
        100.0 * hi
    );
    if let Some(b) = best {
        println!(
            "best: {:.2}% {}",
            100.0 * means[b],
            table.architectures[b].to_text()
        );
    }
    Ok(())
}
