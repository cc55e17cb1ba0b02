//! `supernet tabulate`: the ground truth of a small space. Every architecture of the space
//! is trained on its own ([`crate::train::fit`]) with each of K seeds under one fixed short
//! budget, and the test accuracies go into an HDF5 table ([`GroundTruth`]) that the
//! ranking measures of one-shot methods can be checked against.
//!
//! With `jobs > 1` the trainings run in worker processes of this binary, each on its own
//! thread budget; only this process writes the table, once per finished training and
//! atomically, so a kill loses at most the trainings in flight. Run again, the same
//! command continues: finished (architecture, seed) pairs are never trained again, and a
//! table of another space or budget is refused.
mod table;
mod worker;

pub use table::{GroundTruth, KIND};
pub use worker::serve;

use crate::data::{DataFormat, DataSets, DataSource};
use crate::space::{count_architectures, enumerate, Genotype, SearchSpace};
use crate::supernet::OpStyle;
use crate::train::{AugmentOverrides, TrainConfig};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Instant;

/// The training budget of every architecture: what makes two tables comparable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    pub epochs: usize,
    /// Training images (class-balanced, seeded).
    pub subset: usize,
    /// Test images (class-balanced, seeded).
    pub test_subset: usize,
    pub batch_size: usize,
    /// Initial SGD learning rate (cosine to 0).
    pub lr: f64,
    /// The data set's name (its format, and for generic formats the file or directory).
    pub data: String,
}

impl Budget {
    /// Each field as (name, shown value), in the table's attribute names.
    fn fields(&self) -> [(&'static str, String); 6] {
        [
            ("epochs", self.epochs.to_string()),
            ("subset", self.subset.to_string()),
            ("test_subset", self.test_subset.to_string()),
            ("batch_size", self.batch_size.to_string()),
            ("lr", self.lr.to_string()),
            ("data", self.data.clone()),
        ]
    }
}

/// What one training of the table is: the space, the data and the budget. Workers get it
/// as JSON on their command line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub space: PathBuf,
    pub data: DataSource,
    pub budget: Budget,
    /// CPU threads of each training (libtorch's).
    pub threads: usize,
}

impl Plan {
    /// The stand-alone training of `genotype` with `seed`: the space's own network size,
    /// stand-alone ops, no augmentation, auxiliary head or drop-path, on the CPU.
    pub fn train_config(&self, genotype: &Genotype, seed: u64) -> TrainConfig {
        let b = &self.budget;
        TrainConfig {
            genotype: genotype.to_text(),
            space: self.space.clone(),
            style: OpStyle::Standalone,
            data: self.data.clone(),
            subset: Some(b.subset),
            test_subset: Some(b.test_subset),
            augment: AugmentOverrides {
                crop_padding: Some(0),
                flip: Some(false),
                cutout: Some(0),
            },
            auxiliary_weight: 0.0,
            drop_path: 0.0,
            epochs: b.epochs,
            batch_size: b.batch_size,
            lr: b.lr,
            seed,
            device: "cpu".into(),
            threads: self.threads,
            ..TrainConfig::default()
        }
    }
}

/// The name a table records for a data source.
pub fn data_name(data: &DataSource) -> Result<String> {
    let (format, path) = data.resolve()?;
    Ok(match format {
        DataFormat::Idx | DataFormat::Hdf5 => format!(
            "{format}:{}",
            path.file_name().unwrap_or_default().to_string_lossy()
        ),
        named => named.name().to_string(),
    })
}

/// Train `genotype` with `seed` under `plan` on `data`: its test accuracy and the seconds
/// the training took.
pub fn train_pair(
    plan: &Plan,
    data: &DataSets,
    genotype: &Genotype,
    seed: u64,
) -> Result<(f64, f64)> {
    let t0 = Instant::now();
    let score = crate::train::fit(&plan.train_config(genotype, seed), data)?;
    Ok((score.accuracy, t0.elapsed().as_secs_f64()))
}

/// What `supernet tabulate` does.
#[derive(Debug, Clone)]
pub struct TabulateConfig {
    pub plan: Plan,
    /// Seeds 0..seeds of every architecture.
    pub seeds: usize,
    /// Trainings at once: worker processes of `exe` when above 1, this process otherwise.
    pub jobs: usize,
    /// This binary (the workers' executable).
    pub exe: PathBuf,
    pub out: PathBuf,
    /// Refuse spaces with more architectures than this.
    pub max_architectures: usize,
}

