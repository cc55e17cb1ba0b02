//! The DARTS search: the hypergradient, determinism, exact resume after SIGKILL, NaN guard,
//! bad input. Searches run as subprocesses of the real binary: libtorch's generator is
//! global, and tests in this binary run in parallel.
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use supernet::record::read_run;
use supernet::search::finite_difference_hvp;
use tch::{Device, Kind, Tensor};

pub fn supernet() -> Command {
    Command::new(env!("CARGO_BIN_EXE_supernet"))
}

/// `supernet extract --run RUN [EXTRA...] --out OUT`.
pub fn extract(run: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut c = supernet();
    c.args(["extract", "--run"])
        .arg(run)
        .args(extra)
        .arg("--out")
        .arg(out);
    c
}

/// A short tiny-space search (epochs of 8 steps).
pub fn tiny_search(out: &Path, epochs: usize, extra: &[&str]) -> Command {
    let mut c = supernet();
    c.args([
        "search",
        "--space",
        "supernets/tiny.toml",
        "--subset",
        "512",
        "--batch-size",
        "32",
    ])
    .args([
        "--epochs",
        &epochs.to_string(),
        "--seed",
        "5",
        "--threads",
        "1",
        "--quiet",
        "--out",
    ])
    .arg(out)
    .args(extra);
    c
}

pub(crate) fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "supernet failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub(crate) fn fails_with(out: Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "expected a failure, got success");
    assert!(
        !err.contains("panicked"),
        "panic instead of an error:\n{err}"
    );
    for n in needles {
        assert!(err.contains(n), "error does not mention '{n}':\n{err}");
    }
}

/// Final raw alphas of a run, bit for bit, from its checkpoint.
pub fn final_alphas(dir: &Path) -> Vec<(String, Vec<u32>)> {
    let mut t: Vec<(String, Vec<u32>)> =
        Tensor::read_safetensors(dir.join("checkpoint.safetensors"))
            .unwrap()
            .into_iter()
            .filter(|(k, _)| k.starts_with("arch."))
            .map(|(k, v)| {
                (
                    k,
                    Vec::<f32>::try_from(v.flatten(0, -1))
                        .unwrap()
                        .iter()
                        .map(|f| f.to_bits())
                        .collect(),
                )
            })
            .collect();
    t.sort();
    t
}

/// Every tensor of a run's checkpoint, bit for bit (raw bytes, whatever the dtype).
pub fn checkpoint_bits(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    Tensor::read_safetensors(dir.join("checkpoint.safetensors"))
        .unwrap()
        .into_iter()
        .map(|(k, v)| {
            let mut out = vec![0u8; v.numel() * v.kind().elt_size_in_bytes()];
            v.contiguous().copy_data_u8(&mut out, v.numel());
            (k, out)
        })
        .collect()
}

/// Run `search` (writing into `dir`), SIGKILL it after its first mid-run checkpoint, and
/// finish it with `supernet search --resume dir`.
pub fn search_killed_and_resumed(search: Command, dir: &Path) {
    kill_after_first_mid_run_checkpoint(search, dir, "genotype.txt");
    ok(supernet()
        .args(["search", "--quiet", "--resume"])
        .arg(dir)
        .output()
        .unwrap());
}

