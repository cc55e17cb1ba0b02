//! Chain spaces (MobileNet-style MBConv stages): exact costs of known networks, the
//! supernet with separate weights per choice, refused files.
use supernet::inspect::count_parameters;
use supernet::space::chain::{
    arch_cost, num_architectures, supernet_cost, ChainArch, ChainSpace, Choice, ImageShape,
};
use supernet::supernet::{image_shape, ChainNet, InputShape, MixWeights};
use tch::{nn, Device, Kind, Tensor};

pub fn chain_space(name: &str) -> ChainSpace {
    ChainSpace::from_file(format!("supernets/{name}.toml").as_ref()).unwrap()
}

const IMAGENET: InputShape = InputShape {
    channels: 3,
    height: 224,
    width: 224,
    classes: 1000,
};

const FMNIST: InputShape = InputShape {
    channels: 1,
    height: 28,
    width: 28,
    classes: 10,
};

fn mobilenet_v2() -> (ChainSpace, ChainArch) {
    let space = chain_space("mobilenet_v2");
    let k3e6 = Choice::MbConv {
        kernel: 3,
        expand: 6,
    };
    let arch = ChainArch::uniform(&space, k3e6).unwrap();
    (space, arch)
}

#[test]
fn mobilenet_v2_has_torchvisions_parameter_count() {
    let (space, arch) = mobilenet_v2();
    assert_eq!(arch.layers.len(), 16);
    // torchvision.models.mobilenet_v2(): sum(p.numel() for p in m.parameters()).
    let cost = arch_cost(&space, &arch, image_shape(IMAGENET));
    assert_eq!(cost.params, 3_504_872);
    let vs = nn::VarStore::new(Device::Cpu);
    let net = ChainNet::of_arch(&vs.root(), &space, IMAGENET, &arch).unwrap();
    assert_eq!(count_parameters(&vs).0, 3_504_872);
    let logits = tch::no_grad(|| {
        net.forward_t(
            &Tensor::randn([1, 3, 224, 224], (Kind::Float, Device::Cpu)),
            &MixWeights::one_hot_rows(&arch.columns(&space), space.choices().len(), Device::Cpu),
            false,
        )
    });
    assert_eq!(logits.size(), [1, 1000]);
}

#[test]
fn counted_costs_equal_the_built_networks() {
    for (name, input) in [
        ("mbv3_chain", FMNIST),
        (
            "mbv3_chain",
            InputShape {
                channels: 3,
                height: 32,
                width: 32,
                classes: 100,
            },
        ),
        ("mbv3_chain_imagenet", IMAGENET),
    ] {
        let space = chain_space(name);
        let image: ImageShape = image_shape(input);
        let vs = nn::VarStore::new(Device::Cpu);
        ChainNet::supernet(&vs.root(), &space, input).unwrap();
        assert_eq!(
            count_parameters(&vs).0 as u64,
            supernet_cost(&space, image).params,
            "{name} supernet"
        );
        // A mixed architecture: choices cycle through each layer's allowed list.
        let plan = space.plan(image.hw);
        let layers = plan
            .iter()
            .filter(|l| l.searchable.is_some())
            .enumerate()
            .map(|(i, l)| l.choices[(i * 5 + 2) % l.choices.len()])
            .collect();
        let arch = ChainArch { layers };
        let vs = nn::VarStore::new(Device::Cpu);
        ChainNet::of_arch(&vs.root(), &space, input, &arch).unwrap();
        assert_eq!(
            count_parameters(&vs).0 as u64,
            arch_cost(&space, &arch, image).params,
            "{name} {arch}"
        );
    }
    // OFA's MobileNetV3 space: 5 stages of 2-4 layers, 9 blocks each: sum over depths of 9^d
    // per stage, to the fifth power.
    let per_stage: u128 = 9u128.pow(2) + 9u128.pow(3) + 9u128.pow(4);
    // Depth search by independent skips gives each of the last two layers 10 choices.
    let ours: u128 = 9u128.pow(2) * 10u128.pow(2);
    assert!(ours > per_stage);
    assert_eq!(
        num_architectures(&chain_space("mbv3_chain_imagenet")),
        Some(ours.pow(5))
    );
}