/// One finished training, as reported to the caller.
#[derive(Debug, Clone)]
pub struct Finished {
    pub architecture: usize,
    /// Its text form.
    pub genotype: String,
    pub seed: u64,
    pub accuracy: f64,
    pub seconds: f64,
    /// Trained pairs in the table now, and all of them.
    pub done: usize,
    pub total: usize,
}

/// Build or continue the table `cfg.out`; the complete table.
pub fn tabulate(cfg: &TabulateConfig, mut progress: impl FnMut(&Finished)) -> Result<GroundTruth> {
    if cfg.seeds == 0 {
        return Err(Error::invalid("--seeds", 0, "at least 1"));
    }
    if cfg.jobs == 0 {
        return Err(Error::invalid("--jobs", 0, "at least 1"));
    }
    let space = SearchSpace::load(&cfg.plan.space)?;
    let n = count_architectures(&space);
    if n > cfg.max_architectures as u128 {
        return Err(Error::invalid(
            "--space",
            format!("{} (space '{}', {n} architectures)", cfg.plan.space.display(), space.name),
            format!(
                "a space of at most --max-architectures = {} architectures (raise the limit to tabulate it)",
                cfg.max_architectures
            ),
        ));
    }
    let architectures = enumerate(&space);
    let seeds: Vec<u64> = (0..cfg.seeds as u64).collect();
    // Every setting checked once, as each training would check it.
    cfg.plan.train_config(&architectures[0], 0).validate()?;
    let mut table = open_table(cfg, architectures, seeds, space.to_toml())?;
    let pending = table.pending();
    let total = table.accuracy.len();
    let mut done = total - pending.len();
    let mut record = |table: &mut GroundTruth, (i, s): (usize, usize), (acc, secs): (f64, f64)| {
        table.accuracy[(i, s)] = acc;
        table.seconds[(i, s)] = secs;
        table.write(&cfg.out)?;
        done += 1;
        progress(&Finished {
            architecture: i,
            genotype: table.architectures[i].to_text(),
            seed: table.seeds[s],
            accuracy: acc,
            seconds: secs,
            done,
            total,
        });
        Ok::<(), Error>(())
    };
    if pending.is_empty() {
        // Complete already.
    } else if cfg.jobs == 1 || pending.len() == 1 {
        let data = cfg.plan.data.load()?;
        for pair in pending {
            let result = train_pair(
                &cfg.plan,
                &data,
                &table.architectures[pair.0],
                table.seeds[pair.1],
            )?;
            record(&mut table, pair, result)?;
        }
    } else {
        let genotypes: Vec<String> = table.architectures.iter().map(|g| g.to_text()).collect();
        let seeds = table.seeds.clone();
        worker::run_pool(
            &cfg.exe,
            &cfg.plan,
            cfg.jobs,
            pending,
            &genotypes,
            &seeds,
            |pair, result| record(&mut table, pair, result),
        )?;
    }
    Ok(table)
}

/// The table at `cfg.out` to continue, after checking that it is this command's; or a new
/// empty one, written.
fn open_table(
    cfg: &TabulateConfig,
    architectures: Vec<Genotype>,
    seeds: Vec<u64>,
    space: String,
) -> Result<GroundTruth> {
    let out = &cfg.out;
    if !out.exists() {
        let table = GroundTruth::new(architectures, seeds, space, cfg.plan.budget.clone());
        table.write(out)?;
        return Ok(table);
    }
    let table = GroundTruth::read(out)?;
    let refuse = |field: &str, have: &str, want: &str| {
        Error::bad_file(
            out,
            format!(
                "this table was built with {field} = {have}, the command asks for {field} = {want}; \
                 give the table's settings to continue it, or another --out for a new table"
            ),
        )
    };
    if table.space != space {
        return Err(refuse(
            "space",
            &format!("(the space in its attribute 'space')\n{}", table.space),
            &format!("{} whose TOML is\n{space}", cfg.plan.space.display()),
        ));
    }
    let want = cfg.plan.budget.fields();
    for ((field, have), (_, want)) in table.budget.fields().iter().zip(&want) {
        if have != want {
            return Err(refuse(field, have, want));
        }
    }
    if table.seeds != seeds {
        return Err(refuse(
            "seeds",
            &format!("{:?}", table.seeds),
            &format!("{seeds:?} (--seeds {})", seeds.len()),
        ));
    }
    if table.architectures != architectures {
        return Err(Error::bad_file(
            out,
            "its /architectures are not the space's enumeration (written by another version?)",
        ));
    }
    Ok(table)
}
