//! Once-for-All elastic weights on chain spaces: kernel transformations at their identity
//! initialisation, expansion slicing against a hand-built smaller block, parameter counts,
//! and an extracted sub-network computing what the elastic supernet computes on its path.
use super::chain::{chain_run, chain_space};
use supernet::inspect::count_parameters;
use supernet::ops::{ElasticMbConv, MbConv};
use supernet::space::chain::{
    elastic_supernet_params, kernel_transforms, supernet_cost, ChainArch, Choice, WeightSharing,
};
use supernet::supernet::{image_shape, ChainNet, InputShape, MixWeights, Pass};
use tch::{nn, Device, Kind, Tensor};

const FMNIST: InputShape = InputShape {
    channels: 1,
    height: 28,
    width: 28,
    classes: 10,
};

/// An elastic block of mbv3_chain's first searchable layer with SE (k7, e6 at most).
fn elastic_block() -> (
    nn::VarStore,
    ElasticMbConv,
    supernet::space::chain::LayerPlan,
) {
    let space = chain_space("mbv3_chain");
    let plan = space
        .plan((28, 28))
        .into_iter()
        .find(|l| l.searchable.is_some() && l.se)
        .expect("a searchable SE layer");
    tch::manual_seed(4);
    let vs = nn::VarStore::new(Device::Cpu);
    let block = ElasticMbConv::new(&vs.root(), &plan, 7, 6, &kernel_transforms(&space));
    (vs, block, plan)
}

fn var(vs: &nn::VarStore, name: &str) -> Tensor {
    vs.variables()
        .remove(name)
        .unwrap_or_else(|| panic!("no {name}"))
}

#[test]
fn kernel_transforms_at_identity_are_centre_crops() {
    let (vs, block, plan) = elastic_block();
    let hidden = (plan.c_in * 4) as i64;
    let full = var(&vs, "depthwise.conv.weight");
    for (k, start) in [(7, 0), (5, 1), (3, 2)] {
        let want = full
            .narrow(0, 0, hidden)
            .narrow(2, start, k)
            .narrow(3, start, k);
        assert!(block.kernel(k as usize, hidden).equal(&want), "kernel {k}");
    }
    // A learnt matrix changes the smaller kernels only.
    tch::no_grad(|| {
        let _ = var(&vs, "depthwise.transform_7to5").g_add_scalar_(0.1);
    });
    let crop5 = full.narrow(0, 0, hidden).narrow(2, 1, 5).narrow(3, 1, 5);
    assert!(!block.kernel(5, hidden).allclose(&crop5, 1e-4, 1e-4, false));
    assert!(block.kernel(7, hidden).equal(&full.narrow(0, 0, hidden)));
    // Direction of the map (OFA's `F.linear(x, M)`: `out_i = sum_j M_ij x_j`): with a
    // permutation matrix, out_i = x_perm(i) on the centre 5x5, per channel.
    let perm: Vec<i64> = (0..25).map(|i| (i * 7 + 3) % 25).collect();
    let m = Tensor::zeros([25, 25], (Kind::Float, Device::Cpu));
    for (i, &j) in perm.iter().enumerate() {
        let _ = m.get(i as i64).get(j).fill_(1.0);
    }
    tch::no_grad(|| var(&vs, "depthwise.transform_7to5").copy_(&m));
    let centre = crop5.reshape([hidden, 25]);
    let want = centre
        .index_select(1, &Tensor::from_slice(&perm))
        .reshape([hidden, 1, 5, 5]);
    assert!(block.kernel(5, hidden).equal(&want));
    assert_eq!(block.transforms_used(7), vec![]);
    assert_eq!(block.transforms_used(3), vec![(7, 5), (5, 3)]);
}

