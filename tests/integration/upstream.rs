//! Parity with the upstream implementations (issue 15): the Rust networks and search steps
//! against the published code, installed by `scripts/setup` (xautodl 1.0.0; nni 3.0 in
//! `.venv/upstream`) and driven by `scripts/upstream.py`, which copies the Rust weights into
//! the upstream modules through an explicit name map and runs them on the same inputs,
//! mixing weights, Gumbel noise and optimizer state. `scripts/reference.py` (written from
//! the Rust sources) is only checked against these indirectly: the same networks pass both.
//!
//! Run alone with `cargo test --release --locked upstream -- --nocapture` (prints every
//! measured difference).
use super::space::{space, DARTS_V2};
use super::supernet::{float64_parity, input, max_rel_diff};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use supernet::arch::ArchParams;
use supernet::derive::derive;
use supernet::inspect::count_parameters;
use supernet::rng::{Rng, PURPOSE_GDAS_ARCH, PURPOSE_GDAS_WEIGHTS, PURPOSE_SPOS};
use supernet::search::{
    Batch, FirstOrder, Gdas, SearchConfig, SearchState, SecondOrder, Spos, Strategy,
};
use supernet::space::{CellType, Genotype, NetworkOverrides, SearchSpace};
use supernet::supernet::{ArchWeights, MixWeights, OpStyle, Pass, Supernet};
use tch::{nn, Device, Kind, Tensor};

/// Logits: `max |ours - upstream| / max |upstream| < 1e-5`. Both sides are float32 on the
/// same weights and inputs; they differ only in summation order (channels-last kernels and
/// one shared ReLU per state here, NCHW upstream; edges summed in a different order), which
/// moves logits of these networks by about 1e-7 relative. 1e-5 is the bound and two
/// orders above that noise, while any semantic change (an op order, a padding, a stride, a
/// softmax axis) moves them by 1e-2 or more.
const LOGITS_RTOL: f64 = 1e-5;

/// Gradients of a loss with respect to the alphas (GDAS straight-through): the same
/// measure at 1e-4. A gradient is a sum over the whole backward pass of both networks, so
/// its summation noise is about ten times that of the logits; the semantics under test
/// (which ops receive a straight-through gradient) change it by order one.
const GRAD_RTOL: f64 = 1e-4;

/// Step results, per tensor. The driver runs each step three times from the same start: in
/// float32 as published, in float32 with channels-last memory layout (the layout, and so the
/// kernels, ours uses on the CPU) and in float64. The larger `max |up32 - up64|` of the two
/// float32 runs is how far float32 rounding moves that tensor in upstream's own
/// implementation; ours must be within `STEP_NOISE_FACTOR` times that of the float64 result,
/// or within `STEP_ULP_FLOOR` of the tensor's largest entry (about two float32 ulps: a floor
/// for tensors that upstream happens to round like float64). 10 is set before measuring,
/// for two independent float32 computations of one formula: the maxima of two such rounding
/// errors are of one order, and a wrong formula (a missing momentum or weight-decay term, a
/// sign, eps / ||v|| vs eps * ||v||) moves a tensor by orders of magnitude more.
const STEP_NOISE_FACTOR: f64 = 10.0;
const STEP_ULP_FLOOR: f64 = 2.5e-7;

/// libtorch on one thread in this test's thread (the driver runs on one too). The test
/// binary runs two tests at a time on these 2-core machines; two libtorch thread pools of two
/// threads each slow a small step from 1 s to 30 s or more.
fn one_thread() {
    tch::set_num_threads(1);
}

/// Run the driver on `spec` (written to `dir/spec.json`); its output tensors by name.
fn upstream(dir: &Path, mut spec: Value) -> BTreeMap<String, Tensor> {
    let out = dir.join("out.safetensors");
    spec["out"] = json!(out);
    let spec_file = dir.join("spec.json");
    std::fs::write(&spec_file, serde_json::to_string_pretty(&spec).unwrap()).unwrap();
    let run = Command::new(".venv/bin/python")
        .arg("scripts/upstream.py")
        .arg(&spec_file)
        .output()
        .expect("run .venv/bin/python (scripts/setup creates it)");
    assert!(
        run.status.success(),
        "upstream.py {} failed:\n{}",
        spec["net"],
        String::from_utf8_lossy(&run.stderr)
    );
    Tensor::read_safetensors(&out)
        .unwrap()
        .into_iter()
        .collect()
}

fn get<'a>(out: &'a BTreeMap<String, Tensor>, key: &str) -> &'a Tensor {
    out.get(key)
        .unwrap_or_else(|| panic!("upstream output has no {key}"))
}

fn op_names(s: &SearchSpace) -> Vec<&'static str> {
    s.ops.iter().map(|o| o.name()).collect()
}

fn sized(name: &str, layers: usize, channels: usize) -> SearchSpace {
    space(name)
        .with_overrides(NetworkOverrides {
            layers: Some(layers),
            channels: Some(channels),
        })
        .unwrap()
}

thread_local! {
    static DRAW: std::cell::RefCell<Rng> = std::cell::RefCell::new(Rng::from_key(&[0]));
}

/// Start this test's own random stream. libtorch's generator is global and the tests of
/// this binary run concurrently, so its draws would depend on which other tests run at the
/// same time; every tensor here comes from a seeded stream of the test's thread instead.
fn seed(s: u64) {
    DRAW.with(|d| *d.borrow_mut() = Rng::from_key(&[0x5550_5354, s]));
}

