//! Flags that set config fields and that `search` and `train` share, named as the fields
//! are (each verb lays them over its config by name, see [`super::args::overlay`]).
use super::args::device_parser;
use crate::data::{DataFormat, DataSource};
use serde::Serialize;
use std::path::PathBuf;

/// The schedule, the weight optimizer, the seed and where the run computes.
#[derive(clap::Args, Debug, Serialize)]
pub struct RunFlags {
    /// Epochs to run.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Images per step (in each of a search's two halves).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Weights: initial SGD learning rate (cosine schedule).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Weights: final learning rate of the cosine schedule.
    #[arg(long)]
    pub lr_min: Option<f64>,
    /// Weights: SGD momentum.
    #[arg(long)]
    pub momentum: Option<f64>,
    /// Weights: L2 weight decay.
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Weights: gradient norm clipping.
    #[arg(long)]
    pub grad_clip: Option<f64>,
    /// Seed of the weights, the data split and order (and of a training's drop-path masks).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Device to compute on.
    #[arg(long, value_parser = device_parser())]
    pub device: Option<String>,
    /// Also checkpoint every this many steps (0: only at epoch ends).
    #[arg(long)]
    pub checkpoint_every: Option<usize>,
    /// CPU threads for libtorch (0: libtorch's default).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// `--layers`, `--channels`: the network size.
#[derive(clap::Args, Debug, Serialize)]
pub struct NetworkFlags {
    /// DARTS: number of cells; NAS-Bench-201: cells per stage.
    #[arg(long)]
    pub layers: Option<usize>,
    /// Initial channels.
    #[arg(long)]
    pub channels: Option<usize>,
}

/// Training augmentation over the data format's default.
#[derive(clap::Args, Debug, Serialize)]
pub struct AugmentFlags {
    /// Random-crop padding (0 = off) [default: per data format].
    #[arg(long)]
    pub crop_padding: Option<usize>,
    /// Random horizontal flips [default: per data format].
    #[arg(long)]
    pub flip: Option<bool>,
    /// Cutout length (0 = off).
    #[arg(long)]
    pub cutout: Option<usize>,
}

/// `--data`, `--format`: a data source given on the command line replaces the config's
/// (its format detected unless given).
#[derive(clap::Args, Debug)]
pub struct DataFlags {
    /// Data directory or file [default: Fashion-MNIST from /usr/share/datasets/fashion-mnist].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Data format [default: detected from the files].
    #[arg(long, value_enum)]
    pub format: Option<DataFormat>,
}

impl DataFlags {
    pub fn apply(&self, data: &mut DataSource) {
        if let Some(path) = &self.data {
            *data = DataSource::new(path);
        }
        if let Some(f) = self.format {
            data.format = Some(f);
        }
    }
}
