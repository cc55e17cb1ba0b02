//! Sub-networks of a trained supernet: inherited-weight scores against the stand-alone
//! sub-network, determinism of sampling and evolution, rank measures, the SPOS and GDAS
//! strategies (short searches, exact resume).
use super::search::{
    checkpoint_bits, fails_with, ok, search_killed_and_resumed, supernet, tiny_search,
};
use std::path::Path;
use supernet::evaluate::evaluate;
use supernet::record::{read_run, Column};
use supernet::rng::PURPOSE_SPOS;
use supernet::run::RunDir;
use supernet::sample::rank::{
    kendall_tau_b, placement, sparse_kendall_tau, spearman_rho, top_k_kendall_tau, top_k_overlap,
    Fidelity, Placement,
};
use supernet::sample::{
    draw_distinct, evolve, sample, uniform_genotype, BnMode, EvolveConfig, SampleConfig,
    SampleFrom, Sampler, Scorer,
};
use supernet::search::{Batch, SearchConfig, SearchState, Spos, Strategy};
use supernet::space::SearchSpace;
use supernet::supernet::{ArchWeights, Supernet};
use tch::{nn, Device, Kind, Tensor};

/// A tiny supernet trained for one short SPOS epoch (8 steps).
fn trained_run(dir: &Path) {
    ok(tiny_search(dir, 1, &["--strategy", "spos"])
        .output()
        .unwrap());
}

fn tiny() -> SearchSpace {
    SearchSpace::from_file("supernets/tiny.toml".as_ref()).unwrap()
}

#[test]
fn inherited_score_equals_the_standalone_subnetwork_and_leaves_the_supernet_alone() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    trained_run(&run);
    for bn in [BnMode::Running, BnMode::Batch] {
        let scorer = Scorer::open(&run, bn, None).unwrap();
        let (genotypes, _) = draw_distinct(&Sampler::Uniform, &scorer.space, 3, 7);
        assert_eq!(genotypes.len(), 3);
        for g in &genotypes {
            let s = scorer.score(g).unwrap();
            // The sub-network on its own, weights copied by name from the supernet.
            let mut sub_vs = nn::VarStore::new(Device::Cpu);
            let sub = Supernet::subnet(&sub_vs.root(), &scorer.space, scorer.input, g).unwrap();
            sub_vs.copy(&scorer.st.vs).unwrap();
            let one_hot = ArchWeights::from_genotype(g, &scorer.space, Device::Cpu).unwrap();
            let alone = evaluate(
                &sub,
                &one_hot,
                &scorer.val,
                Device::Cpu,
                bn == BnMode::Batch,
            );
            assert_eq!(alone.samples, 256);
            assert_eq!(s.accuracy, alone.accuracy, "{bn:?} {}", s.text);
            assert_eq!(s.loss, alone.loss, "{bn:?} {}", s.text);
            let trainable: i64 = sub_vs
                .trainable_variables()
                .iter()
                .map(|t| t.numel() as i64)
                .sum();
            assert_eq!(s.parameters, trainable as u64);
            assert_eq!(s.macs, sub.macs_per_image());
        }
    }

    // Recalibration: BN statistics are re-estimated per sub-network and restored, so a
    // score does not depend on what was scored before, and the supernet is unchanged.
    let scorer = Scorer::open(&run, BnMode::Recalibrate(3), None).unwrap();
    let before: Vec<Tensor> = scorer.st.save_bn_stats();
    let (g, _) = draw_distinct(&Sampler::Uniform, &scorer.space, 2, 3);
    let first = scorer.score(&g[0]).unwrap();
    let other = scorer.score(&g[1]).unwrap();
    let again = scorer.score(&g[0]).unwrap();
    assert_eq!(first, again);
    assert_ne!(first.text, other.text);
    for (a, b) in before.iter().zip(scorer.st.save_bn_stats()) {
        assert!(a.equal(&b), "BN statistics of the supernet changed");
    }
    // Recalibrated statistics differ from the supernet's running ones.
    let running = Scorer::open(&run, BnMode::Running, None).unwrap();
    assert_ne!(running.score(&g[0]).unwrap().loss, first.loss);
}