/// Uniform in [0, 1).
fn rand(shape: &[i64]) -> Tensor {
    let n: i64 = shape.iter().product();
    let v: Vec<f32> = DRAW.with(|d| {
        let mut d = d.borrow_mut();
        (0..n).map(|_| d.unit() as f32).collect()
    });
    Tensor::from_slice(&v).view(shape)
}

/// Standard normal (Box-Muller).
fn randn(shape: &[i64]) -> Tensor {
    let n: i64 = shape.iter().product();
    let v: Vec<f32> = DRAW.with(|d| {
        let mut d = d.borrow_mut();
        (0..n)
            .map(|_| {
                let u = 1.0 - d.unit(); // (0, 1]
                let t = std::f64::consts::TAU * d.unit();
                ((-2.0 * u.ln()).sqrt() * t.cos()) as f32
            })
            .collect()
    });
    Tensor::from_slice(&v).view(shape)
}

/// Every trainable tensor from this test's stream: weights uniform in +-1/sqrt(fan in)
/// (PyTorch's default initialisation), 1-D tensors (BN affine parameters, biases) away from
/// their initial values (`1 + 0.2 n` for BN weights, `0.2 n` otherwise), so that a name map
/// that swapped two of them could not pass.
fn init_weights(vs: &nn::VarStore) {
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    tch::no_grad(|| {
        for (name, t) in vars.iter().filter(|(_, t)| t.requires_grad()) {
            let shape = t.size();
            let v = if shape.len() >= 2 {
                let bound = 1.0 / ((t.numel() as f64 / shape[0] as f64).sqrt());
                (rand(&shape) * 2.0 - 1.0) * bound
            } else if name.ends_with("weight") {
                randn(&shape) * 0.2 + 1.0
            } else {
                randn(&shape) * 0.2
            };
            t.shallow_clone().copy_(&v);
        }
    });
}

/// Train-mode passes so that BN running statistics approach batch statistics (eval-mode
/// comparisons read them; near their initial values eval-mode BN would hardly normalise,
/// and the convolutions' contribution would be too small to tell ops apart).
fn settle_bn(net: &Supernet, x: &Tensor, w: &ArchWeights, passes: usize) {
    tch::no_grad(|| {
        for k in 0..passes {
            let _ = net.forward_t(&(x * (1.0 + 0.1 * (k % 3) as f64)), w, true);
        }
    });
}

fn raw_alphas(s: &SearchSpace, scale: f64) -> Vec<(CellType, Tensor)> {
    let shape = [s.cell.num_edges() as i64, s.ops.len() as i64];
    s.network
        .cell_types()
        .iter()
        .map(|&t| (t, randn(&shape) * scale))
        .collect()
}

fn softmax_mix(alphas: &[(CellType, Tensor)]) -> ArchWeights {
    let w = |t: CellType| {
        alphas
            .iter()
            .find(|(c, _)| *c == t)
            .map(|(_, a)| MixWeights::dense(a.softmax(-1, Kind::Float)))
    };
    ArchWeights {
        normal: w(CellType::Normal).unwrap(),
        reduce: w(CellType::Reduce),
    }
}

/// Every variable of `vs` (weights and BN statistics), to put back with [`restore`] after
/// a train-mode pass moved the BN statistics.
fn snapshot(vs: &nn::VarStore) -> Vec<(Tensor, Tensor)> {
    vs.variables()
        .into_values()
        .map(|t| (t.shallow_clone(), t.detach().copy()))
        .collect()
}

fn restore(saved: &[(Tensor, Tensor)]) {
    tch::no_grad(|| {
        for (t, v) in saved {
            t.shallow_clone().copy_(v);
        }
    });
}

fn write_io(path: &Path, tensors: &[(String, Tensor)]) {
    Tensor::write_safetensors(tensors, path).unwrap();
}

fn check_logits(what: &str, ours: &Tensor, theirs: &Tensor) {
    let d = max_rel_diff(ours, theirs);
    eprintln!("parity {what}: logits max relative difference {d:.2e}");
    assert!(d < LOGITS_RTOL, "{what}: relative difference {d:e}");
}

// ---------------------------------------------------------------------------------------
// Forward parity: search supernets

/// A supernet of `name` at the given size, its weights drawn by [`init_weights`] and its BN
/// statistics settled, with a batch of inputs.
fn search_net(
    name: &str,
    layers: usize,
    channels: usize,
    shape: &str,
    seed: u64,
) -> (SearchSpace, nn::VarStore, Supernet, Tensor) {
    let s = sized(name, layers, channels);
    self::seed(seed);
    let i = input(shape);
    let vs = nn::VarStore::new(Device::Cpu);
    let net = Supernet::new(&vs.root(), &s, i).unwrap();
    init_weights(&vs);
    let x = randn(&[4, i.channels, i.height, i.width]);
    settle_bn(&net, &x, &softmax_mix(&raw_alphas(&s, 1.0)), 10);
    (s, vs, net, x)
}

