//! `supernet inspect`: what a space builds into, before anything is trained: the supernet,
//! or the network of one genotype (stand-alone, or as the supernet's inherited sub-network).
mod chain;

pub use chain::ChainSummary;

use crate::model::{Model, ModelSpec};
use crate::space::{Genotype, SearchSpace};
use crate::supernet::{InputShape, OpStyle, Supernet};
use crate::Result;
use std::fmt;
use tch::{nn, Device};

/// The network of one genotype.
#[derive(Debug, Clone)]
pub struct Architecture {
    pub genotype: Genotype,
    pub style: OpStyle,
    pub auxiliary: bool,
}

pub struct Summary {
    pub space: SearchSpace,
    pub input: InputShape,
    /// `None`: the supernet.
    pub architecture: Option<Architecture>,
    /// Trainable parameters, and those without the auxiliary head.
    pub parameters: i64,
    pub parameters_without_auxiliary: i64,
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
        architecture: Option<&Architecture>,
    ) -> Result<Self> {
        let (vs, net, without_aux) = match architecture {
            None => {
                let vs = nn::VarStore::new(Device::Cpu);
                let net = Supernet::new(&vs.root(), space, input)?;
                (vs, net, None)
            }
            Some(a) => {
                let model = Model::new(
                    ModelSpec {
                        space_file: Default::default(),
                        space: space.clone(),
                        genotype: a.genotype.clone(),
                        input,
                        style: a.style,
                        auxiliary: a.auxiliary,
                    },
                    Device::Cpu,
                )?;
                let without_aux = model.parameter_counts().1;
                (model.vs, model.net, Some(without_aux))
            }
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
            architecture: architecture.cloned(),
            parameters,
            parameters_without_auxiliary: without_aux.unwrap_or(parameters),
            buffers,
            macs_per_image: net.macs_per_image(),
            cells,
        })
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.space;
        let what = match &self.architecture {
            None => "supernet of",
            Some(a) if a.style == OpStyle::Standalone => "stand-alone network of",
            Some(_) => "inherited sub-network of",
        };
        writeln!(f, "{what} space '{}' ({})", s.name, s.network)?;
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
        if self.architecture.as_ref().is_some_and(|a| a.auxiliary) {
            writeln!(
                f,
                "without aux     {} ({:.3} M; the auxiliary head is used in training only)",
                self.parameters_without_auxiliary,
                self.parameters_without_auxiliary as f64 / 1e6
            )?;
        }
        writeln!(f, "BN buffers      {}", self.buffers)?;
        writeln!(
            f,
            "multiply-adds   {} per image ({:.1} M)",
            self.macs_per_image,
            self.macs_per_image as f64 / 1e6
        )?;
        writeln!(
            f,
            "cell            {} input(s), {} nodes, {} edges, output = concat {:?}, derivation {}",
            s.cell.inputs,
            s.cell.nodes,
            s.cell.num_edges(),
            s.cell.concat,
            s.cell.derive
        )?;
        let ops: Vec<&str> = s.ops.iter().map(|o| o.name()).collect();
        writeln!(f, "candidate ops   {}", ops.join(", "))?;
        if let Some(a) = &self.architecture {
            writeln!(f, "genotype        {}", a.genotype.to_text())?;
        }
        write!(f, "cells           ")?;
        for (k, c) in self.cells.iter().enumerate() {
            write!(f, "{k}:{c} ")?;
        }
        Ok(())
    }
}
