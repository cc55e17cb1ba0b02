//! The latency lookup table file (JSON): per layer of a chain space the median latency of
//! every choice it allows, and of the parts no choice changes (stem, head), with what it was
//! measured on. A table is only used for the space, device and input it was measured for.
use super::measure::CheckReport;
use crate::space::chain::{ChainArch, ChainSpace, Choice};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The `format` field of every table file.
pub const TABLE_FORMAT: &str = "supernet-latency-table/1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyTable {
    pub format: String,
    /// The space's name and fingerprint (FNV-1a of its TOML form, hex).
    pub space: String,
    pub space_hash: String,
    /// `cpu`, `cuda:0`, ... as `--device` names it.
    pub device: String,
    /// libtorch intra-op threads during the measurement.
    pub threads: usize,
    /// `[channels, height, width]` of one image, and the classes of the classifier.
    pub input: [usize; 3],
    pub classes: usize,
    /// Images per timed forward.
    pub batch: usize,
    pub libtorch: String,
    /// Untimed forwards before, and timed forwards of, every entry (its median is kept).
    pub warmup: usize,
    pub repeats: usize,
    /// Stem convolution (with the channels-last conversion the network makes), in ms.
    pub stem_ms: f64,
    /// Head convolution, pooling, hidden layer and classifier, in ms.
    pub head_ms: f64,
    /// Every layer after the stem in [`ChainSpace::plan`] order.
    pub layers: Vec<LayerLatency>,
    /// The table's prediction against measured whole networks, when checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<CheckReport>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerLatency {
    /// Alpha row of a searchable layer; `None` for a fixed one.
    pub row: Option<usize>,
    /// Per choice name, the median latency in ms (`skip`: 0, nothing is computed).
    pub ms: BTreeMap<String, f64>,
}

impl LatencyTable {
    pub fn write(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).expect("a table serialises");
        crate::fs::write_atomic(path, format!("{text}\n").as_bytes())
    }

    /// Read a table file; errors name the file and the field.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let table: LatencyTable = serde_json::from_str(&text).map_err(|e| {
            Error::bad_file(path, format!("not a latency table ({TABLE_FORMAT}): {e}"))
        })?;
        if table.format != TABLE_FORMAT {
            return Err(Error::bad_file(
                path,
                format!(
                    "field 'format' is '{}', expected '{TABLE_FORMAT}'",
                    table.format
                ),
            ));
        }
        Ok(table)
    }

    /// Refuse a table measured for another space, device or input, or one that lacks (or
    /// has a bad) entry for a choice of a layer. `path` names the file in the errors.
    pub fn check_for(
        &self,
        path: &Path,
        space: &ChainSpace,
        device: &str,
        input: [usize; 3],
        classes: usize,
    ) -> Result<()> {
        let bad = |field: &str, found: String, expected: String| {
            Err(Error::bad_file(
                path,
                format!("field '{field}' is {found}, expected {expected} (profile again with `supernet profile`)"),
            ))
        };
        let hash = format!("{:016x}", space.fingerprint());
        if self.space_hash != hash {
            return bad(
                "space_hash",
                format!("'{}' (space '{}')", self.space_hash, self.space),
                format!("'{hash}' (space '{}' as the run has it)", space.name),
            );
        }
        if self.device != device {
            return bad(
                "device",
                format!("'{}'", self.device),
                format!("'{device}'"),
            );
        }
        if self.input != input || self.classes != classes {
            return bad(
                "input",
                format!("{:?} with {} classes", self.input, self.classes),
                format!("{input:?} with {classes} classes"),
            );
        }
        let plan = space.plan((input[1], input[2]));
        if self.layers.len() != plan.len() {
            return bad(
                "layers",
                format!("{} entries", self.layers.len()),
                format!("one per layer ({})", plan.len()),
            );
        }
        for (i, (entry, layer)) in self.layers.iter().zip(&plan).enumerate() {
            if entry.row != layer.searchable {
                return bad(
                    &format!("layers[{i}].row"),
                    format!("{:?}", entry.row),
                    format!("{:?}", layer.searchable),
                );
            }
            for c in &layer.choices {
                match entry.ms.get(&c.name()) {
                    Some(v) if v.is_finite() && *v >= 0.0 => {}
                    Some(v) => {
                        return bad(
                            &format!("layers[{i}].ms.{c}"),
                            v.to_string(),
                            "a finite latency >= 0".into(),
                        )
                    }
                    None => {
                        return bad(
                            &format!("layers[{i}].ms"),
                            "without an entry for this choice".into(),
                            format!("one for '{c}'"),
                        )
                    }
                }
            }
        }
        for (field, v) in [("stem_ms", self.stem_ms), ("head_ms", self.head_ms)] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(field, v.to_string(), "a finite latency >= 0".into());
            }
        }
        Ok(())
    }

    /// Latency of `choice` in layer `layer` (a table checked against the space).
    pub fn entry(&self, layer: usize, choice: Choice) -> f64 {
        self.layers[layer].ms[&choice.name()]
    }

    /// Stem, fixed layers and head: what no choice changes.
    pub fn fixed_ms(&self) -> f64 {
        let fixed: f64 = self
            .layers
            .iter()
            .filter(|l| l.row.is_none())
            .flat_map(|l| l.ms.values())
            .sum();
        self.stem_ms + self.head_ms + fixed
    }

    /// The predicted latency of `arch`: the fixed parts plus each layer's chosen entry.
    pub fn predict(&self, space: &ChainSpace, arch: &ChainArch) -> f64 {
        let plan = space.plan((self.input[1], self.input[2]));
        let chosen: f64 = plan
            .iter()
            .enumerate()
            .filter_map(|(i, l)| l.searchable.map(|r| self.entry(i, arch.layers[r])))
            .sum();
        self.fixed_ms() + chosen
    }
}
