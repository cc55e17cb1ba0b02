//! ENAS: the controller's REINFORCE gradient against its formula, its samples as a pure
//! function of the seed, its edge probabilities against sampling frequencies, and an ENAS
//! search that resumes bit-exactly after SIGKILL.
use crate::search::{
    checkpoint_bits, fails_with, kill_after_first_mid_run_checkpoint, ok, supernet, tiny_search,
};
use crate::space::space;
use std::path::Path;
use supernet::record::read_run;
use supernet::rng::Rng;
use supernet::search::controller::{Controller, EnasSettings};
use supernet::space::CellType;
use tch::{Device, Kind, Tensor};

fn controller(name: &str) -> Controller {
    Controller::new(&space(name), &EnasSettings::default(), Device::Cpu).unwrap()
}

/// d/db of `-A * sum_t log softmax(c * tanh(z_t / T))[a_t]` for the bias `b` of a head that
/// produced `z_t` (over the allowed options): `-A * sum_t (onehot(a_t) - p_t) * c/T *
/// (1 - tanh^2(z_t / T))`, scattered back to the head's outputs.
fn formula_bias_grad(
    c: &Controller,
    rollout: &supernet::search::controller::Rollout,
    head: &str,
    advantage: f64,
) -> Vec<f64> {
    let s = EnasSettings::default();
    let n = c
        .parameters()
        .into_iter()
        .find(|(k, _)| k == &format!("{head}.bias"))
        .unwrap()
        .1
        .size()[0] as usize;
    let mut grad = vec![0.0; n];
    for (t, h) in rollout.heads.iter().enumerate() {
        if h != head {
            continue;
        }
        let z = Vec::<f64>::try_from(rollout.raw_logits[t].squeeze_dim(0).to_kind(Kind::Double))
            .unwrap();
        let allowed = &rollout.allowed[t];
        let th: Vec<f64> = allowed
            .iter()
            .map(|&k| (z[k] / s.temperature).tanh())
            .collect();
        let logits: Vec<f64> = th.iter().map(|x| s.tanh_constant * x).collect();
        let m = logits.iter().cloned().fold(f64::MIN, f64::max);
        let total: f64 = logits.iter().map(|l| (l - m).exp()).sum();
        for (j, &k) in allowed.iter().enumerate() {
            let p = (logits[j] - m).exp() / total;
            let onehot = if rollout.choices[t] == k { 1.0 } else { 0.0 };
            let dlogit_dz = s.tanh_constant / s.temperature * (1.0 - th[j] * th[j]);
            grad[k] += -advantage * (onehot - p) * dlogit_dz;
        }
    }
    grad
}

#[test]
fn reinforce_gradient_matches_its_formula() {
    for name in ["tiny", "nb201"] {
        let c = controller(name);
        let rollout = c.rollout(Some(&mut Rng::from_key(&[3, 4])));
        let advantage = 0.37;
        let loss = -(&rollout.log_prob * advantage);
        loss.backward();
        let mut heads: Vec<&String> = rollout.heads.iter().collect();
        heads.sort();
        heads.dedup();
        assert!(heads.len() >= if name == "tiny" { 3 } else { 1 });
        for head in heads {
            let expected = formula_bias_grad(&c, &rollout, head, advantage);
            let got = c
                .parameters()
                .into_iter()
                .find(|(k, _)| k == &format!("{head}.bias"))
                .unwrap()
                .1
                .grad();
            let got = Vec::<f64>::try_from(got.to_kind(Kind::Double)).unwrap();
            assert!(
                expected.iter().any(|g| g.abs() > 1e-4),
                "{name} {head}: no signal"
            );
            for (g, e) in got.iter().zip(&expected) {
                assert!(
                    (g - e).abs() <= 1e-6 + 1e-4 * e.abs(),
                    "{name} {head}: autograd {got:?} vs formula {expected:?}"
                );
            }
        }
    }
}