#[test]
fn same_seed_gives_the_same_samples_and_evolution() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    trained_run(&run);
    let attached = RunDir::attach(&run).unwrap();
    let scorer = Scorer::open(&run, BnMode::Running, Some(2)).unwrap();
    let cfg = |name: &str, seed: u64, from: SampleFrom| SampleConfig {
        n: 6,
        from,
        seed,
        name: Some(name.into()),
        with_derived: false,
    };
    let a = sample(
        &attached,
        &scorer,
        &cfg("a", 1, SampleFrom::Uniform),
        |_, _| {},
    )
    .unwrap();
    let b = sample(
        &attached,
        &scorer,
        &cfg("b", 1, SampleFrom::Uniform),
        |_, _| {},
    )
    .unwrap();
    let c = sample(
        &attached,
        &scorer,
        &cfg("c", 2, SampleFrom::Uniform),
        |_, _| {},
    )
    .unwrap();
    let d = sample(
        &attached,
        &scorer,
        &cfg("d", 1, SampleFrom::Alphas),
        |_, _| {},
    )
    .unwrap();
    assert_eq!(a.scores, b.scores);
    assert_ne!(a.scores, c.scores);
    assert_eq!(d.scores.len(), 6);
    // Every drawn genotype follows the space's rule and is distinct.
    let texts: std::collections::HashSet<_> = a.scores.iter().map(|s| &s.text).collect();
    assert_eq!(texts.len(), 6);
    for s in &a.scores {
        s.genotype.validate(&scorer.space).unwrap();
    }
    // The table is in the run file (the search's records still readable) and in a CSV.
    let log = read_run(&run.join("run.h5")).unwrap();
    assert_eq!(log.steps.len(), 8);
    let t = log.table("samples/a").unwrap();
    let Some(Column::F64(acc)) = t.column("accuracy") else {
        panic!("no accuracy column")
    };
    assert_eq!(
        acc,
        &a.scores.iter().map(|s| s.accuracy).collect::<Vec<_>>()
    );
    assert_eq!(t.attr("from"), Some("uniform"));
    let csv = std::fs::read_to_string(run.join("samples-a.csv")).unwrap();
    assert_eq!(csv.lines().count(), 7);
    assert!(csv.starts_with("architecture,accuracy,loss,parameters,macs\n"));

    let ecfg = |name: &str| EvolveConfig {
        population: 4,
        generations: 3,
        parents: 2,
        mutation_prob: 0.3,
        seed: 9,
        name: Some(name.into()),
        ..Default::default()
    };
    let e1 = evolve(&attached, &scorer, &ecfg("e1"), |_, _| {}).unwrap();
    let e2 = evolve(&attached, &scorer, &ecfg("e2"), |_, _| {}).unwrap();
    assert_eq!(e1.history, e2.history);
    assert_eq!(e1.best, e2.best);
    assert_eq!(e1.history.len(), 12);
    assert!(e1
        .history
        .iter()
        .all(|(_, s)| s.accuracy <= e1.best.accuracy));
    assert_eq!(
        std::fs::read_to_string(run.join("evolution-e1-best.txt")).unwrap(),
        format!("{}\n", e1.best.text)
    );
    // Constraints: nothing above the bound is scored.
    let bound = e1.history.iter().map(|(_, s)| s.parameters).min().unwrap();
    let limited = EvolveConfig {
        max_params: Some(bound),
        random: Some(5),
        ..ecfg("limited")
    };
    let r = evolve(&attached, &scorer, &limited, |_, _| {}).unwrap();
    assert!(r.history.iter().all(|(_, s)| s.parameters <= bound));
    let impossible = EvolveConfig {
        max_params: Some(1),
        ..ecfg("none")
    };
    let e = evolve(&attached, &scorer, &impossible, |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("--max-params"), "{e}");
}

