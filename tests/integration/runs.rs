//! Run safety, as a user meets it: one writer per run directory (a search and a `sample`,
//! two `sample`s, two resumes), a kill in the middle of a run-file write, runs used from
//! another directory, flags `--resume` would ignore, labels outside the classes, networks
//! too large to build, exit codes, errors printed once, failed starts that leave nothing.
//! HDF5 file locking stays on (the default) for all of them.
use super::search::{fails_with, ok, supernet, tiny_search};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use supernet::record::{read_run, write_run, RunLog};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Wait until `path` exists (a run's first checkpoint, say).
fn wait_for(path: &Path) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{} did not appear",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A finished one-epoch tiny search in `dir`.
fn finished_search(dir: &Path) {
    ok(tiny_search(dir, 1, &["--no-memory-check"])
        .output()
        .unwrap());
}

/// A search long enough to be caught running.
fn long_search(dir: &Path) -> Child {
    tiny_search(dir, 50, &["--no-memory-check"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: sends a signal to a child of this test.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

fn sample(dir: &Path, name: &str) -> Command {
    let mut c = supernet();
    c.args([
        "sample",
        "--n",
        "3",
        "--batches",
        "1",
        "--threads",
        "1",
        "--quiet",
    ])
    .args(["--name", name, "--run"])
    .arg(dir);
    c
}

fn tables(dir: &Path) -> Vec<String> {
    let mut t: Vec<String> = read_run(&dir.join("run.h5"))
        .unwrap()
        .tables
        .into_iter()
        .map(|t| t.group)
        .collect();
    t.sort();
    t
}

#[test]
fn sample_is_refused_while_the_search_runs_and_two_samples_keep_both_tables() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let mut search = long_search(&dir);
    wait_for(&dir.join("checkpoint.safetensors"));
    // Before: sample exited 0 and the search's next rewrite of run.h5 dropped its table.
    let refused = sample(&dir, "during").output().unwrap();
    fails_with(
        refused,
        &["in use by pid", "supernet search", "wait for it to finish"],
    );
    // So is a second search on the same directory.
    let resume = supernet()
        .args(["search", "--quiet", "--resume"])
        .arg(&dir)
        .output()
        .unwrap();
    fails_with(resume, &["in use by pid"]);
    signal(&search, libc::SIGINT);
    let status = search.wait().unwrap();
    assert_eq!(status.code(), Some(130), "SIGINT exits with 130");
    assert!(!dir.join("samples-during.csv").exists());

    // Two samples at once: both tables end up in the run file.
    let a = sample(&dir, "a").spawn().unwrap();
    let b = sample(&dir, "b").spawn().unwrap();
    for c in [a, b] {
        ok(c.wait_with_output().unwrap());
    }
    assert_eq!(tables(&dir), ["samples/a", "samples/b"]);
    // A resumed search keeps them.
    ok(supernet()
        .args(["search", "--quiet", "--no-memory-check", "--resume"])
        .arg(&dir)
        .output()
        .unwrap());
    assert_eq!(tables(&dir), ["samples/a", "samples/b"]);
}

#[test]
fn sigint_exits_130_with_the_resume_hint_and_resume_finishes_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let mut search = long_search(&dir);
    wait_for(&dir.join("checkpoint.safetensors"));
    std::thread::sleep(Duration::from_millis(300));
    signal(&search, libc::SIGINT);
    let mut err = String::new();
    search
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(search.wait().unwrap().code(), Some(130), "{err}");
    assert!(err.contains("supernet search --resume"), "{err}");
    // SIGTERM: 143, sent once the run has said it started (its handler is installed before
    // that line; a fixed delay was too short on a loaded machine).
    let mut resumed = supernet()
        .args(["search", "--no-memory-check", "--resume"])
        .arg(&dir)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(resumed.stderr.take().unwrap()).lines();
    let started = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.starts_with("search: "));
    assert!(started, "the resumed search ended without its start line");
    signal(&resumed, libc::SIGTERM);
    // Keep reading so that a full pipe cannot block its progress lines.
    let drain = std::thread::spawn(move || lines.count());
    assert_eq!(resumed.wait().unwrap().code(), Some(143));
    drain.join().unwrap();
}

#[test]
fn a_kill_during_a_run_file_write_leaves_the_previous_file_readable() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    // Commits of a start: config.toml, run.h5, checkpoint; the 4th is the run file written
    // at the end of the first epoch: the writer stops there with the new file complete
    // under its temporary name and the old one not yet replaced, and is killed.
    let mut search = tiny_search(&dir, 2, &["--no-memory-check"])
        .env("FAILPOINTS", "fs::commit=3*off->pause")
        .spawn()
        .unwrap();
    let start = Instant::now();
    let temp = loop {
        let found = std::fs::read_dir(&dir).ok().and_then(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .find(|n| n.starts_with(".tmp.") && n.ends_with(".run.h5"))
        });
        // The paused write's temporary file stays; the start's own write renames its away.
        if let Some(t) = found {
            std::thread::sleep(Duration::from_millis(300));
            if dir.join(&t).exists() {
                break t;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no paused run-file write"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    search.kill().unwrap();
    search.wait().unwrap();
    assert!(dir.join(&temp).exists(), "killed before the rename");
    let log = read_run(&dir.join("run.h5")).expect("the previous run file reads");
    assert!(
        log.steps.is_empty() && log.epochs.is_empty(),
        "it is the previous file"
    );
    // Resuming clears the dead writer's temporary file and finishes the run.
    ok(supernet()
        .args(["search", "--quiet", "--no-memory-check", "--resume"])
        .arg(&dir)
        .output()
        .unwrap());
    assert!(!dir.join(&temp).exists());
    assert_eq!(read_run(&dir.join("run.h5")).unwrap().epochs.len(), 2);
}

#[test]
fn run_files_stay_readable_while_other_threads_start_processes() {
    // HDF5 opened files without close-on-exec and kept an flock on them: a child process
    // started meanwhile (here by the other thread) inherited it, and the next open of the
    // run file failed with "unable to lock file, errno = 11" (the flake that had the tests
    // turn HDF5 file locking off).
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("run.h5");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let spawner = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut children = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                children.push(Command::new("sleep").arg("2").spawn().unwrap());
                std::thread::sleep(Duration::from_millis(2));
            }
            for mut c in children {
                let _ = c.kill();
                let _ = c.wait();
            }
        })
    };
    let mut log = RunLog::default();
    log.meta.kind = "search".into();
    let mut failures = Vec::new();
    for i in 0..100 {
        log.meta.seed = i;
        write_run(&log, &path).unwrap();
        match read_run(&path) {
            Ok(back) => assert_eq!(back.meta.seed, i),
            Err(e) => failures.push(e.to_string()),
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    spawner.join().unwrap();
    assert!(
        failures.is_empty(),
        "{} of 100 reads failed: {}",
        failures.len(),
        failures[0]
    );
}

#[test]
fn resume_sample_and_extract_work_from_another_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    // Started from the repository with relative paths, as a user types them.
    ok(supernet()
        .current_dir(repo())
        .args([
            "search",
            "--space",
            "supernets/tiny.toml",
            "--subset",
            "256",
        ])
        .args([
            "--batch-size",
            "32",
            "--epochs",
            "1",
            "--seed",
            "5",
            "--threads",
            "1",
        ])
        .args([
            "--quiet",
            "--no-memory-check",
            "--checkpoint-every",
            "2",
            "--out",
        ])
        .arg(&dir)
        .output()
        .unwrap());
    let elsewhere = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        supernet()
            .current_dir(elsewhere.path())
            .args(args)
            .arg(&dir)
            .output()
            .unwrap()
    };
    ok(run(&["search", "--quiet", "--no-memory-check", "--resume"]));
    ok(run(&[
        "sample",
        "--n",
        "2",
        "--batches",
        "1",
        "--quiet",
        "--run",
    ]));
    ok(run(&["extract", "--run"]));
    assert!(dir.join("extracted/model.json").is_file());
    let config = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    assert!(config.contains(&format!(
        "space = \"{}\"",
        repo().join("supernets/tiny.toml").display()
    )));
    // Outside the repository, the default space (darts_cnn, built in) is found too.
    let out = tmp.path().join("default-space");
    ok(supernet()
        .current_dir(elsewhere.path())
        .args([
            "search",
            "--layers",
            "2",
            "--channels",
            "2",
            "--subset",
            "64",
        ])
        .args([
            "--batch-size",
            "32",
            "--epochs",
            "1",
            "--threads",
            "1",
            "--quiet",
        ])
        .args(["--no-memory-check", "--out"])
        .arg(&out)
        .output()
        .unwrap());
}

