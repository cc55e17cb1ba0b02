//! Few-shot supernets (`supernet few-shot`, `--score few-shot`) and the seed-vs-seed
//! ceiling of `rank-check --seeds`. Searches run as subprocesses of the real binary.
use crate::search::{
    checkpoint_bits, fails_with, kill_after_first_mid_run_checkpoint, ok, supernet, tiny_search,
};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use supernet::record::{read_run, Column};
use supernet::sample::{BnMode, Scorer};
use supernet::search::few_shot::{inherit, sub_config, sub_dir};
use supernet::search::{FineTune, SearchConfig, SearchState};
use supernet::space::{op_on_edge, split_ops, EdgeId, EdgeSplit, Genotype};
use supernet::supernet::InputShape;
use tch::{Device, Tensor};

/// A one-epoch parent search: the tiny DARTS space with first-order DARTS, or a small
/// NAS-Bench-201 space with SPOS; a checkpoint every step.
fn parent(out: &Path, nb201: bool) {
    let mut c = tiny_search(out, 1, &["--checkpoint-every", "1"]);
    if nb201 {
        c = supernet();
        c.args(["search", "--space", "supernets/nb201.toml", "--layers", "1"])
            .args(["--channels", "4", "--strategy", "spos", "--subset", "512"])
            .args(["--batch-size", "32", "--epochs", "1", "--seed", "5"])
            .args([
                "--threads",
                "1",
                "--checkpoint-every",
                "1",
                "--quiet",
                "--out",
            ])
            .arg(out);
    }
    ok(c.output().unwrap());
}

fn few_shot(run: &Path, edge: usize, steps: usize, name: &str) -> Command {
    let mut c = supernet();
    c.args(["few-shot", "--quiet", "--run"]).arg(run).args([
        "--edge",
        &edge.to_string(),
        "--steps",
        &steps.to_string(),
        "--name",
        name,
    ]);
    c
}

fn bytes(t: &Tensor) -> Vec<u8> {
    let mut out = vec![0u8; t.numel() * t.kind().elt_size_in_bytes()];
    t.contiguous().copy_data_u8(&mut out, t.numel());
    out
}

/// The tensors of a state under their checkpoint names (network, alphas, SGD momentum).
fn state_bits(st: &SearchState) -> BTreeMap<String, Vec<u8>> {
    let mut m = BTreeMap::new();
    for (k, v) in st.vs.variables() {
        m.insert(format!("net.{k}"), bytes(&v));
    }
    for (k, v) in st.arch.named() {
        m.insert(format!("arch.{k}"), bytes(&v));
    }
    for (k, v) in st.weight_names.iter().zip(&st.sgd.buffers) {
        m.insert(format!("sgd.{k}"), bytes(v));
    }
    m
}

/// The op components of the checkpoint keys on `edge` of normal cell `cell`.
fn ops_on(keys: &BTreeSet<String>, cell: usize, edge: EdgeId) -> BTreeSet<String> {
    let prefix = format!("net.cells.{cell}.edges.{}.", edge.key());
    keys.iter()
        .filter_map(|k| k.strip_prefix(&prefix))
        .map(|rest| rest.split('.').next().unwrap().to_string())
        .collect()
}