/// The DARTS search supernet under a softmax mixture vs xautodl's NASNetworkDARTS (after the
/// three documented changes that make it DARTS's model_search.Network; scripts/upstream.py).
#[test]
fn darts_search_supernet_equals_xautodl_nasnetwork_darts() {
    one_thread();
    let (s, vs, net, x) = search_net("darts_cnn", 6, 8, "3x16x16", 21);
    let dir = tempfile::tempdir().unwrap();
    let alphas = raw_alphas(&s, 1.0);
    let mix = softmax_mix(&alphas);
    vs.save(dir.path().join("w.safetensors")).unwrap();
    let mut io = vec![("x".to_string(), x.shallow_clone())];
    io.extend(
        alphas
            .iter()
            .map(|(t, a)| (format!("alpha_{}", t.name()), a.shallow_clone())),
    );
    write_io(&dir.path().join("io.safetensors"), &io);
    let out = upstream(
        dir.path(),
        json!({"task": "logits", "net": "nasnet-darts", "C": 8, "N": 2, "classes": 10,
               "ops": op_names(&s), "modes": ["eval", "train"],
               "weights": dir.path().join("w.safetensors"), "io": dir.path().join("io.safetensors")}),
    );
    for (mode, train) in [("eval", false), ("train", true)] {
        let ours = tch::no_grad(|| net.forward_t(&x, &mix, train));
        check_logits(
            &format!("darts supernet / NASNetworkDARTS {mode}"),
            &ours,
            get(&out, &format!("logits_{mode}")),
        );
    }
}

/// A GDAS sample (fixed Gumbel noise, given to both) through the supernet vs xautodl's GDAS
/// network: the logits, the ops each sample chose and the straight-through gradient of the
/// cross-entropy with respect to the alphas.
fn gdas_forward_parity(name: &str, layers: usize, net_kind: &str, n: usize) {
    let (s, vs, net, x) = search_net(name, layers, 8, "3x16x16", 23);
    let dir = tempfile::tempdir().unwrap();
    let arch = ArchParams::new(&s, Device::Cpu);
    tch::no_grad(|| {
        for (_, a) in &arch.alphas {
            a.shallow_clone().copy_(&(randn(&a.size()) * 0.5));
        }
    });
    let tau = 5.05;
    // A sample with no op normalising a constant (e.g. a convolution reading a node whose
    // every input is `none`): there, train-mode BN divides rounding noise by sqrt(eps), and
    // upstream's own float32 gradient moves by 0.6% (key 3); the check below adapts its
    // tolerance to that noise, but requires it to be small, so that the comparison has power.
    let key = || Rng::from_key(&[7, PURPOSE_GDAS_ARCH, 4]);
    let noise = arch.gumbel_noise(&mut key());
    let w = arch.gumbel_hard(tau, &mut key(), false);
    let y = Tensor::from_slice(&[1i64, 7, 3, 9]);
    vs.save(dir.path().join("w.safetensors")).unwrap();
    let mut io = vec![
        ("x".to_string(), x.shallow_clone()),
        ("y".to_string(), y.shallow_clone()),
    ];
    for ((t, a), (_, g)) in arch.alphas.iter().zip(&noise) {
        io.push((format!("alpha_{}", t.name()), a.detach()));
        io.push((format!("gumbel_{}", t.name()), g.shallow_clone()));
    }
    write_io(&dir.path().join("io.safetensors"), &io);
    let out = upstream(
        dir.path(),
        json!({"task": "logits", "net": net_kind, "C": 8, "N": n, "classes": 10, "tau": tau,
               "ops": op_names(&s), "modes": ["eval", "train"], "float64": true,
               "weights": dir.path().join("w.safetensors"), "io": dir.path().join("io.safetensors")}),
    );
    for t in s.network.cell_types() {
        let chosen = w.get(*t).weights.detach().argmax(-1, false);
        assert!(
            chosen.equal(get(&out, &format!("index_{}", t.name()))),
            "{net_kind}: the {} sample chose other ops upstream",
            t.name()
        );
    }
    let eval = tch::no_grad(|| net.forward_t(&x, &w, false));
    check_logits(
        &format!("{name} gdas sample / {net_kind} eval"),
        &eval,
        get(&out, "logits_eval"),
    );
    let logits = net.forward_t(&x, &w, true);
    check_logits(
        &format!("{name} gdas sample / {net_kind} train"),
        &logits,
        get(&out, "logits_train"),
    );
    logits.cross_entropy_for_logits(&y).backward();
    for (t, a) in &arch.alphas {
        check_against_float64(
            &format!("{name} gdas / {net_kind}: {} alpha gradient", t.name()),
            &a.grad(),
            &out,
            &format!("grad_alpha_{}", t.name()),
            (GRAD_RTOL, Some(GRAD_RTOL)),
        );
    }
}

#[test]
fn darts_gdas_sample_equals_xautodl_nasnetwork_gdas() {
    one_thread();
    gdas_forward_parity("darts_cnn", 6, "nasnet-gdas", 2);
}

#[test]
fn nb201_gdas_sample_equals_xautodl_tiny_network_gdas() {
    one_thread();
    gdas_forward_parity("nb201", 2, "tiny-gdas", 2);
}

