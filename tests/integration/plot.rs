//! Plots from real run files: a finished tiny search (run in-process), an interrupted one
//! (the binary stopped with SIGINT), an empty one; and the errors for run files that are
//! missing, from another tool, or lack a dataset.
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use supernet::plot::{plot_run, plot_run_report, watch, watch_with, Format};
use supernet::record::{read_run, write_run};
use supernet::search::{self, SearchConfig};

fn tiny_space() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("supernets/tiny.toml")
}

/// A fresh scratch directory under the target dir, removed when dropped (unique, so that
/// test runners with one process per test do not share it).
fn scratch(name: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("plot-{name}-"))
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
}

/// A finished 2-epoch search of the tiny space on 256 images, run once per test process
/// (its directory stays in the target dir).
fn finished_run() -> &'static Path {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| {
        let dir = scratch("finished").keep();
        let cfg = SearchConfig {
            space: tiny_space(),
            subset: Some(256),
            epochs: 2,
            batch_size: 32,
            alpha_every: 1,
            device: "cpu".into(),
            ..SearchConfig::default()
        };
        let run = dir.join("run");
        search::start(cfg, &run, &search::RunOptions::quiet()).expect("tiny search");
        run
    })
}

fn assert_files(files: &[PathBuf], dir: &Path, ext: &str, names: &[&str]) {
    for name in names {
        let path = dir.join(format!("{name}.{ext}"));
        assert!(files.contains(&path), "{} not in {files:?}", path.display());
        let len = std::fs::metadata(&path).unwrap().len();
        assert!(len > 5_000, "{} has only {len} bytes", path.display());
    }
    assert_eq!(files.len(), names.len(), "{files:?}");
}

const ALL: [&str; 7] = [
    "alphas_normal",
    "alphas_reduce",
    "alphas_final",
    "collapse",
    "training",
    "cell_normal",
    "cell_reduce",
];

#[test]
fn finished_run_plots_png_and_svg() {
    let run = finished_run();
    let tmp_out = scratch("finished_png");
    let out = tmp_out.path();
    let files = plot_run(run, out, Format::Png).unwrap();
    assert_files(&files, out, "png", &ALL);
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        assert_eq!(&bytes[1..4], b"PNG", "{}", f.display());
    }
    // No temporary files left behind.
    assert_eq!(std::fs::read_dir(out).unwrap().count(), ALL.len());

    let tmp_out = scratch("finished_svg");
    let out = tmp_out.path();
    let report = plot_run_report(&run.join("run.h5"), out, Format::Svg).unwrap();
    assert_files(&report.files, out, "svg", &ALL);
    assert!(report.finished);
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    let svg = std::fs::read_to_string(out.join("cell_normal.svg")).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("c_{k}"),
        "{svg:.200}"
    );
}

#[test]
fn interrupted_run_plots() {
    let tmp_dir = scratch("interrupted");
    let dir = tmp_dir.path();
    let run = dir.join("run");
    let mut child = Command::new(env!("CARGO_BIN_EXE_supernet"))
        .args(["search", "--space"])
        .arg(tiny_space())
        .args(["--subset", "512", "--epochs", "3", "--batch-size", "16"])
        .args([
            "--checkpoint-every",
            "3",
            "--alpha-every",
            "2",
            "--device",
            "cpu",
        ])
        .args(["--quiet", "--out"])
        .arg(&run)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the first mid-epoch checkpoint (steps in the run file), then interrupt.
    let file = run.join("run.h5");
    let start = Instant::now();
    loop {
        if let Ok(log) = read_run(&file) {
            if !log.steps.is_empty() {
                break;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "no steps recorded"
        );
        assert!(child.try_wait().unwrap().is_none(), "search ended early");
        std::thread::sleep(Duration::from_millis(50));
    }
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let output = child.wait_with_output().unwrap();
    // Interrupted and checkpointed: 128 + SIGINT.
    assert_eq!(
        output.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let log = read_run(&file).unwrap();
    assert!(log.genotype.is_none() && !log.steps.is_empty());

    let out = dir.join("plots");
    let report = plot_run_report(&run, &out, Format::Png).unwrap();
    assert!(!report.finished);
    for name in ["alphas_normal", "training", "cell_normal", "cell_reduce"] {
        assert!(
            report.files.contains(&out.join(format!("{name}.png"))),
            "{name} missing: {report:?}"
        );
    }
}

#[test]
fn empty_run_plots_what_exists() {
    let mut log = read_run(&finished_run().join("run.h5")).unwrap();
    log.steps.clear();
    log.epochs.clear();
    log.genotype = None;
    log.alphas.truncate(1); // the record taken before the first step
    let tmp_dir = scratch("empty");
    let dir = tmp_dir.path();
    write_run(&log, &dir.join("run.h5")).unwrap();
    let report = plot_run_report(dir, &dir.join("plots"), Format::Png).unwrap();
    assert!(report.skipped.iter().any(|s| s.starts_with("training")));
    assert!(report.files.contains(&dir.join("plots/cell_normal.png")));

    log.alphas.clear();
    write_run(&log, &dir.join("run.h5")).unwrap();
    let report = plot_run_report(dir, &dir.join("plots2"), Format::Svg).unwrap();
    assert!(report.files.is_empty(), "{report:?}");
    assert_eq!(report.skipped.len(), 5, "{report:?}");
}

fn error_of(run: &Path) -> String {
    let out = run.join("plots");
    let msg = plot_run(run, &out, Format::Png).unwrap_err().to_string();
    eprintln!("{msg}");
    msg
}

#[test]
fn missing_run_file_is_a_clear_error() {
    let tmp_dir = scratch("missing");
    let dir = tmp_dir.path();
    let msg = error_of(dir);
    assert!(
        msg.contains(&dir.join("run.h5").display().to_string()),
        "{msg}"
    );
    assert!(msg.contains("no run file"), "{msg}");
}

#[test]
fn run_file_of_another_tool_is_a_clear_error() {
    let tmp_dir = scratch("other_tool");
    let dir = tmp_dir.path();
    let path = dir.join("run.h5");
    {
        let f = hdf5::File::create(&path).unwrap();
        f.new_dataset_builder()
            .with_data(&[1.0f32, 2.0, 3.0])
            .create("loss")
            .unwrap();
    }
    let msg = error_of(dir);
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("not a supernet run file"), "{msg}");

    // Not HDF5 at all.
    std::fs::write(&path, b"step,loss\n0,2.3\n").unwrap();
    let msg = error_of(dir);
    assert!(msg.contains(&path.display().to_string()), "{msg}");
}

#[test]
fn run_file_missing_a_dataset_is_a_clear_error() {
    let tmp_dir = scratch("missing_dataset");
    let dir = tmp_dir.path();
    let path = dir.join("run.h5");
    std::fs::copy(finished_run().join("run.h5"), &path).unwrap();
    hdf5::File::open_rw(&path)
        .unwrap()
        .unlink("alphas/normal")
        .unwrap();
    let msg = error_of(dir);
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("alphas/normal"), "{msg}");

    // A missing root attribute (read_run reports it without the file name).
    std::fs::copy(finished_run().join("run.h5"), &path).unwrap();
    hdf5::File::open_rw(&path)
        .unwrap()
        .delete_attr("steps_per_epoch")
        .unwrap();
    let msg = error_of(dir);
    assert!(msg.contains(&path.display().to_string()), "{msg}");
}

