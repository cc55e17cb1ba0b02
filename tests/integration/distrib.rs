//! Data-parallel search (issue 18): 2 CPU processes of the real binary, started with
//! torchrun's variables set directly, against 1 process at the same global batch; rank
//! failures; resume with another number of processes.
use crate::search::{ok, supernet};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use tch::Tensor;

/// A tiny-space search of `epochs` epochs of 4 steps (256 images, batch 32).
fn tiny_search(out: &Path, epochs: usize, extra: &[&str]) -> Command {
    let mut c = supernet();
    c.args([
        "search",
        "--space",
        "tiny",
        "--subset",
        "256",
        "--batch-size",
        "32",
    ])
    .args([
        "--seed",
        "5",
        "--threads",
        "1",
        "--quiet",
        "--no-memory-check",
    ])
    .args(["--epochs", &epochs.to_string(), "--out"])
    .arg(out)
    .args(extra);
    c
}

/// A free TCP port for a rendezvous (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `cmd` as rank `rank` of `world` (torchrun's variables), with a short timeout.
fn as_rank(mut cmd: Command, rank: usize, world: usize, port: u16) -> Command {
    cmd.env("RANK", rank.to_string())
        .env("LOCAL_RANK", rank.to_string())
        .env("WORLD_SIZE", world.to_string())
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", port.to_string())
        .env("SUPERNET_DIST_TIMEOUT", "10")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Run `make(rank)` on 2 ranks at once; both outputs.
fn two_ranks(make: impl Fn(usize) -> Command) -> [Output; 2] {
    let port = free_port();
    let children: Vec<Child> = (0..2)
        .map(|r| as_rank(make(r), r, 2, port).spawn().unwrap())
        .collect();
    let mut outs = children.into_iter().map(|c| c.wait_with_output().unwrap());
    [outs.next().unwrap(), outs.next().unwrap()]
}

/// The checkpoint's tensors whose name starts with `prefix`, BN running statistics left out.
fn tensors(dir: &Path, prefix: &str) -> Vec<(String, Tensor)> {
    let mut t: Vec<(String, Tensor)> = Tensor::read_safetensors(dir.join("checkpoint.safetensors"))
        .unwrap()
        .into_iter()
        .filter(|(k, _)| k.starts_with(prefix) && !k.contains("running_"))
        .collect();
    t.sort_by(|a, b| a.0.cmp(&b.0));
    t
}

fn max_diff(a: &Path, b: &Path, prefix: &str) -> f64 {
    let (ta, tb) = (tensors(a, prefix), tensors(b, prefix));
    assert_eq!(ta.len(), tb.len());
    assert!(!ta.is_empty(), "no tensors named {prefix}*");
    ta.iter()
        .zip(&tb)
        .map(|((ka, x), (kb, y))| {
            assert_eq!(ka, kb);
            (x - y).abs().max().double_value(&[])
        })
        .fold(0.0, f64::max)
}

/// 2 processes at global batch 32 (16 each, per-rank BN) give the weights and alphas of 1
/// process at batch 32 in 2 BN groups (`--bn-groups 2`: the same loss), up to float
/// summation order; every strategy, and PC-DARTS. Each rank checks after every step that
/// its weights and alphas are bit-identical to the others'.
#[test]
fn two_processes_equal_one_at_the_same_global_batch() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, extra) in [
        ("first-order", &["--strategy", "first-order"][..]),
        ("second-order", &["--strategy", "second-order"]),
        ("gdas", &["--strategy", "gdas"]),
        ("spos", &["--strategy", "spos"]),
        ("pc-darts", &["--partial-channels", "2"]),
    ] {
        let one = tmp.path().join(format!("{name}-1"));
        let two = tmp.path().join(format!("{name}-2"));
        let args = extra.to_vec();
        let single = ok(
            tiny_search(&one, 1, &[&args[..], &["--bn-groups", "2"]].concat())
                .output()
                .unwrap(),
        );
        let [r0, r1] = two_ranks(|_| tiny_search(&two, 1, &args));
        let (r0, r1) = (ok(r0), ok(r1));
        // Only rank 0 prints the genotype and writes the run; it is the 1-process one.
        assert_eq!(r0.stdout, single.stdout, "{name}: genotypes differ");
        assert!(r1.stdout.is_empty(), "{name}: rank 1 printed a genotype");
        let config = std::fs::read_to_string(two.join("config.toml")).unwrap();
        assert!(config.contains("bn_groups = 2"), "{name}: {config}");
        let (w, a) = (max_diff(&one, &two, "net."), max_diff(&one, &two, "arch."));
        assert!(w < 1e-5, "{name}: weights differ by {w}");
        assert!(a < 1e-6, "{name}: alphas differ by {a}");
        if name == "spos" {
            assert_eq!(a, 0.0, "SPOS leaves the alphas as initialised");
        }
    }
}

