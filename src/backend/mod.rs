//! libtorch process settings that tch 0.24 does not expose, through a small C++ shim
//! (`shim.cpp`, built by build.rs against the wheel's headers): autocast for a device type
//! and dtype (tch's `autocast` is CUDA-only and float16-only), the cuDNN autotuning and
//! determinism switches, and the CUDA caching allocator's statistics and device memory.
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::ffi::{c_char, c_int, CStr};
use std::sync::atomic::{AtomicBool, Ordering};
use tch::Device;

extern "C" {
    fn supernet_last_error() -> *const c_char;
    fn supernet_autocast_set(
        cuda: c_int,
        enabled: c_int,
        dtype: c_int,
        prev_enabled: *mut c_int,
        prev_dtype: *mut c_int,
    ) -> c_int;
    fn supernet_autocast_increment_nesting() -> c_int;
    fn supernet_autocast_decrement_nesting();
    fn supernet_cudnn_configure(benchmark: c_int, deterministic: c_int) -> c_int;
    fn supernet_set_tf32(on: c_int) -> c_int;
    fn supernet_cudnn_state(
        benchmark: *mut c_int,
        deterministic: *mut c_int,
        algorithms: *mut c_int,
    ) -> c_int;
    fn supernet_cuda_allocator_stats(device: c_int, out: *mut i64) -> c_int;
    fn supernet_cuda_reset_peak(device: c_int) -> c_int;
    fn supernet_cuda_mem_info(device: c_int, free: *mut u64, total: *mut u64) -> c_int;
}

/// A shim call's status as a `Result`, with libtorch's message on failure.
fn checked(status: c_int, what: &str) -> Result<()> {
    if status == 0 {
        return Ok(());
    }
    // SAFETY: the shim returns a NUL-terminated thread-local string it keeps alive.
    let msg = unsafe { CStr::from_ptr(supernet_last_error()) }.to_string_lossy();
    Err(Error::Other(format!("{what}: {}", msg.trim())))
}

/// The floating-point precision of a pass: float32, or autocast to bfloat16 / float16
/// (convolutions and matrix products in the low precision, reductions, softmax and losses
/// in float32, as `torch.autocast` does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// float32 throughout.
    #[default]
    Fp32,
    /// Autocast to bfloat16 (float32's range; on CUDA and on the CPU).
    Bf16,
    /// Autocast to float16 with loss scaling (CUDA).
    Fp16,
}

impl Precision {
    pub const NAMES: &'static str = "fp32, bf16 or fp16";

    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
            Precision::Fp16 => "fp16",
        }
    }

    fn code(self) -> c_int {
        self as c_int
    }
}

