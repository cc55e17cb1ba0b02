//! Collapse remedies (beta-DARTS, SDARTS-RS, DARTS-): each against its formula on a tiny
//! case, exact resume after SIGKILL with each on, refusal of bad combinations, and configs
//! written before the remedies existed.
use super::search::{
    checkpoint_bits, fails_with, final_alphas, ok, search_killed_and_resumed, supernet, tiny_search,
};
use supernet::arch::{sdarts_clip, ArchParams, AuxSkip};
use supernet::derive::{cap_skips, derive_cell};
use supernet::numeric::softmax;
use supernet::record::read_run;
use supernet::rng::{Rng, PURPOSE_SDARTS};
use supernet::search::remedies::{
    beta_decay_loss, collapse_warning, parameter_free, skip_column, Remedies,
};
use supernet::search::{Batch, SearchConfig, SearchState};
use supernet::space::{CellType, OpKind, SearchSpace};
use supernet::supernet::InputShape;
use tch::{Device, Kind, Tensor};

fn tiny() -> SearchSpace {
    SearchSpace::from_file("supernets/tiny.toml".as_ref()).unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * (1.0 + b.abs())
}

fn host(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.detach().flatten(0, -1)).unwrap()
}

/// Set the alphas of `arch` to `values` (row-major, normal cell first).
fn set_alphas(arch: &ArchParams, values: impl Fn(usize) -> f32) {
    let mut i = 0;
    tch::no_grad(|| {
        for (_, a) in &arch.alphas {
            let v: Vec<f32> = (0..a.numel())
                .map(|_| {
                    i += 1;
                    values(i)
                })
                .collect();
            a.shallow_clone()
                .copy_(&Tensor::from_slice(&v).view_(a.size()));
        }
    });
}

