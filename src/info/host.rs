//! Memory facts of this machine and process, from `/proc` (0 where it cannot be read).

/// Peak resident memory of this process so far (`VmHWM`).
pub fn peak_rss() -> u64 {
    proc_kib("/proc/self/status", "VmHWM:") * 1024
}

/// Resident memory of this process now (`VmRSS`).
pub fn current_rss() -> u64 {
    proc_kib("/proc/self/status", "VmRSS:") * 1024
}

/// Resident memory of the process whose `/proc/<pid>/status` is `status_file`.
pub fn rss_of(status_file: &str) -> u64 {
    proc_kib(status_file, "VmRSS:") * 1024
}

/// Memory the system can give to new allocations without swapping (`MemAvailable`).
pub fn available_memory() -> u64 {
    proc_kib("/proc/meminfo", "MemAvailable:") * 1024
}

fn proc_kib(path: &str, key: &str) -> u64 {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .unwrap_or(0)
}

pub fn gib(bytes: u64) -> String {
    format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
}

pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}