/// Start `cmd` (a search or training writing into `dir`), SIGKILL it as soon as its first
/// checkpoint after the initial one appears, and check it had not finished (`dir/finished`,
/// what a finished run writes last, is absent).
pub fn kill_after_first_mid_run_checkpoint(mut cmd: Command, dir: &Path, finished: &str) {
    let mut child = cmd.spawn().unwrap();
    let ckpt = dir.join("checkpoint.safetensors");
    let start = Instant::now();
    let first = loop {
        if let Ok(m) = std::fs::metadata(&ckpt).and_then(|m| m.modified()) {
            break m;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no checkpoint appeared"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    while std::fs::metadata(&ckpt).and_then(|m| m.modified()).ok() == Some(first) {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no second checkpoint appeared"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !dir.join(finished).exists(),
        "the run finished before it could be killed"
    );
}

#[test]
fn finite_difference_hypergradient_matches_double_backward() {
    tch::manual_seed(11);
    let opts = (Kind::Double, Device::Cpu);
    let x = Tensor::randn([16, 4], opts);
    let w1 = Tensor::randn([4, 6], opts).set_requires_grad(true);
    let w2 = Tensor::randn([6, 3], opts).set_requires_grad(true);
    let alpha = (Tensor::randn([3], opts) * 0.5).set_requires_grad(true);
    // Smooth in weights and alphas (the DARTS loss has ReLU kinks, which finite differences
    // cannot follow at this step size; the formula is what is under test).
    let loss = || {
        (x.matmul(&w1)
            .tanh()
            .matmul(&(&w2 * alpha.softmax(-1, Kind::Double)))
            .square())
        .mean(Kind::Double)
    };
    let params = [w1.shallow_clone(), w2.shallow_clone()];
    let v: Vec<Tensor> = params.iter().map(Tensor::randn_like).collect();

    let g = Tensor::run_backward(&[loss()], &params, true, true);
    let dot = g
        .iter()
        .zip(&v)
        .map(|(g, v)| (g * v).sum(Kind::Double))
        .fold(Tensor::zeros([], opts), |a, b| a + b);
    let exact = &Tensor::run_backward(&[dot], &[&alpha], false, false)[0];

    let alpha_grad = || Tensor::run_backward(&[loss()], &[&alpha], false, false);
    let approx = &finite_difference_hvp(&params, &v, alpha_grad)[0];
    let rel = |a: &Tensor| (a - exact).norm().double_value(&[]) / exact.norm().double_value(&[]);
    assert!(rel(approx) < 1e-2, "relative error {}", rel(approx));
    // The scaling bug seen in public ports ((g+ - g-) / 2 * eps instead of / (2 * eps))
    // must be caught by the same threshold.
    let norm = v
        .iter()
        .map(|t| t.square().sum(Kind::Double).double_value(&[]))
        .sum::<f64>()
        .sqrt();
    let eps = 0.01 / norm;
    let buggy = approx * (2.0 * eps) / 2.0 * eps;
    assert!(rel(&buggy) > 1e-2);
    // The weights are restored exactly.
    let before = w1.detach().copy();
    let _ = finite_difference_hvp(&params, &v, alpha_grad);
    assert!(w1.equal(&before));
}

#[test]
fn same_seed_gives_bit_identical_alphas_and_resume_after_sigkill_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
    );
    ok(tiny_search(&a, 3, &["--checkpoint-every", "3"])
        .output()
        .unwrap());
    ok(tiny_search(&b, 3, &["--checkpoint-every", "3"])
        .output()
        .unwrap());
    assert_eq!(
        final_alphas(&a),
        final_alphas(&b),
        "same seed, different alphas"
    );

    // Kill a third run with SIGKILL after its first mid-epoch checkpoint, then resume.
    kill_after_first_mid_run_checkpoint(
        tiny_search(&c, 3, &["--checkpoint-every", "3"]),
        &c,
        "genotype.txt",
    );
    let killed_at = read_run(&c.join("run.h5")).unwrap().steps.len();
    assert!(killed_at < 24, "killed after {killed_at} of 24 steps");

    ok(supernet()
        .args(["search", "--quiet", "--resume"])
        .arg(&c)
        .output()
        .unwrap());
    assert_eq!(
        final_alphas(&a),
        final_alphas(&c),
        "resumed run differs from the uninterrupted one"
    );
    assert_eq!(
        std::fs::read_to_string(a.join("genotype.txt")).unwrap(),
        std::fs::read_to_string(c.join("genotype.txt")).unwrap()
    );
    let (la, lc) = (
        read_run(&a.join("run.h5")).unwrap(),
        read_run(&c.join("run.h5")).unwrap(),
    );
    let steps: Vec<u64> = lc.steps.iter().map(|s| s.step).collect();
    assert_eq!(
        steps,
        (0..24).collect::<Vec<u64>>(),
        "every step exactly once"
    );
    assert_eq!(la.epochs.len(), 3);
    assert_eq!(
        lc.epochs.iter().map(|e| e.epoch).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    // Every recorded number, per step and per alpha record, is the same.
    assert_eq!(
        la.steps
            .iter()
            .map(|s| s.train_loss.to_bits())
            .collect::<Vec<_>>(),
        lc.steps
            .iter()
            .map(|s| s.train_loss.to_bits())
            .collect::<Vec<_>>()
    );
    assert_eq!(
        la.alphas
            .iter()
            .map(|a| (a.step, a.normal.clone()))
            .collect::<Vec<_>>(),
        lc.alphas
            .iter()
            .map(|a| (a.step, a.normal.clone()))
            .collect::<Vec<_>>()
    );
}