#[test]
fn an_architecture_inherits_the_supernets_outputs() {
    let space = chain_space("mbv3_chain");
    tch::manual_seed(3);
    let vs = nn::VarStore::new(Device::Cpu);
    let supernet = ChainNet::supernet(&vs.root(), &space, FMNIST).unwrap();
    let arch =
        ChainArch::parse("mbconv_k5_e4,skip,mbconv_k7_e3,mbconv_k3_e6,mbconv_k3_e3,skip").unwrap();
    let mut sub_vs = nn::VarStore::new(Device::Cpu);
    let sub = ChainNet::of_arch(&sub_vs.root(), &space, FMNIST, &arch).unwrap();
    sub_vs.copy(&vs).unwrap();
    let xs = Tensor::randn([4, 1, 28, 28], (Kind::Float, Device::Cpu));
    let one_hot =
        MixWeights::one_hot_rows(&arch.columns(&space), space.choices().len(), Device::Cpu);
    let (a, b) = tch::no_grad(|| {
        (
            supernet.forward_t(&xs, &one_hot, true),
            sub.forward_t(&xs, &one_hot, true),
        )
    });
    assert_eq!(a.size(), [4, 10]);
    assert!(a.equal(&b));
    // A dense mixture runs every choice and differs from the path (training-mode BN: at
    // initialisation, evaluation-mode logits are nearly the classifier's bias alone).
    let n = space.choices().len() as i64;
    let rows = space.num_searchable() as i64;
    let dense = MixWeights::dense(Tensor::full(
        [rows, n],
        1.0 / n as f64,
        (Kind::Float, Device::Cpu),
    ));
    let mixed = tch::no_grad(|| supernet.forward_t(&xs, &dense, true));
    assert!(!mixed.allclose(&a, 1e-3, 1e-3, false));
}

