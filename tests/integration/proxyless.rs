//! ProxylessNAS's binarised paths on chain spaces: the alpha gradient from the binary gates
//! against autograd and by hand, the rescaling that keeps the unsampled choices' softmax
//! mass, the gated forward, determinism, resume and the refusal on cell spaces.
use super::chain::{chain_run, chain_space};
use supernet::arch::binary_gate::{
    multinomial, probabilities, rescale_offset, two_path_alpha_grad, TwoPaths,
};
use supernet::rng::Rng;
use supernet::search::chain::ChainSearch;
use supernet::search::SearchConfig;
use supernet::supernet::{InputShape, MixWeights};
use tch::{Device, Kind, Tensor};

const FMNIST: InputShape = InputShape {
    channels: 1,
    height: 28,
    width: 28,
    classes: 10,
};

#[test]
fn the_alpha_gradient_from_the_gates_is_the_relaxed_gradient() {
    // By hand: alphas (0, ln 3) give p = (1/4, 3/4); dL/dg = (1, 0) gives
    // dL/dalpha_0 = 1 * p0 (1 - p0) = 3/16 and dL/dalpha_1 = 1 * p0 (0 - p1) = -3/16.
    let g = two_path_alpha_grad([0.0, 3f64.ln()], [1.0, 0.0]);
    assert!(
        (g[0] - 0.1875).abs() < 1e-12 && (g[1] + 0.1875).abs() < 1e-12,
        "{g:?}"
    );
    // Against autograd: with a loss linear in the layer output, dL/dg_j is the same at the
    // binary gates as at the softmax, so the formula is the exact gradient of
    // L(p_0 o_0 + p_1 o_1) with respect to the two alphas.
    tch::manual_seed(0);
    let o = Tensor::randn([2, 3, 4], (Kind::Double, Device::Cpu));
    let w = Tensor::randn([3, 4], (Kind::Double, Device::Cpu));
    let loss_of = |out: &Tensor| (&w * out).sum(Kind::Double);
    let gates = Tensor::from_slice(&[1.0f64, 0.0]).set_requires_grad(true);
    let gated = (o.get(0) * gates.get(0)) + (o.get(1) * gates.get(1));
    loss_of(&gated).backward();
    let dg = Vec::<f64>::try_from(gates.grad()).unwrap();
    let a = [0.3f64, -0.8];
    let alphas = Tensor::from_slice(&a).set_requires_grad(true);
    let p = alphas.softmax(0, Kind::Double);
    let relaxed = (o.get(0) * p.get(0)) + (o.get(1) * p.get(1));
    loss_of(&relaxed).backward();
    let want = Vec::<f64>::try_from(alphas.grad()).unwrap();
    let got = two_path_alpha_grad(a, [dg[0], dg[1]]);
    for i in 0..2 {
        assert!(
            (got[i] - want[i]).abs() < 1e-12,
            "{got:?} vs autograd {want:?}"
        );
    }
}

#[test]
fn rescaling_keeps_the_unsampled_choices_probabilities() {
    let old = [0.5f64, -0.2, 1.0, 0.1];
    let (a, b) = (1, 3);
    let mut new = old;
    new[a] += 0.7;
    new[b] -= 0.1;
    let o = rescale_offset([old[a], old[b]], [new[a], new[b]]);
    new[a] -= o;
    new[b] -= o;
    let all = [0, 1, 2, 3];
    let (p_old, p_new) = (probabilities(&old, &all), probabilities(&new, &all));
    for k in [0, 2] {
        assert!((p_old[k] - p_new[k]).abs() < 1e-12, "choice {k}");
    }
    assert!((p_new[a] - p_old[a]).abs() > 0.05, "the sampled pair moved");
}

#[test]
fn draws_follow_the_probabilities_and_two_paths_are_distinct() {
    let probs = [0.1, 0.0, 0.6, 0.3];
    let mut rng = Rng::from_key(&[11]);
    let mut counts = [0usize; 4];
    let n = 20_000;
    for _ in 0..n {
        counts[multinomial(&probs, None, &mut rng)] += 1;
    }
    assert_eq!(counts[1], 0, "a masked choice is never drawn");
    for k in [0, 2, 3] {
        let f = counts[k] as f64 / n as f64;
        assert!((f - probs[k]).abs() < 0.015, "choice {k}: {f}");
    }
    let alphas = [0.0, f64::NEG_INFINITY, 1.0, 0.5];
    for seed in 0..200 {
        let t = TwoPaths::draw(&alphas, &probs, &mut Rng::from_key(&[seed]));
        let i = t.inactive.unwrap();
        assert!(t.active != i && t.active != 1 && i != 1, "{t:?}");
    }
    // A layer with one choice has no second path.
    let one = TwoPaths::draw(&[0.0, 0.0], &[1.0, 0.0], &mut rng);
    assert_eq!((one.active, one.inactive), (0, None));
}

