//! Chain runs after the search: NSGA-II sorting and crowding against hand-computed cases,
//! `evolve` (deterministic, within its limits, scored as `sample` scores, its Pareto front),
//! the Pareto charts, and `derive` (the argmax of the last recorded alphas, its costs).
use super::chain::{chain_run, chain_space};
use super::search::{fails_with, ok, supernet};
use std::path::Path;
use supernet::record::{Column, Table};
use supernet::sample::pareto::{
    accuracy_cost, crowding_distance, dominates, non_dominated_sort, nsga2_select, pareto_front,
};
use supernet::space::chain::{arch_cost, extreme_arch, ChainArch, ImageShape};

const INF: f64 = f64::INFINITY;

#[test]
fn non_dominated_sorting_and_crowding_distance_match_hand_computed_cases() {
    // Both objectives minimised. A..G; G equals B (ties dominate neither way).
    let p: Vec<Vec<f64>> = [
        [1.0, 5.0], // A 0
        [2.0, 3.0], // B 1
        [3.0, 1.0], // C 2
        [2.0, 4.0], // D 3: dominated by B, G
        [3.0, 3.0], // E 4: dominated by B, G
        [4.0, 4.0], // F 5: dominated by D, E
        [2.0, 3.0], // G 6
    ]
    .iter()
    .map(|r| r.to_vec())
    .collect();
    assert!(!dominates(&p[1], &p[6]) && !dominates(&p[6], &p[1]));
    assert!(dominates(&p[1], &p[3]) && !dominates(&p[3], &p[4]));
    assert_eq!(
        non_dominated_sort(&p),
        vec![vec![0, 1, 2, 6], vec![3, 4], vec![5]]
    );
    // Front 0 by objective 0: A 1 | B 2, G 2 | C 3 (range 2): B (2-1)/2, G (3-2)/2.
    // By objective 1: C 1 | B 3, G 3 | A 5 (range 4): B (3-1)/4, G (5-3)/4.
    assert_eq!(
        crowding_distance(&p, &[0, 1, 2, 6]),
        vec![INF, 1.0, INF, 1.0]
    );
    assert_eq!(crowding_distance(&p, &[3, 4]), vec![INF, INF]);
    assert_eq!(crowding_distance(&p, &[5]), vec![INF]);
    assert!(crowding_distance(&p, &[]).is_empty());
    // A zero range adds nothing but still gives its ends infinity.
    let q: Vec<Vec<f64>> = [[0.0, 0.0], [0.0, 1.0], [0.0, 2.0], [0.0, 4.0]]
        .iter()
        .map(|r| r.to_vec())
        .collect();
    assert_eq!(
        crowding_distance(&q, &[0, 1, 2, 3]),
        vec![INF, 2.0 / 4.0, 3.0 / 4.0, INF]
    );
    // Whole fronts first; the overflowing front by distance, ties by the lower row.
    assert_eq!(nsga2_select(&p, 5), vec![0, 1, 2, 6, 3]);
    assert_eq!(nsga2_select(&p, 3), vec![0, 2, 1]);
    assert_eq!(nsga2_select(&p, 7).len(), 7);
    assert_eq!(nsga2_select(&p, 0), Vec::<usize>::new());
    // Accuracy up, cost down: the first front of (-accuracy, cost).
    let (acc, cost) = ([0.5, 0.7, 0.7, 0.6, 0.9], [1.0, 2.0, 2.0, 3.0, 3.0]);
    assert_eq!(accuracy_cost(&acc, &cost)[1], vec![-0.7, 2.0]);
    assert_eq!(
        pareto_front(&acc, &cost),
        vec![true, true, true, false, true]
    );
}

fn table(run: &Path, group: &str) -> Table {
    let log = supernet::record::read_run(&run.join("run.h5")).unwrap();
    log.table(group)
        .unwrap_or_else(|| panic!("no table /{group}"))
        .clone()
}

fn f64s(t: &Table, name: &str) -> Vec<f64> {
    match t.column(name) {
        Some(Column::F64(v)) => v.clone(),
        Some(Column::U64(v)) => v.iter().map(|&x| x as f64).collect(),
        other => panic!("{}: column {name}: {other:?}", t.group),
    }
}

