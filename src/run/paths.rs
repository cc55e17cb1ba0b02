//! Paths in configs: stored absolute, so that a run works from any working directory.
//! Names of shipped spaces (see [`crate::space::is_shipped`]) are kept as they are.
use std::path::{Path, PathBuf};

/// A path given on the command line: absolute against the working directory.
pub fn from_command_line(p: &Path) -> PathBuf {
    if crate::space::is_shipped(p) {
        return p.to_path_buf();
    }
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// A path read from the config file in `base`: a relative one is relative to that
/// directory; where nothing exists there but it does from the working directory (configs
/// written before paths were stored absolute), it is taken from there.
pub fn from_config_file(p: &Path, base: &Path) -> PathBuf {
    if p.is_absolute() || crate::space::is_shipped(p) {
        return p.to_path_buf();
    }
    let in_base = base.join(p);
    if !in_base.exists() && p.exists() {
        return from_command_line(p);
    }
    from_command_line(&in_base)
}

/// A config read from a TOML file, whose relative paths are relative to the file's
/// directory.
pub trait ConfigFile: serde::de::DeserializeOwned {
    /// Make the config's paths absolute: relative ones against `base` (see
    /// [`from_config_file`]).
    fn resolve_paths(&mut self, base: &Path);

    /// Parse the text of the config file `path`.
    fn from_toml(text: &str, path: &Path) -> crate::Result<Self> {
        let mut cfg: Self =
            toml::from_str(text).map_err(|e| crate::Error::bad_file(path, e.to_string()))?;
        cfg.resolve_paths(path.parent().unwrap_or(Path::new(".")));
        Ok(cfg)
    }

    /// Read the config file `path`.
    fn from_file(path: &Path) -> crate::Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| crate::Error::io(path, e))?;
        Self::from_toml(&text, path)
    }
}