fn search(cfg: SearchConfig) -> ChainSearch {
    ChainSearch::new(&chain_space("mbv3_chain"), FMNIST, &cfg, Device::Cpu).unwrap()
}

fn batch(seed: i64) -> supernet::search::Batch {
    tch::manual_seed(seed);
    supernet::search::Batch {
        images: Tensor::randn([8, 1, 28, 28], (Kind::Float, Device::Cpu)),
        labels: Tensor::randint(10, [8], (Kind::Int64, Device::Cpu)),
    }
}

#[test]
fn the_gated_forward_is_the_active_path_and_an_arch_step_moves_only_sampled_pairs() {
    let cfg = SearchConfig {
        arch_lr: 0.1,
        arch_weight_decay: 0.0,
        ..Default::default()
    };
    let mut s = search(cfg);
    let space = s.space.clone();
    let paths = s.arch.two_paths(&mut Rng::from_key(&[5]));
    // Value: the active path alone (eval mode, so no BN statistics move).
    let xs = batch(1).images;
    let cols = space.choices().len();
    let rows = paths.len() as i64;
    let gates = Tensor::zeros([rows, cols as i64], (Kind::Float, Device::Cpu));
    for (r, p) in paths.iter().enumerate() {
        let _ = gates.get(r as i64).get(p.active as i64).fill_(1.0);
    }
    let pairs: Vec<_> = paths.iter().map(|p| (p.active, p.inactive)).collect();
    let active: Vec<usize> = paths.iter().map(|p| p.active).collect();
    let (gated, plain) = tch::no_grad(|| {
        (
            s.net.forward_gated(&xs, &gates, &pairs, false),
            s.net.forward_t(
                &xs,
                &MixWeights::one_hot_rows(&active, cols, Device::Cpu),
                false,
            ),
        )
    });
    assert!(gated.equal(&plain));
    // One architecture step: every layer's two alphas move, and the softmax mass of the
    // choices not sampled stays where it was.
    let before: Vec<Vec<f64>> = s.arch.host();
    s.two_path_step(&batch(2), &paths).unwrap();
    let after = s.arch.host();
    for (r, p) in paths.iter().enumerate() {
        let allowed = &s.arch.allowed()[r];
        let (pb, pa) = (
            probabilities(&before[r], allowed),
            probabilities(&after[r], allowed),
        );
        let i = p.inactive.unwrap();
        assert_ne!(before[r][p.active], after[r][p.active], "layer {r}");
        for &k in allowed {
            if k != p.active && k != i {
                assert!((pb[k] - pa[k]).abs() < 1e-6, "layer {r} choice {k}");
                assert_eq!(before[r][k], after[r][k], "layer {r} choice {k}");
            }
        }
    }
}

#[test]
fn the_cost_penalty_pushes_each_sampled_pair_towards_its_cheaper_choice() {
    use supernet::profile::CostMatrix;
    use supernet::search::hardware::Hardware;
    let cfg = SearchConfig {
        arch_lr: 0.1,
        arch_weight_decay: 0.0,
        hardware: Hardware {
            macs_target: Some(1.0),
            macs_weight: Some(1e4),
            ..Default::default()
        },
        ..Default::default()
    };
    let mut s = search(cfg);
    let macs = CostMatrix::macs(&s.space, supernet::supernet::image_shape(FMNIST));
    let paths = s.arch.two_paths(&mut Rng::from_key(&[8]));
    let before = s.arch.host();
    s.two_path_step(&batch(3), &paths).unwrap();
    let after = s.arch.host();
    let mut checked = 0;
    for (r, p) in paths.iter().enumerate() {
        let (a, i) = (p.active, p.inactive.unwrap());
        let (ca, ci) = (macs.per_choice[r][a], macs.per_choice[r][i]);
        if ca == ci {
            continue;
        }
        let (dear, cheap) = if ca > ci { (a, i) } else { (i, a) };
        let gap = |x: &Vec<Vec<f64>>| x[r][dear] - x[r][cheap];
        assert!(gap(&after) < gap(&before), "layer {r}");
        checked += 1;
        for (k, (b, n)) in before[r].iter().zip(&after[r]).enumerate() {
            if k != a && k != i {
                assert_eq!(b, n, "layer {r}: the penalty reaches only the sampled pair");
            }
        }
    }
    assert!(checked > 0);
}

