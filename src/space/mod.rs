//! Search spaces and discrete architectures as plain data (no tensors).
mod builtin;
pub mod chain;
mod enumerate;
mod genotype;
mod op;
mod sampling;
mod size;
mod spec;
mod split;

pub use builtin::{is_chain_toml, is_shipped, shipped_names, Space};
pub use enumerate::{count_architectures, enumerate};
pub use genotype::{CellGenotype, GeneEdge, Genotype};
pub use op::OpKind;
pub use sampling::{crossover, mutate, uniform_genotype, Sampler};
pub use size::SizeBound;
pub use spec::{
    CellSpec, CellType, DeriveRule, EdgeId, NetworkOverrides, NetworkSpec, SearchSpace,
};
pub use split::{check_split_edge, op_on_edge, split_ops, uniform_genotype_in, EdgeSplit};