#[test]
fn samples_are_a_pure_function_of_the_key_and_follow_the_rule() {
    for name in ["tiny", "nb201", "fmnist_small"] {
        let sp = space(name);
        let c = controller(name);
        let draw = |k: u64| {
            tch::no_grad(|| c.rollout(Some(&mut Rng::from_key(&[7, k]))))
                .genotype
                .to_text()
        };
        let a: Vec<String> = (0..12).map(draw).collect();
        let b: Vec<String> = (0..12).map(draw).collect();
        assert_eq!(a, b, "{name}: same key, different samples");
        let distinct: std::collections::BTreeSet<&String> = a.iter().collect();
        assert!(distinct.len() > 1, "{name}: every key gave the same sample");
        for text in &a {
            // Every sample is a valid genotype of the space (distinct inputs, no `none`
            // under the top-k rule), as the one-hot path demands.
            supernet::supernet::ArchWeights::from_genotype(
                &supernet::space::Genotype::parse(text).unwrap(),
                &sp,
                Device::Cpu,
            )
            .unwrap();
        }
    }
}

#[test]
fn edge_probabilities_are_the_sampling_frequencies_of_the_first_node() {
    // The first node's (argmax rule: edge's) probabilities have no greedy prefix, so they
    // are exactly the marginal frequencies of full samples.
    for name in ["tiny", "nb201"] {
        let sp = space(name);
        let c = controller(name);
        // A policy far from uniform, so that the check has power.
        tch::no_grad(|| {
            for (k, mut v) in c.parameters() {
                if k.ends_with(".bias") && (k.starts_with("op_head") || k.starts_with("in_head")) {
                    let n = v.size()[0];
                    let spread = Tensor::linspace(8.0, -8.0, n, (Kind::Float, Device::Cpu));
                    v.copy_(&spread);
                }
            }
        });
        let probs = c.edge_probabilities();
        let (t, p) = &probs[0];
        assert_eq!(*t, CellType::Normal);
        let n_ops = sp.ops.len();
        let first_node_edges = sp.cell.inputs;
        let rows = if name == "nb201" { 1 } else { first_node_edges };
        let n = 300;
        let mut counts = vec![0usize; rows * n_ops];
        tch::no_grad(|| {
            for k in 0..n {
                let g = c.rollout(Some(&mut Rng::from_key(&[11, k]))).genotype;
                let node = &g.normal.nodes[0];
                for e in node.iter().filter(|e| e.from < rows) {
                    let op = sp.ops.iter().position(|o| *o == e.op).unwrap();
                    counts[e.from * n_ops + op] += 1;
                }
            }
        });
        for e in 0..rows {
            let row = &p[e * n_ops..(e + 1) * n_ops];
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{row:?}");
            for k in 0..n_ops {
                let freq = counts[e * n_ops + k] as f64 / n as f64;
                let expected = if sp.ops[k].is_none() && name == "tiny" {
                    // `none` holds P(edge left out): the first node keeps both inputs.
                    1.0 - (0..n_ops)
                        .filter(|&j| !sp.ops[j].is_none())
                        .map(|j| counts[e * n_ops + j] as f64 / n as f64)
                        .sum::<f64>()
                } else {
                    freq
                };
                assert!(
                    (row[k] as f64 - expected).abs() < 0.085,
                    "{name} edge {e} op {k}: probability {} vs frequency {expected}",
                    row[k]
                );
            }
        }
        // Top-k rule: per node, the kept mass over its edges is `keep` (2).
        if name == "tiny" {
            for (_, p) in &probs {
                let none = sp.ops.iter().position(|o| o.is_none()).unwrap();
                let mut start = 0;
                for node in 0..sp.cell.nodes {
                    let n_in = sp.cell.inputs + node;
                    let kept: f32 = (start..start + n_in)
                        .map(|e| 1.0 - p[e * n_ops + none])
                        .sum();
                    assert!((kept - 2.0).abs() < 1e-4, "node {node} keeps {kept}");
                    start += n_in;
                }
            }
        }
    }
}

