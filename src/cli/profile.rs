//! `supernet profile`: a latency lookup table of a chain space measured on a device, checked
//! against whole sampled networks.
use crate::profile::{check_table, profile as measure, LatencyTable, ProfileOptions};
use crate::space::Space;
use crate::supernet::InputShape;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct ProfileArgs {
    /// A chain space file, or the name of a shipped one.
    #[arg(long)]
    pub space: PathBuf,
    /// The device the table is for.
    #[arg(long, default_value = "cpu", value_parser = super::args::device_parser())]
    pub device: String,
    /// Input shape CxHxW (the default is the default data set's, Fashion-MNIST).
    #[arg(long, default_value = "1x28x28")]
    pub input: String,
    /// Classes of the data set.
    #[arg(long, default_value_t = 10)]
    pub classes: i64,
    /// libtorch intra-op threads [default: libtorch's].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Images per timed forward.
    #[arg(long, default_value_t = 1)]
    pub batch: i64,
    /// Untimed forwards before each measurement.
    #[arg(long, default_value_t = 5)]
    pub warmup: usize,
    /// Timed forwards per measurement (the median is kept).
    #[arg(long, default_value_t = 20)]
    pub repeats: usize,
    /// Whole sampled networks timed against the table's prediction (0: no check).
    #[arg(long, default_value_t = 20)]
    pub check: usize,
    /// Seed of the checked architectures.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The table file (JSON).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn profile(a: ProfileArgs) -> anyhow::Result<()> {
    let Space::Chain(space) = Space::load(&a.space)? else {
        anyhow::bail!(
            "--space {}: profile measures chain spaces (MBConv stages); this is a cell space",
            a.space.display()
        );
    };
    if let Some(t) = a.threads {
        if t == 0 {
            anyhow::bail!("--threads 0: expected at least 1");
        }
        tch::set_num_threads(t as i32);
    }
    let opts = ProfileOptions {
        input: InputShape::parse(&a.input, a.classes)?,
        batch: a.batch,
        warmup: a.warmup,
        repeats: a.repeats,
        device: crate::run::parse_device(&a.device)?,
    };
    let mut table = measure(&space, &opts)?;
    println!(
        "profile: '{}' on {} ({} threads), input {}, batch {}: fixed parts {:.3} ms, {} layers",
        space.name,
        table.device,
        table.threads,
        a.input,
        a.batch,
        table.fixed_ms(),
        table.layers.len()
    );
    if a.check > 0 {
        let report = check_table(&table, &space, &opts, a.check, a.seed)?;
        println!("arch\tpredicted_ms\tmeasured_ms\trel_error");
        for i in 0..report.archs.len() {
            println!(
                "{}\t{:.3}\t{:.3}\t{:+.1}%",
                report.archs[i],
                report.predicted_ms[i],
                report.measured_ms[i],
                100.0 * report.rel_errors[i]
            );
        }
        println!(
            "table vs {} measured networks: mean |relative error| {:.1}%, max {:.1}%",
            a.check,
            100.0 * report.mean_abs_rel_error,
            100.0 * report.max_abs_rel_error
        );
        table.check = Some(report);
    }
    table.write(&a.out)?;
    // Read back: what a search will read.
    LatencyTable::read(&a.out)?;
    println!("{}", a.out.display());
    Ok(())
}
