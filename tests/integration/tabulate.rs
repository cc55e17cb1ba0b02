//! `supernet tabulate`: the enumeration of a space, a complete table equal to plain
//! `supernet train` runs, worker processes giving the in-process result, a SIGKILLed run
//! continued without training finished pairs again, and refusals (a space over the limit,
//! a table of another space, budget or seed count).
use crate::search::{fails_with, ok, supernet};
use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use supernet::record::read_run;
use supernet::space::{count_architectures, enumerate, uniform_genotype, Genotype, SearchSpace};
use supernet::tabulate::{Budget, GroundTruth};

/// 2 ops on the 3 edges of a 2-node NAS-Bench-201 cell: 8 architectures.
pub(crate) const SPACE: &str = r#"
name = "nano"
ops = ["skip_connect", "nor_conv_1x1"]

[cell]
inputs = 1
nodes = 2
concat = [2]
derive = { rule = "argmax" }

[network]
kind = "nb201"
cells_per_stage = 1
channels = 4
"#;

const BUDGET: [&str; 8] = [
    "--epochs",
    "1",
    "--subset",
    "128",
    "--test-subset",
    "64",
    "--batch-size",
    "32",
];

fn write_space(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("nano.toml");
    std::fs::write(&p, SPACE).unwrap();
    p
}

fn tabulate(space: &Path, out: &Path, seeds: usize, jobs: usize) -> Command {
    tabulate_with(space, out, seeds, jobs, &[])
}

/// `tabulate` with some budget flags (`--epochs`, ..., `--lr`) changed.
fn tabulate_with(
    space: &Path,
    out: &Path,
    seeds: usize,
    jobs: usize,
    changed: &[(&str, &str)],
) -> Command {
    let mut budget: Vec<(&str, &str)> = BUDGET.chunks(2).map(|p| (p[0], p[1])).collect();
    budget.push(("--lr", "0.05"));
    for (flag, value) in changed {
        let at = budget
            .iter()
            .position(|(f, _)| f == flag)
            .expect("a budget flag");
        budget[at].1 = value;
    }
    let mut c = supernet();
    c.args(["tabulate", "--space"])
        .arg(space)
        .args(["--seeds", &seeds.to_string(), "--jobs", &jobs.to_string()])
        .args(budget.iter().flat_map(|(f, v)| [*f, *v]))
        .arg("--out")
        .arg(out);
    c
}

