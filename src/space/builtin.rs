//! The spaces shipped in `supernets/`, built into the binary so that `--space NAME` (and
//! the default space) work from any directory and after `cargo install`.
use super::SearchSpace;
use crate::{Error, Result};
use std::path::Path;

/// (name, TOML) of every shipped space.
const SHIPPED: [(&str, &str); 5] = [
    ("darts_cnn", include_str!("../../supernets/darts_cnn.toml")),
    ("nb201", include_str!("../../supernets/nb201.toml")),
    (
        "fmnist_small",
        include_str!("../../supernets/fmnist_small.toml"),
    ),
    ("tiny", include_str!("../../supernets/tiny.toml")),
    ("micro", include_str!("../../supernets/micro.toml")),
];

/// The names `--space` accepts besides files.
pub fn shipped_names() -> String {
    SHIPPED.map(|(name, _)| name).join(", ")
}

/// The TOML of the shipped space `name`.
fn shipped(name: &str) -> Option<&'static str> {
    SHIPPED.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// Whether `space` names a shipped space rather than a file: a bare name (no directory,
/// no extension) that is one of them and no file of that name exists.
pub fn is_shipped(space: &Path) -> bool {
    !space.exists()
        && space.parent().is_none_or(|p| p.as_os_str().is_empty())
        && space.to_str().and_then(shipped).is_some()
}

impl SearchSpace {
    /// Read and validate the space `space` names: a space file, or the name of a shipped
    /// space (see [`is_shipped`]).
    pub fn load(space: &Path) -> Result<Self> {
        if is_shipped(space) {
            let text = shipped(space.to_str().unwrap_or_default()).unwrap_or_default();
            return Self::from_toml(text).map_err(|e| Error::bad_file(space, e.to_string()));
        }
        if !space.exists() {
            return Err(Error::bad_file(
                space,
                format!(
                    "no such space file (give a path to a space TOML file, or the name of a shipped space: {})",
                    shipped_names()
                ),
            ));
        }
        Self::from_file(space)
    }
}
