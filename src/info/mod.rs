//! `supernet info`: what this binary runs on.
mod cuda;
mod host;

use std::fmt;
use std::path::PathBuf;

pub use cuda::{cuda_devices, CudaDevice};
pub use host::{available_memory, current_rss, gib, mib, peak_rss, rss_of};

use crate::data::{DataSource, DEFAULT_DATA_DIR};

/// libtorch version the binary was built against (read from the wheel by build.rs).
pub const LIBTORCH_VERSION: &str = env!("SUPERNET_LIBTORCH_VERSION");
/// The commit this binary was built from (`-dirty` with uncommitted changes).
pub const SOURCE_REVISION: &str = env!("SUPERNET_SOURCE_REVISION");

pub struct Info {
    pub crate_version: &'static str,
    pub libtorch_version: &'static str,
    pub hdf5_version: (u8, u8, u8),
    pub cpu_threads: i32,
    pub cuda_available: bool,
    pub cuda_devices: Vec<CudaDevice>,
    pub cudnn_available: bool,
    pub default_data_dir: PathBuf,
    pub default_data_present: bool,
}

impl Info {
    pub fn gather() -> Self {
        let default_data_dir = PathBuf::from(DEFAULT_DATA_DIR);
        let default_data_present = DataSource::fashion_mnist().resolve().is_ok();
        Info {
            crate_version: env!("CARGO_PKG_VERSION"),
            libtorch_version: LIBTORCH_VERSION,
            hdf5_version: hdf5::library_version(),
            cpu_threads: tch::get_num_threads(),
            cuda_available: tch::Cuda::is_available(),
            cuda_devices: cuda_devices(),
            cudnn_available: tch::Cuda::cudnn_is_available(),
            default_data_dir,
            default_data_present,
        }
    }
}

impl fmt::Display for Info {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (a, b, c) = self.hdf5_version;
        writeln!(f, "supernet        {}", self.crate_version)?;
        writeln!(f, "libtorch        {}", self.libtorch_version)?;
        writeln!(f, "HDF5            {a}.{b}.{c} (static)")?;
        writeln!(f, "CPU threads     {}", self.cpu_threads)?;
        if self.cuda_devices.is_empty() && !self.cuda_available {
            writeln!(f, "CUDA            no CUDA device")?;
        } else {
            writeln!(
                f,
                "CUDA            available to libtorch: {} ({} device(s))",
                if self.cuda_available { "yes" } else { "no" },
                tch::Cuda::device_count()
            )?;
            for d in &self.cuda_devices {
                writeln!(
                    f,
                    "  cuda:{}        {}, {:.1} GiB",
                    d.index,
                    d.name,
                    d.total_memory as f64 / (1u64 << 30) as f64
                )?;
            }
        }
        writeln!(
            f,
            "cuDNN           {}",
            if self.cudnn_available {
                "available"
            } else {
                "not available"
            }
        )?;
        write!(
            f,
            "default data    {} ({})",
            self.default_data_dir.display(),
            if self.default_data_present {
                "present"
            } else {
                "MISSING: install the Debian package dataset-fashion-mnist (scripts/setup does)"
            }
        )
    }
}