#[test]
fn an_expansion_prefix_is_a_smaller_block_with_the_sliced_weights() {
    let (vs, block, plan) = elastic_block();
    let (kernel, expand) = (5usize, 4usize);
    let hidden = (plan.c_in * expand) as i64;
    let sq = supernet::space::chain::se_channels(hidden as usize) as i64;
    let small_vs = nn::VarStore::new(Device::Cpu);
    let small = MbConv::new(&small_vs.root(), &plan, kernel, expand);
    // Slice by hand: first `hidden` expanded channels everywhere, centre 5x5 of the 7x7.
    let rows = |name: &str, n: i64| var(&vs, name).narrow(0, 0, n);
    let mut want: Vec<(&str, Tensor)> = vec![
        ("expand.conv.weight", rows("expand.conv.weight", hidden)),
        (
            "depthwise.conv.weight",
            rows("depthwise.conv.weight", hidden)
                .narrow(2, 1, 5)
                .narrow(3, 1, 5),
        ),
        (
            "se.fc1.weight",
            rows("se.fc1.weight", sq).narrow(1, 0, hidden),
        ),
        ("se.fc1.bias", rows("se.fc1.bias", sq)),
        (
            "se.fc2.weight",
            rows("se.fc2.weight", hidden).narrow(1, 0, sq),
        ),
        ("se.fc2.bias", rows("se.fc2.bias", hidden)),
        (
            "project.conv.weight",
            var(&vs, "project.conv.weight").narrow(1, 0, hidden),
        ),
    ];
    for part in ["expand", "depthwise"] {
        for t in ["weight", "bias", "running_mean", "running_var"] {
            let name = format!("{part}.bn.{t}");
            want.push((
                Box::leak(name.clone().into_boxed_str()),
                rows(&name, hidden),
            ));
        }
    }
    for t in ["weight", "bias", "running_mean", "running_var"] {
        let name = format!("project.bn.{t}");
        want.push((Box::leak(name.clone().into_boxed_str()), var(&vs, &name)));
    }
    let mut small_vars = small_vs.variables();
    assert_eq!(
        small_vars.len(),
        want.len(),
        "every tensor of the small block"
    );
    // Give the BN statistics non-trivial values first, so that slicing them matters.
    tch::no_grad(|| {
        for name in ["expand.bn.running_mean", "depthwise.bn.running_var"] {
            let mut t = var(&vs, name);
            t.copy_(&(Tensor::rand_like(&t) + 0.5));
        }
    });
    tch::no_grad(|| {
        for (name, t) in &want {
            small_vars
                .remove(*name)
                .unwrap_or_else(|| panic!("small block has no {name}"))
                .copy_(t);
        }
    });
    // The materialised weights are the hand-sliced ones.
    for (name, t) in block.materialise(kernel, expand) {
        let hand = &want.iter().find(|(n, _)| *n == name).unwrap().1;
        assert!(t.equal(hand), "{name}");
    }
    let xs = Tensor::randn([4, plan.c_in as i64, 14, 14], (Kind::Float, Device::Cpu));
    let (a, b) = tch::no_grad(|| {
        (
            block.forward_t(&xs, kernel, expand, false),
            small.forward_t(&xs, false),
        )
    });
    assert!(a.allclose(&b, 1e-5, 1e-5, false), "eval mode");
    // Training mode: the same output and the same running-statistics update on the prefix.
    let (a, b) = tch::no_grad(|| {
        (
            block.forward_t(&xs, kernel, expand, true),
            small.forward_t(&xs, true),
        )
    });
    assert!(a.allclose(&b, 1e-5, 1e-5, false), "train mode");
    let updated = var(&vs, "depthwise.bn.running_mean").narrow(0, 0, hidden);
    let small_mean = small_vs
        .variables()
        .remove("depthwise.bn.running_mean")
        .unwrap();
    assert!(updated.allclose(&small_mean, 1e-6, 1e-6, false));
}

