//! A cost per (searchable layer, alpha column) plus what no choice changes: the form the
//! search penalty and the sampling limits evaluate, from a latency table or from the exact
//! cost model. Columns a layer does not allow cost 0 (their mixing weight is 0).
use super::table::LatencyTable;
use crate::space::chain::{fixed_cost, layer_cost, ChainArch, ChainSpace, Cost, ImageShape};

#[derive(Debug, Clone, PartialEq)]
pub struct CostMatrix {
    /// What the cost is of (`latency_ms`, `macs`, `params`), for records and messages.
    pub name: &'static str,
    pub fixed: f64,
    /// `[searchable layers][alpha columns]`.
    pub per_choice: Vec<Vec<f64>>,
}

impl CostMatrix {
    /// Latency in ms from a table checked against `space`.
    pub fn latency(table: &LatencyTable, space: &ChainSpace) -> Self {
        let hw = (table.input[1], table.input[2]);
        Self::build("latency_ms", space, hw, table.fixed_ms(), |i, _, c| {
            table.entry(i, c)
        })
    }

    /// Multiply-adds per image, exact (the cost model's).
    pub fn macs(space: &ChainSpace, input: ImageShape) -> Self {
        Self::exact("macs", space, input, |c| c.macs as f64)
    }

    /// Trainable parameters, exact.
    pub fn params(space: &ChainSpace, input: ImageShape) -> Self {
        Self::exact("params", space, input, |c| c.params as f64)
    }

    fn exact(
        name: &'static str,
        space: &ChainSpace,
        input: ImageShape,
        of: fn(Cost) -> f64,
    ) -> Self {
        Self::build(
            name,
            space,
            input.hw,
            of(fixed_cost(space, input)),
            |_, l, c| of(layer_cost(l, c)),
        )
    }

    fn build(
        name: &'static str,
        space: &ChainSpace,
        hw: (usize, usize),
        fixed: f64,
        entry: impl Fn(usize, &crate::space::chain::LayerPlan, crate::space::chain::Choice) -> f64,
    ) -> Self {
        let columns = space.choices();
        let per_choice = space
            .plan(hw)
            .iter()
            .enumerate()
            .filter(|(_, l)| l.searchable.is_some())
            .map(|(i, l)| {
                columns
                    .iter()
                    .map(|&c| {
                        if l.choices.contains(&c) {
                            entry(i, l, c)
                        } else {
                            0.0
                        }
                    })
                    .collect()
            })
            .collect();
        CostMatrix {
            name,
            fixed,
            per_choice,
        }
    }

    /// The cost of one architecture (validated against the space).
    pub fn of_arch(&self, space: &ChainSpace, arch: &ChainArch) -> f64 {
        let chosen: f64 = arch
            .columns(space)
            .iter()
            .zip(&self.per_choice)
            .map(|(&k, row)| row[k])
            .sum();
        self.fixed + chosen
    }

    /// The expected cost under per-layer choice probabilities (rows as the matrix's).
    pub fn expected(&self, probabilities: &[Vec<f32>]) -> f64 {
        let chosen: f64 = probabilities
            .iter()
            .zip(&self.per_choice)
            .flat_map(|(p, c)| p.iter().zip(c).map(|(&p, &c)| p as f64 * c))
            .sum();
        self.fixed + chosen
    }
}