/// The NAS-Bench-201 supernet vs xautodl's search networks: TinyNetworkDarts (softmax),
/// TinyNetworkSETN in its three deterministic modes (joint: softmax; select: the argmax of
/// every edge, which is also our derivation rule; dynamic: a given architecture) and
/// TinyNetworkRANDOM (a given architecture, the network SPOS-style training runs on).
#[test]
fn nb201_search_supernet_equals_xautodl_tiny_networks() {
    one_thread();
    let (s, vs, net, x) = search_net("nb201", 2, 8, "3x16x16", 25);
    let dir = tempfile::tempdir().unwrap();
    let alphas = raw_alphas(&s, 1.0);
    let mix = softmax_mix(&alphas);
    vs.save(dir.path().join("w.safetensors")).unwrap();
    write_io(
        &dir.path().join("io.safetensors"),
        &[
            ("x".to_string(), x.shallow_clone()),
            ("alpha_normal".to_string(), alphas[0].1.shallow_clone()),
        ],
    );
    let rows = Vec::<Vec<f32>>::try_from(mix.normal.weights.shallow_clone()).unwrap();
    let argmax = derive(&s, &rows, None);
    let path = Genotype::parse(
        "|nor_conv_3x3~0|+|none~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_1x1~1|none~2|",
    )
    .unwrap();
    let saved = snapshot(&vs);
    let cases: Vec<(&str, Option<&str>, Option<&Genotype>)> = vec![
        ("tiny-darts", None, None),
        ("tiny-setn", Some("joint"), None),
        ("tiny-setn", Some("select"), Some(&argmax)),
        ("tiny-setn", Some("dynamic"), Some(&path)),
        ("tiny-random", None, Some(&path)),
    ];
    for (kind, mode, geno) in cases {
        let mut spec = json!({"task": "logits", "net": kind, "C": 8, "N": 2, "classes": 10,
            "ops": op_names(&s), "modes": ["eval", "train"],
            "weights": dir.path().join("w.safetensors"), "io": dir.path().join("io.safetensors")});
        if let Some(m) = mode {
            spec["setn_mode"] = json!(m);
        }
        if let Some(g) = geno {
            spec["arch"] = json!(g.to_nb201());
        }
        let out = upstream(dir.path(), spec);
        let w = match geno {
            None => softmax_mix(&alphas),
            Some(g) => ArchWeights::from_genotype(g, &s, Device::Cpu).unwrap(),
        };
        for (m, train) in [("eval", false), ("train", true)] {
            let ours = tch::no_grad(|| net.forward_t(&x, &w, train));
            check_logits(
                &format!("nb201 supernet / {kind} {} {m}", mode.unwrap_or("")),
                &ours,
                get(&out, &format!("logits_{m}")),
            );
        }
        restore(&saved);
    }
}

// ---------------------------------------------------------------------------------------
// Forward parity: stand-alone networks

/// Stand-alone NAS-Bench-201 networks (affine BN, no conv bias, the given cell in every
/// stage) vs xautodl's cell_infers.TinyNetwork, for cells with convolutions, pooling,
/// skips, `none` edges, and one whose output is all `none`.
#[test]
fn nb201_standalone_networks_equal_xautodl_tiny_network() {
    one_thread();
    let archs = [
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
        "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|",
        "|none~0|+|skip_connect~0|none~1|+|nor_conv_1x1~0|avg_pool_3x3~1|none~2|",
        "|nor_conv_1x1~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|none~0|none~1|none~2|",
    ];
    let s = sized("nb201", 2, 8);
    let i = input("3x16x16");
    for (k, arch) in archs.iter().enumerate() {
        let g = Genotype::parse(arch).unwrap();
        seed(30 + k as u64);
        let vs = nn::VarStore::new(Device::Cpu);
        let net = Supernet::standalone(&vs.root(), &s, i, &g, OpStyle::Standalone, false).unwrap();
        init_weights(&vs);
        let w = ArchWeights::from_genotype(&g, &s, Device::Cpu).unwrap();
        let x = randn(&[4, 3, 16, 16]);
        settle_bn(&net, &x, &w, 10);
        let dir = tempfile::tempdir().unwrap();
        vs.save(dir.path().join("w.safetensors")).unwrap();
        write_io(
            &dir.path().join("io.safetensors"),
            &[("x".to_string(), x.shallow_clone())],
        );
        let out = upstream(
            dir.path(),
            json!({"task": "logits", "net": "tiny-infer", "C": 8, "N": 2, "classes": 10,
                   "arch": arch, "genotype": serde_json::to_value(&g).unwrap(),
                   "modes": ["eval", "train"],
                   "weights": dir.path().join("w.safetensors"), "io": dir.path().join("io.safetensors")}),
        );
        assert_eq!(
            count_parameters(&vs).0,
            get(&out, "parameters").int64_value(&[0]),
            "{arch}: parameters"
        );
        for (m, train) in [("eval", false), ("train", true)] {
            let ours = tch::no_grad(|| net.forward_t(&x, &w, train));
            check_logits(
                &format!("nb201 standalone {arch} / TinyNetwork {m}"),
                &ours,
                get(&out, &format!("logits_{m}")),
            );
        }
    }
}

