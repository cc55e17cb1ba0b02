//! `supernet sweep`: the settings file checked against the verbs' real flags, then the
//! sweep.
use clap::CommandFactory;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct SweepArgs {
    /// The sweep's settings (TOML: command, args, sampler, trials, seed, [pruner],
    /// [params.NAME]; README "Sweeps").
    #[arg(long, value_name = "FILE")]
    pub spec: PathBuf,
    /// Sweep directory (trials/NNNN run directories, journal.log, results.csv,
    /// results.h5, plots/). Given again with the same spec, a killed sweep continues.
    #[arg(long)]
    pub out: PathBuf,
    /// Trials run at once, each a child process with one thread.
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// No progress output.
    #[arg(long)]
    pub quiet: bool,
}

/// Whether `supernet VERB` takes `--FLAG` (`flag` with `_` for `-`).
fn has_flag(verb: &str, flag: &str) -> bool {
    let long = flag.replace('_', "-");
    super::Cli::command()
        .find_subcommand(verb)
        .is_some_and(|c| {
            c.get_arguments()
                .any(|a| a.get_long() == Some(long.as_str()))
        })
}

pub fn sweep(a: SweepArgs) -> anyhow::Result<()> {
    let spec = crate::sweep::SweepSpec::load(&a.spec, &has_flag)?;
    let text = std::fs::read_to_string(&a.spec)?;
    let opts = crate::sweep::SweepOptions {
        jobs: a.jobs,
        exe: std::env::current_exe()?,
        quiet: a.quiet,
    };
    let r = crate::sweep::run(&spec, &text, &a.out, &opts)?;
    if let Some((n, acc)) = r.best {
        println!("best trial {n}: accuracy {:.2}%", 100.0 * acc);
    }
    eprintln!(
        "{} trials: {}, {}, plots {}",
        r.trials,
        r.csv.display(),
        r.h5.display(),
        r.plots
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}
