//! `supernet few-shot`: split a trained supernet on one edge into fine-tuned sub-supernets.
use super::Exit;
use crate::search::{FewShotConfig, FewShotOutcome, RunOptions};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct FewShotArgs {
    /// Run directory of a search (first-order, second-order or spos) with a checkpoint.
    #[arg(long)]
    pub run: PathBuf,
    /// Edge of the normal cell split on, in alpha-row order (0: the first edge into the
    /// first node).
    #[arg(long, default_value_t = 0)]
    pub edge: usize,
    /// Fine-tuning steps of each sub-supernet.
    #[arg(long)]
    pub steps: usize,
    /// Name of the set: RUN/few-shot/NAME/<op> [default: edge<E>].
    #[arg(long)]
    pub name: Option<String>,
    /// No progress lines.
    #[arg(long)]
    pub quiet: bool,
}

pub fn few_shot(a: FewShotArgs) -> anyhow::Result<Exit> {
    let name = a.name.clone().unwrap_or_else(|| format!("edge{}", a.edge));
    crate::sample::check_name(&name)?;
    let cfg = FewShotConfig {
        edge: a.edge,
        steps: a.steps,
        name: name.clone(),
    };
    let opts = RunOptions {
        quiet: a.quiet,
        ..RunOptions::default()
    };
    match crate::search::few_shot(&a.run, &cfg, &opts)? {
        FewShotOutcome::Finished(subs) => {
            for (op, dir) in &subs {
                println!("{:<14} {}", op.name(), dir.display());
            }
            eprintln!(
                "{} sub-supernets of edge {} fine-tuned {} steps each; score with --score few-shot --few-shot {name}",
                subs.len(),
                a.edge,
                a.steps
            );
            Ok(Exit::Done)
        }
        FewShotOutcome::Interrupted(stopped) => {
            eprintln!(
                "few-shot interrupted in {} after {} steps and checkpointed; run the same command again to continue",
                stopped.dir.display(),
                stopped.global_step
            );
            Ok(Exit::Interrupted {
                signal: stopped.signal,
            })
        }
    }
}