/// DARTS_V2's evaluation network (auxiliary head, as `supernet train` builds it) vs
/// xautodl's copy of DARTS's NetworkCIFAR (nas_infer_model.DXYs, with xautodl's own DARTS_V2
/// genotype) and vs nni's DARTS space (the architecture of `DARTS.load_searched_model
/// ('darts-v2')`): parameter counts, main and auxiliary logits, and in training also with
/// drop-path 0.2 (libtorch's generator seeded the same on both sides: the masks are the
/// same draws).
///
/// At the published size (20 cells, 36 channels) training-mode logits are compared with
/// upstream's float64 forward instead: there float32 rounding alone moves upstream's own
/// train-mode logits by about 3e-4 relative (BN on batch statistics through 60 layers
/// amplifies it; 2e-6 at 5 cells, 5e-6 at 8), so 1e-5 is out of reach for any float32
/// implementation, and ours must be within `STEP_NOISE_FACTOR` times upstream's float32
/// error of the float64 result. Evaluation mode at 20 cells, and both modes at 5 cells, are
/// held to `LOGITS_RTOL`.
#[test]
fn darts_v2_evaluation_network_equals_xautodl_and_nni() {
    one_thread();
    for (layers, channels, batch) in [(20, 36, 2), (5, 16, 4)] {
        let s = sized("darts_cnn", layers, channels);
        let g = Genotype::parse(DARTS_V2).unwrap();
        let i = input("3x32x32");
        seed(40);
        let vs = nn::VarStore::new(Device::Cpu);
        let net = Supernet::standalone(&vs.root(), &s, i, &g, OpStyle::Standalone, true).unwrap();
        init_weights(&vs);
        let w = ArchWeights::from_genotype(&g, &s, Device::Cpu).unwrap();
        let x = randn(&[batch, 3, 32, 32]);
        settle_bn(&net, &x, &w, if layers > 8 { 4 } else { 10 });
        let saved = snapshot(&vs);
        let dir = tempfile::tempdir().unwrap();
        vs.save(dir.path().join("w.safetensors")).unwrap();
        write_io(
            &dir.path().join("io.safetensors"),
            &[("x".to_string(), x.shallow_clone())],
        );
        let seed = 77;
        let deep = layers > 8;
        // Without drop-path at the small size only (the published size is the slow one).
        let drop_paths: &[f64] = if deep { &[0.2] } else { &[0.0, 0.2] };
        for (kind, &drop_path) in ["dxys-cifar", "nni-darts"]
            .iter()
            .flat_map(|k| drop_paths.iter().map(move |d| (*k, d)))
        {
            let out = upstream(
                dir.path(),
                json!({"task": "logits", "net": kind, "C": channels, "N": (layers - 2) / 3,
                       "classes": 10, "genotype": serde_json::to_value(&g).unwrap(),
                       "upstream_genotype": if kind == "nni-darts" { "darts-v2" } else { "DARTS_V2" },
                       "drop_path": drop_path, "seed": seed, "modes": ["eval", "train"],
                       "float64": deep,
                       "weights": dir.path().join("w.safetensors"), "io": dir.path().join("io.safetensors")}),
            );
            assert_eq!(
                count_parameters(&vs).0,
                get(&out, "parameters").int64_value(&[0]),
                "{kind}: parameters (auxiliary head included)"
            );
            for (m, train) in [("eval", false), ("train", true)] {
                let pass = Pass {
                    train,
                    drop_path: if train { drop_path } else { 0.0 },
                };
                let ours = undisturbed(
                    seed,
                    || tch::no_grad(|| net.forward_pass(&x, &w, pass)),
                    |o| o.main.shallow_clone(),
                );
                let what = format!("DARTS_V2 {layers} cells / {kind} drop-path {drop_path} {m}");
                let mut pairs = vec![("", &ours.main, "logits")];
                match (&ours.auxiliary, train) {
                    (Some(aux), true) => pairs.push((" auxiliary", aux, "aux")),
                    (None, false) => assert!(!out.contains_key("aux_eval"), "{what}"),
                    _ => panic!("{what}: auxiliary logits exactly in training"),
                }
                for (part, t, key) in pairs {
                    if deep && train {
                        check_against_float64(
                            &format!("{what}{part}"),
                            t,
                            &out,
                            key,
                            (LOGITS_RTOL, None),
                        );
                    } else {
                        check_logits(
                            &format!("{what}{part}"),
                            t,
                            get(&out, &format!("{key}_{m}")),
                        );
                    }
                }
            }
            restore(&saved);
        }
    }
}

/// `f` run from libtorch's generator seeded with `seed`, as the upstream driver seeds its
/// own. That generator is global to this test process, and a test running beside this one
/// can draw from it between the seeding and `f`'s draws (drop-path masks): `f` runs until
/// two runs in a row give the same `key`, at most five times.
fn undisturbed<T>(seed: i64, f: impl Fn() -> T, key: impl Fn(&T) -> Tensor) -> T {
    let run = || {
        tch::manual_seed(seed);
        f()
    };
    let mut last = run();
    for _ in 0..4 {
        let next = run();
        if key(&next).equal(&key(&last)) {
            return next;
        }
        last = next;
    }
    panic!("libtorch's global generator was drawn from by another test during five runs")
}

/// `ours` within `STEP_NOISE_FACTOR` times upstream's own float32 error of upstream's
/// float64 result `{key}64_train` (the larger error of its float32 runs in both memory
/// layouts, `{key}_train` and `{key}cl_train`), or within `floor` (relative) of it. With
/// `max_noise`, upstream's float32 error must be below it (the comparison has power).
fn check_against_float64(
    what: &str,
    ours: &Tensor,
    out: &BTreeMap<String, Tensor>,
    key: &str,
    (floor, max_noise): (f64, Option<f64>),
) {
    let (d_ours, d_up, tol) = float64_parity(
        ours,
        &[
            get(out, &format!("{key}_train")),
            get(out, &format!("{key}cl_train")),
        ],
        get(out, &format!("{key}64_train")),
        STEP_NOISE_FACTOR,
        floor,
    );
    eprintln!(
        "parity {what}: relative difference from upstream float64 {d_ours:.2e} (upstream float32: {d_up:.2e}; tolerance {tol:.2e})"
    );
    assert!(d_ours <= tol, "{what}: {d_ours:e} > {tol:e}");
    if let Some(max) = max_noise {
        assert!(d_up < max, "{what}: upstream's float32 noise {d_up:e}");
    }
}

// ---------------------------------------------------------------------------------------
// Step parity