#[test]
fn rank_measures_on_known_vectors() {
    let x = [1.0, 2.0, 3.0, 4.0, 5.0];
    let y = [5.0, 6.0, 7.0, 8.0, 7.0];
    // scipy.stats.kendalltau / spearmanr give 0.7378647873726218 and 0.8207826816681233.
    assert!((kendall_tau_b(&x, &y).unwrap() - 0.737_864_787_372_621_8).abs() < 1e-12);
    assert!((spearman_rho(&x, &y).unwrap() - 0.820_782_681_668_123_3).abs() < 1e-12);
    let rev: Vec<f64> = x.iter().rev().copied().collect();
    assert_eq!(kendall_tau_b(&x, &rev), Some(-1.0));
    assert!((spearman_rho(&x, &rev).unwrap() + 1.0).abs() < 1e-12);
    assert_eq!(kendall_tau_b(&x, &x), Some(1.0));
    // Undefined: constant input, one item, NaN, different lengths.
    assert_eq!(kendall_tau_b(&x, &[1.0; 5]), None);
    assert_eq!(spearman_rho(&[1.0], &[2.0]), None);
    assert_eq!(spearman_rho(&x, &[1.0, 2.0, f64::NAN, 4.0, 5.0]), None);
    assert_eq!(kendall_tau_b(&x, &[1.0]), None);
    let a = [0.1, 0.9, 0.5, 0.7];
    let b = [0.2, 0.8, 0.9, 0.1];
    assert_eq!(top_k_overlap(&a, &b, 2), Some(0.5));
    assert_eq!(top_k_overlap(&a, &b, 4), Some(1.0));
    assert_eq!(top_k_overlap(&a, &a, 1), Some(1.0));
    assert_eq!(top_k_overlap(&a, &b, 0), None);
    assert_eq!(top_k_overlap(&a, &b, 5), None);
    // Sparse and top-k Kendall tau, against a plain tau-b in Python on the rounded vectors
    // and on the top rows by the ground truth y (rows 4, 3, 2, then 0).
    let x = [0.1231, 0.1234, 0.5, 0.7, 0.69, 0.3];
    let y = [0.2, 0.1, 0.6, 0.65, 0.66, 0.15];
    assert!((kendall_tau_b(&x, &y).unwrap() - 0.6).abs() < 1e-12);
    // 0.1231 and 0.1234 both round to 12.3%: a tie.
    let sparse = sparse_kendall_tau(&x, &y).unwrap();
    assert!((sparse - 0.690_065_559_342_354_3).abs() < 1e-12, "{sparse}");
    assert!((top_k_kendall_tau(&x, &y, 3).unwrap() - 1.0 / 3.0).abs() < 1e-12);
    assert!((top_k_kendall_tau(&x, &y, 4).unwrap() - 2.0 / 3.0).abs() < 1e-12);
    assert_eq!(top_k_kendall_tau(&x, &y, 6), kendall_tau_b(&x, &y));
    assert_eq!(top_k_kendall_tau(&x, &y, 1), None);
    assert_eq!(top_k_kendall_tau(&x, &y, 7), None);
    assert_eq!(top_k_kendall_tau(&x, &y[..5], 3), None);
    // Fidelity: all of them; a proxy's scores are not rounded, only the accuracies (here
    // y has no ties at 0.1%, so the proxy's sparse tau is the plain tau).
    let f = Fidelity::new(&x, &y, 3, true);
    assert_eq!(f.sparse_kendall_tau, Some(sparse));
    assert_eq!(f.top_kendall_tau, top_k_kendall_tau(&x, &y, 3));
    assert_eq!(f.top_overlap, top_k_overlap(&x, &y, 3));
    let p = Fidelity::new(&x, &y, 3, false);
    assert_eq!(p.sparse_kendall_tau, kendall_tau_b(&x, &y));
    assert_eq!(p.named()[1], ("sparse_kendall_tau", kendall_tau_b(&x, &y)));
    // An undefined proxy value ranks last: here where the lowest accuracy is, so the tau
    // is that of the scores with it as the smallest.
    let mut nan = x;
    nan[1] = f64::NAN;
    let mut lowest = x;
    lowest[1] = -1.0;
    assert_eq!(
        Fidelity::new(&nan, &y, 3, false),
        Fidelity::new(&lowest, &y, 3, false)
    );
    assert_eq!(Fidelity::new(&nan, &y, 3, true).kendall_tau, None);
    // Placement: higher accuracy first, equal accuracy by lower loss, equal in both a tie.
    let acc = [0.5, 0.7, 0.5, 0.5, 0.2];
    let loss = [1.0, 2.0, 0.9, 1.0, 0.1];
    let at = |i| placement(&acc, &loss, i).unwrap();
    let p = |rank, better, worse| Placement {
        rank,
        n: 5,
        better,
        worse,
    };
    assert_eq!(at(1), p(1, 0, 4));
    assert_eq!(at(2), p(2, 1, 3));
    assert_eq!(at(0), p(3, 2, 1)); // tied with row 3
    assert_eq!(at(3), p(3, 2, 1));
    assert_eq!(at(4), p(5, 4, 0));
    assert_eq!(placement(&acc, &loss, 5), None);
    assert_eq!(placement(&acc, &loss[..4], 0), None);
    assert_eq!(supernet::numeric::median(&[3.0, 1.0, 2.0]), Some(2.0));
    assert_eq!(supernet::numeric::median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
    assert_eq!(supernet::numeric::median(&[]), None);
}

#[test]
fn spos_step_updates_only_the_sampled_path() {
    let space = tiny();
    let input = supernet::supernet::InputShape::parse("1x28x28", 10).unwrap();
    let cfg = SearchConfig {
        weight_decay: 0.1,
        ..Default::default()
    };
    let mut st = SearchState::new(&space, input, &cfg, Device::Cpu).unwrap();
    st.lr = 0.1;
    let batch = || Batch {
        images: Tensor::randn([4, 1, 28, 28], (Kind::Float, Device::Cpu)),
        labels: Tensor::from_slice(&[0i64, 1, 2, 3]),
    };
    let g = uniform_genotype(&space, &mut st.step_rng(PURPOSE_SPOS));
    let path = ArchWeights::from_genotype(&g, &space, Device::Cpu).unwrap();
    let active = st.active_weights(&path);
    assert!(active.iter().any(|a| *a) && active.iter().any(|a| !*a));
    let before: Vec<Tensor> = st.weights.iter().map(|w| w.detach().copy()).collect();
    let alphas = st.arch.raw(supernet::space::CellType::Normal);
    Spos.step(&mut st, &batch(), &batch()).unwrap();
    for ((name, (w, b)), a) in st
        .weight_names
        .iter()
        .zip(st.weights.iter().zip(&before))
        .zip(&active)
    {
        // Weight decay moves every updated weight; the others stay bit for bit.
        assert_eq!(!w.equal(b), *a, "{name}");
    }
    assert_eq!(st.arch.raw(supernet::space::CellType::Normal), alphas);
}

#[test]
fn spos_and_gdas_searches_resume_exactly_after_sigkill() {
    for strategy in ["spos", "gdas"] {
        let dir = tempfile::tempdir().unwrap();
        let (a, c) = (dir.path().join("a"), dir.path().join("c"));
        let args = ["--strategy", strategy, "--checkpoint-every", "3"];
        ok(tiny_search(&a, 2, &args).output().unwrap());
        search_killed_and_resumed(tiny_search(&c, 2, &args), &c);
        assert_eq!(
            checkpoint_bits(&a),
            checkpoint_bits(&c),
            "{strategy}: resumed run differs from the uninterrupted one"
        );
        let (la, lc) = (
            read_run(&a.join("run.h5")).unwrap(),
            read_run(&c.join("run.h5")).unwrap(),
        );
        assert_eq!(lc.steps.len(), 16);
        assert_eq!(
            la.steps
                .iter()
                .map(|s| s.val_loss.to_bits())
                .collect::<Vec<_>>(),
            lc.steps
                .iter()
                .map(|s| s.val_loss.to_bits())
                .collect::<Vec<_>>()
        );
        assert!(la.steps.iter().all(|s| s.train_loss.is_finite()));
        let (first, last) = (la.alphas.first().unwrap(), la.alphas.last().unwrap());
        match strategy {
            "spos" => assert_eq!(first.normal, last.normal, "SPOS must not move the alphas"),
            _ => assert_ne!(first.normal, last.normal, "GDAS must move the alphas"),
        }
    }
}

#[test]
fn bad_sampling_input_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    fails_with(
        supernet()
            .args(["sample", "--n", "2", "--run"])
            .arg(dir.path())
            .output()
            .unwrap(),
        &["config.toml"],
    );
    let run = dir.path().join("run");
    trained_run(&run);
    for (args, needles) in [
        (
            vec!["sample", "--n", "2", "--bn", "recalibrate:x"],
            vec!["--bn", "recalibrate:x"],
        ),
        (
            vec!["sample", "--n", "2", "--from", "prior"],
            vec!["--from", "prior"],
        ),
        (vec!["sample", "--n", "0"], vec!["--n"]),
        (
            vec!["sample", "--n", "2", "--name", "a/b"],
            vec!["--name", "a/b"],
        ),
        (vec!["evolve", "--parents", "60"], vec!["--parents", "60"]),
        (
            vec!["evolve", "--mutation-prob", "2"],
            vec!["--mutation-prob"],
        ),
        (vec!["derive", "--rule", "top3"], vec!["--rule", "top3"]),
        // Chain-only flags name themselves and the run's kind.
        (
            vec!["evolve", "--pareto"],
            vec!["--pareto", "chain runs", "cell run"],
        ),
        (
            vec!["evolve", "--max-latency-ms", "1"],
            vec!["--max-latency-ms", "cell run"],
        ),
        (
            vec!["search", "--strategy", "reinforce"],
            vec!["strategy", "spos", "gdas", "enas"],
        ),
    ] {
        let mut c = supernet();
        c.args(&args).arg("--run").arg(&run);
        if args[0] == "search" {
            c = tiny_search(&dir.path().join("x"), 1, &args[1..]);
        }
        fails_with(c.output().unwrap(), &needles);
    }
    // The derive rules each give a genotype file.
    for rule in ["top2", "argmax", "sample-top:2"] {
        ok(supernet()
            .args([
                "derive",
                "--quiet",
                "--batches",
                "1",
                "--rule",
                rule,
                "--run",
            ])
            .arg(&run)
            .output()
            .unwrap());
    }
    // Without --rule a cell run derives by top2.
    let out = ok(supernet()
        .args(["derive", "--run"])
        .arg(&run)
        .output()
        .unwrap());
    let top2 = std::fs::read_to_string(run.join("genotype-top2.txt")).unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), top2.trim());
    assert!(run.join("genotype-sample-top2.json").is_file());
    let log = read_run(&run.join("run.h5")).unwrap();
    assert!(log.table("samples/derive-sample-top2-seed0").is_some());
}

