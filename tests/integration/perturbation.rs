//! DARTS-PT selection (`derive --rule perturbation`): the kept op is the one whose removal
//! drops the accuracy most, the dropped edge the one whose removal leaves the most, the
//! measurements are the supernet's with one weight zeroed, the order is seeded, and the
//! run's own files are left as they were.
use super::search::{checkpoint_bits, fails_with, ok, supernet, tiny_search};
use std::collections::BTreeMap;
use std::path::Path;
use supernet::evaluate::evaluate_batches;
use supernet::record::{read_run, Column, Table};
use supernet::space::{CellType, Genotype, OpKind};
use supernet::supernet::{ArchWeights, MixWeights};
use tch::Tensor;

fn derive(run: &Path, seed: u64) -> String {
    let out = ok(supernet()
        .args(["derive", "--rule", "perturbation", "--tune-steps", "1"])
        .args(["--batches", "1", "--threads", "1", "--quiet", "--seed"])
        .arg(seed.to_string())
        .arg("--run")
        .arg(run)
        .output()
        .unwrap());
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn texts<'a>(t: &'a Table, name: &str) -> &'a [String] {
    match t.column(name) {
        Some(Column::Text(v)) => v,
        other => panic!("column {name}: {other:?}"),
    }
}

fn floats<'a>(t: &'a Table, name: &str) -> &'a [f64] {
    match t.column(name) {
        Some(Column::F64(v)) => v,
        other => panic!("column {name}: {other:?}"),
    }
}

fn ints<'a>(t: &'a Table, name: &str) -> &'a [u64] {
    match t.column(name) {
        Some(Column::U64(v)) => v,
        other => panic!("column {name}: {other:?}"),
    }
}

#[test]
fn darts_pt_keeps_the_op_whose_removal_hurts_most_and_leaves_the_run_intact() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    ok(tiny_search(&run, 1, &[]).output().unwrap());
    let bits = checkpoint_bits(&run);
    let genotype_txt = std::fs::read_to_string(run.join("genotype.txt")).unwrap();
    let before = read_run(&run.join("run.h5")).unwrap();

    let printed = derive(&run, 0);
    let text = std::fs::read_to_string(run.join("genotype-perturbation.txt")).unwrap();
    assert_eq!(printed, text.trim());
    let g = Genotype::parse(&text).unwrap();
    assert!(run.join("perturbation-seed0-tune1.csv").is_file());

    // The run's own files are untouched.
    assert_eq!(checkpoint_bits(&run), bits, "the checkpoint changed");
    assert_eq!(
        std::fs::read_to_string(run.join("genotype.txt")).unwrap(),
        genotype_txt
    );
    let after = read_run(&run.join("run.h5")).unwrap();
    assert_eq!(after.epochs, before.epochs);
    assert_eq!(after.steps, before.steps);

    let t = after
        .table("perturbation/seed0-tune1")
        .expect("the measurements in the run file")
        .clone();
    let (round, cell, stage) = (ints(&t, "round"), texts(&t, "cell"), texts(&t, "stage"));
    let (edge, op, chosen) = (texts(&t, "edge"), texts(&t, "op"), ints(&t, "chosen"));
    let (base, acc, drop) = (
        floats(&t, "base_accuracy"),
        floats(&t, "accuracy"),
        floats(&t, "drop"),
    );
    // tiny: 5 edges x 3 candidates (none is none in a top-2 space) per cell type, then
    // node 3's three edges once (node 2 has only its two).
    let ops_rows = stage.iter().filter(|s| *s == "op").count();
    assert_eq!((ops_rows, stage.len()), (2 * 5 * 3, 2 * 5 * 3 + 2 * 3));
    assert!(op.iter().all(|o| o != OpKind::None.name()));
    // Group the rows of one decision: (round, cell, stage, base).
    let mut groups: BTreeMap<(u64, String, String, u64), Vec<usize>> = BTreeMap::new();
    for i in 0..stage.len() {
        assert!((drop[i] - (base[i] - acc[i])).abs() < 1e-12);
        let key = (
            round[i],
            cell[i].clone(),
            stage[i].clone(),
            base[i].to_bits(),
        );
        groups.entry(key).or_default().push(i);
    }
    let mut dropped = Vec::new();
    for ((_, c, s, _), rows) in &groups {
        let picked: Vec<usize> = rows.iter().copied().filter(|&i| chosen[i] == 1).collect();
        assert_eq!(picked.len(), 1, "one decision per group");
        let p = picked[0];
        if s == "op" {
            // Most hurt by its removal; the first such op on ties.
            let min = rows.iter().map(|&i| acc[i]).fold(f64::INFINITY, f64::min);
            assert_eq!(acc[p], min);
            assert!(rows.iter().take_while(|&&i| i != p).all(|&i| acc[i] > min));
            let cell_t = if c == "normal" {
                CellType::Normal
            } else {
                CellType::Reduce
            };
            let (to, from): (usize, usize) = {
                let (a, b) = edge[p].split_once('_').unwrap();
                (a.parse().unwrap(), b.parse().unwrap())
            };
            let node = &g.cell(cell_t).unwrap().nodes[to - 2];
            if let Some(e) = node.iter().find(|e| e.from == from) {
                assert_eq!(e.op.name(), op[p], "{c} edge {}", edge[p]);
            }
        } else {
            // Least missed; the last such edge on ties.
            let max = rows
                .iter()
                .map(|&i| acc[i])
                .fold(f64::NEG_INFINITY, f64::max);
            assert_eq!(acc[p], max);
            assert!(rows
                .iter()
                .skip_while(|&&i| i != p)
                .skip(1)
                .all(|&i| acc[i] < max));
            dropped.push((c.clone(), edge[p].clone()));
        }
    }
    for (c, e) in &dropped {
        let cell_t = if c == "normal" {
            CellType::Normal
        } else {
            CellType::Reduce
        };
        let (to, from) = e.split_once('_').unwrap();
        let node = &g.cell(cell_t).unwrap().nodes[to.parse::<usize>().unwrap() - 2];
        assert!(
            node.iter().all(|x| x.from.to_string() != from),
            "{c} {e} kept"
        );
        assert_eq!(node.len(), 2);
    }

    // The first measurement, computed independently: the supernet under softmax(alpha)
    // with that one weight zeroed (not renormalised), BN batch statistics, first batch.
    let trained = supernet::search::load_trained(&run).unwrap();
    let st = &trained.state;
    let n_ops = st.space.ops.len();
    let edges = st.space.cell.edges();
    let e0 = edges.iter().position(|e| e.key() == edge[0]).unwrap();
    let k0 = st.space.ops.iter().position(|o| o.name() == op[0]).unwrap();
    let dense = |t: CellType, mask: Option<(usize, usize)>| {
        let mut flat: Vec<f32> = st.arch.softmax_rows(t).unwrap().concat();
        if let Some((e, k)) = mask {
            flat[e * n_ops + k] = 0.0;
        }
        MixWeights::dense(Tensor::from_slice(&flat).view([edges.len() as i64, n_ops as i64]))
    };
    let score = |mask| {
        let (normal_mask, reduce_mask) = if cell[0] == "normal" {
            (mask, None)
        } else {
            (None, mask)
        };
        let w = ArchWeights {
            normal: dense(CellType::Normal, normal_mask),
            reduce: Some(dense(CellType::Reduce, reduce_mask)),
        };
        evaluate_batches(&st.net, &w, &trained.setup.val, st.device, true, Some(1)).accuracy
    };
    assert_eq!(score(None), base[0], "base accuracy");
    assert_eq!(
        score(Some((e0, k0))),
        acc[0],
        "accuracy with {} masked",
        op[0]
    );

    // Seeded: the same seed repeats the table, another decides in another order.
    assert_eq!(derive(&run, 0), printed);
    let again = read_run(&run.join("run.h5")).unwrap();
    assert_eq!(again.table("perturbation/seed0-tune1"), Some(&t));
    derive(&run, 1);
    let other = read_run(&run.join("run.h5")).unwrap();
    let order = |t: &Table| -> Vec<String> {
        let (s, e) = (texts(t, "stage"), texts(t, "edge"));
        (0..s.len())
            .filter(|&i| s[i] == "op")
            .map(|i| e[i].clone())
            .collect()
    };
    assert_ne!(
        order(other.table("perturbation/seed1-tune1").unwrap()),
        order(&t)
    );
}