/// A search state with a non-trivial start: random alphas, SGD momentum buffers, Adam
/// moments after three steps, BN running statistics away from their initial values.
fn step_state(s: &SearchSpace, shape: &str, cfg: &SearchConfig) -> SearchState {
    let mut st = SearchState::new(s, input(shape), cfg, Device::Cpu).unwrap();
    seed(99);
    init_weights(&st.vs);
    tch::no_grad(|| {
        for (_, a) in &st.arch.alphas {
            a.shallow_clone().copy_(&(randn(&a.size()) * 0.5));
        }
        for b in &st.sgd.buffers {
            b.shallow_clone().copy_(&(randn(&b.size()) * 0.01));
        }
        for m in &st.adam.exp_avg {
            m.shallow_clone().copy_(&(randn(&m.size()) * 1e-2));
        }
        for v in &st.adam.exp_avg_sq {
            v.shallow_clone()
                .copy_(&((randn(&v.size()) * 1e-2).square() + 1e-6));
        }
        let mut vars: Vec<(String, Tensor)> = st.vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, t) in vars {
            if name.ends_with("running_mean") {
                t.shallow_clone().copy_(&(randn(&t.size()) * 0.1));
            } else if name.ends_with("running_var") {
                t.shallow_clone().copy_(&(rand(&t.size()) + 0.5));
            }
        }
    });
    st.adam.step = 3;
    st
}

/// Every tensor a step changes, under the names the driver writes back.
fn step_tensors(st: &SearchState) -> BTreeMap<String, Tensor> {
    let mut m = BTreeMap::new();
    for (name, t) in st.vs.variables() {
        m.insert(format!("w.{name}"), t.detach().copy());
    }
    for (name, b) in st.weight_names.iter().zip(&st.sgd.buffers) {
        m.insert(format!("sgd.{name}"), b.copy());
    }
    for (i, (name, a)) in st.arch.named().into_iter().enumerate() {
        m.insert(format!("alpha.{name}"), a.detach().copy());
        m.insert(format!("adam.m.{name}"), st.adam.exp_avg[i].copy());
        m.insert(format!("adam.v.{name}"), st.adam.exp_avg_sq[i].copy());
    }
    m
}

struct StepCase {
    net: &'static str,
    n: usize,
    algo: &'static str,
    space: SearchSpace,
    shape: &'static str,
    cfg: SearchConfig,
    /// Whether the weight gradient is expected to be clipped (so both branches are tested).
    clipped: bool,
    /// The step's position: GDAS and SPOS draw their samples from it.
    global_step: u64,
    /// Seed of the training and validation batches.
    batch_seed: u64,
}

