//! Search spaces and discrete architectures as plain data (no tensors).
mod genotype;
mod op;
mod spec;

pub use genotype::{CellGenotype, GeneEdge, Genotype};
pub use op::OpKind;
pub use spec::{
    CellSpec, CellType, DeriveRule, EdgeId, NetworkOverrides, NetworkSpec, SearchSpace,
};