fn archs(t: &Table) -> Vec<String> {
    match t.column("arch") {
        Some(Column::Text(v)) => v.clone(),
        other => panic!("{}: arch: {other:?}", t.group),
    }
}

fn column_names(t: &Table) -> String {
    let names: Vec<&str> = t.columns.iter().map(|(n, _)| n.as_str()).collect();
    names.join(",")
}

fn sorted_attrs(t: &Table) -> Vec<(String, String)> {
    let mut a = t.attrs.clone();
    a.sort();
    a
}

const FMNIST: ImageShape = ImageShape {
    channels: 1,
    hw: (28, 28),
    classes: 10,
};

#[test]
fn chain_evolve_is_deterministic_within_its_limits_scored_as_sample_and_plotted() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    ok(chain_run(&run, &[]).output().unwrap());
    let space = chain_space("mbv3_chain");
    let small = arch_cost(&space, &extreme_arch(&space, FMNIST, false), FMNIST).macs;
    let large = arch_cost(&space, &extreme_arch(&space, FMNIST, true), FMNIST).macs;
    let max_macs = (small + large) / 2;
    let evolve = |name: &str, seed: &str, extra: &[&str]| {
        ok(supernet()
            .args(["evolve", "--run"])
            .arg(&run)
            .args(["--population", "4", "--generations", "3", "--parents", "2"])
            .args(["--bn", "recalibrate:1", "--batches", "1", "--threads", "1"])
            .args(["--quiet", "--seed", seed, "--name", name])
            .args(["--max-macs", &max_macs.to_string()])
            .args(extra)
            .output()
            .unwrap())
    };
    for (a, b, flags) in [
        ("top-a", "top-b", &[][..]),
        ("nsga-a", "nsga-b", &["--pareto"][..]),
    ] {
        let out = evolve(a, "7", flags);
        evolve(b, "7", flags);
        let (ta, tb) = (
            table(&run, &format!("evolution/{a}")),
            table(&run, &format!("evolution/{b}")),
        );
        // Same seed, same table.
        assert_eq!(ta.columns, tb.columns, "{a} vs {b}");
        assert_eq!(sorted_attrs(&ta), sorted_attrs(&tb));
        assert_eq!(
            column_names(&ta),
            "arch,accuracy,loss,params,macs,generation,pareto"
        );
        let (acc, macs, generation, pareto) = (
            f64s(&ta, "accuracy"),
            f64s(&ta, "macs"),
            f64s(&ta, "generation"),
            f64s(&ta, "pareto"),
        );
        let texts = archs(&ta);
        assert_eq!(generation.iter().filter(|&&g| g == 0.0).count(), 4);
        assert!(generation.iter().all(|&g| g <= 2.0) && texts.len() > 4);
        let mut distinct = texts.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), texts.len(), "a candidate scored twice");
        for (i, text) in texts.iter().enumerate() {
            let arch = ChainArch::parse(text).unwrap();
            arch.validate(&space).unwrap();
            let cost = arch_cost(&space, &arch, FMNIST);
            assert!(cost.macs <= max_macs, "{text}: {} > {max_macs}", cost.macs);
            assert_eq!(macs[i], cost.macs as f64);
            let dominated = (0..texts.len()).any(|j| {
                acc[j] >= acc[i] && macs[j] <= macs[i] && (acc[j] > acc[i] || macs[j] < macs[i])
            });
            assert_eq!(pareto[i] == 1.0, !dominated, "{a} row {i}");
        }
        // The front, by increasing cost, is an attribute and printed.
        let mut front: Vec<usize> = (0..texts.len()).filter(|&i| pareto[i] == 1.0).collect();
        front.sort_by(|&x, &y| macs[x].total_cmp(&macs[y]));
        let listed: Vec<&str> = front.iter().map(|&i| texts[i].as_str()).collect();
        assert_eq!(ta.attr("pareto_front"), Some(listed.join(";").as_str()));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(listed.iter().all(|t| err.contains(t)), "{err}");
        let selection = if flags.is_empty() { "top-k" } else { "nsga2" };
        assert_eq!(ta.attr("selection"), Some(selection));
        // The best architecture: the most accurate row, printed and written.
        let best = std::fs::read_to_string(run.join(format!("evolution-{a}-best.txt"))).unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), best.trim());
        let top = acc.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        assert_eq!(
            acc[texts.iter().position(|t| t == best.trim()).unwrap()],
            top
        );
    }
    // Another seed, other candidates.
    evolve("top-c", "8", &[]);
    assert_ne!(
        archs(&table(&run, "evolution/top-c")),
        archs(&table(&run, "evolution/top-a"))
    );
    // With a latency table: a latency limit, a latency_ms column, the front against it.
    let lut = dir.path().join("lut.json");
    super::hardware::profile("supernets/mbv3_chain.toml".as_ref(), "1x28x28", "10", &lut);
    let table_ms = supernet::profile::LatencyTable::read(&lut).unwrap();
    let ms = |a: &ChainArch| table_ms.predict(&space, a);
    let max_ms =
        0.5 * (ms(&extreme_arch(&space, FMNIST, false)) + ms(&extreme_arch(&space, FMNIST, true)));
    let lut_arg = lut.display().to_string();
    let max_ms_arg = max_ms.to_string();
    evolve(
        "lat",
        "7",
        &[
            "--pareto",
            "--latency-table",
            &lut_arg,
            "--max-latency-ms",
            &max_ms_arg,
        ],
    );
    let t = table(&run, "evolution/lat");
    assert_eq!(t.attr("pareto_cost"), Some("latency_ms"));
    assert_eq!(
        column_names(&t),
        "arch,accuracy,loss,params,macs,latency_ms,generation,pareto"
    );
    let (acc, lat, pareto) = (
        f64s(&t, "accuracy"),
        f64s(&t, "latency_ms"),
        f64s(&t, "pareto"),
    );
    for (i, text) in archs(&t).iter().enumerate() {
        let predicted = ms(&ChainArch::parse(text).unwrap());
        assert!(
            (lat[i] - predicted).abs() < 1e-9 && lat[i] <= max_ms,
            "{text}"
        );
    }
    assert_eq!(
        pareto.iter().map(|&p| p == 1.0).collect::<Vec<_>>(),
        pareto_front(&acc, &lat)
    );

    // Random search: N uniform candidates, one generation.
    evolve("rand", "7", &["--random", "5"]);
    let t = table(&run, "evolution/rand");
    assert_eq!(f64s(&t, "generation"), vec![0.0; 5]);
    assert_eq!(t.attr("mode"), Some("random"));

    // Scores are the sample scorer's: the last candidate scored again on its own, after no
    // other, gives the same accuracy and loss (the BN statistics restored in between).
    let t = table(&run, "evolution/nsga-a");
    let last = archs(&t).len() - 1;
    let trained = supernet::search::load_trained_chain(&run).unwrap();
    let scorer = supernet::sample::chain_score::ChainScorer::new(
        &trained,
        &Default::default(),
        supernet::sample::BnMode::Recalibrate(1),
        Some(1),
    )
    .unwrap();
    let alone = scorer
        .score(ChainArch::parse(&archs(&t)[last]).unwrap())
        .unwrap();
    assert_eq!(alone.accuracy, f64s(&t, "accuracy")[last]);
    let loss = f64s(&t, "loss")[last];
    assert!(
        (alone.loss - loss).abs() <= 1e-6 * loss,
        "{} vs {loss}",
        alone.loss
    );

    // Refused: a latency limit without a table, --pareto with --random.
    let refused = |extra: &[&str]| {
        supernet()
            .args(["evolve", "--run"])
            .arg(&run)
            .args(["--quiet", "--batches", "1"])
            .args(extra)
            .output()
            .unwrap()
    };
    fails_with(
        refused(&["--max-latency-ms", "1"]),
        &["--max-latency-ms", "--latency-table"],
    );
    fails_with(
        refused(&["--pareto", "--random", "3"]),
        &["--pareto", "--random"],
    );
    fails_with(refused(&["--score", "synflow"]), &["--score", "chain"]);

    // The Pareto charts: one per sample and evolution table.
    ok(supernet()
        .args(["sample", "--run"])
        .arg(&run)
        .args([
            "--n",
            "3",
            "--bn",
            "recalibrate:1",
            "--batches",
            "1",
            "--quiet",
        ])
        .args(["--threads", "1", "--name", "s"])
        .output()
        .unwrap());
    let plots = dir.path().join("plots");
    let out = ok(supernet()
        .args(["plot", "--run"])
        .arg(&run)
        .arg("--out")
        .arg(&plots)
        .output()
        .unwrap());
    for stem in [
        "pareto-samples-s",
        "pareto-evolution-top-a",
        "pareto-evolution-nsga-a",
        "pareto-evolution-rand",
        "pareto-evolution-lat",
    ] {
        let png = std::fs::read(plots.join(format!("{stem}.png")))
            .unwrap_or_else(|e| panic!("{stem}: {e}; {}", String::from_utf8_lossy(&out.stdout)));
        assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "{stem}");
    }
}