/// Per space: each sub-supernet starts as the parent's exact copy on every shared tensor,
/// its split edge (in every normal cell) holds the fixed op's tensors only, and few-shot
/// scores are those of the matching sub-supernet scored directly.
#[test]
fn sub_supernets_inherit_the_parent_and_score_their_architectures() {
    // (space, edge, normal cells of the network)
    for (nb201, edge, normal_cells) in [(false, 3, vec![0usize]), (true, 1, vec![0, 2, 4])] {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("search");
        parent(&run, nb201);
        let parent_bits = checkpoint_bits(&run);
        ok(few_shot(&run, edge, 2, "s").output().unwrap());

        let mut cfg: SearchConfig = supernet::run::read_config(&run).unwrap();
        let space = cfg.validate_with_space().unwrap();
        let e = space.cell.edges()[edge];
        let ops = split_ops(&space, edge).unwrap();
        // Tiny edge 3 (into node 1, which keeps 2 of 3) can be left out: `none` included.
        assert_eq!(ops, space.ops, "nb201 {nb201}");
        cfg.threads = 1;
        let parent_keys: BTreeSet<String> = parent_bits.keys().cloned().collect();
        let pos: serde_json::Value = {
            let t = Tensor::read_safetensors(run.join("checkpoint.safetensors"))
                .unwrap()
                .into_iter()
                .find(|(k, _)| k == "position")
                .unwrap()
                .1;
            serde_json::from_slice(&Vec::<u8>::try_from(t).unwrap()).unwrap()
        };
        let parent_step = pos["global_step"].as_u64().unwrap();
        for &op in &ops {
            // At the split: a fresh sub-supernet, the parent's state handed to it.
            let f = FineTune {
                split: EdgeSplit { edge, op },
                steps: 2,
                parent_step,
                parent: std::path::absolute(&run).unwrap(),
            };
            let sub_cfg = sub_config(&cfg, f.clone());
            let input = InputShape::parse("1x28x28", 10).unwrap();
            let mut st = SearchState::new(&space, input, &sub_cfg, Device::Cpu).unwrap();
            inherit(&mut st, &f).unwrap();
            let at_split = state_bits(&st);
            for (k, v) in &at_split {
                assert_eq!(
                    Some(v),
                    parent_bits.get(k),
                    "{op}: {k} differs from the parent"
                );
            }
            // After the fine-tuning: the same tensors as at the split, the split edge holding
            // only the fixed op, the rest of the network as in the parent.
            let sub = sub_dir(&run, "s", op);
            let keys: BTreeSet<String> = checkpoint_bits(&sub).keys().cloned().collect();
            for k in at_split.keys() {
                assert!(keys.contains(k), "{op}: {k} missing from the sub-supernet");
            }
            assert!(
                keys.is_subset(&parent_keys),
                "{op}: tensors the parent lacks"
            );
            for &cell in &normal_cells {
                let held = ops_on(&keys, cell, e);
                let expected: BTreeSet<String> = ops_on(&parent_keys, cell, e)
                    .into_iter()
                    .filter(|o| o == op.name())
                    .collect();
                assert_eq!(held, expected, "{op}: cell {cell}");
            }
            // Its derived genotype has the fixed op on the split edge.
            let derived = std::fs::read_to_string(sub.join("genotype.txt")).unwrap();
            let derived = Genotype::parse(&derived).unwrap();
            assert_eq!(op_on_edge(&derived, &space, edge).unwrap(), op);
            let removed: Vec<&String> = parent_keys.difference(&keys).collect();
            for k in removed {
                let on_edge = normal_cells
                    .iter()
                    .any(|c| k.contains(&format!("cells.{c}.edges.{}.", e.key())));
                assert!(on_edge, "{op}: {k} dropped outside the split edge");
            }
        }

        // Scoring: each architecture with the sub-supernet of its op on the split edge.
        ok(supernet()
            .args([
                "sample",
                "--n",
                "6",
                "--batches",
                "1",
                "--score",
                "few-shot",
            ])
            .args(["--quiet", "--name", "fs", "--run"])
            .arg(&run)
            .output()
            .unwrap());
        let log = read_run(&run.join("run.h5")).unwrap();
        let table = log
            .tables
            .iter()
            .find(|t| t.group == "samples/fs")
            .expect("the few-shot sample table");
        assert_eq!(table.attr("score"), Some("few-shot"));
        assert_eq!(table.attr("few_shot"), Some("s"));
        let (Some(Column::Text(archs)), Some(Column::F64(acc)), Some(Column::F64(loss))) = (
            table.column("architecture"),
            table.column("accuracy"),
            table.column("loss"),
        ) else {
            panic!("columns missing")
        };
        let direct: BTreeMap<String, Scorer> = ops
            .iter()
            .map(|&op| {
                let s = Scorer::open(&sub_dir(&run, "s", op), BnMode::default(), Some(1));
                (op.name().to_string(), s.unwrap())
            })
            .collect();
        let mut elsewhere_differs = false;
        for ((text, a), l) in archs.iter().zip(acc).zip(loss) {
            let g = Genotype::parse(text).unwrap();
            let op = op_on_edge(&g, &space, edge).unwrap();
            let s = direct[op.name()].score(&g).unwrap();
            assert_eq!(s.accuracy.to_bits(), a.to_bits(), "{text}");
            assert_eq!(s.loss.to_bits(), l.to_bits(), "{text}");
            // Another sub-supernet (its edge fixed to another op) scores it otherwise.
            let other = ops.iter().find(|o| **o != op).unwrap();
            elsewhere_differs |= direct[other.name()].score(&g).unwrap().loss != *l;
        }
        assert!(elsewhere_differs, "the sub-supernets score alike");
    }
}

