//! A process group: c10d's TCPStore rendezvous and Gloo collectives (through the C ABI of
//! `c10d.cpp`), with errors that name the rank that stopped.
use super::launch::Launch;
use crate::{Error, Result};
use std::ffi::{c_char, c_int, c_long, c_void, CStr, CString};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

extern "C" {
    fn sn_dist_init(
        host: *const c_char,
        port: c_int,
        rank: c_int,
        world: c_int,
        serve: c_int,
        timeout_ms: c_long,
        err: *mut *mut c_char,
    ) -> *mut c_void;
    fn sn_dist_destroy(h: *mut c_void);
    fn sn_dist_allreduce(
        h: *mut c_void,
        ts: *const *const c_void,
        n: c_int,
        op: c_int,
        err: *mut *mut c_char,
    ) -> c_int;
    fn sn_dist_broadcast(
        h: *mut c_void,
        ts: *const *const c_void,
        n: c_int,
        root: c_int,
        err: *mut *mut c_char,
    ) -> c_int;
    fn sn_dist_allgather(
        h: *mut c_void,
        input: *const c_void,
        out: *const *const c_void,
        err: *mut *mut c_char,
    ) -> c_int;
    fn sn_dist_stopped_ranks(h: *mut c_void, wait_ms: c_long, stopped: *mut c_int) -> c_int;
    fn sn_dist_free_string(s: *mut c_char);
}

/// How long the survivors of a failed collective watch the heartbeats (beats are 1 s apart).
const HEARTBEAT_WATCH_MS: i64 = 3000;

#[derive(Clone, Copy)]
enum Op {
    Sum = 0,
    Max = 1,
}

/// This process's membership of a data-parallel job.
pub struct Group {
    handle: *mut c_void,
    launch: Launch,
    /// Nanoseconds spent inside collectives (waiting for the slowest rank included).
    busy_ns: AtomicU64,
}

// c10d process groups and stores are thread-safe; the handle is only freed on drop.
unsafe impl Send for Group {}
unsafe impl Sync for Group {}

impl Drop for Group {
    fn drop(&mut self) {
        unsafe { sn_dist_destroy(self.handle) }
    }
}

fn take_error(err: *mut c_char) -> String {
    if err.is_null() {
        return "unknown error".into();
    }
    let text = unsafe { CStr::from_ptr(err) }
        .to_string_lossy()
        .into_owned();
    unsafe { sn_dist_free_string(err) };
    text
}

impl Group {
    /// Rendezvous with the other ranks (rank 0 serves the store) and build the Gloo group;
    /// fails after the launch's timeout when a rank does not arrive.
    pub fn join(launch: Launch) -> Result<Self> {
        let host = CString::new(launch.master_addr.clone()).map_err(|_| {
            Error::invalid(
                "MASTER_ADDR",
                &launch.master_addr,
                "a host name without NUL",
            )
        })?;
        let mut err = std::ptr::null_mut();
        let handle = unsafe {
            sn_dist_init(
                host.as_ptr(),
                launch.master_port as c_int,
                launch.rank as c_int,
                launch.world as c_int,
                launch.serve_store as c_int,
                (launch.timeout_s * 1000) as c_long,
                &mut err,
            )
        };
        if handle.is_null() {
            return Err(Error::Other(format!(
                "data-parallel rendezvous of rank {} of {} at {}:{} ({}) failed within {} s: {}",
                launch.rank,
                launch.world,
                launch.master_addr,
                launch.master_port,
                launch.launcher,
                launch.timeout_s,
                take_error(err)
            )));
        }
        Ok(Group {
            handle,
            launch,
            busy_ns: AtomicU64::new(0),
        })
    }

    pub fn rank(&self) -> usize {
        self.launch.rank
    }
    pub fn world(&self) -> usize {
        self.launch.world
    }
    pub fn is_root(&self) -> bool {
        self.launch.rank == 0
    }
    pub fn launch(&self) -> &Launch {
        &self.launch
    }

    /// Seconds this process has spent in collectives so far.
    pub fn collective_seconds(&self) -> f64 {
        self.busy_ns.load(Ordering::Relaxed) as f64 * 1e-9
    }

