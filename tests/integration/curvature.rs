//! R-DARTS's Hessian eigenvalue (power iteration against the explicitly formed Hessian,
//! recorded per epoch, exact resume) and DARTS+'s stability stop.
use super::search::{
    checkpoint_bits, fails_with, ok, search_killed_and_resumed, supernet, tiny_search,
};
use supernet::record::read_run;
use supernet::rng::Rng;
use supernet::search::hessian::{dominant_eigenvalue, power_iteration};
use supernet::search::remedies::{hessian_warning, stable_stop, Remedies};
use supernet::search::{Batch, SearchConfig, SearchState};
use supernet::space::SearchSpace;
use supernet::supernet::InputShape;
use tch::{Device, Kind, Tensor};

/// The full Hessian of `loss` w.r.t. the flattened `params` by autograd (one double
/// backward per coordinate), and its eigenvalue of largest magnitude.
fn explicit_dominant(loss: &Tensor, params: &[Tensor]) -> f64 {
    let grads = Tensor::run_backward(&[loss], params, true, true);
    let flat = Tensor::cat(
        &grads.iter().map(|g| g.flatten(0, -1)).collect::<Vec<_>>(),
        0,
    );
    let n = flat.size()[0];
    let rows: Vec<Tensor> = (0..n)
        .map(|i| {
            let row = Tensor::run_backward(&[flat.get(i)], params, true, false);
            Tensor::cat(
                &row.iter()
                    .map(|r| r.flatten(0, -1).to_kind(Kind::Double))
                    .collect::<Vec<_>>(),
                0,
            )
        })
        .collect();
    let h = Tensor::stack(&rows, 0);
    // Symmetric up to rounding: symmetrise before the symmetric eigensolver.
    let h = (&h + h.transpose(0, 1)) / 2.0;
    let eig = Vec::<f64>::try_from(h.linalg_eigvalsh("L")).unwrap();
    eig.into_iter()
        .fold(0.0, |m: f64, v| if v.abs() > m.abs() { v } else { m })
}

#[test]
fn power_iteration_finds_the_dominant_eigenvalue_of_the_explicit_hessian() {
    tch::manual_seed(3);
    let opts = (Kind::Double, Device::Cpu);
    // A small "supernet": alphas [3 edges, 4 ops] mixing four fixed feature maps.
    let x = Tensor::randn([16, 5], opts);
    let w = Tensor::randn([4, 5, 3], opts);
    let y = Tensor::randint(3, [16], (Kind::Int64, Device::Cpu));
    let alpha = (Tensor::randn([3, 4], opts) * 0.5).set_requires_grad(true);
    let loss = {
        let p = alpha.softmax(-1, Kind::Double); // [3, 4]
        let mixed = p.sum_dim_intlist([0i64].as_slice(), false, Kind::Double); // [4]
        let weight =
            (w * mixed.view([4, 1, 1])).sum_dim_intlist([0i64].as_slice(), false, Kind::Double);
        x.matmul(&weight).tanh().cross_entropy_for_logits(&y)
    };
    let want = explicit_dominant(&loss, &[alpha.shallow_clone()]);
    let got = power_iteration(
        &loss,
        &[alpha.shallow_clone()],
        1000,
        1e-12,
        &mut Rng::from_key(&[1]),
    );
    assert!(want.abs() > 1e-6, "a degenerate toy: {want}");
    assert!(
        (got - want).abs() <= 1e-6 * want.abs(),
        "power iteration {got} vs explicit {want}"
    );

    // The supernet of the tiny space on one batch, w.r.t. both cell types' alphas.
    let space = SearchSpace::from_file("supernets/tiny.toml".as_ref()).unwrap();
    let input = InputShape::parse("1x28x28", 10).unwrap();
    let cfg = SearchConfig::default();
    let st = SearchState::new(&space, input, &cfg, Device::Cpu).unwrap();
    tch::no_grad(|| {
        for (_, a) in &st.arch.alphas {
            a.shallow_clone().copy_(&(a.randn_like() * 0.7));
        }
    });
    let batch = Batch {
        images: Tensor::randn([8, 1, 28, 28], (Kind::Float, Device::Cpu)),
        labels: Tensor::randint(10, [8], (Kind::Int64, Device::Cpu)),
    };
    let alphas: Vec<Tensor> = st
        .arch
        .alphas
        .iter()
        .map(|(_, a)| a.shallow_clone())
        .collect();
    let (loss, _) = st.loss_with(&batch, &st.arch.softmax());
    let want = explicit_dominant(&loss, &alphas);
    let got = power_iteration(&loss, &alphas, 1000, 1e-9, &mut Rng::from_key(&[2]));
    assert!(
        (got - want).abs() <= 1e-3 * want.abs(),
        "supernet: power iteration {got} vs explicit {want}"
    );
    // With the defaults a search uses, and the BN statistics left as they were.
    let bn = st.save_bn_stats();
    let quick = dominant_eigenvalue(&st, &batch, 0).unwrap();
    assert!(
        (quick - want).abs() <= 2e-2 * want.abs(),
        "search defaults: {quick} vs explicit {want}"
    );
    for (a, b) in bn.iter().zip(st.save_bn_stats()) {
        assert!(a.equal(&b), "the Hessian changed the BN statistics");
    }
}