/// A split killed mid fine-tuning and run again ends bit for bit where an uninterrupted one
/// does; bad requests are refused with what was expected.
#[test]
fn few_shot_resumes_exactly_after_sigkill_and_refuses_bad_requests() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("search");
    parent(&run, false);
    ok(few_shot(&run, 0, 6, "a").output().unwrap());
    let cfg: SearchConfig = supernet::run::read_config(&run).unwrap();
    let space = cfg.validate_with_space().unwrap();
    let ops = split_ops(&space, 0).unwrap();
    // Edge 0 is always kept by the top-2 rule: no `none` sub-supernet.
    assert!(!ops.iter().any(|o| o.is_none()), "{ops:?}");
    let mut cmd = few_shot(&run, 0, 6, "b");
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    kill_after_first_mid_run_checkpoint(cmd, &sub_dir(&run, "b", ops[0]), "genotype.txt");
    ok(few_shot(&run, 0, 6, "b").output().unwrap());
    for &op in &ops {
        let bits = |name: &str| {
            let mut b = checkpoint_bits(&sub_dir(&run, name, op));
            b.remove("position");
            b
        };
        assert_eq!(bits("a"), bits("b"), "{op}");
    }

    fails_with(
        few_shot(&run, 5, 2, "c").output().unwrap(),
        &["--edge", "5", "5 edges"],
    );
    // Another budget under an existing name.
    fails_with(
        few_shot(&run, 0, 3, "a").output().unwrap(),
        &["few-shot set 'a'", "6 steps", "--name"],
    );
    // Several sets and none chosen; a proxy with a few-shot set.
    fails_with(
        supernet()
            .args(["sample", "--n", "2", "--score", "few-shot", "--run"])
            .arg(&run)
            .output()
            .unwrap(),
        &["several few-shot sets", "a, b"],
    );
    fails_with(
        supernet()
            .args([
                "sample",
                "--n",
                "2",
                "--score",
                "synflow",
                "--few-shot",
                "a",
            ])
            .arg("--run")
            .arg(&run)
            .output()
            .unwrap(),
        &["--few-shot", "synflow"],
    );
}

/// Kendall's tau-b, written out for the check.
fn tau_b(x: &[f64], y: &[f64]) -> Option<f64> {
    let (mut s, mut tx, mut ty, mut n0) = (0.0, 0.0, 0.0, 0.0);
    for i in 0..x.len() {
        for j in i + 1..x.len() {
            n0 += 1.0;
            let (a, b) = ((x[i] - x[j]).signum(), (y[i] - y[j]).signum());
            let (a, b) = (
                if x[i] == x[j] { 0.0 } else { a },
                if y[i] == y[j] { 0.0 } else { b },
            );
            s += a * b;
            tx += f64::from(a == 0.0);
            ty += f64::from(b == 0.0);
        }
    }
    let d = ((n0 - tx) * (n0 - ty)).sqrt();
    (d > 0.0).then(|| s / d)
}

#[test]
fn rank_check_with_two_seeds_reports_the_seed_vs_seed_ceiling() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("search");
    parent(&run, false);
    ok(few_shot(&run, 0, 2, "s").output().unwrap());
    ok(supernet()
        .args(["sample", "--n", "6", "--batches", "1", "--quiet", "--run"])
        .arg(&run)
        .output()
        .unwrap());
    let out = ok(supernet()
        .args(["rank-check", "--k", "3", "--top", "1", "--epochs", "1"])
        .args([
            "--subset",
            "128",
            "--test-subset",
            "64",
            "--batch-size",
            "32",
        ])
        .args(["--seeds", "2", "--score", "few-shot", "--threads", "1"])
        .args(["--quiet", "--run"])
        .arg(&run)
        .output()
        .unwrap());
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let log = read_run(&run.join("run.h5")).unwrap();
    let table = log
        .tables
        .iter()
        .find(|t| t.group.starts_with("rank_check/"))
        .expect("a rank_check table");
    let name = table.group.strip_prefix("rank_check/").unwrap();
    let csv = std::fs::read_to_string(run.join(format!("rank-check-{name}.csv"))).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(
        header[header.len() - 2..],
        ["standalone_seed0", "standalone_seed1"]
    );
    assert!(header.contains(&"few_shot_accuracy"), "{header:?}");
    let (mut s0, mut s1, mut mean) = (Vec::new(), Vec::new(), Vec::new());
    for line in lines {
        let f: Vec<f64> = line
            .rsplit(',')
            .take(2)
            .map(|v| v.parse().unwrap())
            .collect();
        s1.push(f[0]);
        s0.push(f[1]);
        mean.push((f[0] + f[1]) / 2.0);
    }
    assert_eq!(s0.len(), 3);
    let Some(Column::F64(standalone)) = table.column("standalone_accuracy") else {
        panic!("no standalone_accuracy")
    };
    for (m, s) in mean.iter().zip(standalone) {
        assert!((m - s).abs() < 1e-12, "{m} vs {s}");
    }
    let expected = tau_b(&s0, &s1).map_or("undefined".to_string(), |t| format!("{t:.6}"));
    assert_eq!(table.attr("ceiling_kendall_tau"), Some(expected.as_str()));
    assert_eq!(table.attr("seeds"), Some("2"));
    assert!(table.attr("ceiling_spearman_rho").is_some());
    assert!(table.attr("few_shot_kendall_tau").is_some());
    assert!(
        stdout.contains("seed-vs-seed ceiling (2 seeds)"),
        "{stdout}"
    );
    assert!(stdout.contains("few-shot: Kendall tau"), "{stdout}");
    // The second seed's runs sit beside the first's.
    assert!(run
        .join("rank-check")
        .join(name)
        .join("0-seed1")
        .join("run.h5")
        .is_file());
}
