//! Files that no reader ever sees half-written, and advisory locks.
//!
//! Nothing in the stack writes files atomically, so every checkpoint, run file, config and
//! plot goes through a temporary file in the same directory (a name unique to this process
//! and write, see [`temp_path`]), fsync, rename and a directory fsync. A writer killed at any point leaves
//! the previous file intact and at most a temporary file, which [`remove_stale_temps`]
//! clears away later.
//!
//! Locks are `flock`s on a lock file (through `std::fs::File::try_lock`): the kernel drops
//! them when their holder exits, however it exits, so a crash never leaves a lock held. The
//! holder's pid and command line are written into the file for the messages of those who
//! find it taken.
use crate::{Error, Result};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Temporary files are `.tmp.<pid>.<n>.<name>` beside their destination: marked as
/// temporary and by whom, and ending like it (writers that pick the format by the
/// extension, such as the PNG encoder, see the destination's).
const TEMP_PREFIX: &str = ".tmp.";

/// A temporary name for `dest`, unique to this process and call, in `dest`'s directory.
pub fn temp_path(dest: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = dest
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    dest.with_file_name(format!("{TEMP_PREFIX}{}.{n}.{name}", std::process::id()))
}

/// fsync `tmp`, rename it over `dest`, fsync the directory.
pub fn commit(tmp: &Path, dest: &Path) -> Result<()> {
    File::open(tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(tmp, e))?;
    // Fault injection for the tests, with the temporary file complete and the destination
    // not yet replaced: FAILPOINTS="fs::commit=pause" stops the writer here (to kill it),
    // "fs::commit=return" fails the write as a full disk would.
    fail::fail_point!("fs::commit", |_| Err(Error::io(
        dest,
        std::io::Error::other("no space left on device (injected by FAILPOINTS)")
    )));
    std::fs::rename(tmp, dest).map_err(|e| Error::io(dest, e))?;
    sync_dir(dest)
}

fn sync_dir(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(dir, e))
}

/// Write `dest` atomically through `write`, which fills the temporary file it is given.
/// On failure `dest` is untouched and the temporary file removed.
pub fn replace_with(dest: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = temp_path(dest);
    let result = write(&tmp).and_then(|()| commit(&tmp, dest));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Write `bytes` to `dest` atomically.
pub fn write_atomic(dest: &Path, bytes: &[u8]) -> Result<()> {
    replace_with(dest, |tmp| {
        std::fs::write(tmp, bytes).map_err(|e| Error::io(tmp, e))
    })
}

/// Remove the temporary files that writers killed mid-write left in `dir` (those of
/// processes that no longer run).
pub fn remove_stale_temps(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if temp_owner(&name).is_some_and(|pid| !process_alive(pid)) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The pid in a name made by [`temp_path`].
fn temp_owner(name: &str) -> Option<u32> {
    let mut parts = name.strip_prefix(TEMP_PREFIX)?.splitn(3, '.');
    let pid = parts.next()?.parse().ok()?;
    let _n: u64 = parts.next()?.parse().ok()?;
    parts.next()?;
    Some(pid)
}

/// Whether a process with this pid runs (on this machine).
pub fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 sends nothing; it only asks whether the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// This process as a lock holder sees it: `pid <pid>: <command line>`.
fn this_process() -> String {
    let args: Vec<String> = std::env::args().collect();
    format!("pid {}: {}", std::process::id(), args.join(" "))
}

/// Bytes free for an unprivileged writer on the file system of `path`.
pub fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs is plain old data, and all zeros is a valid value of it.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `s` a valid out-pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return None;
    }
    Some(s.f_bavail as u64 * s.f_frsize as u64)
}

/// How a [`FileLock`] is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// One holder, nobody else.
    Exclusive,
    /// Any number of shared holders, no exclusive one.
    Shared,
}

/// An advisory lock on a file, held until dropped (or until the process ends).
#[derive(Debug)]
pub struct FileLock {
    file: File,
    /// The holders recorded in the file that no longer run, when it was taken: what a
    /// crashed or killed holder left behind (its lock itself died with it).
    pub stale: Vec<String>,
}

/// Why a lock was not taken.
#[derive(Debug)]
pub enum LockError {
    /// Someone holds it: the holders recorded in the file that still run.
    Held(Vec<String>),
    Io(Error),
}

impl FileLock {
    /// Take the lock on `path` (created if missing) without waiting, and record this
    /// process in it as a holder.
    pub fn try_take(path: &Path, mode: LockMode) -> Result<Self, LockError> {
        let mut file = open_lock_file(path).map_err(LockError::Io)?;
        let taken = match mode {
            LockMode::Exclusive => file.try_lock(),
            LockMode::Shared => file.try_lock_shared(),
        };
        match taken {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(LockError::Held(live_holders(path))),
            Err(TryLockError::Error(e)) => return Err(LockError::Io(Error::io(path, e))),
        }
        let recorded = read_holders(path);
        let stale: Vec<String> = recorded
            .iter()
            .filter(|h| !holder_alive(h))
            .cloned()
            .collect();
        if mode == LockMode::Exclusive {
            // Nobody else holds it: the records are all history.
            file.set_len(0)
                .map_err(|e| LockError::Io(Error::io(path, e)))?;
        }
        writeln!(file, "{}", this_process())
            .and_then(|()| file.flush())
            .map_err(|e| LockError::Io(Error::io(path, e)))?;
        Ok(FileLock { file, stale })
    }

    /// Take the lock on `path` exclusively, waiting for the holders to release it.
    pub fn wait_exclusive(path: &Path) -> Result<Self> {
        let file = open_lock_file(path)?;
        file.lock().map_err(|e| Error::io(path, e))?;
        Ok(FileLock {
            file,
            stale: Vec::new(),
        })
    }
}

/// A lock file, created if missing, opened to read its records and append ours.
fn open_lock_file(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| Error::io(path, e))
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

fn read_holders(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("pid "))
        .map(str::to_string)
        .collect()
}

fn holder_pid(holder: &str) -> Option<u32> {
    holder
        .strip_prefix("pid ")?
        .split(':')
        .next()?
        .trim()
        .parse()
        .ok()
}

fn holder_alive(holder: &str) -> bool {
    holder_pid(holder).is_some_and(process_alive)
}

fn live_holders(path: &Path) -> Vec<String> {
    read_holders(path)
        .into_iter()
        .filter(|h| holder_alive(h))
        .collect()
}