#[test]
fn elastic_supernets_count_their_parameters_and_need_an_expansion_layer() {
    let imagenet = InputShape {
        channels: 3,
        height: 224,
        width: 224,
        classes: 1000,
    };
    // Elastic vs separate parameters (README "Elastic weights" quotes these).
    for (name, input, elastic, separate) in [
        ("mbv3_chain", FMNIST, 142_046, 638_178),
        ("mbv3_chain_imagenet", imagenet, 7_680_160, 30_384_136),
    ] {
        let space = chain_space(name);
        let vs = nn::VarStore::new(Device::Cpu);
        ChainNet::supernet_with(&vs.root(), &space, input, WeightSharing::Elastic).unwrap();
        let counted = count_parameters(&vs).0 as u64;
        assert_eq!(counted, elastic_supernet_params(&space, image_shape(input)));
        let sep = supernet_cost(&space, image_shape(input)).params;
        assert_eq!((counted, sep), (elastic, separate), "{name}");
    }
    let space = chain_space("mobilenet_v2");
    let mut with_one = space.clone();
    with_one.expansions = vec![1, 6];
    let vs = nn::VarStore::new(Device::Cpu);
    let e = ChainNet::supernet_with(&vs.root(), &with_one, FMNIST, WeightSharing::Elastic)
        .unwrap_err()
        .to_string();
    assert!(e.contains("expansions") && e.contains("elastic"), "{e}");
}

#[test]
fn an_extracted_subnet_of_an_elastic_supernet_gives_its_logits() {
    use super::search::{checkpoint_bits, ok, search_killed_and_resumed};
    let dir = tempfile::tempdir().unwrap();
    let (a, c) = (dir.path().join("a"), dir.path().join("c"));
    let flags = ["--strategy", "spos", "--weight-sharing", "elastic"];
    ok(chain_run(&a, &flags).output().unwrap());
    search_killed_and_resumed(chain_run(&c, &flags), &c);
    assert_eq!(checkpoint_bits(&a), checkpoint_bits(&c));
    let config = std::fs::read_to_string(a.join("config.toml")).unwrap();
    assert!(config.contains("weight_sharing = \"elastic\""), "{config}");
    assert!(checkpoint_bits(&a)
        .keys()
        .any(|k| k.contains("elastic.depthwise.transform_5to3")));
    let arch = "mbconv_k3_e3,skip,mbconv_k5_e4,mbconv_k7_e6,mbconv_k3_e6,mbconv_k5_e3";
    let out = dir.path().join("x");
    ok(super::search::extract(&a, &out, &["--genotype", arch])
        .output()
        .unwrap());
    let (model, _) = supernet::model::load_any(&out, Device::Cpu).unwrap();
    let trained = supernet::search::load_trained_chain(&a).unwrap();
    let s = &trained.search;
    let arch = ChainArch::parse(arch).unwrap();
    tch::manual_seed(9);
    let xs = Tensor::randn([6, 1, 28, 28], (Kind::Float, Device::Cpu));
    let mix = MixWeights::one_hot_rows(
        &arch.columns(&s.space),
        s.space.choices().len(),
        Device::Cpu,
    );
    let (want, got) = tch::no_grad(|| {
        (
            s.net.forward_t(&xs, &mix, false),
            model.forward(&xs, Pass::new(false)).main,
        )
    });
    let diff = (&want - &got).abs().max().double_value(&[]);
    assert!(diff < 1e-5, "logits differ by {diff}");
    assert!(arch.layers.contains(&Choice::Skip));
}

#[test]
fn an_elastic_spos_step_leaves_what_its_path_does_not_use() {
    let cfg = supernet::search::SearchConfig {
        weight_sharing: WeightSharing::Elastic,
        ..Default::default()
    };
    let space = chain_space("mbv3_chain");
    let mut s =
        supernet::search::chain::ChainSearch::new(&space, FMNIST, &cfg, Device::Cpu).unwrap();
    let mut checked = 0;
    for step in 0..4 {
        let before: Vec<Tensor> = s.weights.iter().map(|w| w.detach().copy()).collect();
        tch::manual_seed(step);
        let batch = supernet::search::Batch {
            images: Tensor::randn([8, 1, 28, 28], (Kind::Float, Device::Cpu)),
            labels: Tensor::randint(10, [8], (Kind::Int64, Device::Cpu)),
        };
        let (arch, _) = s.spos_step(&batch, 0.1).unwrap();
        let off = s.off_path(&arch);
        for ((name, w), b) in s.weight_names.iter().zip(&s.weights).zip(&before) {
            let is_off = off.iter().any(|p| name.starts_with(p));
            assert_eq!(w.equal(b), is_off, "{name} under {arch} (off: {is_off})");
            checked += usize::from(is_off);
        }
    }
    assert!(checked > 0, "some weights were off the paths");
}
