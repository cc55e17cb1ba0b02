//! `supernet inspect`: what a space builds into, before anything is trained.
use crate::space::{Genotype, SearchSpace};
use crate::supernet::{InputShape, Supernet};
use crate::Result;
use std::fmt;
use tch::{nn, Device};

pub struct Summary {
    pub space: SearchSpace,
    pub input: InputShape,
    pub genotype: Option<Genotype>,
    pub parameters: i64,
    pub buffers: i64,
    pub macs_per_image: u64,
    pub cells: Vec<String>,
}

/// Trainable parameters and non-trainable buffers (BN running statistics) of a store.
pub fn count_parameters(vs: &nn::VarStore) -> (i64, i64) {
    let trainable: i64 = vs
        .trainable_variables()
        .iter()
        .map(|t| t.numel() as i64)
        .sum();
    let all: i64 = vs.variables().values().map(|t| t.numel() as i64).sum();
    (trainable, all - trainable)
}

impl Summary {
    /// Build the network on the CPU (cheap: no forward pass) and describe it.
    pub fn new(
        space: &SearchSpace,
        input: InputShape,
        genotype: Option<&Genotype>,
    ) -> Result<Self> {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = match genotype {
            None => Supernet::new(&vs.root(), space, input)?,
            Some(g) => Supernet::subnet(&vs.root(), space, input, g)?,
        };
        let (parameters, buffers) = count_parameters(&vs);
        let cells = net
            .cell_types()
            .iter()
            .map(|t| match t {
                Some(t) => t.name().to_string(),
                None => "residual".to_string(),
            })
            .collect();
        Ok(Summary {
            space: space.clone(),
            input,
            genotype: genotype.cloned(),
            parameters,
            buffers,
            macs_per_image: net.macs_per_image(),
            cells,
        })
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.space;
        let what = if self.genotype.is_some() {
            "sub-network of"
        } else {
            "supernet of"
        };
        writeln!(f, "{what} space '{}' ({:?})", s.name, s.network)?;
        let i = &self.input;
        writeln!(
            f,
            "input           {}x{}x{}, {} classes",
            i.channels, i.height, i.width, i.classes
        )?;
        writeln!(
            f,
            "parameters      {} ({:.3} M)",
            self.parameters,
            self.parameters as f64 / 1e6
        )?;
        writeln!(f, "BN buffers      {}", self.buffers)?;
        writeln!(
            f,
            "multiply-adds   {} per image ({:.1} M)",
            self.macs_per_image,
            self.macs_per_image as f64 / 1e6
        )?;
        writeln!(
            f,
            "cell            {} input(s), {} nodes, {} edges, output = concat {:?}, derivation {:?}",
            s.cell.inputs,
            s.cell.nodes,
            s.cell.num_edges(),
            s.cell.concat,
            s.cell.derive
        )?;
        let ops: Vec<&str> = s.ops.iter().map(|o| o.name()).collect();
        writeln!(f, "candidate ops   {}", ops.join(", "))?;
        if let Some(g) = &self.genotype {
            writeln!(f, "genotype        {}", g.to_text())?;
        }
        write!(f, "cells           ")?;
        for (k, c) in self.cells.iter().enumerate() {
            write!(f, "{k}:{c} ")?;
        }
        Ok(())
    }
}