#[test]
fn second_order_search_runs_to_a_valid_genotype() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("so");
    ok(tiny_search(&out, 1, &["--strategy", "second-order"])
        .output()
        .unwrap());
    let log = read_run(&out.join("run.h5")).unwrap();
    assert_eq!(log.steps.len(), 8);
    assert!(log
        .steps
        .iter()
        .all(|s| s.val_loss.is_finite() && s.train_loss.is_finite()));
    let space = supernet::space::SearchSpace::from_file("supernets/tiny.toml".as_ref()).unwrap();
    let text = std::fs::read_to_string(out.join("genotype.txt")).unwrap();
    supernet::space::Genotype::parse(&text)
        .unwrap()
        .validate(&space)
        .unwrap();
    // The alphas moved from their initialisation.
    assert_ne!(
        log.alphas.first().unwrap().normal,
        log.alphas.last().unwrap().normal
    );
}

#[test]
fn non_finite_loss_stops_with_epoch_and_step_and_keeps_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("nan");
    fails_with(
        tiny_search(&out, 1, &["--lr", "1e30"]).output().unwrap(),
        &["non-finite", "epoch 0, step"],
    );
    // The run file and the checkpoint written before are intact and readable.
    read_run(&out.join("run.h5")).unwrap();
    assert!(!final_alphas(&out).is_empty());
}

#[test]
fn bad_input_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x");
    fails_with(
        supernet()
            .args(["search", "--space", "supernets/nope.toml", "--quiet"])
            .output()
            .unwrap(),
        &["supernets/nope.toml"],
    );
    fails_with(
        tiny_search(&out, 1, &["--strategy", "third-order"])
            .output()
            .unwrap(),
        &["strategy", "third-order", "first-order"],
    );
    fails_with(
        supernet()
            .args(["search", "--resume"])
            .arg(dir.path())
            .output()
            .unwrap(),
        &["config.toml"],
    );
    let wrong_flag = supernet()
        .args(["search", "--no-such-flag"])
        .output()
        .unwrap();
    assert_eq!(wrong_flag.status.code(), Some(2), "clap's usage error");

    // A finished run: resuming with another space is refused; starting over it too.
    ok(tiny_search(&out, 1, &[]).output().unwrap());
    let before = std::fs::read(out.join("run.h5")).unwrap();
    fails_with(
        supernet()
            .args([
                "search",
                "--quiet",
                "--space",
                "supernets/darts_cnn.toml",
                "--resume",
            ])
            .arg(&out)
            .output()
            .unwrap(),
        &["--space", "darts_cnn.toml"],
    );
    fails_with(tiny_search(&out, 1, &[]).output().unwrap(), &["--resume"]);
    assert_eq!(
        std::fs::read(out.join("run.h5")).unwrap(),
        before,
        "nothing already written is lost"
    );
}

