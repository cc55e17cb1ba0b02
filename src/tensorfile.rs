//! Named tensors in safetensors files, as checkpoints and exported models store them:
//! written atomically, read back by name into live tensors with shape checks.
use crate::{Error, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::{Device, Tensor};

/// Write `named` to `dest` through a temporary file; `dest` is untouched on failure.
pub fn save(named: Vec<(String, Tensor)>, dest: &Path) -> Result<()> {
    let named: Vec<(String, Tensor)> = named
        .into_iter()
        .map(|(k, v)| (k, v.to_device(Device::Cpu)))
        .collect();
    crate::fs::replace_with(dest, |tmp| {
        Tensor::write_safetensors(&named, tmp)
            .map_err(|e| Error::Other(format!("{}: writing failed: {e}", tmp.display())))
    })
}

/// The tensors of one file, taken out by name.
pub struct TensorMap {
    path: PathBuf,
    tensors: HashMap<String, Tensor>,
}

impl TensorMap {
    pub fn read(path: &Path) -> Result<Self> {
        if !path.is_file() {
            return Err(Error::bad_file(path, "no such file"));
        }
        let tensors = Tensor::read_safetensors(path)
            .map_err(|e| Error::bad_file(path, format!("not a readable safetensors file: {e}")))?;
        Ok(TensorMap {
            path: path.to_path_buf(),
            tensors: tensors.into_iter().collect(),
        })
    }

    pub fn error(&self, message: impl Into<String>) -> Error {
        Error::bad_file(&self.path, message)
    }

    pub fn take(&mut self, name: &str) -> Result<Tensor> {
        self.tensors
            .remove(name)
            .ok_or_else(|| self.error(format!("missing tensor '{name}'")))
    }

    /// Copy the stored tensor `name` into `dst` (same shape required), without autograd.
    pub fn copy_into(&mut self, name: &str, dst: &Tensor) -> Result<()> {
        let src = self.take(name)?;
        if dst.size() != src.size() {
            return Err(self.error(format!(
                "'{name}' has shape {:?}, the network expects {:?}",
                src.size(),
                dst.size()
            )));
        }
        tch::no_grad(|| dst.shallow_clone().copy_(&src));
        Ok(())
    }

    /// Fail if tensors are left that nothing took: the file is for another network.
    pub fn finish(self) -> Result<()> {
        let mut left: Vec<&String> = self.tensors.keys().collect();
        if left.is_empty() {
            return Ok(());
        }
        left.sort();
        let shown: Vec<&str> = left.iter().take(3).map(|s| s.as_str()).collect();
        Err(self.error(format!(
            "{} tensor(s) the network does not have (e.g. {}): it was written for another network",
            left.len(),
            shown.join(", ")
        )))
    }
}
