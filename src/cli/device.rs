//! `supernet bench` and `supernet parity`: the device checks scripts/gpu-check runs on a
//! GPU machine without Rust.
use super::args::device_parser;
use super::Exit;
use crate::backend::Precision;
use crate::search::{SearchConfig, StrategyKind};
use crate::space::NetworkOverrides;
use crate::supernet::InputShape;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Search-space file, or the name of a shipped space.
    #[arg(long, default_value = "darts_cnn")]
    pub space: PathBuf,
    /// Input shape CxHxW (random data).
    #[arg(long, default_value = "3x32x32")]
    pub input: String,
    /// DARTS: number of cells; NAS-Bench-201: cells per stage [default: the space's].
    #[arg(long)]
    pub layers: Option<usize>,
    /// Initial channels [default: the space's].
    #[arg(long)]
    pub channels: Option<usize>,
    /// Images per step (in each of the two batches of a search step).
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// A search step of this strategy, or `--forward` for a forward pass alone.
    #[arg(long, value_enum, default_value_t = StrategyKind::FirstOrder)]
    pub strategy: StrategyKind,
    /// Time forward passes (no gradient) instead of search steps.
    #[arg(long)]
    pub forward: bool,
    /// Timed steps (after one warm-up step).
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Device to run on.
    #[arg(long, default_value = "auto", value_parser = device_parser())]
    pub device: String,
    /// Precision of the weight step (as `search --precision`).
    #[arg(long, value_enum, default_value_t = Precision::Fp32)]
    pub precision: Precision,
    /// Precision of the alpha step (as `search --arch-precision`).
    #[arg(long, value_enum, default_value_t = Precision::Fp32)]
    pub arch_precision: Precision,
    /// CUDA: deterministic algorithms, no autotuning (as `search --deterministic`).
    #[arg(long)]
    pub deterministic: bool,
    /// CUDA: cuDNN autotuning.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub cudnn_benchmark: bool,
    /// CUDA: channels-last activations.
    #[arg(long)]
    pub channels_last: bool,
    /// Recompute activations in the backward pass (as `search --recompute`).
    #[arg(long)]
    pub recompute: bool,
    /// PC-DARTS partial channels K.
    #[arg(long, default_value_t = 1)]
    pub partial_channels: usize,
    /// Also predict the step's peak memory as `supernet search` does (two probe processes).
    #[arg(long)]
    pub predict: bool,
    /// Seed of the weights, alphas and random batches.
    #[arg(long, default_value_t = 2)]
    pub seed: u64,
    /// CPU threads for libtorch (0: libtorch's default).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

pub fn bench(a: BenchArgs) -> anyhow::Result<Exit> {
    let cfg = SearchConfig {
        space: a.space.clone(),
        network: NetworkOverrides {
            layers: a.layers,
            channels: a.channels,
        },
        strategy: a.strategy,
        batch_size: a.batch,
        precision: a.precision,
        arch_precision: a.arch_precision,
        deterministic: a.deterministic,
        cudnn_benchmark: a.cudnn_benchmark,
        channels_last: a.channels_last,
        recompute: a.recompute,
        partial_channels: a.partial_channels,
        seed: a.seed,
        threads: a.threads,
        device: a.device.clone(),
        ..SearchConfig::default()
    };
    cfg.validate_with_space()?;
    if a.threads > 0 {
        tch::set_num_threads(a.threads as i32);
    }
    let exe = std::env::current_exe()?;
    let spec = crate::devcheck::bench::BenchSpec {
        cfg: &cfg,
        input: InputShape::parse(&a.input, 10)?,
        forward_only: a.forward,
        steps: a.steps,
        device: crate::run::parse_device(&a.device)?,
        predict_with: a.predict.then_some(exe.as_path()),
    };
    println!("{}", crate::devcheck::bench::bench(&spec)?);
    Ok(Exit::Done)
}

#[derive(clap::Args, Debug)]
pub struct ParityArgs {
    /// The device compared with the CPU.
    #[arg(long, default_value = "cuda", value_parser = device_parser())]
    pub device: String,
}

pub fn parity(a: ParityArgs) -> anyhow::Result<Exit> {
    let device = crate::run::parse_device(&a.device)?;
    let rows = crate::devcheck::parity::parity(device, |_| true)?;
    print!("{}", crate::devcheck::parity::table(device, &rows));
    let failed: Vec<&str> = rows.iter().filter(|r| !r.ok()).map(|r| r.case).collect();
    if !failed.is_empty() {
        anyhow::bail!(
            "{} differs from the CPU beyond its bound in: {}",
            crate::run::device_name(device),
            failed.join(", ")
        );
    }
    Ok(Exit::Done)
}