/// Run one step of `strategy` here and by the published rule upstream, and compare every
/// tensor (weights, BN buffers, SGD momentum, alphas, Adam moments) and the step's loss and
/// gradient norm.
fn step_parity(case: StepCase, strategy: &mut dyn Strategy) {
    let mut st = step_state(&case.space, case.shape, &case.cfg);
    st.lr = 0.025;
    st.epoch = 2;
    st.global_step = case.global_step;
    let i = input(case.shape);
    seed(case.batch_seed);
    let batch = |labels: &[i64]| Batch {
        images: randn(&[8, i.channels, i.height, i.width]),
        labels: Tensor::from_slice(labels),
    };
    let train = batch(&[0, 1, 2, 3, 4, 5, 6, 7]);
    let val = batch(&[9, 8, 7, 6, 5, 4, 3, 2]);
    let dir = tempfile::tempdir().unwrap();
    let before = step_tensors(&st);
    let mut state: Vec<(String, Tensor)> = before
        .iter()
        .filter(|(k, _)| k.starts_with("w.") || k.starts_with("sgd."))
        .map(|(k, v)| (k.clone(), v.shallow_clone()))
        .collect();
    for (i, (name, a)) in st.arch.named().into_iter().enumerate() {
        state.push((format!("alpha_{name}"), a.detach()));
        state.push((format!("adam.m.{name}"), st.adam.exp_avg[i].copy()));
        state.push((format!("adam.v.{name}"), st.adam.exp_avg_sq[i].copy()));
    }
    write_io(&dir.path().join("state.safetensors"), &state);
    let mut io = vec![
        ("x_train".to_string(), train.images.shallow_clone()),
        ("y_train".to_string(), train.labels.shallow_clone()),
        ("x_val".to_string(), val.images.shallow_clone()),
        ("y_val".to_string(), val.labels.shallow_clone()),
    ];
    let mut spec = json!({"task": "step", "net": case.net, "algo": case.algo, "C":
        case.space.network.channels(), "N": case.n, "classes": 10, "ops": op_names(&case.space),
        "state": dir.path().join("state.safetensors"), "io": dir.path().join("io.safetensors"),
        "hp": {"lr": st.lr, "momentum": case.cfg.momentum, "weight_decay": case.cfg.weight_decay,
               "nesterov": case.cfg.nesterov, "grad_clip": case.cfg.grad_clip,
               "arch_lr": case.cfg.arch_lr, "arch_betas": [case.cfg.arch_beta1, case.cfg.arch_beta2],
               "arch_weight_decay": case.cfg.arch_weight_decay, "adam_step": st.adam.step,
               "tau": case.cfg.tau(st.epoch)}});
    let mut samples = Vec::new();
    if case.algo == "gdas" {
        let tau = case.cfg.tau(st.epoch);
        for (k, purpose) in [PURPOSE_GDAS_WEIGHTS, PURPOSE_GDAS_ARCH].iter().enumerate() {
            for (t, g) in st.arch.gumbel_noise(&mut st.step_rng(*purpose)) {
                io.push((format!("gumbel{k}_{}", t.name()), g));
            }
            let w = st.arch.gumbel_hard(tau, &mut st.step_rng(*purpose), true);
            for t in case.space.network.cell_types() {
                let chosen = w.get(*t).weights.argmax(-1, false);
                samples.push((format!("f32.index{k}_{}", t.name()), chosen));
            }
        }
    }
    if case.algo == "spos" {
        let path = supernet::sample::uniform_genotype(&st.space, &mut st.step_rng(PURPOSE_SPOS));
        spec["arch"] = json!(path.to_nb201());
    }
    write_io(&dir.path().join("io.safetensors"), &io);
    let out = upstream(dir.path(), spec);
    for (key, chosen) in &samples {
        assert!(
            chosen.equal(get(&out, key)),
            "{} on {}: the Gumbel sample {key} chose other ops upstream: {chosen} vs {}",
            case.algo,
            case.net,
            get(&out, key)
        );
    }
    let stats = strategy.step(&mut st, &train, &val).unwrap();
    let after = step_tensors(&st);
    if let Some(step) = out.get("f32.adam.step") {
        assert_eq!(
            step.double_value(&[0]),
            st.adam.step as f64,
            "Adam step count"
        );
    }
    let what = format!("{} step on {}", case.algo, case.net);

    let scalar = |k: &str| get(&out, k).double_value(&[0]);
    // A scalar of the step (loss, gradient norm) against upstream's float64 value, within
    // `STEP_NOISE_FACTOR` times its float32 error in either layout (or 1e-6 relative).
    let close = |name: &str, ours: f64| {
        let up64 = scalar(&format!("f64.{name}"));
        let noise = ["f32", "f32cl"]
            .iter()
            .map(|l| (scalar(&format!("{l}.{name}")) - up64).abs())
            .fold(0.0, f64::max);
        let tol = (STEP_NOISE_FACTOR * noise).max(1e-6 * up64.abs());
        assert!(
            (ours - up64).abs() <= tol,
            "{what}: {name} {ours} vs upstream {up64} (float32 noise {noise:e})"
        );
    };
    let norm = scalar("f64.clip_norm_weights");
    eprintln!(
        "parity {what}: weight gradient norm {:.6} (upstream {norm:.6}, with the alphas' {:.6}), clip {}",
        stats.grad_norm,
        scalar("f64.clip_norm_all"),
        case.cfg.grad_clip
    );
    close("clip_norm_weights", stats.grad_norm);
    close("loss_train", stats.train_loss);
    assert_eq!(
        norm > case.cfg.grad_clip,
        case.clipped,
        "{what}: this case is meant to {}clip",
        if case.clipped { "" } else { "not " }
    );
    if case.algo == "gdas" {
        // GDAS.py clips network.parameters(), the alphas' gradient included; ours clips the
        // weights (README, Differences from upstream). Equal steps need neither to clip.
        assert!(scalar("f64.clip_norm_all") < case.cfg.grad_clip, "{what}");
    }

    let mut worst: Vec<(f64, String)> = Vec::new();
    let mut summary: BTreeMap<&str, [f64; 4]> = BTreeMap::new();
    let mut compared = 0;
    for (key, ours) in &after {
        let (Some(up32), Some(up32cl), Some(up64)) = (
            out.get(&format!("f32.{key}")),
            out.get(&format!("f32cl.{key}")),
            out.get(&format!("f64.{key}")),
        ) else {
            // Only the Rust side has it: e.g. alphas and their Adam state in a SPOS step
            // (RANDOM-NAS has none); they must not have moved.
            assert!(
                ours.equal(&before[key]),
                "{what}: {key} changed but upstream has no such tensor"
            );
            continue;
        };
        let ours = ours.to_kind(Kind::Double);
        let d_ours = (&ours - up64).abs().max().double_value(&[]);
        let d_up = [up32, up32cl]
            .iter()
            .map(|u| {
                (u.to_kind(Kind::Double) - up64)
                    .abs()
                    .max()
                    .double_value(&[])
            })
            .fold(0.0, f64::max);
        let scale = up64.abs().max().double_value(&[]);
        let tol = (STEP_NOISE_FACTOR * d_up).max(STEP_ULP_FLOOR * scale);
        assert!(
            d_ours <= tol,
            "{what}: {key} differs from upstream's float64 step by {d_ours:e} (upstream float32: {d_up:e}, tolerance {tol:e}, scale {scale:e})"
        );
        worst.push((if tol > 0.0 { d_ours / tol } else { 0.0 }, key.clone()));
        compared += 1;
        // For the record: the differences relative to what the step changed.
        let change = (up64 - before[key].to_kind(Kind::Double))
            .abs()
            .max()
            .double_value(&[]);
        let category = match key.split('.').next().unwrap() {
            "w" if key.contains("running_") => "bn-stats",
            "w" => "weights",
            "adam" => &key[..6],
            c => c,
        };
        let e = summary.entry(category).or_insert([0.0; 4]);
        if change > 0.0 {
            e[0] = e[0].max(d_ours / change);
            e[1] = e[1].max(d_up / change);
        }
        e[2] = e[2].max(if tol > 0.0 { d_ours / tol } else { 0.0 });
        e[3] += 1.0;
    }
    // The comparison has power: upstream's own float32 noise in the weights is small next to
    // what the step changed (a sample where a train-mode BN normalises a constant, e.g. a
    // convolution reading an all-`none` node, makes it 15%).
    let noise = summary.get("weights").map_or(0.0, |e| e[1]);
    assert!(
        noise < 1e-3,
        "{what}: upstream float32 noise {noise:e} of the step's change"
    );
    for (c, [ours, up, frac, n]) in &summary {
        eprintln!(
            "parity {what}: {c:<8} ({n} tensors) max |ours - up64| / max |step change| {ours:.1e}, upstream float32 {up:.1e}; max fraction of the tolerance {frac:.2}"
        );
    }
    let expected: usize = out.keys().filter(|k| k.starts_with("f32.")).count();
    assert!(compared > 0);
    worst.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap());
    eprintln!(
        "parity {what}: {compared} tensors compared ({expected} upstream outputs); largest fractions of the tolerance: {:?}",
        worst.iter().take(4).map(|(r, k)| format!("{k} {r:.2}")).collect::<Vec<_>>()
    );
    // The step moved what it should: at least the alphas (if trained) and most weights.
    let moved = after
        .iter()
        .filter(|(k, v)| k.starts_with("w.") && !v.equal(&before[*k]))
        .count();
    assert!(moved > 0, "{what}: no weight moved");
}

