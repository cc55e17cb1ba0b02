//! Command-line verbs. Each verb resolves its flags into a validated config and calls the
//! library; nothing here does numerical work.
use crate::space::{Genotype, NetworkOverrides, SearchSpace};
use crate::supernet::InputShape;
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
    /// Describe the supernet a space file builds (or one sub-network of it).
    Inspect(InspectArgs),
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
    /// Describe the sub-network of this genotype (a file, or the DARTS / NAS-Bench-201 /
    /// JSON text itself) with the weights it inherits from the supernet.
    #[arg(long)]
    pub genotype: Option<String>,
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Info => {
            println!("{}", crate::info::Info::gather());
            Ok(())
        }
        Command::Inspect(a) => {
            let space = SearchSpace::from_file(&a.space)?.with_overrides(NetworkOverrides {
                layers: a.layers,
                channels: a.channels,
            })?;
            let input = InputShape::parse(&a.input, a.classes)?;
            let genotype = a.genotype.as_deref().map(Genotype::from_arg).transpose()?;
            println!(
                "{}",
                crate::inspect::Summary::new(&space, input, genotype.as_ref())?
            );
            Ok(())
        }
    }
}