#[test]
fn bad_chain_files_are_refused_with_file_field_and_value() {
    let dir = std::env::temp_dir().join(format!("chain-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = std::fs::read_to_string("supernets/mbv3_chain.toml").unwrap();
    for (from, to, field, value) in [
        ("kernels = [3, 5, 7]", "kernels = [3, 4, 7]", "kernels", "4"),
        (
            "expansions = [3, 4, 6]",
            "expansions = [3, 0, 6]",
            "expansions",
            "0",
        ),
        (
            "fixed = \"mbconv_k3_e1\"",
            "fixed = \"mbconv_k9x_e1\"",
            "fixed",
            "mbconv_k9x_e1",
        ),
        (
            "skippable = 1",
            "skippable = 2",
            "network.stages[1].skippable",
            "2",
        ),
        ("act = \"relu\"", "act = \"gelu\"", "act", "gelu"),
    ] {
        assert!(good.contains(from), "{from}");
        let path = dir.join("bad.toml");
        std::fs::write(&path, good.replacen(from, to, 1)).unwrap();
        let e = supernet::space::Space::load(&path).unwrap_err().to_string();
        for part in [path.to_str().unwrap(), field, value] {
            assert!(e.contains(part), "{e:?} should name {part:?}");
        }
    }
    // A chain file given where a cell space is needed says so.
    let e = supernet::space::SearchSpace::load("supernets/mbv3_chain.toml".as_ref())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("supernets/mbv3_chain.toml") && e.contains("chain space"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

fn batch(seed: i64) -> supernet::search::Batch {
    tch::manual_seed(seed);
    supernet::search::Batch {
        images: Tensor::randn([8, 1, 28, 28], (Kind::Float, Device::Cpu)),
        labels: Tensor::randint(10, [8], (Kind::Int64, Device::Cpu)),
    }
}

pub fn chain_search() -> supernet::search::chain::ChainSearch {
    let cfg = supernet::search::SearchConfig {
        arch_lr: 3e-2,
        ..Default::default()
    };
    supernet::search::chain::ChainSearch::new(&chain_space("mbv3_chain"), FMNIST, &cfg, Device::Cpu)
        .unwrap()
}

fn snapshot(ts: &[Tensor]) -> Vec<Tensor> {
    ts.iter().map(|t| t.detach().copy()).collect()
}

#[test]
fn darts_relaxation_steps_are_reproducible_and_derive_a_valid_architecture() {
    let run = || {
        let mut s = chain_search();
        let init = s.arch.alphas.detach().copy();
        for step in 0..2 {
            let r = s
                .darts_step(&batch(10 + step), &batch(20 + step), 0.025)
                .unwrap();
            assert!(r.train_loss.is_finite() && r.val_loss.is_finite());
        }
        assert!(!s.arch.alphas.equal(&init), "the alphas moved");
        // Rows are probabilities over the allowed choices only.
        let space = &s.space;
        let plan = space.plan((28, 28));
        let columns = space.choices();
        let searched: Vec<_> = plan.iter().filter(|l| l.searchable.is_some()).collect();
        for (row, layer) in s.arch.probabilities().iter().zip(&searched) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
            for (p, c) in row.iter().zip(&columns) {
                assert_eq!(*p == 0.0, !layer.choices.contains(c), "{c} in {layer:?}");
            }
        }
        let arch = s.derive();
        arch.validate(space).unwrap();
        (s.arch.alphas.detach().copy(), snapshot(&s.weights), arch)
    };
    let (a1, w1, arch1) = run();
    let (a2, w2, arch2) = run();
    assert!(a1.equal(&a2));
    assert!(w1.iter().zip(&w2).all(|(x, y)| x.equal(y)));
    assert_eq!(arch1, arch2);
}

#[test]
fn a_spos_step_trains_only_its_path() {
    let mut s = chain_search();
    let before = snapshot(&s.weights);
    let alphas = s.arch.alphas.detach().copy();
    let (arch, r) = s.spos_step(&batch(5), 0.1).unwrap();
    assert!(r.train_loss.is_finite());
    arch.validate(&s.space).unwrap();
    let off = s.off_path(&arch);
    assert!(!off.is_empty());
    let mut moved = 0;
    for ((name, w), b) in s.weight_names.iter().zip(&s.weights).zip(&before) {
        let is_off = off.iter().any(|p| name.starts_with(p));
        if is_off {
            assert!(w.equal(b), "{name} is off the path {arch} but changed");
        } else if !w.equal(b) {
            moved += 1;
        }
    }
    assert!(moved > 10, "only {moved} on-path weights moved");
    assert!(s.arch.alphas.equal(&alphas), "SPOS leaves the alphas alone");
    // The next step draws from (seed, step 1): another path, the same on every run.
    let (next, _) = s.spos_step(&batch(6), 0.1).unwrap();
    let mut again = chain_search();
    again.spos_step(&batch(5), 0.1).unwrap();
    assert_eq!(again.spos_step(&batch(6), 0.1).unwrap().0, next);
}

/// A short search on the chain space (epochs of 4 steps of 32 Fashion-MNIST images).
pub(crate) fn chain_run(out: &std::path::Path, extra: &[&str]) -> std::process::Command {
    let mut c = super::search::supernet();
    c.args([
        "search",
        "--space",
        "supernets/mbv3_chain.toml",
        "--subset",
        "256",
        "--batch-size",
        "32",
        "--epochs",
        "2",
        "--seed",
        "3",
        "--threads",
        "1",
        "--checkpoint-every",
        "2",
        "--quiet",
        "--out",
    ])
    .arg(out)
    .args(extra);
    c
}

#[test]
pub fn chain_searches_resume_bit_exactly_after_sigkill_and_record_their_alphas() {
    use super::search::{checkpoint_bits, ok, search_killed_and_resumed};
    let dir = tempfile::tempdir().unwrap();
    for strategy in ["first-order", "gdas", "spos"] {
        let (a, c) = (
            dir.path().join(strategy),
            dir.path().join(format!("{strategy}-c")),
        );
        let flags = ["--strategy", strategy];
        let out = ok(chain_run(&a, &flags).output().unwrap());
        search_killed_and_resumed(chain_run(&c, &flags), &c);
        assert_eq!(
            checkpoint_bits(&a),
            checkpoint_bits(&c),
            "{strategy}: resumed run differs from the uninterrupted one"
        );
        let space = chain_space("mbv3_chain");
        let text = std::fs::read_to_string(a.join("genotype.txt")).unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), text.trim());
        ChainArch::parse(text.trim())
            .unwrap()
            .validate(&space)
            .unwrap();
        let run = supernet::record::read_run(&c.join("run.h5")).unwrap();
        assert_eq!(run.steps.len(), 8);
        let rows = space.num_searchable() * space.choices().len();
        assert!(run.alphas.len() >= 2);
        assert!(run
            .alphas
            .iter()
            .all(|r| r.normal.len() == rows && r.reduce.is_none()));
        assert_eq!(run.meta.ops.len(), space.choices().len());
        if strategy == "spos" {
            // SPOS's epoch validation scores the derived path, not the mixture it never
            // trains: the recorded loss is the path's on the architecture half.
            let trained = supernet::search::load_trained_chain(&a).unwrap();
            let s = &trained.search;
            let arch = ChainArch::parse(text.trim()).unwrap();
            let columns = s.space.choices().len();
            let path = MixWeights::one_hot_rows(&arch.columns(&s.space), columns, Device::Cpu);
            let forward = |w: &MixWeights| {
                supernet::evaluate::evaluate_with(
                    |x| s.net.forward_t(x, w, false),
                    &trained.val,
                    Device::Cpu,
                    None,
                )
                .loss
            };
            let recorded = supernet::record::read_run(&a.join("run.h5"))
                .unwrap()
                .epochs
                .last()
                .unwrap()
                .val_loss;
            // A run this short is near chance either way: the path's loss is the recorded
            // one (to rounding), the mixture's is measurably not.
            let (on_path, mixed) = (forward(&path), forward(&s.arch.softmax_detached()));
            assert!(
                (on_path - recorded).abs() * 10.0 < (mixed - recorded).abs(),
                "recorded {recorded}, derived path {on_path}, mixture {mixed}"
            );
        }
        let moved = run.alphas.first().unwrap().normal != run.alphas.last().unwrap().normal;
        assert_eq!(
            moved,
            strategy != "spos",
            "{strategy}: alphas moved = {moved}"
        );
    }
    // Strategies without a chain form are refused by name.
    let out = chain_run(&dir.path().join("enas"), &["--strategy", "enas"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("strategy") && err.contains("enas"), "{err}");
}

#[test]
fn gumbel_samples_stay_on_allowed_choices_and_pass_a_gradient_straight_through() {
    let mut s = chain_search();
    let space = s.space.clone();
    let columns = space.choices();
    let allowed: Vec<Vec<bool>> = space
        .plan((1, 1))
        .iter()
        .filter(|l| l.searchable.is_some())
        .map(|l| columns.iter().map(|c| l.choices.contains(c)).collect())
        .collect();
    let mut skips = 0;
    for seed in 0..50u64 {
        let mut rng = supernet::rng::Rng::from_key(&[seed]);
        let (arch, _) = s.arch.gumbel_hard(&space, 1.0, &mut rng, true);
        arch.validate(&space).unwrap();
        skips += arch.layers.iter().filter(|c| c.is_skip()).count();
    }
    assert!(skips > 0, "skip is drawn where allowed");
    let mut rng = supernet::rng::Rng::from_key(&[7]);
    let (arch, w) = s.arch.gumbel_hard(&space, 0.5, &mut rng, false);
    let xs = batch(1);
    let loss = s
        .net
        .forward_t(&xs.images, &w, true)
        .cross_entropy_for_logits(&xs.labels);
    loss.backward();
    let g = Vec::<Vec<f32>>::try_from(s.arch.alphas.grad()).unwrap();
    for (r, row) in g.iter().enumerate() {
        for (k, v) in row.iter().enumerate() {
            assert!(v.is_finite());
            if !allowed[r][k] {
                assert_eq!(*v, 0.0, "masked column {k} of layer {r}");
            }
        }
        assert!(row.iter().any(|v| *v != 0.0), "layer {r} gets a gradient");
    }
    arch.validate(&space).unwrap();
    s.gdas_step(&batch(2), &batch(3), 0.025, 5.0).unwrap();
}