#[test]
fn chain_derive_takes_the_argmax_of_the_last_alphas_and_reports_its_costs() {
    // Pure: per layer the largest allowed alpha, the lower column on a tie.
    let space = super::hardware::tiny();
    let columns = space.choices();
    let col = |name: &str| columns.iter().position(|c| c.name() == name).unwrap();
    let mut alphas = vec![0f32; 2 * columns.len()];
    alphas[col("skip")] = 9.0; // layer 0 may not be skipped
    alphas[col("mbconv_k5_e2")] = 1.0;
    alphas[columns.len() + col("mbconv_k3_e2")] = 2.0;
    alphas[columns.len() + col("mbconv_k5_e2")] = 2.0;
    let arch = supernet::derive::derive_chain(&space, &alphas).unwrap();
    let lower = if col("mbconv_k3_e2") < col("mbconv_k5_e2") {
        "mbconv_k3_e2"
    } else {
        "mbconv_k5_e2"
    };
    assert_eq!(arch.to_text(), format!("mbconv_k5_e2,{lower}"));
    let e = supernet::derive::derive_chain(&space, &alphas[1..])
        .unwrap_err()
        .to_string();
    assert!(e.contains("alphas") && e.contains("tiny_chain"), "{e}");

    // A penalised chain run: `derive` gives the search's own architecture and its costs.
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let lut = dir.path().join("lut.json");
    super::hardware::profile("supernets/mbv3_chain.toml".as_ref(), "1x28x28", "10", &lut);
    let lut_arg = lut.display().to_string();
    ok(
        chain_run(&run, &["--device", "cpu", "--macs-target", "1e6"])
            .args(["--latency-table", &lut_arg, "--latency-target", "1e-3"])
            .output()
            .unwrap(),
    );
    let out = ok(supernet()
        .args(["derive", "--run"])
        .arg(&run)
        .output()
        .unwrap());
    let searched = std::fs::read_to_string(run.join("genotype.txt")).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.trim(), searched.trim());
    let written = std::fs::read_to_string(run.join("genotype-argmax.txt")).unwrap();
    assert_eq!(written, searched);
    let json = std::fs::read_to_string(run.join("genotype-argmax.json")).unwrap();
    assert_eq!(
        json,
        std::fs::read_to_string(run.join("genotype.json")).unwrap()
    );
    let arch = ChainArch::parse(searched.trim()).unwrap();
    let cost = arch_cost(&chain_space("mbv3_chain"), &arch, FMNIST);
    let err = String::from_utf8_lossy(&out.stderr);
    let ms = supernet::profile::LatencyTable::read(&lut)
        .unwrap()
        .predict(&chain_space("mbv3_chain"), &arch);
    assert!(
        err.contains(&format!("latency_ms {ms} (target 0.001: over by")),
        "{err}"
    );
    assert!(
        err.contains(&format!("macs {} (target 1000000", cost.macs))
            && err.contains(&format!("params {}", cost.params)),
        "{err}"
    );
    // Cell-space rules and flags are refused, naming both.
    let derive = |extra: &[&str]| {
        supernet()
            .args(["derive", "--run"])
            .arg(&run)
            .args(extra)
            .output()
            .unwrap()
    };
    fails_with(
        derive(&["--rule", "perturbation"]),
        &["perturbation", "chain run", "argmax"],
    );
    fails_with(derive(&["--rule", "top2"]), &["top2", "chain run"]);
    fails_with(derive(&["--max-skip", "2"]), &["--max-skip", "chain run"]);
    ok(derive(&["--rule", "argmax"]));
}