#[test]
fn darts_pt_flags_are_refused_with_other_rules_and_scorers() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let cases: [(&[&str], &[&str]); 4] = [
        (
            &["--tune-steps", "3"],
            &["--tune-steps", "top2", "perturbation"],
        ),
        (
            &["--rule", "perturbation", "--bn", "running"],
            &["--bn", "perturbation"],
        ),
        (
            &["--rule", "perturbation", "--score", "snip"],
            &["--score", "perturbation"],
        ),
        (
            &["--rule", "perturbation", "--max-skip", "1"],
            &["--max-skip", "perturbation"],
        ),
    ];
    for (flags, needles) in cases {
        fails_with(
            supernet()
                .arg("derive")
                .args(flags)
                .arg("--run")
                .arg(&run)
                .output()
                .unwrap(),
            needles,
        );
    }
    // A run whose strategy trains no softmax mixture.
    ok(tiny_search(&run, 1, &["--strategy", "spos"])
        .output()
        .unwrap());
    fails_with(
        supernet()
            .args(["derive", "--rule", "perturbation", "--run"])
            .arg(&run)
            .output()
            .unwrap(),
        &["--rule", "perturbation", "spos"],
    );
    assert!(!run.join("genotype-perturbation.txt").exists());
}

#[test]
fn darts_pt_in_an_argmax_space_decides_every_edge_with_none_a_candidate() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("nb201");
    ok(supernet()
        .args([
            "search",
            "--space",
            "supernets/nb201.toml",
            "--channels",
            "4",
        ])
        .args(["--layers", "1", "--subset", "512", "--batch-size", "32"])
        .args([
            "--epochs",
            "1",
            "--seed",
            "5",
            "--threads",
            "1",
            "--quiet",
            "--out",
        ])
        .arg(&run)
        .output()
        .unwrap());
    let g = Genotype::parse(&derive(&run, 0)).unwrap();
    let t = read_run(&run.join("run.h5"))
        .unwrap()
        .table("perturbation/seed0-tune1")
        .unwrap()
        .clone();
    // 6 edges x 5 ops (none included), no edge stage: every edge keeps its op.
    assert_eq!(texts(&t, "stage").len(), 6 * 5);
    assert!(texts(&t, "stage").iter().all(|s| s == "op"));
    assert_eq!(
        texts(&t, "op")
            .iter()
            .filter(|o| *o == OpKind::None.name())
            .count(),
        6
    );
    let (edge, op, chosen) = (texts(&t, "edge"), texts(&t, "op"), ints(&t, "chosen"));
    let mut decided = 0;
    for i in (0..edge.len()).filter(|&i| chosen[i] == 1) {
        let (to, from) = edge[i].split_once('_').unwrap();
        let node = &g.normal.nodes[to.parse::<usize>().unwrap() - 1];
        let e = node.iter().find(|e| e.from.to_string() == from).unwrap();
        assert_eq!(e.op.name(), op[i]);
        decided += 1;
    }
    assert_eq!(decided, 6);
    assert_eq!(g.normal.nodes.iter().map(Vec::len).sum::<usize>(), 6);
}
