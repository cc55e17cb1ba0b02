//! `supernet sweep`: tiny trials run as run directories, ASHA stops some early, a killed
//! sweep continues without re-running finished trials, and malformed settings files are
//! refused naming the key.
use crate::search::{fails_with, ok, supernet};
use std::path::Path;
use std::time::{Duration, Instant};
use supernet::record::read_run;

const SPEC: &str = r#"
command = "search"
args = ["--space", "tiny", "--subset", "256", "--batch-size", "32", "--epochs", "3", "--seed", "1"]
sampler = "random"
trials = 5
seed = 3

[pruner]
kind = "asha"
min_epochs = 1
reduction_factor = 2

[params.arch_lr]
low = 1e-4
high = 1e-2
log = true

[params.lr]
values = [0.01, 0.05]
"#;

fn csv_rows(path: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

#[test]
fn sweep_stops_the_worst_early_and_continues_after_a_kill_without_rerunning_trials() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("spec.toml");
    std::fs::write(&spec, SPEC).unwrap();
    let out = dir.path().join("sweep");
    let mut cmd = supernet();
    cmd.args(["sweep", "--quiet", "--jobs", "2", "--spec"])
        .arg(&spec)
        .arg("--out")
        .arg(&out);
    // SIGKILL the sweep once a trial has finished.
    let mut child = cmd.spawn().unwrap();
    let start = Instant::now();
    let finished = loop {
        let done: Vec<_> = std::fs::read_dir(out.join("trials"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.path())
                    // The run file records the genotype last: the run is done.
                    .filter(|p| read_run(&p.join("run.h5")).is_ok_and(|l| l.genotype.is_some()))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(p) = done.first() {
            break p.clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "no trial finished"
        );
        assert!(child.try_wait().unwrap().is_none(), "the sweep ended early");
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!out.join("results.csv").exists(), "killed after the end");
    let finished_file = finished.join("run.h5");
    let before = std::fs::metadata(&finished_file)
        .unwrap()
        .modified()
        .unwrap();

    ok(cmd.output().unwrap());
    assert_eq!(
        std::fs::metadata(&finished_file)
            .unwrap()
            .modified()
            .unwrap(),
        before,
        "a finished trial ran again"
    );
    let rows = csv_rows(&out.join("results.csv"));
    // trial,state,arch_lr,lr,epochs,val_acc,...
    assert_eq!(rows.len(), 5, "{rows:?}");
    let numbers: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(numbers, ["0", "1", "2", "3", "4"]);
    let mut pruned_early = 0;
    for r in &rows {
        let epochs: usize = r[4].parse().unwrap();
        match r[1].as_str() {
            "complete" => assert_eq!(epochs, 3, "{r:?}"),
            "pruned" => pruned_early += usize::from(epochs < 3),
            other => panic!("trial in state {other}: {r:?}"),
        }
        let lr: f64 = r[2].parse().unwrap();
        assert!((1e-4..=1e-2).contains(&lr));
        assert!(["0.01", "0.05"].contains(&r[3].as_str()));
        // Every trial is an ordinary run directory, each step recorded once.
        let log = read_run(
            &out.join("trials")
                .join(format!("{:04}", r[0].parse::<usize>().unwrap()))
                .join("run.h5"),
        )
        .unwrap();
        let steps: Vec<u64> = log.steps.iter().map(|s| s.step).collect();
        assert_eq!(steps, (0..steps.len() as u64).collect::<Vec<_>>());
        assert_eq!(log.epochs.len(), epochs);
    }
    assert!(pruned_early >= 1, "ASHA stopped no trial early: {rows:?}");
    assert!(out.join("results.h5").is_file());
    for p in ["sweep_trials.png", "sweep_settings.png"] {
        assert!(out.join("plots").join(p).is_file(), "{p}");
    }
    // The same directory with other settings is refused.
    std::fs::write(&spec, SPEC.replace("trials = 5", "trials = 6")).unwrap();
    fails_with(cmd.output().unwrap(), &["sweep.toml", "other settings"]);
}

#[test]
fn malformed_settings_files_are_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let case = |from: &str, to: &str| SPEC.replace(from, to);
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        ("typo", case("high = 1e-2", "hihg = 1e-2"), vec!["hihg"]),
        (
            "unknown flag",
            case("[params.lr]", "[params.learning_rate]"),
            vec!["params.learning_rate", "--learning-rate", "supernet search"],
        ),
        (
            "range on a grid",
            case("\"random\"", "\"grid\""),
            vec!["params.arch_lr", "values", "grid"],
        ),
        ("no trials", case("trials = 5", ""), vec!["trials"]),
        (
            "log of zero",
            case("low = 1e-4", "low = 0.0"),
            vec!["params.arch_lr.low", "log"],
        ),
        (
            "swept flag also fixed",
            case("\"--seed\", \"1\"", "\"--lr\", \"0.1\""),
            vec!["args", "--lr", "params.lr"],
        ),
    ];
    for (name, text, needles) in cases {
        let spec = dir.path().join(format!("{}.toml", name.replace(' ', "_")));
        std::fs::write(&spec, text).unwrap();
        let out = supernet()
            .args(["sweep", "--spec"])
            .arg(&spec)
            .arg("--out")
            .arg(dir.path().join("never"))
            .output()
            .unwrap();
        let mut needles = needles;
        let file = spec.file_name().unwrap().to_string_lossy().to_string();
        needles.push(&file);
        fails_with(out, &needles);
    }
    assert!(
        !dir.path().join("never").exists(),
        "a refused sweep left a directory"
    );
}