#[test]
fn resume_refuses_the_flags_it_would_ignore() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    finished_search(&dir);
    let before = std::fs::read(dir.join("run.h5")).unwrap();
    let out = supernet()
        .args([
            "search", "--epochs", "3", "--lr", "0.1", "--quiet", "--resume",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    fails_with(out, &["would be ignored", "--epochs", "--lr"]);
    assert_eq!(std::fs::read(dir.join("run.h5")).unwrap(), before);
}

/// A copy of the default Fashion-MNIST files in a directory whose name does not say what
/// it holds (so the format is detected as generic IDX), one training label set to 255.
fn fashion_with_a_bad_label(dir: &Path) {
    let src = Path::new(supernet::data::DEFAULT_DATA_DIR);
    std::fs::create_dir_all(dir).unwrap();
    for f in [
        "train-images-idx3-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    let gz = std::fs::read(src.join("train-labels-idx1-ubyte.gz")).unwrap();
    let mut labels = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut labels)
        .unwrap();
    labels[8 + 1234] = 255;
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(dir.join("train-labels-idx1-ubyte.gz")).unwrap(),
        flate2::Compression::fast(),
    );
    enc.write_all(&labels).unwrap();
    enc.finish().unwrap();
}

#[test]
fn a_label_outside_the_classes_is_refused_and_runs_record_their_classes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("images");
    fashion_with_a_bad_label(&data);
    let out = tmp.path().join("run");
    let refused = tiny_search(&out, 1, &["--no-memory-check", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    fails_with(
        refused,
        &["train-labels-idx1-ubyte.gz", "label 255", "sample 1234"],
    );
    assert!(!out.exists(), "a failed start leaves nothing behind");

    let good = tmp.path().join("good");
    finished_search(&good);
    assert_eq!(read_run(&good.join("run.h5")).unwrap().meta.classes, 10);
}

#[test]
fn networks_too_large_to_build_are_refused_before_anything_is_allocated() {
    let started = Instant::now();
    let out = supernet()
        .args([
            "inspect",
            "--space",
            "supernets/tiny.toml",
            "--layers",
            "100000000",
        ])
        .output()
        .unwrap();
    fails_with(out, &["network.layers = 100000000", "at most 10000"]);
    let out = supernet()
        .args([
            "inspect",
            "--space",
            "supernets/darts_cnn.toml",
            "--layers",
            "5000",
        ])
        .args(["--channels", "4096", "--input", "3x32x32"])
        .output()
        .unwrap();
    fails_with(out, &["fits in memory", "GiB", "available"]);
    // A memory limit refuses the search before its probes can take more than the limit.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let out = supernet()
        .args([
            "search",
            "--space",
            "supernets/darts_cnn.toml",
            "--channels",
            "64",
        ])
        .args([
            "--subset",
            "256",
            "--batch-size",
            "64",
            "--memory-limit",
            "0.25",
            "--out",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    fails_with(out, &["0.25 GiB"]);
    assert!(!dir.exists(), "a refused start leaves nothing behind");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "refused only after {:?}",
        started.elapsed()
    );
}

#[test]
fn a_missing_genotype_file_is_named_as_a_file() {
    let out = supernet()
        .args([
            "train",
            "--genotype",
            "runs/nope/genotype.txt",
            "--epochs",
            "1",
        ])
        .output()
        .unwrap();
    fails_with(out, &["runs/nope/genotype.txt", "no such genotype file"]);
}

#[test]
fn errors_are_printed_once_in_user_terms() {
    let out = supernet()
        .args(["search", "--config", "/nonexistent/config.toml"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    // Devices, networks and data types are named as users write them.
    let out = supernet()
        .args(["inspect", "--space", "supernets/nb201.toml"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&ok(out).stdout).to_string();
    assert!(
        text.contains("NAS-Bench-201 network: 3 stages of 5 cells"),
        "{text}"
    );
    assert!(!text.contains("Nb201 {"), "{text}");
}

#[test]
fn every_flag_is_described_and_closed_sets_list_their_values() {
    let cmd = supernet::cli::command();
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        for arg in sub.get_arguments() {
            let id = arg.get_id().as_str();
            if matches!(id, "help" | "version") {
                continue;
            }
            assert!(
                arg.get_help()
                    .is_some_and(|h| !h.to_string().trim().is_empty()),
                "supernet {} --{id} has no description",
                sub.get_name()
            );
        }
    }
    let help = |sub: &str| {
        let out = supernet().args([sub, "--help"]).output().unwrap();
        String::from_utf8_lossy(&ok(out).stdout).to_string()
    };
    let search = help("search");
    for v in [
        "first-order",
        "second-order",
        "spos",
        "gdas",
        "proxyless",
        "elastic",
        "cuda:N",
        "cifar100",
        "[default: 0.025]",
    ] {
        assert!(search.contains(v), "search --help lacks {v}");
    }
    let derive = help("derive");
    for v in ["top2", "argmax", "sample-top:K", "recalibrate:K", "running"] {
        assert!(derive.contains(v), "derive --help lacks {v}");
    }
    assert!(help("plot").contains("svg"));
    assert!(help("sample").contains("alphas"));
}

#[test]
fn a_failed_start_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    // A new directory: removed again.
    let dir = tmp.path().join("new");
    let out = tiny_search(
        &dir,
        1,
        &["--no-memory-check", "--data", "/nonexistent/data"],
    )
    .output()
    .unwrap();
    fails_with(out, &["/nonexistent/data"]);
    assert!(!dir.exists());
    // An existing directory keeps what it had, and nothing else.
    let dir = tmp.path().join("existing");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("notes.txt"), "mine").unwrap();
    let out = tiny_search(
        &dir,
        1,
        &["--no-memory-check", "--data", "/nonexistent/data"],
    )
    .output()
    .unwrap();
    fails_with(out, &["/nonexistent/data"]);
    let left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["notes.txt"]);
}

#[test]
fn non_finite_alphas_are_an_error_naming_the_cell_and_edge() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    finished_search(&dir);
    let mut log = read_run(&dir.join("run.h5")).unwrap();
    let k = log.meta.ops.len();
    let last = log.alphas.last_mut().unwrap();
    last.normal[2 * k + 1] = f32::NAN;
    write_run(&log, &dir.join("run.h5")).unwrap();
    let out = supernet()
        .args(["derive", "--rule", "top2", "--run"])
        .arg(&dir)
        .output()
        .unwrap();
    let edge = &log.meta.edges[2];
    let (to, from) = edge.split_once('_').unwrap();
    fails_with(
        out,
        &[
            "normal cell",
            &format!("edge {to} <- {from}"),
            "NaN",
            "run.h5",
        ],
    );
    // The charts draw what they can.
    ok(supernet()
        .args(["plot", "--run"])
        .arg(&dir)
        .output()
        .unwrap());
}

#[test]
fn a_first_checkpoint_that_cannot_be_written_leaves_a_directory_a_new_search_takes() {
    // The commits of a start are config.toml, run.h5 and the first checkpoint: the third
    // fails as on a full disk. Before, the directory kept config.toml and run.h5, which
    // neither --resume (no checkpoint) nor a new search (a run file) accepted.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let out = tiny_search(&dir, 1, &["--no-memory-check"])
        .env("FAILPOINTS", "fs::commit=2*off->return")
        .output()
        .unwrap();
    fails_with(out, &["checkpoint.safetensors", "no space left on device"]);
    assert!(!dir.exists(), "the failed start left {dir:?} behind");
    finished_search(&dir);
}

#[test]
fn sample_refuses_a_truncated_run_file_before_scoring() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    finished_search(&dir);
    let file = dir.join("run.h5");
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    let out = sample(&dir, "t").output().unwrap();
    fails_with(out, &["run.h5", "not a readable HDF5 file"]);
    // Before, it scored every architecture and wrote the CSV before failing on the table.
    assert!(!dir.join("samples-t.csv").exists());
}