    fn timed<T>(&self, call: impl FnOnce() -> T) -> T {
        let t0 = Instant::now();
        let out = call();
        self.busy_ns
            .fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
        out
    }

    /// The error for a failed collective: which ranks stopped beating (dead or frozen), or
    /// that rank 0 and its store are gone, or that every rank is alive (one is stuck).
    fn failure(&self, what: &str, cause: String) -> Error {
        let mut stopped = vec![0 as c_int; self.world()];
        let n = unsafe {
            sn_dist_stopped_ranks(
                self.handle,
                HEARTBEAT_WATCH_MS as c_long,
                stopped.as_mut_ptr(),
            )
        };
        let (rank, world, t) = (self.rank(), self.world(), self.launch.timeout_s);
        let who = match n {
            n if n < 0 => {
                "the rendezvous store is unreachable: rank 0, which serves it (or the launcher's agent), is gone".to_string()
            }
            0 => format!(
                "every other rank is alive: one is stuck in its step or failed on its own (timeout {t} s)"
            ),
            n => {
                let ranks: Vec<String> = stopped[..n as usize].iter().map(|r| r.to_string()).collect();
                format!(
                    "rank {} stopped (no heartbeat for {} s)",
                    ranks.join(", "),
                    HEARTBEAT_WATCH_MS / 1000
                )
            }
        };
        Error::Other(format!(
            "data-parallel job of {world} processes failed at {what} (seen by rank {rank}): {who}; cause: {cause}"
        ))
    }

    fn check(&self, rc: c_int, err: *mut c_char, what: &str) -> Result<()> {
        if rc == 0 {
            Ok(())
        } else {
            Err(self.failure(what, take_error(err)))
        }
    }

    fn allreduce(&self, ts: &[&Tensor], op: Op, what: &str) -> Result<()> {
        let ptrs: Vec<*const c_void> = ts.iter().map(|t| t.as_ptr() as *const c_void).collect();
        let mut err = std::ptr::null_mut();
        let rc = self.timed(|| unsafe {
            sn_dist_allreduce(
                self.handle,
                ptrs.as_ptr(),
                ptrs.len() as c_int,
                op as c_int,
                &mut err,
            )
        });
        self.check(rc, err, what)
    }

    /// One contiguous CPU buffer of `ts` (one collective instead of one per tensor; the
    /// Gloo group works on host memory, so CUDA tensors are staged through it), and the
    /// inverse that copies it back.
    fn flat(ts: &[Tensor]) -> Tensor {
        Tensor::cat(
            &ts.iter()
                .map(|t| t.detach().reshape([-1]))
                .collect::<Vec<_>>(),
            0,
        )
        .to_device(Device::Cpu)
    }

    fn unflatten(flat: &Tensor, ts: &[Tensor]) {
        let sizes: Vec<i64> = ts.iter().map(|t| t.numel() as i64).collect();
        tch::no_grad(|| {
            for (t, part) in ts.iter().zip(flat.split_with_sizes(sizes.as_slice(), 0)) {
                t.shallow_clone()
                    .copy_(&part.view_as(t).to_device(t.device()));
            }
        });
    }

    /// Every rank's `ts` replaced by the mean over the ranks (gradients of a global batch
    /// split evenly across the ranks).
    pub fn average(&self, ts: &[Tensor], what: &str) -> Result<()> {
        if ts.is_empty() {
            return Ok(());
        }
        let flat = Self::flat(ts);
        self.allreduce(&[&flat], Op::Sum, what)?;
        let flat = flat / self.world() as f64;
        Self::unflatten(&flat, ts);
        Ok(())
    }

    /// The mean over the ranks of a few numbers.
    pub fn mean_f64(&self, values: &[f64], what: &str) -> Result<Vec<f64>> {
        let t = Tensor::from_slice(values);
        self.allreduce(&[&t], Op::Sum, what)?;
        Ok(Vec::<f64>::try_from(t / self.world() as f64)?)
    }

