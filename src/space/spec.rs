//! A search space as plain data: the cell DAG, the candidate operations and the macro
//! network. Read from `supernets/*.toml`, validated once, then trusted everywhere.
use super::OpKind;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchSpace {
    pub name: String,
    /// Candidate operations on every edge, in alpha-column order.
    pub ops: Vec<OpKind>,
    pub cell: CellSpec,
    pub network: NetworkSpec,
}

/// The cell DAG. States are numbered inputs first (`0..inputs`), then the intermediate
/// nodes (`inputs..inputs + nodes`); every node has an edge from every earlier state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CellSpec {
    /// Cell inputs: 2 in DARTS (the two previous cells), 1 in NAS-Bench-201.
    pub inputs: usize,
    /// Intermediate nodes.
    pub nodes: usize,
    /// States concatenated (channel-wise) into the cell output.
    pub concat: Vec<usize>,
    /// How a discrete cell is derived from the alphas.
    pub derive: DeriveRule,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "rule")]
pub enum DeriveRule {
    /// DARTS: each node keeps its `keep` strongest incoming edges, an edge ranked by its
    /// strongest op other than `none`, which is the op it keeps.
    TopK { keep: usize },
    /// NAS-Bench-201: every edge keeps its strongest op (`none` included).
    Argmax,
}

/// The macro network around the cells.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", deny_unknown_fields)]
pub enum NetworkSpec {
    /// DARTS: conv stem of `stem_multiplier * channels`, `layers` cells, each taking the
    /// outputs of the two previous cells; reduction cells double the channels and halve
    /// the resolution.
    Darts {
        layers: usize,
        channels: usize,
        stem_multiplier: usize,
        /// Cell indices that are reduction cells; default `[layers / 3, 2 * layers / 3]`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reduction_layers: Option<Vec<usize>>,
    },
    /// NAS-Bench-201: three stages of `cells_per_stage` cells at 1x, 2x, 4x `channels`,
    /// joined by residual reduction blocks; one cell type shared by all cells.
    Nb201 {
        cells_per_stage: usize,
        channels: usize,
    },
}

/// Flags that override the space file's network size (`--layers`, `--channels`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkOverrides {
    /// DARTS: number of cells; NAS-Bench-201: cells per stage.
    pub layers: Option<usize>,
    pub channels: Option<usize>,
}

/// One edge of the cell DAG: `from` state into intermediate state `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdgeId {
    pub to: usize,
    pub from: usize,
}

impl EdgeId {
    /// Parameter-path component, `"{to}_{from}"` (no dots inside a component).
    pub fn key(self) -> String {
        format!("{}_{}", self.to, self.from)
    }
}

impl CellSpec {
    /// Edges in alpha-row order: node by node, and within a node by source state.
    pub fn edges(&self) -> Vec<EdgeId> {
        (0..self.nodes)
            .flat_map(|i| {
                let to = self.inputs + i;
                (0..to).map(move |from| EdgeId { to, from })
            })
            .collect()
    }

    pub fn num_edges(&self) -> usize {
        self.edges().len()
    }

    pub fn num_states(&self) -> usize {
        self.inputs + self.nodes
    }
}

/// Cell types of a network: DARTS has normal and reduction cells, NAS-Bench-201 one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CellType {
    Normal,
    Reduce,
}

impl CellType {
    pub fn name(self) -> &'static str {
        match self {
            CellType::Normal => "normal",
            CellType::Reduce => "reduce",
        }
    }
}

impl std::fmt::Display for NetworkSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NetworkSpec::Darts {
                layers,
                channels,
                stem_multiplier,
                ..
            } => {
                let r: Vec<String> = self
                    .reduction_layers()
                    .iter()
                    .map(|r| r.to_string())
                    .collect();
                write!(
                    f,
                    "DARTS network: {layers} cells (reduction cells {}), {channels} channels, stem x{stem_multiplier}",
                    r.join(", ")
                )
            }
            NetworkSpec::Nb201 {
                cells_per_stage,
                channels,
            } => write!(
                f,
                "NAS-Bench-201 network: 3 stages of {cells_per_stage} cells, {channels} channels"
            ),
        }
    }
}

impl std::fmt::Display for DeriveRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeriveRule::TopK { keep } => write!(f, "top-{keep} per node"),
            DeriveRule::Argmax => f.write_str("argmax per edge"),
        }
    }
}

impl NetworkSpec {
    pub fn channels(&self) -> usize {
        match self {
            NetworkSpec::Darts { channels, .. } | NetworkSpec::Nb201 { channels, .. } => *channels,
        }
    }

    /// Cell types that carry their own alphas.
    pub fn cell_types(&self) -> &'static [CellType] {
        match self {
            NetworkSpec::Darts { .. } => &[CellType::Normal, CellType::Reduce],
            NetworkSpec::Nb201 { .. } => &[CellType::Normal],
        }
    }

    /// DARTS reduction cell indices (resolved default).
    pub fn reduction_layers(&self) -> Vec<usize> {
        match self {
            NetworkSpec::Darts {
                layers,
                reduction_layers,
                ..
            } => reduction_layers
                .clone()
                .unwrap_or_else(|| vec![layers / 3, 2 * layers / 3]),
            NetworkSpec::Nb201 { .. } => Vec::new(),
        }
    }

    fn apply(&mut self, o: NetworkOverrides) {
        match self {
            NetworkSpec::Darts {
                layers,
                channels,
                reduction_layers,
                ..
            } => {
                if let Some(l) = o.layers {
                    if *layers != l {
                        // The file's explicit reductions were for its own depth.
                        *reduction_layers = None;
                    }
                    *layers = l;
                }
                if let Some(c) = o.channels {
                    *channels = c;
                }
            }
            NetworkSpec::Nb201 {
                cells_per_stage,
                channels,
            } => {
                if let Some(l) = o.layers {
                    *cells_per_stage = l;
                }
                if let Some(c) = o.channels {
                    *channels = c;
                }
            }
        }
    }
}