fn bits(a: &ndarray::Array2<f64>) -> Vec<u64> {
    a.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn enumeration_counts_every_distinct_valid_architecture_and_contains_drawn_ones() {
    let load = |name: &str| SearchSpace::load(Path::new(name)).unwrap();
    assert_eq!(count_architectures(&load("nb201")), 15625);
    let micro = load("micro");
    let all = enumerate(&micro);
    assert_eq!(all.len(), 125);
    assert_eq!(count_architectures(&micro), 125);
    let texts: HashSet<String> = all.iter().map(|g| g.to_text()).collect();
    assert_eq!(texts.len(), all.len(), "duplicates");
    for g in &all {
        g.validate(&micro).unwrap();
        assert_eq!(Genotype::from_arg(&g.to_text()).unwrap(), *g);
    }
    // DARTS top-k: node 2 C(2,2) * 3^2 = 9, node 3 C(3,2) * 3^2 = 27 (3 ops besides none),
    // both cell types.
    let tiny = load("tiny");
    assert_eq!(count_architectures(&tiny), 243 * 243);
    let all = enumerate(&tiny);
    assert_eq!(all.len(), 243 * 243);
    let texts: HashSet<String> = all.iter().map(|g| g.to_text()).collect();
    assert_eq!(texts.len(), all.len(), "duplicates");
    let mut rng = supernet::rng::Rng::from_key(&[7]);
    for _ in 0..100 {
        let g = uniform_genotype(&tiny, &mut rng);
        g.validate(&tiny).unwrap();
        assert!(
            texts.contains(&g.to_text()),
            "{} not enumerated",
            g.to_text()
        );
    }
    // The DARTS space per cell: 1 * 49, 3 * 49, 6 * 49, 10 * 49 (7 ops besides none).
    let cell = 49u128 * (3 * 49) * (6 * 49) * (10 * 49);
    assert_eq!(count_architectures(&load("darts_cnn")), cell * cell);
}

#[test]
fn table_is_complete_equals_plain_training_and_survives_a_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let space = write_space(dir.path());
    let (a, b, c) = (
        dir.path().join("a.h5"),
        dir.path().join("b.h5"),
        dir.path().join("c.h5"),
    );
    // Uninterrupted, 2 workers.
    let out = ok(tabulate(&space, &a, 2, 2).output().unwrap());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("8 architectures x 2 seeds"), "{stdout}");
    let ta = GroundTruth::read(&a).unwrap();
    let s = SearchSpace::load(&space).unwrap();
    assert_eq!(ta.architectures, enumerate(&s));
    assert_eq!(ta.seeds, [0, 1]);
    assert_eq!(ta.accuracy.dim(), (8, 2));
    assert!(
        ta.accuracy.iter().all(|x| (0.0..=1.0).contains(x)),
        "{}",
        ta.accuracy
    );
    assert!(ta.seconds.iter().all(|x| *x > 0.0), "{}", ta.seconds);
    assert!(ta.pending().is_empty());
    assert_eq!(ta.space, s.to_toml());
    assert_eq!(
        ta.budget,
        Budget {
            epochs: 1,
            subset: 128,
            test_subset: 64,
            batch_size: 32,
            lr: 0.05,
            data: "fashion-mnist".into(),
        }
    );
    for (i, g) in ta.architectures.iter().enumerate() {
        assert_eq!(ta.lookup(g), Some(i));
        let row = ta.accuracy.row(i);
        let mean = (row[0] + row[1]) / 2.0;
        assert!((ta.mean(i) - mean).abs() < 1e-12);
        assert!((ta.std(i) - (row[0] - row[1]).abs() / 2.0).abs() < 1e-12);
    }
    let foreign = Genotype::parse("|nor_conv_3x3~0|+|skip_connect~0|skip_connect~1|").unwrap();
    assert_eq!(ta.lookup(&foreign), None);
    // /mean and /std as stored.
    let bytes = std::fs::read(&a).unwrap();
    let file = supernet::record::image::open(&bytes).unwrap();
    let mean = file.dataset("mean").unwrap().read_raw::<f64>().unwrap();
    let std = file.dataset("std").unwrap().read_raw::<f64>().unwrap();
    for i in 0..8 {
        assert_eq!(mean[i].to_bits(), ta.mean(i).to_bits());
        assert_eq!(std[i].to_bits(), ta.std(i).to_bits());
    }

    // The same entry from `supernet train` with the same settings: the same accuracy.
    let (i, seed) = (5, 1u64);
    let run = dir.path().join("train");
    ok(supernet()
        .args(["train", "--space"])
        .arg(&space)
        .args(["--genotype", &ta.architectures[i].to_text()])
        .args(BUDGET)
        .args([
            "--lr",
            "0.05",
            "--seed",
            &seed.to_string(),
            "--threads",
            "1",
        ])
        .args(["--device", "cpu", "--cutout", "0", "--crop-padding", "0"])
        .args([
            "--flip",
            "false",
            "--auxiliary-weight",
            "0",
            "--drop-path",
            "0",
        ])
        .args(["--quiet", "--out"])
        .arg(&run)
        .output()
        .unwrap());
    let trained = read_run(&run.join("run.h5")).unwrap();
    assert_eq!(
        trained.epochs.last().unwrap().val_acc.to_bits(),
        ta.accuracy[(i, seed as usize)].to_bits()
    );

    // In this process (--jobs 1): the workers' table, bit for bit.
    ok(tabulate(&space, &b, 2, 1).output().unwrap());
    assert_eq!(
        bits(&GroundTruth::read(&b).unwrap().accuracy),
        bits(&ta.accuracy)
    );

    // SIGKILLed once some trainings are in the table, then run again.
    let mut child = tabulate(&space, &c, 2, 2)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let before = loop {
        if let Ok(t) = GroundTruth::read(&c) {
            if t.accuracy.iter().filter(|x| !x.is_nan()).count() >= 3 {
                break t;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "nothing trained"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before the kill"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let killed = GroundTruth::read(&c).unwrap();
    let finished: Vec<(usize, usize)> = killed
        .accuracy
        .indexed_iter()
        .filter(|(_, x)| !x.is_nan())
        .map(|(ij, _)| ij)
        .collect();
    assert!(finished.len() >= before.accuracy.iter().filter(|x| !x.is_nan()).count());
    assert!(finished.len() < 16, "the kill came after the end");
    let out = ok(tabulate(&space, &c, 2, 2).output().unwrap());
    let lines = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.starts_with('['))
        .count();
    assert_eq!(lines, 16 - finished.len(), "trainings in the rerun");
    let tc = GroundTruth::read(&c).unwrap();
    for &ij in &finished {
        assert_eq!(
            tc.seconds[ij].to_bits(),
            killed.seconds[ij].to_bits(),
            "{ij:?} trained again"
        );
    }
    assert_eq!(bits(&tc.accuracy), bits(&ta.accuracy));
    // A complete table: the same command trains nothing.
    let out = ok(tabulate(&space, &c, 2, 2).output().unwrap());
    assert!(!String::from_utf8_lossy(&out.stderr).contains('['));
    assert_eq!(
        bits(&GroundTruth::read(&c).unwrap().seconds),
        bits(&tc.seconds)
    );
}

#[test]
fn too_large_spaces_and_other_tables_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let space = write_space(dir.path());
    let out = dir.path().join("t.h5");
    fails_with(
        supernet()
            .args(["tabulate", "--space", "nb201", "--out"])
            .arg(&out)
            .output()
            .unwrap(),
        &["nb201", "15625 architectures", "--max-architectures = 5000"],
    );
    fails_with(
        tabulate(&space, &out, 1, 1)
            .args(["--max-architectures", "7"])
            .output()
            .unwrap(),
        &["8 architectures", "--max-architectures = 7"],
    );
    assert!(!out.exists(), "a refused run wrote a table");

    // A table of this space and budget with every entry filled: nothing to train.
    let s = SearchSpace::load(&space).unwrap();
    let budget = Budget {
        epochs: 1,
        subset: 128,
        test_subset: 64,
        batch_size: 32,
        lr: 0.05,
        data: "fashion-mnist".into(),
    };
    let mut t = GroundTruth::new(enumerate(&s), vec![0, 1], s.to_toml(), budget);
    t.accuracy.fill(0.5);
    t.seconds.fill(1.0);
    t.write(&out).unwrap();
    let done = ok(tabulate(&space, &out, 2, 2).output().unwrap());
    assert!(String::from_utf8_lossy(&done.stdout).contains("50.00%"));

    let refused = |changed: &[(&str, &str)], seeds: usize, needles: &[&str]| {
        let out = tabulate_with(&space, &out, seeds, 1, changed).output();
        fails_with(out.unwrap(), needles)
    };
    refused(&[("--epochs", "2")], 2, &["epochs = 1", "epochs = 2"]);
    refused(&[("--subset", "256")], 2, &["subset = 128", "subset = 256"]);
    refused(&[("--test-subset", "32")], 2, &["test_subset = 64"]);
    refused(&[("--batch-size", "16")], 2, &["batch_size = 32"]);
    refused(&[("--lr", "0.1")], 2, &["lr = 0.05", "lr = 0.1"]);
    refused(&[], 3, &["seeds = [0, 1]", "--seeds 3"]);
    let other = dir.path().join("other.toml");
    std::fs::write(&other, SPACE.replace("channels = 4", "channels = 6")).unwrap();
    fails_with(
        tabulate(&other, &out, 2, 1).output().unwrap(),
        &["space", "channels = 6"],
    );
    // Not a table at all.
    let junk = dir.path().join("junk.h5");
    std::fs::write(&junk, b"not hdf5").unwrap();
    fails_with(
        tabulate(&space, &junk, 2, 1).output().unwrap(),
        &["junk.h5"],
    );
    assert_eq!(
        bits(&GroundTruth::read(&out).unwrap().accuracy),
        bits(&t.accuracy)
    );
}