    /// Whether any rank says yes.
    pub fn any(&self, local: bool, what: &str) -> Result<bool> {
        let t = Tensor::from_slice(&[local as i64]);
        self.allreduce(&[&t], Op::Max, what)?;
        Ok(t.int64_value(&[0]) != 0)
    }

    /// Rank `root`'s `ts` on every rank.
    pub fn broadcast(&self, ts: &[Tensor], root: usize, what: &str) -> Result<()> {
        if ts.is_empty() {
            return Ok(());
        }
        let flat = Self::flat(ts);
        let mut err = std::ptr::null_mut();
        let ptr = flat.as_ptr() as *const c_void;
        let rc = self
            .timed(|| unsafe { sn_dist_broadcast(self.handle, &ptr, 1, root as c_int, &mut err) });
        self.check(rc, err, what)?;
        Self::unflatten(&flat, ts);
        Ok(())
    }

    /// Every rank's `values` (equal lengths), in rank order.
    pub fn all_gather_i64(&self, values: &[i64], what: &str) -> Result<Vec<Vec<i64>>> {
        let input = Tensor::from_slice(values);
        let out: Vec<Tensor> = (0..self.world()).map(|_| input.zeros_like()).collect();
        let ptrs: Vec<*const c_void> = out.iter().map(|t| t.as_ptr() as *const c_void).collect();
        let mut err = std::ptr::null_mut();
        let rc = self.timed(|| unsafe {
            sn_dist_allgather(
                self.handle,
                input.as_ptr() as *const c_void,
                ptrs.as_ptr(),
                &mut err,
            )
        });
        self.check(rc, err, what)?;
        out.iter().map(|t| Ok(Vec::<i64>::try_from(t)?)).collect()
    }

    /// Every rank's `values`, in rank order (lengths may differ).
    pub fn all_gather_varlen(&self, values: &[i64], what: &str) -> Result<Vec<Vec<i64>>> {
        let lens = self.all_gather_i64(&[values.len() as i64], what)?;
        let longest = lens.iter().map(|l| l[0]).max().unwrap_or(0) as usize;
        let mut padded = values.to_vec();
        padded.resize(longest.max(1), 0);
        let all = self.all_gather_i64(&padded, what)?;
        Ok(all
            .into_iter()
            .zip(lens)
            .map(|(mut v, l)| {
                v.truncate(l[0] as usize);
                v
            })
            .collect())
    }

    /// An error unless `fingerprint` is the same on every rank; names the ranks that
    /// differ from rank 0.
    pub fn check_identical(&self, fingerprint: u64, what: &str) -> Result<()> {
        let all = self.all_gather_i64(&[fingerprint as i64], what)?;
        let differ: Vec<String> = all
            .iter()
            .enumerate()
            .filter(|(_, v)| v[0] != all[0][0])
            .map(|(r, _)| r.to_string())
            .collect();
        if differ.is_empty() {
            Ok(())
        } else {
            Err(Error::Other(format!(
                "data-parallel ranks diverged: {what} on rank {} differ from rank 0's",
                differ.join(", ")
            )))
        }
    }
}

/// A checksum of the exact bits of `ts` (f32 or f64): per tensor the integer sum of the
/// bit patterns (exact, so independent of summation order), mixed with its position.
/// Computed on the tensors' device; one small copy to the host.
pub fn fingerprint(ts: &[Tensor]) -> Result<u64> {
    if ts.is_empty() {
        return Ok(0);
    }
    let sums: Vec<Tensor> = ts
        .iter()
        .map(|t| {
            let bits = match t.kind() {
                Kind::Float => Ok(t.detach().view_dtype(Kind::Int)),
                Kind::Double => Ok(t.detach().view_dtype(Kind::Int64)),
                k => Err(Error::Other(format!("fingerprint of a {k:?} tensor"))),
            }?;
            Ok(bits.sum(Kind::Int64))
        })
        .collect::<Result<_>>()?;
    let sums = Vec::<i64>::try_from(Tensor::stack(&sums, 0).to_device(Device::Cpu))?;
    let key: Vec<u64> = sums.iter().map(|&s| s as u64).collect();
    Ok(crate::rng::hash_key(&key))
}