fn darts_cfg() -> SearchConfig {
    SearchConfig::default()
}

/// xautodl's GDAS and RANDOM-NAS settings: SGD with Nesterov momentum, weight decay 5e-4.
fn xautodl_cfg(strategy: supernet::search::StrategyKind) -> SearchConfig {
    SearchConfig {
        strategy,
        nesterov: true,
        weight_decay: 5e-4,
        epochs: 5,
        ..Default::default()
    }
}

#[test]
fn darts_first_order_step_equals_darts_train_search() {
    one_thread();
    step_parity(
        StepCase {
            net: "nasnet-darts",
            n: 1,
            algo: "first-order",
            space: sized("darts_cnn", 3, 4),
            shape: "3x16x16",
            cfg: SearchConfig {
                grad_clip: 0.5,
                ..darts_cfg()
            },
            clipped: true,
            global_step: 5,
            batch_seed: 101,
        },
        &mut FirstOrder,
    );
}

#[test]
fn darts_second_order_step_equals_darts_architect() {
    one_thread();
    step_parity(
        StepCase {
            net: "nasnet-darts",
            n: 1,
            algo: "second-order",
            space: sized("darts_cnn", 3, 4),
            shape: "3x16x16",
            cfg: darts_cfg(),
            clipped: false,
            global_step: 5,
            // The Hessian term is a finite difference over w +- 0.01 v / ||v||; where a ReLU
            // or max-pool of a batch sits that close to its kink, float32 rounding decides
            // which side each of the two passes takes, and the alpha gradient jumps. Measured
            // (adam.m.normal, max |x - upstream float64|): batches 103 and 104 put ours at
            // 7e-8 and upstream's float32 at 2e-7 and 3e-7; batch 102 makes upstream's own
            // float32 jump (3e-4); batch 101, used by the other steps, makes ours jump
            // (2e-5) with BN of C % 8 != 0 in NCHW and not without it, each of its two
            // BN shapes alone giving 1e-7. 103 is a batch where neither side crosses a kink.
            batch_seed: 103,
        },
        &mut SecondOrder,
    );
}

#[test]
fn nb201_first_order_step_equals_darts_train_search() {
    one_thread();
    step_parity(
        StepCase {
            net: "tiny-darts",
            n: 1,
            algo: "first-order",
            space: sized("nb201", 1, 4),
            shape: "3x16x16",
            cfg: darts_cfg(),
            clipped: false,
            global_step: 5,
            batch_seed: 101,
        },
        &mut FirstOrder,
    );
}

#[test]
fn gdas_steps_equal_xautodl_gdas_search_loop() {
    one_thread();
    use supernet::search::StrategyKind::Gdas as G;
    // Step 9 samples a well-conditioned path; step 6 samples `none` on every edge into the
    // cell output in the weight step, so every cell outputs zero: upstream's `x * 0` keeps
    // the weights before it in the graph with a zero gradient (weight decay and momentum
    // still apply), which ours matches since SearchState gives every weight a gradient
    // buffer (before, such weights were skipped on a run's first step).
    for global_step in [9, 6] {
        step_parity(
            StepCase {
                net: "tiny-gdas",
                n: 1,
                algo: "gdas",
                space: sized("nb201", 1, 4),
                shape: "3x16x16",
                cfg: xautodl_cfg(G),
                clipped: false,
                global_step,
                batch_seed: 101,
            },
            &mut Gdas,
        );
    }
    step_parity(
        StepCase {
            net: "nasnet-gdas",
            n: 1,
            algo: "gdas",
            space: sized("darts_cnn", 3, 4),
            shape: "3x16x16",
            // The weight gradient norm here is 7.0: at the published clip 5 the published
            // loop's norm would include the alphas' gradient (see `step_parity`), so this
            // case clips at 10, where neither side clips.
            cfg: SearchConfig {
                grad_clip: 10.0,
                ..xautodl_cfg(G)
            },
            clipped: false,
            global_step: 5,
            batch_seed: 101,
        },
        &mut Gdas,
    );
}

#[test]
fn spos_step_equals_xautodl_random_nas_loop() {
    one_thread();
    step_parity(
        StepCase {
            net: "tiny-random",
            n: 1,
            algo: "spos",
            space: sized("nb201", 1, 4),
            shape: "3x16x16",
            cfg: xautodl_cfg(supernet::search::StrategyKind::Spos),
            clipped: false,
            global_step: 5,
            batch_seed: 101,
        },
        &mut Spos,
    );
}