impl std::str::FromStr for Precision {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "fp32" => Ok(Precision::Fp32),
            "bf16" => Ok(Precision::Bf16),
            "fp16" => Ok(Precision::Fp16),
            _ => Err(Error::invalid("precision", s, Precision::NAMES)),
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// An autocast region for one device type (`torch.autocast(device_type, dtype)`): entered
/// by [`Autocast::enter`], left when dropped (the previous state restored, the cast cache
/// cleared at the outermost exit). Autocast state is per thread, like a training graph.
pub struct Autocast {
    cuda: bool,
    prev_enabled: c_int,
    prev_dtype: c_int,
}

impl Autocast {
    /// Autocast to `precision` on `device`'s type; `None` (nothing to do) for float32.
    pub fn enter(device: Device, precision: Precision) -> Result<Option<Self>> {
        if precision == Precision::Fp32 {
            return Ok(None);
        }
        let cuda = device.is_cuda();
        let (mut prev_enabled, mut prev_dtype) = (0, 0);
        // SAFETY: plain out-parameters; the shim catches every C++ exception.
        let status = unsafe {
            supernet_autocast_set(
                c_int::from(cuda),
                1,
                precision.code(),
                &mut prev_enabled,
                &mut prev_dtype,
            )
        };
        checked(status, &format!("autocast to {precision}"))?;
        // SAFETY: no arguments; paired with the decrement in Drop.
        unsafe { supernet_autocast_increment_nesting() };
        Ok(Some(Autocast {
            cuda,
            prev_enabled,
            prev_dtype,
        }))
    }
}

impl Drop for Autocast {
    fn drop(&mut self) {
        let (mut e, mut d) = (0, 0);
        // SAFETY: as in `enter`; restoring a state read from libtorch cannot fail.
        unsafe {
            supernet_autocast_decrement_nesting();
            supernet_autocast_set(
                c_int::from(self.cuda),
                self.prev_enabled,
                self.prev_dtype,
                &mut e,
                &mut d,
            );
        }
    }
}

/// Run `f` under autocast to `precision` on `device` (plain `f()` for float32).
pub fn autocast<T>(device: Device, precision: Precision, f: impl FnOnce() -> T) -> Result<T> {
    let _guard = Autocast::enter(device, precision)?;
    Ok(f())
}

/// cuDNN switches for the process: autotuning (`torch.backends.cudnn.benchmark`) and
/// determinism (`cudnn.deterministic` plus `torch.use_deterministic_algorithms(True,
/// warn_only=True)`). Deterministic turns autotuning off: the tuned algorithm can differ
/// between runs.
pub fn configure_cudnn(benchmark: bool, deterministic: bool) -> Result<()> {
    // SAFETY: two ints; the shim catches every C++ exception.
    let status = unsafe {
        supernet_cudnn_configure(
            c_int::from(benchmark && !deterministic),
            c_int::from(deterministic),
        )
    };
    checked(status, "configuring cuDNN")
}

/// TensorFloat-32 (a 10-bit mantissa) in CUDA convolutions and matrix products on or off.
/// PyTorch allows it in cuDNN convolutions by default, and so does this process unless
/// told otherwise; off, float32 on CUDA is IEEE float32 (parity checks).
pub fn set_tf32(on: bool) -> Result<()> {
    // SAFETY: one int.
    checked(
        unsafe { supernet_set_tf32(c_int::from(on)) },
        "setting TF32",
    )
}

/// The cuDNN switches now: (benchmark, deterministic cuDNN, deterministic algorithms).
pub fn cudnn_state() -> Result<(bool, bool, bool)> {
    let (mut b, mut d, mut a) = (0, 0, 0);
    // SAFETY: plain out-parameters.
    checked(
        unsafe { supernet_cudnn_state(&mut b, &mut d, &mut a) },
        "reading cuDNN settings",
    )?;
    Ok((b != 0, d != 0, a != 0))
}

/// The CUDA caching allocator's byte counts on one device (`torch.cuda.memory_stats`):
/// memory handed to tensors, and memory the allocator holds from the device (what other
/// processes cannot use).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllocatorStats {
    pub allocated: u64,
    pub peak_allocated: u64,
    pub reserved: u64,
    pub peak_reserved: u64,
}

fn cuda_index(device: Device) -> Result<c_int> {
    match device {
        Device::Cuda(i) => Ok(i as c_int),
        other => Err(Error::Other(format!(
            "CUDA memory asked of {other:?}, which is not a CUDA device"
        ))),
    }
}

/// The allocator's statistics on a CUDA device.
pub fn allocator_stats(device: Device) -> Result<AllocatorStats> {
    let mut out = [0i64; 4];
    // SAFETY: `out` has the four slots the shim writes.
    let status = unsafe { supernet_cuda_allocator_stats(cuda_index(device)?, out.as_mut_ptr()) };
    checked(status, "reading the CUDA allocator's statistics")?;
    let [allocated, peak_allocated, reserved, peak_reserved] = out.map(|v| v.max(0) as u64);
    Ok(AllocatorStats {
        allocated,
        peak_allocated,
        reserved,
        peak_reserved,
    })
}

/// Start the allocator's peaks afresh (`torch.cuda.reset_peak_memory_stats`).
pub fn reset_peak(device: Device) -> Result<()> {
    // SAFETY: one int.
    let status = unsafe { supernet_cuda_reset_peak(cuda_index(device)?) };
    checked(status, "resetting the CUDA allocator's peaks")
}

/// Free and total bytes of a CUDA device (`cudaMemGetInfo`, `torch.cuda.mem_get_info`);
/// free excludes what this process's context and allocator already hold.
pub fn device_memory(device: Device) -> Result<(u64, u64)> {
    let (mut free, mut total) = (0u64, 0u64);
    // SAFETY: plain out-parameters.
    let status = unsafe { supernet_cuda_mem_info(cuda_index(device)?, &mut free, &mut total) };
    checked(status, "reading the CUDA device's memory")?;
    Ok((free, total))
}

static CUDA_CHANNELS_LAST: AtomicBool = AtomicBool::new(false);

/// Whether activations use the channels-last layout on `device`. Always on the CPU
/// (oneDNN's fast path); on CUDA when switched on by `--channels-last` (cuDNN's NHWC
/// kernels, fastest with bf16/fp16 tensor cores). A process setting, as cuDNN's are.
pub fn channels_last_on(device: Device) -> bool {
    match device {
        Device::Cpu => true,
        Device::Cuda(_) => CUDA_CHANNELS_LAST.load(Ordering::Relaxed),
        _ => false,
    }
}

/// Switch the channels-last layout on CUDA on or off for this process.
pub fn set_cuda_channels_last(on: bool) {
    CUDA_CHANNELS_LAST.store(on, Ordering::Relaxed);
}
