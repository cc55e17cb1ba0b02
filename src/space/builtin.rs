//! The spaces shipped in `supernets/`, built into the binary so that `--space NAME` (and
//! the default space) work from any directory and after `cargo install`.
use super::chain::ChainSpace;
use super::SearchSpace;
use crate::{Error, Result};
use std::path::Path;

/// (name, TOML) of every shipped space.
const SHIPPED: [(&str, &str); 8] = [
    ("darts_cnn", include_str!("../../supernets/darts_cnn.toml")),
    ("nb201", include_str!("../../supernets/nb201.toml")),
    (
        "fmnist_small",
        include_str!("../../supernets/fmnist_small.toml"),
    ),
    ("tiny", include_str!("../../supernets/tiny.toml")),
    ("micro", include_str!("../../supernets/micro.toml")),
    (
        "mbv3_chain",
        include_str!("../../supernets/mbv3_chain.toml"),
    ),
    (
        "mbv3_chain_imagenet",
        include_str!("../../supernets/mbv3_chain_imagenet.toml"),
    ),
    (
        "mobilenet_v2",
        include_str!("../../supernets/mobilenet_v2.toml"),
    ),
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

/// A space of either kind, as its file's `[network] kind` says.
#[derive(Debug, Clone, PartialEq)]
pub enum Space {
    Cell(SearchSpace),
    Chain(ChainSpace),
}

/// Whether a space file's text declares a chain network (`[network] kind = "chain"`).
pub fn is_chain_toml(text: &str) -> bool {
    toml::from_str::<toml::Table>(text).is_ok_and(|t| {
        t.get("network")
            .and_then(|n| n.get("kind"))
            .and_then(|k| k.as_str())
            == Some("chain")
    })
}

/// The text of the space `space` names (a file, or a shipped space) and whether it is shipped.
fn space_text(space: &Path) -> Result<(String, bool)> {
    if is_shipped(space) {
        let text = shipped(space.to_str().unwrap_or_default()).unwrap_or_default();
        return Ok((text.to_string(), true));
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
    let text = std::fs::read_to_string(space).map_err(|e| Error::io(space, e))?;
    Ok((text, false))
}

/// Errors of a space's text, with the file named.
fn in_file(space: &Path, e: Error) -> Error {
    match e {
        Error::BadFile { message, .. } => Error::bad_file(space, message),
        other => Error::bad_file(space, other.to_string()),
    }
}

impl Space {
    /// Read and validate the space `space` names, of whichever kind it is.
    pub fn load(space: &Path) -> Result<Self> {
        let (text, _) = space_text(space)?;
        if is_chain_toml(&text) {
            ChainSpace::from_toml(&text).map(Space::Chain)
        } else {
            SearchSpace::from_toml(&text).map(Space::Cell)
        }
        .map_err(|e| in_file(space, e))
    }

    pub fn name(&self) -> &str {
        match self {
            Space::Cell(s) => &s.name,
            Space::Chain(s) => &s.name,
        }
    }
}

impl ChainSpace {
    /// Read and validate the chain space `space` names (a file or a shipped space).
    pub fn load(space: &Path) -> Result<Self> {
        match Space::load(space)? {
            Space::Chain(s) => Ok(s),
            Space::Cell(_) => Err(Error::bad_file(
                space,
                "a cell space, where a chain space ([network] kind = \"chain\") is needed",
            )),
        }
    }
}

impl SearchSpace {
    /// Read and validate the space `space` names: a space file, or the name of a shipped
    /// space (see [`is_shipped`]).
    pub fn load(space: &Path) -> Result<Self> {
        let (text, _) = space_text(space)?;
        Self::from_toml(&text).map_err(|e| in_file(space, e))
    }
}