#[test]
fn beta_decay_regulariser_value_gradient_and_schedule() {
    // Normal edges: [0, ln 3] -> ln 4; [1, 1] -> 1 + ln 2 (mean); reduce: [0, 0, 0, 0] -> ln 4.
    let a = Tensor::from_slice(&[0.0f32, 3f32.ln(), 1.0, 1.0])
        .view([2, 2])
        .set_requires_grad(true);
    let b = Tensor::zeros([1, 4], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let loss = beta_decay_loss(&[a.shallow_clone(), b.shallow_clone()]);
    let want = (4f64.ln() + 1.0 + 2f64.ln()) / 2.0 + 4f64.ln();
    assert!(close(loss.double_value(&[]), want), "{loss} vs {want}");
    loss.backward();
    // d/dalpha = softmax(alpha_edge) / edges of its cell type.
    let ga = host(&a.grad());
    let gb = host(&b.grad());
    for (g, w) in ga.iter().zip([0.25, 0.75, 0.5, 0.5]) {
        assert!(close(*g as f64, w / 2.0), "{ga:?}");
    }
    assert!(gb.iter().all(|g| close(*g as f64, 0.25)), "{gb:?}");

    let r = Remedies {
        beta_decay: 25.0,
        ..Default::default()
    };
    // The beta-DARTS code: 50 * epoch / 100 over 50 epochs.
    for e in [0, 1, 17, 49] {
        assert!(close(
            r.beta_decay_lambda(e, 50).unwrap(),
            50.0 * e as f64 / 100.0
        ));
    }
    let r = Remedies {
        beta_decay_min: 5.0,
        ..r
    };
    assert!(close(r.beta_decay_lambda(10, 50).unwrap(), 9.0));
    assert_eq!(Remedies::default().beta_decay_lambda(3, 50), None);

    // In a search state: the alpha gradients get lambda(epoch) * softmax / edges.
    let cfg = SearchConfig {
        remedies: r.clone(),
        epochs: 50,
        ..Default::default()
    };
    let space = tiny();
    let input = InputShape::parse("1x28x28", 10).unwrap();
    let mut st = SearchState::new(&space, input, &cfg, Device::Cpu).unwrap();
    st.epoch = 10;
    set_alphas(&st.arch, |i| (i % 7) as f32 * 0.3 - 1.0);
    st.zero_arch_grad();
    st.add_beta_decay_grad();
    let edges = space.cell.num_edges() as f64;
    let n_ops = space.ops.len();
    for t in [CellType::Normal, CellType::Reduce] {
        let raw = st.arch.raw(t).unwrap();
        let grad = host(&st.arch.get(t).unwrap().grad());
        for (row, g) in raw.chunks(n_ops).zip(grad.chunks(n_ops)) {
            for (p, g) in softmax(row).iter().zip(g) {
                assert!(close(*g as f64, 9.0 * *p as f64 / edges), "{t:?}");
            }
        }
    }
}

#[test]
fn sdarts_noise_is_the_clipped_renormalised_softmax_plus_uniform_noise() {
    assert_eq!(
        sdarts_clip(&[0.5, 1.5, -0.2]),
        vec![0.5 / 1.5, 1.0 / 1.5, 0.0]
    );
    // Every weight clipped to 0: the strongest keeps the edge.
    assert_eq!(sdarts_clip(&[-0.3, -0.1, -0.2]), vec![0.0, 1.0, 0.0]);

    let space = tiny();
    let arch = ArchParams::new(&space, Device::Cpu);
    set_alphas(&arch, |i| (i % 5) as f32 * 0.7 - 1.2);
    let eps = 0.3;
    let w = arch.perturbed_detached(eps, &mut Rng::from_key(&[7, PURPOSE_SDARTS, 3]));
    let mut rng = Rng::from_key(&[7, PURPOSE_SDARTS, 3]);
    let n_ops = space.ops.len();
    for (t, mix) in [
        (CellType::Normal, &w.normal),
        (CellType::Reduce, w.reduce.as_ref().unwrap()),
    ] {
        assert!(!mix.weights.requires_grad());
        let got = host(&mix.weights);
        let raw = arch.raw(t).unwrap();
        for (row, got) in raw.chunks(n_ops).zip(got.chunks(n_ops)) {
            let noisy: Vec<f32> = softmax(row)
                .iter()
                .map(|p| p + (eps * (2.0 * rng.unit() - 1.0)) as f32)
                .collect();
            let clipped: Vec<f32> = noisy.iter().map(|v| v.clamp(0.0, 1.0)).collect();
            let sum: f32 = clipped.iter().sum();
            for (g, c) in got.iter().zip(&clipped) {
                assert!(close(*g as f64, (c / sum) as f64), "{t:?} {got:?}");
            }
            assert!(close(got.iter().sum::<f32>() as f64, 1.0));
            // The noise moved the weights, within its bound before renormalising.
            assert_ne!(got.to_vec(), softmax(row));
        }
    }

    let r = Remedies {
        sdarts_epsilon: 0.3,
        ..Default::default()
    };
    // SDARTS: 0.03 + (epsilon_alpha - 0.03) * epoch / epochs.
    assert!(close(r.sdarts_epsilon(0, 50).unwrap(), 0.03));
    assert!(close(r.sdarts_epsilon(25, 50).unwrap(), 0.165));
    assert_eq!(Remedies::default().sdarts_epsilon(0, 50), None);

    // A weight step under SDARTS-RS is the plain weight step under those weights.
    let cfg = SearchConfig {
        remedies: r,
        epochs: 4,
        ..Default::default()
    };
    let input = InputShape::parse("1x28x28", 10).unwrap();
    let mut a = SearchState::new(&space, input, &cfg, Device::Cpu).unwrap();
    let mut b = SearchState::new(&space, input, &cfg, Device::Cpu).unwrap();
    // Other tests seed libtorch's global generator concurrently: make b a copy of a.
    tch::no_grad(|| {
        for (x, y) in a.weights.iter().zip(&b.weights) {
            y.shallow_clone().copy_(x);
        }
        for (x, y) in a.arch.tensors().iter().zip(b.arch.tensors()) {
            y.shallow_clone().copy_(x);
        }
    });
    for st in [&mut a, &mut b] {
        (st.epoch, st.global_step, st.lr) = (2, 21, 0.1);
    }
    let images = Tensor::randn([4, 1, 28, 28], (Kind::Float, Device::Cpu));
    let batch = || Batch {
        images: images.shallow_clone(),
        labels: Tensor::from_slice(&[0i64, 1, 2, 3]),
    };
    a.weight_step(&batch()).unwrap();
    let eps = cfg.remedies.sdarts_epsilon(2, 4).unwrap();
    let mix = b
        .arch
        .perturbed_detached(eps, &mut b.step_rng(PURPOSE_SDARTS));
    b.weight_step_with(&batch(), &mix, false).unwrap();
    for (x, y) in a.weights.iter().zip(&b.weights) {
        assert!(x.equal(y));
    }
}

#[test]
fn darts_minus_adds_the_auxiliary_skip_outside_the_softmax_on_stride_one_edges() {
    let space = tiny();
    let column = skip_column(&space).unwrap();
    let mut arch = ArchParams::new(&space, Device::Cpu);
    set_alphas(&arch, |i| (i % 3) as f32 * 0.4 - 0.5);
    let plain = arch.softmax();
    arch.set_aux_skip(Some(AuxSkip { beta: 0.4, column }));
    let aux = arch.softmax();
    let n_ops = space.ops.len();
    let edges = space.cell.edges();
    for (t, p, w) in [
        (CellType::Normal, &plain.normal, &aux.normal),
        (
            CellType::Reduce,
            plain.reduce.as_ref().unwrap(),
            aux.reduce.as_ref().unwrap(),
        ),
    ] {
        let (p, w) = (host(&p.weights), host(&w.weights));
        for (e, (pr, wr)) in p.chunks(n_ops).zip(w.chunks(n_ops)).enumerate() {
            // Reduction-cell edges from the cell inputs have stride 2: no auxiliary skip.
            let stride_one = t == CellType::Normal || edges[e].from >= space.cell.inputs;
            for k in 0..n_ops {
                let add = if stride_one && k == column { 0.4 } else { 0.0 };
                assert!(close(wr[k] as f64, (pr[k] + add) as f64), "{t:?} edge {e}");
            }
        }
    }
    // Outside the softmax: the gradient to the alphas is that of the softmax alone.
    let c = Tensor::randn(
        [space.cell.num_edges() as i64, n_ops as i64],
        (Kind::Float, Device::Cpu),
    );
    let grad_of = |w: &supernet::supernet::ArchWeights| {
        let alphas = arch.tensors();
        let loss = (&w.normal.weights * &c).sum(Kind::Float);
        host(&Tensor::run_backward(&[&loss], &alphas[..1], false, false)[0])
    };
    assert_eq!(grad_of(&plain), grad_of(&aux));

    let r = Remedies {
        aux_skip: true,
        ..Default::default()
    };
    assert!(close(r.aux_skip_beta(0, 4).unwrap(), 1.0));
    assert!(close(r.aux_skip_beta(3, 4).unwrap(), 0.25));
    assert_eq!(Remedies::default().aux_skip_beta(0, 4), None);
}

#[test]
fn each_remedy_resumes_bit_exactly_after_sigkill_and_changes_the_search() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain");
    let every = ["--checkpoint-every", "3"];
    ok(tiny_search(&plain, 2, &every).output().unwrap());
    let remedies: [(&str, &[&str]); 4] = [
        ("beta_decay = 25.0", &["--beta-decay", "25"]),
        ("sdarts_epsilon = 0.3", &["--sdarts-epsilon", "0.3"]),
        ("aux_skip = true", &["--aux-skip"]),
        (
            "sdarts_epsilon = 0.3",
            &[
                "--strategy",
                "second-order",
                "--beta-decay",
                "25",
                "--sdarts-epsilon",
                "0.3",
                "--aux-skip",
            ],
        ),
    ];
    for (field, flags) in remedies {
        let args: Vec<&str> = every.iter().chain(flags).copied().collect();
        let (a, c) = (
            dir.path().join(flags[0]),
            dir.path().join(format!("{}-c", flags[0])),
        );
        ok(tiny_search(&a, 2, &args).output().unwrap());
        search_killed_and_resumed(tiny_search(&c, 2, &args), &c);
        assert_eq!(
            checkpoint_bits(&a),
            checkpoint_bits(&c),
            "{field}: resumed run differs from the uninterrupted one"
        );
        assert_ne!(
            final_alphas(&a),
            final_alphas(&plain),
            "{field} changed nothing"
        );
        let config = std::fs::read_to_string(a.join("config.toml")).unwrap();
        assert!(
            config.contains("[remedies]") && config.contains(field),
            "{config}"
        );
        let run = read_run(&c.join("run.h5")).unwrap();
        assert!(run.meta.config.contains(field));
        assert_eq!(run.steps.len(), 16);
    }
    let config = std::fs::read_to_string(plain.join("config.toml")).unwrap();
    assert!(!config.contains("[remedies]"), "{config}");
}