#[test]
fn enas_search_is_deterministic_and_resumes_exactly_after_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
    );
    // 3 epochs of 8 steps; 3 samples per controller update, checkpoints every 2 steps,
    // so checkpoints fall between updates with gradients half accumulated.
    let extra = [
        "--strategy",
        "enas",
        "--controller-aggregate",
        "3",
        "--checkpoint-every",
        "2",
    ];
    ok(tiny_search(&a, 3, &extra).output().unwrap());
    ok(tiny_search(&b, 3, &extra).output().unwrap());
    // The position (step and epoch counters) aside; the test below checks the steps.
    let bits = |d: &Path| {
        let mut b = checkpoint_bits(d);
        b.remove("position");
        b
    };
    let bits_a = bits(&a);
    assert!(bits_a.keys().any(|k| k.starts_with("enas.grad.")));
    assert_eq!(bits_a, bits(&b), "same seed, different state");

    kill_after_first_mid_run_checkpoint(tiny_search(&c, 3, &extra), &c, "genotype.txt");
    let killed_at = read_run(&c.join("run.h5")).unwrap().steps.len();
    assert!(killed_at < 24, "killed after {killed_at} of 24 steps");
    ok(supernet()
        .args(["search", "--quiet", "--resume"])
        .arg(&c)
        .output()
        .unwrap());
    assert_eq!(bits_a, bits(&c), "resumed run differs");
    let (la, lc) = (
        read_run(&a.join("run.h5")).unwrap(),
        read_run(&c.join("run.h5")).unwrap(),
    );
    let bits = |l: &supernet::record::RunLog| {
        l.steps
            .iter()
            .map(|s| (s.step, s.val_acc.to_bits(), s.train_loss.to_bits()))
            .collect::<Vec<_>>()
    };
    assert_eq!(bits(&la), bits(&lc));
    assert_eq!(la.alphas.len(), lc.alphas.len());
    for (x, y) in la.alphas.iter().zip(&lc.alphas) {
        assert_eq!(
            (x.step, &x.normal, &x.reduce),
            (y.step, &y.normal, &y.reduce)
        );
    }
    assert_eq!(
        std::fs::read_to_string(a.join("genotype.txt")).unwrap(),
        std::fs::read_to_string(c.join("genotype.txt")).unwrap()
    );
    // derive: the controller's greedy architecture is the search's genotype; the best of
    // K controller samples is scored and written.
    let derived = ok(supernet()
        .args(["derive", "--rule", "controller", "--run"])
        .arg(&a)
        .output()
        .unwrap());
    assert_eq!(
        String::from_utf8_lossy(&derived.stdout).trim(),
        std::fs::read_to_string(a.join("genotype.txt"))
            .unwrap()
            .trim()
    );
    ok(supernet()
        .args([
            "derive",
            "--rule",
            "controller-best:3",
            "--batches",
            "1",
            "--run",
        ])
        .arg(&a)
        .output()
        .unwrap());
    assert!(a.join("genotype-controller-best3.txt").is_file());
    assert!(a
        .join("samples-derive-controller-best3-seed0.csv")
        .is_file());
    // The recorded edge probabilities moved away from the initial policy.
    assert_ne!(
        la.alphas.first().unwrap().normal,
        la.alphas.last().unwrap().normal
    );
}

#[test]
fn bad_enas_settings_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    // A run without a controller.
    let darts = dir.path().join("darts");
    ok(tiny_search(&darts, 1, &[]).output().unwrap());
    fails_with(
        supernet()
            .args(["derive", "--rule", "controller", "--run"])
            .arg(&darts)
            .output()
            .unwrap(),
        &["strategy", "first-order", "no controller"],
    );
    fails_with(
        supernet()
            .args(["derive", "--rule", "controller-best:0", "--run"])
            .arg(&darts)
            .output()
            .unwrap(),
        &["--rule", "controller-best:0"],
    );
    fails_with(
        tiny_search(
            &dir.path().join("x"),
            1,
            &["--strategy", "enas", "--baseline-decay", "1.5"],
        )
        .output()
        .unwrap(),
        &["enas.baseline_decay", "1.5"],
    );
}