#[test]
fn gdas_sample_is_one_op_per_edge_with_a_straight_through_gradient() {
    let space = tiny();
    let cfg = SearchConfig {
        epochs: 5,
        ..Default::default()
    };
    // Temperature: linear from tau_max (first epoch) to tau_min (last epoch).
    assert_eq!(cfg.tau(0), 10.0);
    assert!((cfg.tau(2) - 5.05).abs() < 1e-12);
    assert!((cfg.tau(4) - 0.1).abs() < 1e-12);
    let arch = supernet::arch::ArchParams::new(&space, Device::Cpu);
    let key = |step: u64| supernet::rng::Rng::from_key(&[1, 2, step]);
    let w = arch.gumbel_hard(1.0, &mut key(0), false);
    let rows = w.normal.weights.detach();
    let ones = rows.eq(1.0).sum_dim_intlist(-1, false, Kind::Int64);
    let zeros = rows.eq(0.0).sum_dim_intlist(-1, false, Kind::Int64);
    let n_ops = space.ops.len() as i64;
    assert!(ones.eq(1).all().int64_value(&[]) == 1, "{rows}");
    assert!(zeros.eq(n_ops - 1).all().int64_value(&[]) == 1, "{rows}");
    // Only the sampled op of each edge is active.
    for e in 0..space.cell.num_edges() {
        assert_eq!(w.normal.active_ops(e, space.ops.len()).count(), 1);
    }
    // The same key gives the same sample; the gradient reaches the alphas.
    let again = arch.gumbel_hard(1.0, &mut key(0), true);
    assert!(again.normal.weights.equal(&rows));
    let probe = Tensor::randn(rows.size(), (Kind::Float, Device::Cpu));
    (&w.normal.weights * probe).sum(Kind::Float).backward();
    let g = arch.get(supernet::space::CellType::Normal).unwrap().grad();
    assert!(g.abs().sum(Kind::Float).double_value(&[]) > 0.0);
}