#[test]
fn bad_remedy_settings_are_refused_naming_the_remedy_and_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &[&str]); 7] = [
        (
            &["--strategy", "gdas", "--beta-decay", "25"],
            &["remedies.beta_decay", "gdas"],
        ),
        (
            &["--strategy", "spos", "--aux-skip"],
            &["remedies.aux_skip", "spos"],
        ),
        (
            &["--strategy", "enas", "--sdarts-epsilon", "0.3"],
            &["remedies.sdarts_epsilon", "enas"],
        ),
        (&["--beta-decay=-1"], &["remedies.beta_decay", "-1"]),
        (
            &["--sdarts-epsilon=-0.5"],
            &["remedies.sdarts_epsilon", "-0.5"],
        ),
        (
            &["--sdarts-epsilon", "0.01"],
            &["remedies.sdarts_epsilon_min", "0.03"],
        ),
        (
            &["--aux-skip", "--partial-channels", "2"],
            &["remedies.aux_skip", "partial_channels = 2"],
        ),
    ];
    for (i, (flags, needles)) in cases.into_iter().enumerate() {
        let out = dir.path().join(i.to_string());
        fails_with(tiny_search(&out, 1, flags).output().unwrap(), needles);
        assert!(!out.exists(), "a refused start left {}", out.display());
    }
}

