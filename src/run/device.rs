//! Devices: `--device auto|cpu|cuda|cuda:N`, and how they are named to users.
use crate::{Error, Result};
use tch::Device;

/// The forms `--device` takes.
pub const DEVICE_FORMS: &str = "auto, cpu, cuda or cuda:N";

/// `auto` (CUDA when available), `cpu`, `cuda` or `cuda:N`.
pub fn parse_device(text: &str) -> Result<Device> {
    let cuda = |i: usize| {
        let n = tch::Cuda::device_count() as usize;
        if i < n {
            Ok(Device::Cuda(i))
        } else {
            Err(Error::invalid(
                "device",
                text,
                if n == 0 {
                    "a CUDA device, but libtorch sees none on this machine (use --device cpu)"
                        .to_string()
                } else {
                    format!("cuda:0..cuda:{}", n - 1)
                },
            ))
        }
    };
    match text {
        "auto" => Ok(Device::cuda_if_available()),
        "cpu" => Ok(Device::Cpu),
        "cuda" => cuda(0),
        _ => match text.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(i)) => cuda(i),
            _ => Err(Error::invalid("device", text, DEVICE_FORMS)),
        },
    }
}

/// `cpu`, `cuda:0`, ...: the name `--device` takes.
pub fn device_name(device: Device) -> String {
    match device {
        Device::Cpu => "cpu".into(),
        Device::Cuda(i) => format!("cuda:{i}"),
        Device::Mps => "mps".into(),
        Device::Vulkan => "vulkan".into(),
    }
}
