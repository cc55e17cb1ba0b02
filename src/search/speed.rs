//! How a search runs on its device, none of which changes what it computes beyond float
//! rounding: cuDNN autotuning and determinism, the channels-last layout on CUDA, and mixed
//! precision (autocast, with loss scaling for float16).
use super::config::SearchConfig;
use crate::backend::{self, Precision};
use crate::{Error, Result};
use tch::Device;

/// Refuse combinations that have no meaning, naming the field.
pub fn validate(cfg: &SearchConfig) -> Result<()> {
    if cfg.arch_precision == Precision::Fp16 {
        return Err(Error::invalid(
            "arch_precision",
            "fp16",
            "fp32 or bf16: the alpha step has no loss scaling, and float16's range loses \
             small alpha gradients",
        ));
    }
    if cfg.recompute && (cfg.precision, cfg.arch_precision) != (Precision::Fp32, Precision::Fp32) {
        return Err(Error::invalid(
            "precision",
            format!("{} (arch_precision {})", cfg.precision, cfg.arch_precision),
            "fp32 with --recompute: recomputation runs its backward passes cell by cell, \
             and autocast is not applied to them",
        ));
    }
    Ok(())
}

/// Set the process-wide switches of `cfg` for `device`: on CUDA, cuDNN autotuning or
/// determinism and the activation layout. Called before the network is built.
pub fn configure(cfg: &SearchConfig, device: Device) -> Result<()> {
    if !device.is_cuda() {
        return Ok(());
    }
    if cfg.deterministic && std::env::var_os("CUBLAS_WORKSPACE_CONFIG").is_none() {
        // cuBLAS is deterministic only with a fixed workspace (CUDA's documented setting),
        // read when its first handle is created, which happens after this.
        std::env::set_var("CUBLAS_WORKSPACE_CONFIG", ":4096:8");
    }
    backend::configure_cudnn(cfg.cudnn_benchmark, cfg.deterministic)?;
    backend::set_cuda_channels_last(cfg.channels_last);
    Ok(())
}
