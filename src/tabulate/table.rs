//! The ground-truth table as HDF5: written whole and atomically after every result (built
//! in memory, temporary file, fsync, rename; [`crate::record::image`]), so a killed run
//! leaves the table of its finished trainings, and read back with every field checked.
//!
//! Layout: `/architectures` (strings, [`Genotype::parse`] reads each), `/seeds` (u64, K),
//! `/accuracy` and `/seconds` (f64 `[architectures, K]`, NaN where not trained yet),
//! `/mean` and `/std` (f64 per architecture over its trained seeds, NaN if none; the
//! population standard deviation, 0 with one seed); root attributes `tool`, `kind`,
//! `space` (the space's TOML) and the budget ([`Budget`]).
use super::Budget;
use crate::record::{image, read_str_attr, str_attr, unicode};
use crate::space::{GeneEdge, Genotype};
use crate::{Error, Result};
use hdf5::types::VarLenUnicode;
use ndarray::Array2;
use std::collections::HashMap;
use std::path::Path;

/// Root attribute `kind` of a ground-truth table.
pub const KIND: &str = "ground_truth";

/// A ground-truth table: per architecture of a space and per seed, the test accuracy of a
/// stand-alone training under one budget.
#[derive(Debug, Clone)]
pub struct GroundTruth {
    pub architectures: Vec<Genotype>,
    pub seeds: Vec<u64>,
    /// `[architectures, seeds]`; NaN: not trained yet.
    pub accuracy: Array2<f64>,
    /// Wall-clock seconds of each training, `[architectures, seeds]`; NaN: not trained yet.
    pub seconds: Array2<f64>,
    /// The space's TOML text.
    pub space: String,
    pub budget: Budget,
    index: HashMap<String, usize>,
}

/// The text a genotype is looked up by: each node's edges in input order, as the space's
/// enumeration writes them.
fn key(g: &Genotype) -> String {
    let mut g = g.clone();
    let sort =
        |nodes: &mut Vec<Vec<GeneEdge>>| nodes.iter_mut().for_each(|n| n.sort_by_key(|e| e.from));
    sort(&mut g.normal.nodes);
    if let Some(r) = &mut g.reduce {
        sort(&mut r.nodes);
    }
    g.to_text()
}

impl GroundTruth {
    /// An empty table (every entry NaN).
    pub fn new(
        architectures: Vec<Genotype>,
        seeds: Vec<u64>,
        space: String,
        budget: Budget,
    ) -> Self {
        let shape = (architectures.len(), seeds.len());
        let index = architectures
            .iter()
            .enumerate()
            .map(|(i, g)| (key(g), i))
            .collect();
        GroundTruth {
            architectures,
            seeds,
            accuracy: Array2::from_elem(shape, f64::NAN),
            seconds: Array2::from_elem(shape, f64::NAN),
            space,
            budget,
            index,
        }
    }

    /// The row of `g` (its node edges in any order), if the table has it.
    pub fn lookup(&self, g: &Genotype) -> Option<usize> {
        self.index.get(&key(g)).copied()
    }

    /// Accuracies of architecture `i` over its trained seeds.
    fn trained(&self, i: usize) -> Vec<f64> {
        self.accuracy
            .row(i)
            .iter()
            .copied()
            .filter(|a| !a.is_nan())
            .collect()
    }

    /// Mean accuracy of architecture `i` over its trained seeds; NaN if none.
    pub fn mean(&self, i: usize) -> f64 {
        let a = self.trained(i);
        if a.is_empty() {
            return f64::NAN;
        }
        a.iter().sum::<f64>() / a.len() as f64
    }

    /// Population standard deviation of architecture `i`'s accuracy over its trained
    /// seeds (0 with one); NaN if none.
    pub fn std(&self, i: usize) -> f64 {
        let a = self.trained(i);
        let m = self.mean(i);
        (a.iter().map(|x| (x - m).powi(2)).sum::<f64>() / a.len() as f64).sqrt()
    }

    /// (architecture, seed index) pairs not trained yet, row by row.
    pub fn pending(&self) -> Vec<(usize, usize)> {
        self.accuracy
            .indexed_iter()
            .filter(|(_, a)| a.is_nan())
            .map(|(ij, _)| ij)
            .collect()
    }