impl SearchSpace {
    /// Read and validate a space file; errors name the file, the field and the value.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_toml(&text).map_err(|e| match e {
            Error::BadFile { message, .. } => Error::bad_file(path, message),
            other => Error::bad_file(path, other.to_string()),
        })
    }

    pub fn from_toml(text: &str) -> Result<Self> {
        if super::builtin::is_chain_toml(text) {
            return Err(Error::bad_file(
                "<space>",
                "a chain space ([network] kind = \"chain\"): this command takes cell spaces (DARTS, NAS-Bench-201); chain spaces work with inspect, profile, search, sample, evolve, derive, extract, train and plot",
            ));
        }
        let space: SearchSpace =
            toml::from_str(text).map_err(|e| Error::bad_file("<space>", e.to_string()))?;
        space.validate()?;
        Ok(space)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a SearchSpace always serialises")
    }

    /// The space with `--layers/--channels` applied, validated again.
    pub fn with_overrides(&self, o: NetworkOverrides) -> Result<Self> {
        let mut space = self.clone();
        space.network.apply(o);
        space.validate()?;
        Ok(space)
    }

    /// A stable 64-bit fingerprint of the resolved space (FNV-1a of its TOML form), to
    /// recognise checkpoints and run files made with another space.
    pub fn fingerprint(&self) -> u64 {
        fnv1a(&self.to_toml())
    }

    pub fn index_of(&self, op: OpKind) -> Option<usize> {
        self.ops.iter().position(|&o| o == op)
    }

    pub fn validate(&self) -> Result<()> {
        let cell = &self.cell;
        if self.ops.is_empty() {
            return Err(Error::invalid("ops", "[]", "at least one operation"));
        }
        for (i, op) in self.ops.iter().enumerate() {
            if self.ops[..i].contains(op) {
                return Err(Error::invalid("ops", op, "each operation at most once"));
            }
        }
        if cell.nodes == 0 || cell.nodes > MAX_NODES {
            return Err(Error::invalid(
                "cell.nodes",
                cell.nodes,
                format!("1..={MAX_NODES} intermediate nodes"),
            ));
        }
        if cell.concat.is_empty() {
            return Err(Error::invalid("cell.concat", "[]", "at least one state"));
        }
        for &s in &cell.concat {
            if s < cell.inputs || s >= cell.num_states() {
                return Err(Error::invalid(
                    "cell.concat",
                    s,
                    format!(
                        "an intermediate node index in {}..{}",
                        cell.inputs,
                        cell.num_states()
                    ),
                ));
            }
        }
        if let DeriveRule::TopK { keep } = cell.derive {
            if keep == 0 || keep > cell.inputs {
                return Err(Error::invalid(
                    "cell.derive.keep",
                    keep,
                    format!(
                        "1..={} (the first node has only the {} cell inputs)",
                        cell.inputs, cell.inputs
                    ),
                ));
            }
            if keep > 0 && self.ops.iter().all(|o| o.is_none()) {
                return Err(Error::invalid(
                    "ops",
                    "[none]",
                    "an operation other than none for top-k derivation",
                ));
            }
        }
        match &self.network {
            NetworkSpec::Darts {
                layers,
                channels,
                stem_multiplier,
                ..
            } => {
                if cell.inputs != 2 {
                    return Err(Error::invalid(
                        "cell.inputs",
                        cell.inputs,
                        "2 for a DARTS network (the outputs of the two previous cells)",
                    ));
                }
                in_range("network.layers", *layers, MAX_CELLS)?;
                in_range("network.channels", *channels, MAX_CHANNELS)?;
                in_range("network.stem_multiplier", *stem_multiplier, 64)?;
                for r in self.network.reduction_layers() {
                    if r >= *layers {
                        return Err(Error::invalid(
                            "network.reduction_layers",
                            r,
                            format!("a cell index below network.layers = {layers}"),
                        ));
                    }
                }
            }
            NetworkSpec::Nb201 {
                cells_per_stage,
                channels,
            } => {
                if cell.inputs != 1 {
                    return Err(Error::invalid(
                        "cell.inputs",
                        cell.inputs,
                        "1 for a NAS-Bench-201 network",
                    ));
                }
                if cell.concat != [cell.num_states() - 1] {
                    return Err(Error::invalid(
                        "cell.concat",
                        format!("{:?}", cell.concat),
                        format!(
                            "[{}]: a NAS-Bench-201 cell outputs its last node",
                            cell.num_states() - 1
                        ),
                    ));
                }
                in_range("network.cells_per_stage", *cells_per_stage, MAX_CELLS)?;
                in_range("network.channels", *channels, MAX_CHANNELS)?;
            }
        }
        Ok(())
    }
}

/// Structural limits, far above any published network, that keep a typo (an extra few
/// zeros) from being taken for a network size. What fits in memory is checked separately,
/// before anything is allocated ([`SearchSpace::size_bound`]).
pub const MAX_CELLS: usize = 10_000;
pub const MAX_CHANNELS: usize = 1 << 20;
pub const MAX_NODES: usize = 64;

/// FNV-1a of `text`: the fingerprint of a space's TOML form.
pub(crate) fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

pub(crate) fn in_range(field: &str, v: usize, max: usize) -> Result<()> {
    if v == 0 {
        Err(Error::invalid(field, v, "a positive number"))
    } else if v > max {
        Err(Error::invalid(
            field,
            v,
            format!("a positive number at most {max}"),
        ))
    } else {
        Ok(())
    }
}