#[test]
fn the_gates_gradient_is_the_loss_slope_along_each_gate() {
    // dL/dg of the inactive path (computed without a graph) and of the active one against
    // central differences, in double precision so that a small step stays clear of the
    // activations' kinks (training mode: batch statistics, as an architecture step runs).
    let mut s = search(SearchConfig::default());
    s.vs.double();
    let paths = s.arch.two_paths(&mut Rng::from_key(&[13]));
    let cols = s.space.choices().len() as i64;
    let rows = paths.len() as i64;
    let pairs: Vec<_> = paths.iter().map(|p| (p.active, p.inactive)).collect();
    let b = batch(4);
    let images = b.images.to_kind(Kind::Double);
    let base = Tensor::zeros([rows, cols], (Kind::Double, Device::Cpu));
    for (r, p) in paths.iter().enumerate() {
        let _ = base.get(r as i64).get(p.active as i64).fill_(1.0);
    }
    let loss_at = |gates: &Tensor| {
        s.net
            .forward_gated(&images, gates, &pairs, true)
            // (`cross_entropy_for_logits` would round to f32.)
            .log_softmax(-1, Kind::Double)
            .nll_loss(&b.labels)
    };
    let gates = base.copy().set_requires_grad(true);
    let g = Tensor::run_backward(&[&loss_at(&gates)], &[&gates], false, false).remove(0);
    let h = 1e-6;
    let mut largest = 0f64;
    for (r, p) in paths.iter().enumerate() {
        for k in [p.active, p.inactive.unwrap()] {
            let at = |d: f64| {
                let t = base.copy();
                let _ = t.get(r as i64).get(k as i64).g_add_scalar_(d);
                tch::no_grad(|| loss_at(&t).double_value(&[]))
            };
            let fd = (at(h) - at(-h)) / (2.0 * h);
            let exact = g.double_value(&[r as i64, k as i64]);
            assert!(
                (fd - exact).abs() <= 1e-7 + 1e-4 * exact.abs(),
                "layer {r} choice {k}: autograd {exact} vs differences {fd}"
            );
            largest = largest.max(exact.abs());
        }
    }
    assert!(
        largest > 1e-4,
        "the gates' gradient is not negligible ({largest})"
    );
}

#[test]
fn proxyless_steps_repeat_with_the_seed() {
    let run = || {
        let mut s = search(SearchConfig {
            arch_lr: 3e-2,
            ..Default::default()
        });
        for step in 0..2 {
            let r = s
                .proxyless_step(&batch(10 + step), &batch(20 + step), 0.025)
                .unwrap();
            assert!(r.train_loss.is_finite() && r.val_loss.is_finite());
        }
        let w: Vec<Tensor> = s.weights.iter().map(|t| t.detach().copy()).collect();
        (s.arch.alphas.detach().copy(), w)
    };
    let (a1, w1) = run();
    let (a2, w2) = run();
    assert!(a1.equal(&a2));
    assert!(w1.iter().zip(&w2).all(|(x, y)| x.equal(y)));
}

#[test]
fn proxyless_searches_resume_bit_exactly_and_cell_spaces_refuse_them() {
    use super::search::{checkpoint_bits, ok, search_killed_and_resumed};
    let dir = tempfile::tempdir().unwrap();
    let (a, c) = (dir.path().join("a"), dir.path().join("c"));
    let flags = ["--strategy", "proxyless"];
    ok(chain_run(&a, &flags).output().unwrap());
    search_killed_and_resumed(chain_run(&c, &flags), &c);
    assert_eq!(checkpoint_bits(&a), checkpoint_bits(&c));
    let run = supernet::record::read_run(&c.join("run.h5")).unwrap();
    assert_eq!(run.steps.len(), 8);
    assert_ne!(
        run.alphas.first().unwrap().normal,
        run.alphas.last().unwrap().normal
    );
    let out = super::search::supernet()
        .args([
            "search",
            "--space",
            "supernets/fmnist_small.toml",
            "--strategy",
            "proxyless",
            "--epochs",
            "1",
            "--quiet",
            "--no-memory-check",
            "--out",
        ])
        .arg(dir.path().join("cell"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("proxyless") && err.contains("fmnist_small") && err.contains("cell space"),
        "{err}"
    );
    assert!(!dir.path().join("cell").join("config.toml").exists());
}