#[test]
fn gdas_left_out_ops_get_the_output_gradient_sum_and_leave_the_forward_alone() {
    use supernet::supernet::{InputShape, MixWeights};
    let space = tiny();
    let input = InputShape::parse("1x28x28", 10).unwrap();
    tch::manual_seed(3);
    let vs = nn::VarStore::new(Device::Cpu);
    let net = Supernet::new(&vs.root(), &space, input).unwrap();
    let xs = Tensor::randn([4, 1, 28, 28], (Kind::Float, Device::Cpu));
    let (edges, ops) = (space.cell.num_edges() as i64, space.ops.len() as i64);
    // One op per edge (the last, sep_conv_3x3, so no edge's output is all `none`).
    let hard = || {
        Tensor::zeros([edges, ops], (Kind::Float, Device::Cpu))
            .index_fill(1, &Tensor::from_slice(&[ops - 1]), 1.0)
            .set_requires_grad(true)
    };
    let run = |make: fn(Tensor) -> MixWeights| {
        let (n, r) = (hard(), hard());
        let w = ArchWeights {
            normal: make(n.shallow_clone()),
            reduce: Some(make(r.shallow_clone())),
        };
        let loss = net.forward_t(&xs, &w, true).square().mean(Kind::Float);
        loss.backward();
        (loss.double_value(&[]), n.grad())
    };
    let (plain_loss, plain) = run(MixWeights::sparse);
    let (st_loss, st) = run(MixWeights::straight_through);
    assert_eq!(
        plain_loss, st_loss,
        "the zero-valued terms changed the forward"
    );
    let left_out = |g: &Tensor| g.narrow(1, 0, ops - 1);
    // Before: left-out ops got no gradient. Now each gets the sum of its edge's output
    // gradient: one value per edge, shared by the edge's left-out ops, not all zero.
    assert_eq!(
        left_out(&plain).abs().sum(Kind::Float).double_value(&[]),
        0.0
    );
    let g = left_out(&st);
    let first = g.narrow(1, 0, 1);
    assert!(
        g.eq_tensor(&first.expand_as(&g)).all().int64_value(&[]) == 1,
        "{g}"
    );
    assert!(g.abs().sum(Kind::Float).double_value(&[]) > 0.0);
    // The chosen op's gradient is the same either way.
    assert!(st
        .narrow(1, ops - 1, 1)
        .allclose(&plain.narrow(1, ops - 1, 1), 1e-6, 1e-9, false));
}