/// A rank whose alphas drift (fault injection on rank 1) stops the job at that step with
/// an error that says so: the bit-identity check is real.
#[test]
fn ranks_that_diverge_are_caught() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("r");
    let [r0, r1] = two_ranks(|rank| {
        let mut c = tiny_search(&out, 1, &[]);
        if rank == 1 {
            c.env("FAILPOINTS", "distrib::diverge=return");
        }
        c
    });
    for (rank, o) in [(0, r0), (1, r1)] {
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(!o.status.success(), "rank {rank} succeeded");
        assert!(
            err.contains("ranks diverged") && err.contains("on rank 1 differ from rank 0's"),
            "rank {rank}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// Wait until `dir`'s checkpoint has been rewritten after the start's (a mid-run one).
fn wait_for_mid_run_checkpoint(dir: &Path) {
    let ckpt = dir.join("checkpoint.safetensors");
    let start = Instant::now();
    let first = loop {
        if let Ok(m) = std::fs::metadata(&ckpt).and_then(|m| m.modified()) {
            break m;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "no checkpoint");
        std::thread::sleep(Duration::from_millis(5));
    };
    while std::fs::metadata(&ckpt).and_then(|m| m.modified()).ok() == Some(first) {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no second checkpoint"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// SIGKILL (dead) or SIGSTOP (hung) on rank 1 mid-run: rank 0 ends with an error naming
/// rank 1 within the stated timeout (10 s here, plus the 3 s heartbeat watch); SIGKILL on
/// rank 0 (which serves the store and writes the run): rank 1 ends saying so. The
/// checkpoint is intact, and `--resume` in ONE process finishes the run with the result of
/// the uninterrupted 1-process run (the recorded `bn_groups = 2` keeps the loss).
#[test]
fn a_rank_that_dies_or_hangs_ends_the_job_and_resume_continues_on_one_process() {
    let tmp = tempfile::tempdir().unwrap();
    let extra = ["--checkpoint-every", "2"];
    let reference = tmp.path().join("reference");
    ok(
        tiny_search(&reference, 2, &[&extra[..], &["--bn-groups", "2"]].concat())
            .output()
            .unwrap(),
    );
    for (sig, victim, what, names) in [
        (libc::SIGKILL, 1, "dead", "rank 1 stopped"),
        (libc::SIGSTOP, 1, "hung", "rank 1 stopped"),
        (libc::SIGKILL, 0, "rank-0-dead", "rank 0, which serves it"),
    ] {
        let out = tmp.path().join(what);
        let port = free_port();
        let mut ranks: Vec<Child> = (0..2)
            .map(|r| {
                as_rank(tiny_search(&out, 2, &extra), r, 2, port)
                    .spawn()
                    .unwrap()
            })
            .collect();
        wait_for_mid_run_checkpoint(&out);
        // SAFETY: signals a child of this test.
        assert_eq!(unsafe { libc::kill(ranks[victim].id() as i32, sig) }, 0);
        let t0 = Instant::now();
        let survivor = ranks.remove(1 - victim).wait_with_output().unwrap();
        let took = t0.elapsed();
        if sig == libc::SIGSTOP {
            unsafe { libc::kill(ranks[0].id() as i32, libc::SIGKILL) };
        }
        let _ = ranks[0].wait();
        let err = String::from_utf8_lossy(&survivor.stderr).to_string();
        assert!(!survivor.status.success(), "{what}: the survivor succeeded");
        assert!(err.contains(names), "{what}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(took < Duration::from_secs(40), "{what}: took {took:?}");
        assert!(
            !out.join("genotype.txt").exists(),
            "{what}: the run had finished"
        );
        let resumed = ok(supernet()
            .args(["search", "--quiet", "--resume"])
            .arg(&out)
            .output()
            .unwrap());
        let reference_out = std::fs::read_to_string(reference.join("genotype.txt")).unwrap();
        assert_eq!(String::from_utf8_lossy(&resumed.stdout), reference_out);
        let a = max_diff(&reference, &out, "arch.");
        assert!(a < 1e-6, "{what}: resumed alphas differ by {a}");
    }
}

/// Bad launcher variables are refused by name, before anything runs.
#[test]
fn bad_launcher_variables_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |vars: &[(&str, &str)]| {
        let mut c = tiny_search(&tmp.path().join("x"), 1, &[]);
        for (k, v) in vars {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    let out = run(&[
        ("RANK", "2"),
        ("WORLD_SIZE", "2"),
        ("MASTER_ADDR", "127.0.0.1"),
    ]);
    crate::search::fails_with(out, &["RANK", "WORLD_SIZE = 2"]);
    let out = run(&[("OMPI_COMM_WORLD_RANK", "0"), ("OMPI_COMM_WORLD_SIZE", "2")]);
    crate::search::fails_with(out, &["MASTER_ADDR", "mpirun"]);
    let out = run(&[
        ("RANK", "0"),
        ("WORLD_SIZE", "2"),
        ("MASTER_ADDR", "127.0.0.1"),
        ("MASTER_PORT", "99999"),
    ]);
    crate::search::fails_with(out, &["MASTER_PORT", "99999"]);
}

/// `sample` and `evolve --random` over 2 ranks (each scores every other architecture, rank
/// 0 gathers and writes) give the 1-process tables row for row, bit for bit.
#[test]
fn sample_and_random_search_over_two_ranks_give_the_one_process_tables() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    ok(tiny_search(&run, 1, &[]).output().unwrap());
    // With the derived genotype as a 6th architecture, rank 1 scores it; a zero-cost proxy
    // is gathered as well.
    let batches = ["--batches", "2"];
    for (verb, n_flag, file, extra, rows) in [
        ("sample", "--n", "samples", &batches[..], 5),
        (
            "sample",
            "--n",
            "samples",
            &["--batches", "2", "--with-derived"][..],
            6,
        ),
        ("evolve", "--random", "evolution", &batches[..], 5),
        (
            "evolve",
            "--random",
            "evolution",
            &["--score", "snip"][..],
            5,
        ),
    ] {
        let cmd = |name: &str| {
            let mut c = supernet();
            c.args([verb, n_flag, "5", "--threads", "1", "--quiet"])
                .args(extra)
                .args(["--name", name, "--run"])
                .arg(&run);
            c
        };
        ok(cmd("one").output().unwrap());
        let [r0, r1] = two_ranks(|_| cmd("two"));
        let (_, r1) = (ok(r0), ok(r1));
        assert!(r1.stdout.is_empty(), "{verb}: rank 1 printed");
        let read =
            |name: &str| std::fs::read_to_string(run.join(format!("{file}-{name}.csv"))).unwrap();
        let one = read("one");
        assert_eq!(one.lines().count(), rows + 1, "{verb}: {one}");
        assert_eq!(one, read("two"), "{verb}: tables differ");
    }
}