/// Activation recomputation (`--recompute`) must give what one backward pass gives: the
/// same loss, the same gradients up to summation order (alphas and weights, both as
/// `autograd.grad` and as `.backward()`), and BN running statistics updated exactly once.
#[test]
fn recomputation_gives_the_loss_gradients_and_bn_statistics_of_one_backward_pass() {
    use supernet::search::{Batch, SearchConfig, SearchState};
    use supernet::space::SearchSpace;
    use supernet::supernet::InputShape;
    for (path, input, partial_channels) in [
        ("supernets/tiny.toml", "3x16x16", 1),
        ("supernets/tiny.toml", "3x16x16", 2),
        ("supernets/nb201.toml", "3x16x16", 1),
    ] {
        let space = SearchSpace::from_file(Path::new(path)).unwrap();
        let input = InputShape::parse(input, 10).unwrap();
        let state = |recompute: bool| {
            let cfg = SearchConfig {
                recompute,
                partial_channels,
                ..SearchConfig::default()
            };
            SearchState::new(&space, input, &cfg, Device::Cpu).unwrap()
        };
        let (plain, recomputed) = (state(false), state(true));
        tch::manual_seed(3);
        let batch = Batch {
            images: Tensor::randn([8, 3, 16, 16], (Kind::Float, Device::Cpu)),
            labels: Tensor::randint(10, [8], (Kind::Int64, Device::Cpu)),
        };
        let wrt = |st: &SearchState| -> Vec<Tensor> {
            st.arch
                .tensors()
                .into_iter()
                .chain(st.weights.iter().map(|w| w.shallow_clone()))
                .collect()
        };
        let (loss_a, acc_a, grads_a) = plain.grads_of(&batch, &plain.arch.softmax(), &wrt(&plain));
        let (loss_b, acc_b, grads_b) =
            recomputed.grads_of(&batch, &recomputed.arch.softmax(), &wrt(&recomputed));
        assert_eq!(
            loss_a.double_value(&[]),
            loss_b.double_value(&[]),
            "{path}: loss"
        );
        assert_eq!(acc_a, acc_b);
        assert_eq!(grads_a.len(), grads_b.len());
        let close = |a: &Tensor, b: &Tensor, what: &str| {
            let scale = a.abs().max().double_value(&[]).max(1e-12);
            let diff = (a - b).abs().max().double_value(&[]);
            assert!(
                diff <= 1e-4 * scale,
                "{path}: {what}: max |diff| {diff} vs max {scale}"
            );
        };
        let n_arch = plain.arch.tensors().len();
        let name = |i: usize| match i.checked_sub(n_arch) {
            Some(w) => plain.weight_names[w].clone(),
            None => format!("architecture tensor {i}"),
        };
        for (i, (a, b)) in grads_a.iter().zip(&grads_b).enumerate() {
            assert_eq!(
                a.defined(),
                b.defined(),
                "{path}: gradient of {} defined",
                name(i)
            );
            if a.defined() {
                close(
                    a,
                    b,
                    &format!("K {partial_channels}: gradient of {}", name(i)),
                );
            }
        }
        // BN statistics: updated once by each (the recomputation restores its second update).
        for (a, b) in plain.buffers.iter().zip(&recomputed.buffers) {
            assert!(a.equal(b), "{path}: BN running statistics differ");
        }
        // As `.backward()` (the weight step), with constant mixing weights.
        let _ = plain.backward(&batch, &plain.arch.softmax_detached());
        let _ = recomputed.backward(&batch, &recomputed.arch.softmax_detached());
        for (a, b) in plain.weights.iter().zip(&recomputed.weights) {
            close(&a.grad(), &b.grad(), "weight .grad");
        }
        for (a, b) in plain
            .arch
            .tensors()
            .iter()
            .zip(recomputed.arch.tensors().iter())
        {
            assert!(a.grad().abs().max().double_value(&[]) == 0.0 && b.grad().equal(&a.grad()));
        }
    }
}

/// The memory check predicts the step's peak before a search starts and refuses one that
/// will not fit, naming the batch size and what to try; nothing is trained then, and the
/// probes never take much more than the limit.
#[test]
fn search_that_will_not_fit_in_memory_is_refused_before_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let out = tiny_search(&run, 1, &["--memory-limit", "0.01"])
        .output()
        .unwrap();
    // The probes are held to the limit: at 0.01 GiB the first one goes past it at once.
    fails_with(
        out,
        &["batch size", "0.01 GiB", "--batch-size", "--recompute"],
    );
    assert!(
        !run.join("run.h5").exists(),
        "a refused search wrote a run file"
    );
    // With room, the search runs in the same directory.
    ok(tiny_search(&run, 1, &["--memory-limit", "64"])
        .output()
        .unwrap());
    assert!(run.join("run.h5").exists());
}