    /// Write the table to `path` atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        let file = image::create()?;
        str_attr(&file, "tool", crate::record::TOOL)?;
        str_attr(&file, "kind", KIND)?;
        str_attr(&file, "space", &self.space)?;
        let b = &self.budget;
        for (name, v) in [
            ("epochs", b.epochs),
            ("subset", b.subset),
            ("test_subset", b.test_subset),
            ("batch_size", b.batch_size),
        ] {
            file.new_attr::<u64>()
                .create(name)?
                .write_scalar(&(v as u64))?;
        }
        file.new_attr::<f64>().create("lr")?.write_scalar(&b.lr)?;
        str_attr(&file, "data", &b.data)?;
        let texts: Vec<VarLenUnicode> = self
            .architectures
            .iter()
            .map(|g| unicode(&g.to_text()))
            .collect::<Result<_>>()?;
        file.new_dataset_builder()
            .with_data(&texts)
            .create("architectures")?;
        file.new_dataset_builder()
            .with_data(&self.seeds)
            .create("seeds")?;
        file.new_dataset_builder()
            .with_data(&self.accuracy)
            .create("accuracy")?;
        file.new_dataset_builder()
            .with_data(&self.seconds)
            .create("seconds")?;
        let n = self.architectures.len();
        let mean: Vec<f64> = (0..n).map(|i| self.mean(i)).collect();
        let std: Vec<f64> = (0..n).map(|i| self.std(i)).collect();
        file.new_dataset_builder().with_data(&mean).create("mean")?;
        file.new_dataset_builder().with_data(&std).create("std")?;
        crate::fs::write_atomic(path, &image::to_bytes(&file)?)
    }

    /// Read a table written by [`Self::write`]; errors name the file and what is wrong.
    pub fn read(path: &Path) -> Result<Self> {
        let bad = |what: String| Error::bad_file(path, what);
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let file = image::open(&bytes).map_err(|e| bad(e.to_string()))?;
        match read_str_attr(&file, "kind") {
            Ok(k) if k == KIND => {}
            _ => return Err(bad(format!("not a ground-truth table (no attribute kind = '{KIND}'; written by `supernet tabulate`?)"))),
        }
        let attr_u64 = |name: &str| -> Result<usize> {
            let v: u64 = file
                .attr(name)
                .and_then(|a| a.read_scalar())
                .map_err(|_| bad(format!("missing attribute '{name}'")))?;
            Ok(v as usize)
        };
        let budget = Budget {
            epochs: attr_u64("epochs")?,
            subset: attr_u64("subset")?,
            test_subset: attr_u64("test_subset")?,
            batch_size: attr_u64("batch_size")?,
            lr: file
                .attr("lr")
                .and_then(|a| a.read_scalar())
                .map_err(|_| bad("missing attribute 'lr'".into()))?,
            data: read_str_attr(&file, "data")
                .map_err(|_| bad("missing attribute 'data'".into()))?,
        };
        let space =
            read_str_attr(&file, "space").map_err(|_| bad("missing attribute 'space'".into()))?;
        let need = |name: &str| {
            file.dataset(name)
                .map_err(|_| bad(format!("missing dataset '/{name}'")))
        };
        let architectures = need("architectures")?
            .read_raw::<VarLenUnicode>()?
            .iter()
            .enumerate()
            .map(|(i, s)| {
                Genotype::parse(s.as_str()).map_err(|e| bad(format!("/architectures[{i}]: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let seeds = need("seeds")?.read_raw::<u64>()?;
        let shape = (architectures.len(), seeds.len());
        let matrix = |name: &str| -> Result<Array2<f64>> {
            let a = need(name)?.read_2d::<f64>()?;
            if a.dim() != shape {
                return Err(bad(format!(
                    "/{name} is {:?}; expected {shape:?} (architectures x seeds)",
                    a.dim()
                )));
            }
            Ok(a)
        };
        let mut table = GroundTruth::new(architectures, seeds, space, budget);
        table.accuracy = matrix("accuracy")?;
        table.seconds = matrix("seconds")?;
        Ok(table)
    }
}
