//! `supernet rank-check --ground-truth`: every sample table of a run (inherited weights and a
//! proxy) measured against a `supernet tabulate` table with known accuracies, the measures
//! and the seed-vs-seed ceiling equal to those computed here, the scatter drawn; and a
//! table of another space or an unfinished one refused by name.
use crate::search::{fails_with, ok, supernet};
use crate::tabulate::SPACE;
use std::path::Path;
use supernet::record::{read_run, Column};
use supernet::sample::rank::kendall_tau_b;
use supernet::space::{enumerate, SearchSpace};
use supernet::tabulate::{Budget, GroundTruth};

/// A table of every architecture of `space` with made-up accuracies for seeds 0 and 1
/// (`complete` false: the last architecture left untrained).
fn table(space: &SearchSpace, path: &Path, complete: bool) -> GroundTruth {
    let budget = Budget {
        epochs: 1,
        subset: 128,
        test_subset: 64,
        batch_size: 32,
        lr: 0.05,
        data: "fashion-mnist".into(),
    };
    let archs = enumerate(space);
    let n = archs.len();
    let mut t = GroundTruth::new(archs, vec![0, 1], SPACE.into(), budget);
    for i in 0..n {
        t.accuracy[[i, 0]] = 0.5 + 0.03 * i as f64;
        // Seed 1 agrees with seed 0 except for two swapped neighbours.
        t.accuracy[[i, 1]] = 0.5 + 0.03 * [1, 0, 2, 3, 4, 5, 6, 7][i % 8] as f64 + 0.001;
        t.seconds[[i, 0]] = 1.0;
        t.seconds[[i, 1]] = 1.0;
    }
    if !complete {
        t.accuracy[[n - 1, 1]] = f64::NAN;
        t.accuracy[[n - 1, 0]] = f64::NAN;
    }
    t.write(path).unwrap();
    t
}

fn f64s(c: Option<&Column>) -> &[f64] {
    match c {
        Some(Column::F64(v)) => v,
        other => panic!("not an f64 column: {other:?}"),
    }
}

#[test]
fn sample_tables_are_measured_against_the_ground_truth_with_its_ceiling() {
    let dir = tempfile::tempdir().unwrap();
    let space_file = dir.path().join("nano.toml");
    std::fs::write(&space_file, SPACE).unwrap();
    let space = SearchSpace::from_file(&space_file).unwrap();
    let run = dir.path().join("run");
    ok(supernet()
        .args(["search", "--space"])
        .arg(&space_file)
        .args(["--subset", "256", "--batch-size", "32", "--epochs", "1"])
        .args(["--threads", "1", "--quiet", "--out"])
        .arg(&run)
        .output()
        .unwrap());
    for extra in [
        &["--name", "inherited"][..],
        &["--name", "gn", "--score", "grad-norm"],
    ] {
        ok(supernet()
            .args(["sample", "--run"])
            .arg(&run)
            .args(["--n", "8", "--quiet", "--threads", "1"])
            .args(extra)
            .output()
            .unwrap());
    }
    let table_file = dir.path().join("truth.h5");
    let truth = table(&space, &table_file, true);
    let out = ok(supernet()
        .args(["rank-check", "--run"])
        .arg(&run)
        .arg("--ground-truth")
        .arg(&table_file)
        .output()
        .unwrap());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("inherited [inherited (recalibrate:10)]"),
        "{stdout}"
    );
    assert!(stdout.contains("gn [grad-norm]"), "{stdout}");

    // The ceiling: seed 0 against seed 1 over the 8 architectures.
    let seed = |s: usize| truth.accuracy.column(s).to_vec();
    let ceiling = kendall_tau_b(&seed(0), &seed(1)).unwrap();
    let log = read_run(&run.join("run.h5")).unwrap();
    for (samples, column) in [("inherited", "inherited_accuracy"), ("gn", "grad_norm")] {
        let t = log.table(&format!("rank_check/truth-{samples}")).unwrap();
        let Some(Column::Text(archs)) = t.column("architecture") else {
            panic!("no architecture column")
        };
        let x = f64s(t.column(column));
        let y = f64s(t.column("standalone_accuracy"));
        for (a, y) in archs.iter().zip(y) {
            let g = supernet::space::Genotype::parse(a).unwrap();
            assert_eq!(*y, truth.mean(truth.lookup(&g).unwrap()), "{a}");
        }
        let prefix = if samples == "gn" { "grad_norm_" } else { "" };
        // "undefined" where the scores tie throughout (a barely trained supernet may).
        let tau = t.attr(&format!("{prefix}kendall_tau")).unwrap();
        match kendall_tau_b(x, y) {
            Some(expected) => {
                let tau: f64 = tau.parse().unwrap();
                assert!(
                    (tau - expected).abs() < 1e-6,
                    "{samples}: {tau} vs {expected}"
                );
            }
            None => assert_eq!(tau, "undefined", "{samples}"),
        }
        let c: f64 = t.attr("ceiling_kendall_tau").unwrap().parse().unwrap();
        assert!((c - ceiling).abs() < 1e-6, "{c} vs {ceiling}");
    }
    let summary = log.table("fidelity/truth").unwrap();
    assert_eq!(summary.column("scorer").unwrap().len(), 2);
    assert!(run.join("fidelity-truth.csv").is_file());
    ok(supernet()
        .args(["plot", "--run"])
        .arg(&run)
        .output()
        .unwrap());
    assert!(run.join("plots/rank_check-truth-inherited.png").is_file());
    assert!(run
        .join("plots/rank_check-truth-gn-grad_norm.png")
        .is_file());

    // An unfinished table, and one of another space, are refused by name.
    let unfinished = dir.path().join("unfinished.h5");
    table(&space, &unfinished, false);
    let check = |t: &Path| {
        supernet()
            .args(["rank-check", "--run"])
            .arg(&run)
            .arg("--ground-truth")
            .arg(t)
            .output()
            .unwrap()
    };
    fails_with(
        check(&unfinished),
        &["unfinished.h5", "has no finished training"],
    );
    let other = SPACE.replace("\"skip_connect\", ", "\"avg_pool_3x3\", ");
    let other_file = dir.path().join("other.toml");
    std::fs::write(&other_file, other).unwrap();
    let other_table = dir.path().join("other.h5");
    table(
        &SearchSpace::from_file(&other_file).unwrap(),
        &other_table,
        true,
    );
    fails_with(check(&other_table), &["other.h5", "is not in the table"]);
}