#[test]
fn watch_draws_until_the_run_finishes() {
    // A finished run: drawn once, then watch returns by itself.
    let tmp_out = scratch("watch_finished");
    let out = tmp_out.path();
    let draws = watch(
        finished_run(),
        out,
        Format::Png,
        Duration::from_millis(20),
        || false,
    )
    .unwrap();
    assert_eq!(draws, 1);
    assert!(out.join("training.png").is_file());

    // An unfinished run: redrawn when the file changes, until stopped.
    let tmp_dir = scratch("watch_unfinished");
    let dir = tmp_dir.path();
    let mut log = read_run(&finished_run().join("run.h5")).unwrap();
    log.genotype = None;
    write_run(&log, &dir.join("run.h5")).unwrap();
    let seen = Cell::new(0);
    let draws = watch_with(
        dir,
        &dir.join("plots"),
        Format::Svg,
        Duration::from_millis(20),
        || seen.get() >= 2,
        |report| {
            assert!(!report.finished);
            seen.set(seen.get() + 1);
            if seen.get() == 1 {
                // The search rewrites its run file: one more step recorded.
                let mut log = log.clone();
                log.steps.pop();
                write_run(&log, &dir.join("run.h5")).unwrap();
            }
        },
    )
    .unwrap();
    assert_eq!(draws, 2);
}

#[test]
fn a_chain_run_plots_its_choice_probabilities() {
    let dir = scratch("chain");
    let run = dir.path().join("search");
    let out = super::chain::chain_run(&run, &[]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let charts = dir.path().join("charts");
    let report = plot_run_report(&run, &charts, Format::Svg).unwrap();
    assert_eq!(report.files, vec![charts.join("choices.svg")]);
    assert!(report.skipped.iter().any(|s| s.contains("chain run")));
    let svg = std::fs::read_to_string(charts.join("choices.svg")).unwrap();
    for text in ["layer 5", "mbconv_k7_e6", "skip"] {
        assert!(svg.contains(text), "no '{text}' in the chart");
    }

    // The last record's probabilities: a distribution per layer over the choices it allows,
    // whose argmax is the derived architecture.
    let file = run.join("run.h5");
    let (choices, series) =
        supernet::plot::choice_series(&file, &read_run(&file).unwrap()).unwrap();
    let derived = std::fs::read_to_string(run.join("genotype.txt")).unwrap();
    let derived: Vec<&str> = derived.trim().split(',').collect();
    assert_eq!(series.len(), derived.len());
    for (layer, row) in series.iter().enumerate() {
        let last: Vec<(usize, f64)> = row
            .iter()
            .enumerate()
            .filter_map(|(k, s)| s.as_ref().map(|s| (k, s.last().unwrap().1)))
            .collect();
        let sum: f64 = last.iter().map(|p| p.1).sum();
        assert!((sum - 1.0).abs() < 1e-9, "layer {layer} sums to {sum}");
        let best = last.iter().max_by(|a, b| a.1.total_cmp(&b.1)).unwrap().0;
        assert_eq!(choices[best].name(), derived[layer], "layer {layer}");
        // Only the last layer of each two-layer stage may be skipped.
        assert_eq!(
            row.last().unwrap().is_some(),
            layer % 2 == 1,
            "layer {layer}"
        );
    }
}