#[test]
fn configs_without_remedies_read_with_them_off() {
    let path = std::path::Path::new("config.toml");
    let plain = SearchConfig::default().to_toml();
    assert!(!plain.contains("remedies"));
    assert!(SearchConfig::from_toml(&plain, path)
        .unwrap()
        .remedies
        .is_off());
    let one = format!("{plain}\n[remedies]\naux_skip = true\n");
    let cfg = SearchConfig::from_toml(&one, path).unwrap();
    assert_eq!(
        cfg.remedies,
        Remedies {
            aux_skip: true,
            ..Default::default()
        }
    );
    assert_eq!(SearchConfig::from_toml(&cfg.to_toml(), path).unwrap(), cfg);
    let typo = format!("{plain}\n[remedies]\naux_skips = true\n");
    let err = SearchConfig::from_toml(&typo, path)
        .unwrap_err()
        .to_string();
    assert!(err.contains("aux_skips"), "{err}");
}

#[test]
fn pdarts_cap_replaces_the_weakest_skips_by_their_next_best_op_and_reranks() {
    let space = tiny(); // ops: none, max_pool_3x3, skip_connect, sep_conv_3x3
    let rows: Vec<Vec<f32>> = vec![
        vec![0.1, 0.1, 0.5, 0.3],  // node 2 from 0
        vec![0.1, 0.1, 0.6, 0.2],  // node 2 from 1
        vec![0.1, 0.25, 0.4, 0.0], // node 3 from 0
        vec![0.2, 0.3, 0.2, 0.3],  // node 3 from 1 (pool and sep tie: the first wins)
        vec![0.1, 0.1, 0.7, 0.1],  // node 3 from 2
    ];
    let text = |cell: &supernet::space::CellGenotype| -> Vec<Vec<(String, usize)>> {
        cell.nodes
            .iter()
            .map(|n| {
                n.iter()
                    .map(|e| (e.op.name().to_string(), e.from))
                    .collect()
            })
            .collect()
    };
    let plain = derive_cell(&rows, &space.cell, &space.ops);
    assert_eq!(plain.count(OpKind::SkipConnect), 4);
    assert_eq!(cap_skips(rows.clone(), &space.cell, &space.ops, 4), plain);
    // Cap 2: node 3 from 0 (skip 0.4) goes first and its pool (0.25) now loses to node 3
    // from 1 (0.3); then node 2 from 0 (skip 0.5) takes its sep_conv.
    let capped = cap_skips(rows.clone(), &space.cell, &space.ops, 2);
    let s = |op: &str, from| (op.to_string(), from);
    assert_eq!(
        text(&capped),
        vec![
            vec![s("skip_connect", 1), s("sep_conv_3x3", 0)],
            vec![s("skip_connect", 2), s("max_pool_3x3", 1)],
        ]
    );
    let none = cap_skips(rows, &space.cell, &space.ops, 0);
    assert_eq!(none.count(OpKind::SkipConnect), 0);
}

#[test]
fn derive_max_skip_caps_a_runs_normal_cell_and_is_refused_with_sampling_rules() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    ok(tiny_search(&run, 1, &[]).output().unwrap());
    let out = ok(supernet()
        .args(["derive", "--max-skip", "0", "--run"])
        .arg(&run)
        .output()
        .unwrap());
    let text = std::fs::read_to_string(run.join("genotype-top2-maxskip0.txt")).unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), text.trim());
    let g = supernet::space::Genotype::parse(&text).unwrap();
    assert_eq!(g.normal.count(OpKind::SkipConnect), 0);
    fails_with(
        supernet()
            .args([
                "derive",
                "--rule",
                "sample-top:2",
                "--max-skip",
                "1",
                "--run",
            ])
            .arg(&run)
            .output()
            .unwrap(),
        &["--max-skip", "sample-top2"],
    );
}