#[test]
fn hessian_eigenvalue_is_recorded_warned_on_and_resumes_bit_exactly() {
    assert_eq!(
        hessian_warning(&[], 5.0, 1.0),
        None,
        "nothing to compare with"
    );
    assert_eq!(hessian_warning(&[2.0, 3.0], 2.6, 4.0 / 3.0), None);
    let w = hessian_warning(&[3.0, 2.0], 2.7, 4.0 / 3.0).expect("2.7 > 4/3 x 2");
    assert!(
        w.contains("WARNING Hessian") && w.contains("2.0000e0"),
        "{w}"
    );
    let r = Remedies {
        hessian_every: 2,
        ..Default::default()
    };
    let due: Vec<usize> = (0..6).filter(|&e| r.hessian_due(e)).collect();
    assert_eq!(due, vec![1, 3, 5]);
    assert!((r.warn_factor() - 4.0 / 3.0).abs() < 1e-12);

    let dir = tempfile::tempdir().unwrap();
    let (a, c) = (dir.path().join("a"), dir.path().join("c"));
    let args = ["--hessian-every", "2", "--checkpoint-every", "3"];
    let out = ok(tiny_search(&a, 2, &args)
        .arg("--hessian-warn-factor")
        .arg("1.5")
        .output()
        .unwrap());
    let run = read_run(&a.join("run.h5")).unwrap();
    assert_eq!(run.epochs[0].hessian_eigenvalue, None);
    let h = run.epochs[1]
        .hessian_eigenvalue
        .expect("epoch 2 has an eigenvalue");
    assert!(h.is_finite() && h != 0.0, "{h}");
    let config = std::fs::read_to_string(a.join("config.toml")).unwrap();
    assert!(
        config.contains("hessian_every = 2") && config.contains("hessian_warn_factor = 1.5"),
        "{config}"
    );
    assert!(run.meta.config.contains("hessian_every = 2"));
    assert!(out.status.success());

    search_killed_and_resumed(
        {
            let mut s = tiny_search(&c, 2, &args);
            s.args(["--hessian-warn-factor", "1.5"]);
            s
        },
        &c,
    );
    assert_eq!(checkpoint_bits(&a), checkpoint_bits(&c));
    let rc = read_run(&c.join("run.h5")).unwrap();
    assert_eq!(
        rc.epochs[1].hessian_eigenvalue.map(f64::to_bits),
        Some(h.to_bits()),
        "the resumed run's eigenvalue differs"
    );
    // The collapse chart gets a third panel for it.
    let width = |run: &std::path::Path| {
        ok(supernet()
            .args(["plot", "--run"])
            .arg(run)
            .output()
            .unwrap());
        let png = std::fs::read(run.join("plots/collapse.png")).unwrap();
        u32::from_be_bytes(png[16..20].try_into().unwrap())
    };
    assert_eq!(width(&a), 2400);
    // Runs without it have no dataset and read as None.
    let plain = dir.path().join("plain");
    ok(tiny_search(&plain, 1, &[]).output().unwrap());
    let rp = read_run(&plain.join("run.h5")).unwrap();
    assert!(rp.epochs.iter().all(|e| e.hessian_eigenvalue.is_none()));
    assert_eq!(width(&plain), 1600);
}

#[test]
fn darts_plus_stability_rule_stops_when_the_genotype_holds_for_e_epochs() {
    let g = |s: &str| s.to_string();
    assert_eq!(stable_stop(&[g("a")], "a", None, 1), None, "off");
    assert_eq!(
        stable_stop(&[g("a")], "a", Some(2), 1),
        None,
        "too few epochs"
    );
    assert_eq!(stable_stop(&[g("b"), g("a")], "a", Some(2), 2), None);
    let r = stable_stop(&[g("b"), g("a"), g("a")], "a", Some(2), 3).expect("a held twice");
    assert!(
        r.contains("after epoch 4") && r.contains("stop_when_stable = 2"),
        "{r}"
    );

    // Alphas that barely move: the genotype holds from the first epoch on, so E = 2
    // stops after epoch 3.
    let dir = tempfile::tempdir().unwrap();
    let (a, c) = (dir.path().join("a"), dir.path().join("c"));
    let args = ["--stop-when-stable", "2", "--arch-lr", "1e-9"];
    let out = ok(tiny_search(&a, 6, &args).output().unwrap());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("DARTS+ early stop"), "{stderr}");
    let run = read_run(&a.join("run.h5")).unwrap();
    assert_eq!(run.epochs.len(), 3);
    let reason = run.stop_reason.clone().expect("a recorded stop reason");
    assert!(reason.contains("after epoch 3"), "{reason}");
    assert!(run
        .epochs
        .iter()
        .all(|e| e.genotype == run.epochs[0].genotype));
    assert!(std::fs::read_to_string(a.join("config.toml"))
        .unwrap()
        .contains("stop_when_stable = 2"));

    // Killed after the first epoch's checkpoint and resumed: the epochs before the resume
    // count, and the stop is the same, bit for bit.
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
    assert_eq!(
        read_run(&a.join("run.h5")).unwrap().steps.len(),
        run.steps.len()
    );
}

#[test]
fn bad_curvature_and_stability_settings_are_refused_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &[&str]); 5] = [
        (
            &["--hessian-warn-factor", "2"],
            &["remedies.hessian_warn_factor", "remedies.hessian_every"],
        ),
        (
            &["--strategy", "gdas", "--hessian-every", "1"],
            &["remedies.hessian_every", "gdas"],
        ),
        (
            &["--hessian-every", "1", "--hessian-warn-factor", "0.5"],
            &["remedies.hessian_warn_factor", "0.5"],
        ),
        (
            &["--stop-when-stable", "0"],
            &["remedies.stop_when_stable", "0"],
        ),
        (
            &["--strategy", "spos", "--hessian-every", "2"],
            &["remedies.hessian_every", "spos"],
        ),
    ];
    for (i, (flags, needles)) in cases.into_iter().enumerate() {
        let out = dir.path().join(i.to_string());
        fails_with(tiny_search(&out, 1, flags).output().unwrap(), needles);
        assert!(!out.exists(), "a refused start left {}", out.display());
    }
}
