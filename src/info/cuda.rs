//! CUDA device names and memory through the driver API, loaded at run time so that the same
//! binary runs on machines without a driver. tch exposes only the device count.
use std::ffi::{c_char, c_int, CStr};

#[derive(Debug, Clone)]
pub struct CudaDevice {
    pub index: i32,
    pub name: String,
    pub total_memory: u64,
}

/// Every CUDA device the driver reports; empty when there is no driver or no device.
pub fn cuda_devices() -> Vec<CudaDevice> {
    // SAFETY: the symbols are the documented CUDA driver API with these C signatures; the
    // library stays loaded for the duration of the calls.
    unsafe { query().unwrap_or_default() }
}

unsafe fn query() -> Option<Vec<CudaDevice>> {
    type CuInit = unsafe extern "C" fn(u32) -> c_int;
    type CuCount = unsafe extern "C" fn(*mut c_int) -> c_int;
    type CuGet = unsafe extern "C" fn(*mut c_int, c_int) -> c_int;
    type CuName = unsafe extern "C" fn(*mut c_char, c_int, c_int) -> c_int;
    type CuMem = unsafe extern "C" fn(*mut usize, c_int) -> c_int;

    let lib = libloading::Library::new("libcuda.so.1").ok()?;
    let init: libloading::Symbol<CuInit> = lib.get(b"cuInit\0").ok()?;
    let count: libloading::Symbol<CuCount> = lib.get(b"cuDeviceGetCount\0").ok()?;
    let get: libloading::Symbol<CuGet> = lib.get(b"cuDeviceGet\0").ok()?;
    let name: libloading::Symbol<CuName> = lib.get(b"cuDeviceGetName\0").ok()?;
    let mem: libloading::Symbol<CuMem> = lib.get(b"cuDeviceTotalMem_v2\0").ok()?;
    if init(0) != 0 {
        return None;
    }
    let mut n: c_int = 0;
    if count(&mut n) != 0 {
        return None;
    }
    let mut devices = Vec::new();
    for index in 0..n {
        let mut device: c_int = 0;
        if get(&mut device, index) != 0 {
            continue;
        }
        let mut buf = [0 as c_char; 256];
        let mut bytes: usize = 0;
        let name_ok = name(buf.as_mut_ptr(), buf.len() as c_int, device) == 0;
        let mem_ok = mem(&mut bytes, device) == 0;
        devices.push(CudaDevice {
            index,
            name: if name_ok {
                CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned()
            } else {
                "unknown".into()
            },
            total_memory: if mem_ok { bytes as u64 } else { 0 },
        });
    }
    Some(devices)
}