#[test]
fn darts_plus_stops_early_writes_the_reason_and_resumes_to_the_same_end() {
    let dir = tempfile::tempdir().unwrap();
    let (a, c) = (dir.path().join("a"), dir.path().join("c"));
    let args = [
        "--stop-at-skips",
        "1",
        "--arch-lr",
        "0.05",
        "--checkpoint-every",
        "3",
    ];
    let out = ok(tiny_search(&a, 6, &args).output().unwrap());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("DARTS+ early stop"), "{stderr}");
    let run = read_run(&a.join("run.h5")).unwrap();
    let reason = run.stop_reason.clone().expect("a recorded stop reason");
    let n = run.epochs.len();
    assert!(n < 6, "the search ran its whole schedule");
    assert!(reason.contains(&format!("after epoch {n}")), "{reason}");
    // The last epoch's cell holds a skip connection, no earlier one did.
    let skips = |g: &str| {
        supernet::space::Genotype::parse(g)
            .unwrap()
            .normal
            .count(OpKind::SkipConnect)
    };
    assert!(skips(&run.epochs[n - 1].genotype) >= 1);
    assert!(run.epochs[..n - 1].iter().all(|e| skips(&e.genotype) == 0));
    assert!(a.join("genotype.txt").is_file());
    assert!(std::fs::read_to_string(a.join("config.toml"))
        .unwrap()
        .contains("stop_at_skips = 1"));

    // Killed mid-run and resumed: the same stop, bit for bit.
    search_killed_and_resumed(tiny_search(&c, 6, &args), &c);
    assert_eq!(checkpoint_bits(&a), checkpoint_bits(&c));
    let rc = read_run(&c.join("run.h5")).unwrap();
    assert_eq!(rc.stop_reason.as_deref(), Some(reason.as_str()));
    assert_eq!(rc.steps.len(), run.steps.len());

    // Resuming the stopped run does not train on.
    ok(supernet()
        .args(["search", "--quiet", "--resume"])
        .arg(&a)
        .output()
        .unwrap());
    let again = read_run(&a.join("run.h5")).unwrap();
    assert_eq!(again.steps.len(), run.steps.len());
    assert_eq!(again.stop_reason, run.stop_reason);
    // Met after the last epoch: the schedule is done, no early stop to record.
    let one = dir.path().join("one");
    ok(tiny_search(&one, 1, &args).output().unwrap());
    let r1 = read_run(&one.join("run.h5")).unwrap();
    assert!(skips(&r1.epochs[0].genotype) >= 1);
    assert_eq!(r1.stop_reason, None);
    fails_with(
        tiny_search(&dir.path().join("bad"), 1, &["--stop-at-skips", "0"])
            .output()
            .unwrap(),
        &["remedies.stop_at_skips", "0"],
    );
}

#[test]
fn collapse_warning_when_parameter_free_ops_rise_above_the_threshold() {
    let g = supernet::space::Genotype::parse(
        "Genotype(normal=[('skip_connect', 0), ('skip_connect', 1), ('max_pool_3x3', 0), ('sep_conv_3x3', 2)], normal_concat=range(2, 4), reduce=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1)], reduce_concat=range(2, 4))",
    )
    .unwrap();
    assert_eq!(parameter_free(&g.normal), (3, 4));
    // Default threshold: half the kept edges (2).
    let w = collapse_warning(&g, None, None).expect("3 of 4 parameter-free warns");
    assert!(
        w.contains("3 of the normal cell's 4") && w.contains("2 skip_connect"),
        "{w}"
    );
    assert!(
        collapse_warning(&g, None, Some(2)).is_some(),
        "a rise from 2 warns"
    );
    assert_eq!(
        collapse_warning(&g, None, Some(3)),
        None,
        "no rise, no warning"
    );
    assert_eq!(collapse_warning(&g, Some(3), None), None, "not above 3");

    // Printed on the epoch line of a search.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let run = ok(supernet()
        .args([
            "search",
            "--space",
            "supernets/tiny.toml",
            "--subset",
            "512",
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
        .args(["--arch-lr", "0.05", "--collapse-warn-above", "0", "--out"])
        .arg(&out)
        .output()
        .unwrap());
    let stderr = String::from_utf8_lossy(&run.stderr);
    let line = stderr
        .lines()
        .find(|l| l.starts_with("epoch   1/1"))
        .unwrap_or_else(|| panic!("no epoch line:\n{stderr}"));
    assert!(line.contains("WARNING collapse"), "{line}");
    assert!(std::fs::read_to_string(out.join("config.toml"))
        .unwrap()
        .contains("collapse_warn_above = 0"));
}
