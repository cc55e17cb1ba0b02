//! `supernet profile`: a latency lookup table of a chain space measured on a device, checked
//! against whole sampled networks; or given architectures timed against an existing table.
use crate::profile::{
    check_table, profile as measure, time_archs, ArchTiming, LatencyTable, ProfileOptions,
};
use crate::space::chain::{ChainArch, ChainSpace};
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
    /// Also time these architectures as whole networks against the table (a chain search's
    /// genotype.txt, or the choices themselves: mbconv_k3_e6,skip,...); repeatable.
    #[arg(long = "arch")]
    pub archs: Vec<String>,
    /// Measure no table: read this one and time the `--arch` networks with its device,
    /// threads, input, batch, warm-up and repeats.
    #[arg(long, conflicts_with = "out", requires = "archs")]
    pub table: Option<PathBuf>,
    /// The table file (JSON) to write.
    #[arg(long, required_unless_present = "table")]
    pub out: Option<PathBuf>,
}

pub fn profile(a: ProfileArgs) -> anyhow::Result<()> {
    let Space::Chain(space) = Space::load(&a.space)? else {
        anyhow::bail!(
            "--space {}: profile measures chain spaces (MBConv stages); this is a cell space",
            a.space.display()
        );
    };
    let archs = a
        .archs
        .iter()
        .map(|g| {
            let arch = ChainArch::from_arg(g)?;
            arch.validate(&space)
                .map_err(|e| anyhow::anyhow!("--arch {g}: {e}"))?;
            Ok(arch)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if let Some(path) = &a.table {
        return time_against_table(path, &space, &archs);
    }
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
        print_timings(
            &(0..report.archs.len())
                .map(|i| ArchTiming {
                    arch: report.archs[i].clone(),
                    predicted_ms: report.predicted_ms[i],
                    measured_ms: report.measured_ms[i],
                    rel_error: report.rel_errors[i],
                })
                .collect::<Vec<_>>(),
        );
        println!(
            "table vs {} measured networks: mean |relative error| {:.1}%, max {:.1}%",
            a.check,
            100.0 * report.mean_abs_rel_error,
            100.0 * report.max_abs_rel_error
        );
        table.check = Some(report);
    }
    if !archs.is_empty() {
        println!("given architectures:");
        print_timings(&time_archs(&table, &space, &opts, &archs)?);
    }
    let out = a.out.expect("clap requires --out without --table");
    table.write(&out)?;
    // Read back: what a search will read.
    LatencyTable::read(&out)?;
    println!("{}", out.display());
    Ok(())
}

/// `--table T --arch A...`: time the architectures with the settings `T` was measured with.
fn time_against_table(
    path: &std::path::Path,
    space: &ChainSpace,
    archs: &[ChainArch],
) -> anyhow::Result<()> {
    let table = LatencyTable::read(path)?;
    let device = crate::run::parse_device(&table.device)?;
    let input = InputShape::parse(
        &format!("{}x{}x{}", table.input[0], table.input[1], table.input[2]),
        table.classes as i64,
    )?;
    table.check_for(path, space, &table.device, table.input, table.classes)?;
    tch::set_num_threads(table.threads.max(1) as i32);
    let opts = ProfileOptions {
        input,
        batch: table.batch as i64,
        warmup: table.warmup,
        repeats: table.repeats,
        device,
    };
    println!(
        "profile: {} architectures of '{}' against {} ({}, {} threads, batch {})",
        archs.len(),
        space.name,
        path.display(),
        table.device,
        table.threads,
        table.batch
    );
    print_timings(&time_archs(&table, space, &opts, archs)?);
    Ok(())
}

fn print_timings(timings: &[ArchTiming]) {
    println!("arch\tpredicted_ms\tmeasured_ms\trel_error");
    for t in timings {
        println!(
            "{}\t{:.3}\t{:.3}\t{:+.1}%",
            t.arch,
            t.predicted_ms,
            t.measured_ms,
            100.0 * t.rel_error
        );
    }
}
