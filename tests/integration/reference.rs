//! Golden values against the PyTorch reference in scripts/reference.py (same weights, same
//! input): parameter counts and logits.
use super::space::{space, DARTS_V2};
use super::supernet::{float64_parity, input, max_rel_diff, softmax_weights};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use supernet::inspect::count_parameters;
use supernet::space::{Genotype, SearchSpace};
use supernet::supernet::{ArchWeights, MixWeights, PartialChannels, Supernet};
use tch::{nn, Device, Kind, Tensor};

/// Run scripts/reference.py with the project's .venv; its stdout.
pub(crate) fn reference(args: &[&str]) -> String {
    let out = Command::new(".venv/bin/python")
        .arg("scripts/reference.py")
        .args(args)
        .output()
        .expect("run .venv/bin/python (scripts/setup creates it)");
    assert!(
        out.status.success(),
        "reference.py {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub(crate) fn rust_count(s: &SearchSpace, shape: &str, k: i64) -> i64 {
    let vs = nn::VarStore::new(Device::Cpu);
    Supernet::search(&vs.root(), s, input(shape), PartialChannels(k)).unwrap();
    count_parameters(&vs).0
}

#[test]
fn parameter_counts_equal_the_pytorch_reference() {
    for (name, shape, expected) in [
        ("darts_cnn", "3x32x32", 1_930_618),
        // NAS-Bench-201's search cells: conv biases (bias=not affine) included.
        ("nb201", "3x32x32", 1_692_826),
    ] {
        let rust = rust_count(&space(name), shape, 1);
        assert_eq!(rust, reference_count(name, shape, 1), "{name}");
        assert_eq!(rust, expected, "{name}");
    }
}

/// The reference's parameter count of `supernets/{name}.toml` (10 classes) with
/// partial channels `k`.
pub(crate) fn reference_count(name: &str, shape: &str, k: i64) -> i64 {
    let json = reference(&[
        "count",
        "--space",
        &format!("supernets/{name}.toml"),
        "--input",
        shape,
        "--classes",
        "10",
        "--partial-channels",
        &k.to_string(),
    ]);
    let py: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    py["parameters"].as_i64().unwrap()
}

/// Save weights and inputs, run the reference, compare logits. With `partial` K > 1 the
/// supernet has PC-DARTS partial channels and random edge betas (as raw betas in the io file).
pub(crate) fn compare_logits(
    space_file: &str,
    shape: &str,
    overrides: &[&str],
    genotype: Option<&Genotype>,
    partial: i64,
) {
    let dir = tempfile::tempdir().unwrap();
    let mut s = SearchSpace::from_file(space_file.as_ref()).unwrap();
    if !overrides.is_empty() {
        s = s
            .with_overrides(supernet::space::NetworkOverrides {
                layers: Some(overrides[1].parse().unwrap()),
                channels: Some(overrides[3].parse().unwrap()),
            })
            .unwrap();
    }
    tch::manual_seed(3);
    let i = input(shape);
    let vs = nn::VarStore::new(Device::Cpu);
    let net = Supernet::search(&vs.root(), &s, i, PartialChannels(partial)).unwrap();
    let x = Tensor::randn(
        [3, i.channels, i.height, i.width],
        (Kind::Float, Device::Cpu),
    );
    let _ = tch::no_grad(|| net.forward_t(&x, &softmax_weights(&s, 1.0), true)); // BN running stats
    let weights_file = dir.path().join("weights.safetensors");
    vs.save(&weights_file).unwrap();

    let mut mix = match genotype {
        None => softmax_weights(&s, 2.0),
        Some(g) => ArchWeights::from_genotype(g, &s, Device::Cpu).unwrap(),
    };
    let mut io = vec![("x".to_string(), x.shallow_clone())];
    if partial > 1 {
        let edges = s.cell.num_edges() as i64;
        let betas = |t: &str, w: MixWeights, io: &mut Vec<(String, Tensor)>| {
            let b = Tensor::randn([edges], (Kind::Float, Device::Cpu));
            io.push((format!("beta_{t}"), b.shallow_clone()));
            w.with_betas(&b, &s.cell)
        };
        mix = ArchWeights {
            normal: betas("normal", mix.normal, &mut io),
            reduce: mix.reduce.map(|r| betas("reduce", r, &mut io)),
        };
    }
    if genotype.is_none() {
        io.push(("alpha_normal".into(), mix.normal.weights.shallow_clone()));
        if let Some(r) = &mix.reduce {
            io.push(("alpha_reduce".into(), r.weights.shallow_clone()));
        }
    }
    let io_file = dir.path().join("io.safetensors");
    Tensor::write_safetensors(&io, &io_file).unwrap();
    let geno_file = dir.path().join("genotype.json");
    if let Some(g) = genotype {
        std::fs::write(&geno_file, g.to_json()).unwrap();
    }
    for train in [false, true] {
        let out_file = dir.path().join(format!("out{train}.safetensors"));
        let mut args: Vec<String> = vec![
            "logits",
            "--space",
            space_file,
            "--input",
            shape,
            "--classes",
            "10",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        args.extend(overrides.iter().map(|a| a.to_string()));
        args.extend(["--partial-channels".to_string(), partial.to_string()]);
        for (flag, p) in [
            ("--weights", &weights_file),
            ("--io", &io_file),
            ("--out", &out_file),
        ] {
            args.push(flag.into());
            args.push(p.display().to_string());
        }
        if genotype.is_some() {
            args.extend(["--genotype".to_string(), geno_file.display().to_string()]);
        }
        if train {
            args.extend(["--train".into(), "--float64".into()]);
        }
        reference(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let py = read_logits(&out_file);
        let rust = tch::no_grad(|| net.forward_t(&x, &mix, train));
        let what = format!(
            "{space_file} genotype={} K={partial} train={train}",
            genotype.is_some()
        );
        if train {
            // Batch statistics amplify summation order cell after cell (ours runs
            // channels-last, the reference NCHW): held to 10 times the reference's own
            // float32 error against its float64 answer, never tighter than 1e-5.
            let (d, noise, tol) = float64_parity(
                &rust,
                &[&py["logits"], &py["logits_cl"]],
                &py["logits64"],
                10.0,
                1e-5,
            );
            eprintln!("reference {what}: from float64 {d:.2e} (reference float32 {noise:.2e})");
            assert!(
                d <= tol,
                "{what}: relative difference from float64 {d:e} > {tol:e} (reference float32: {noise:e})"
            );
        } else {
            let d = max_rel_diff(&rust, &py["logits"]);
            assert!(d < 1e-5, "{what}: relative difference {d:e}");
        }
    }
}

fn read_logits(path: &Path) -> BTreeMap<String, Tensor> {
    Tensor::read_safetensors(path)
        .unwrap()
        .into_iter()
        .collect()
}

#[test]
fn logits_equal_the_pytorch_reference_darts() {
    compare_logits("supernets/darts_cnn.toml", "3x32x32", &[], None, 1);
    compare_logits(
        "supernets/darts_cnn.toml",
        "3x32x32",
        &[],
        Some(&Genotype::parse(DARTS_V2).unwrap()),
        1,
    );
}

#[test]
fn logits_equal_the_pytorch_reference_nb201() {
    let g = Genotype::parse(
        "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|",
    )
    .unwrap();
    compare_logits(
        "supernets/nb201.toml",
        "3x16x16",
        &["--layers", "2", "--channels", "8"],
        None,
        1,
    );
    compare_logits(
        "supernets/nb201.toml",
        "3x16x16",
        &["--layers", "2", "--channels", "8"],
        Some(&g),
        1,
    );
}

/// Inherited-weight scores with BN recalibration (reset, cumulative average over K training
/// batches, evaluation with it) equal PyTorch's `momentum=None` recalibration of the same
/// weights on the same data.
#[test]
fn recalibrated_scores_equal_the_pytorch_reference() {
    use std::sync::Arc;
    use supernet::data::{Augment, Dataset, Loader, LoaderConfig, Subset};
    use supernet::sample::{draw_distinct, BnMode, Sampler, Scorer};
    use supernet::search::{SearchConfig, SearchState};
    let dir = tempfile::tempdir().unwrap();
    let s = space("tiny");
    let i = input("1x28x28");
    let cfg = SearchConfig::default();
    let st = SearchState::new(&s, i, &cfg, Device::Cpu).unwrap();
    let data = |n: usize, seed: u64| {
        Subset::all(&Arc::new(
            Dataset::synthetic(n, 10, 1, 28, 28, seed).unwrap(),
        ))
    };
    let k = 3;
    let val = Loader::eval(data(40, 1), 256).unwrap();
    let train = Loader::new(data(64, 2), LoaderConfig::train(16, Augment::default(), 0)).unwrap();
    let train_x = Tensor::stack(
        &(0..k)
            .map(|b| train.batch(0, b).unwrap().images)
            .collect::<Vec<_>>(),
        0,
    );
    let vb: Vec<_> = val.epoch(0, 0).collect();
    let val_x = Tensor::cat(&vb.iter().map(|b| &b.images).collect::<Vec<_>>(), 0);
    let val_y = Tensor::cat(&vb.iter().map(|b| &b.labels).collect::<Vec<_>>(), 0);
    let weights_file = dir.path().join("weights.safetensors");
    st.vs.save(&weights_file).unwrap();
    let io_file = dir.path().join("io.safetensors");
    Tensor::write_safetensors(
        &[("train_x", train_x), ("val_x", val_x), ("val_y", val_y)],
        &io_file,
    )
    .unwrap();
    let scorer = Scorer::new(st, cfg, val, train, BnMode::Recalibrate(k), None).unwrap();
    let (genotypes, _) = draw_distinct(&Sampler::Uniform, &s, 3, 4);
    let geno_file = dir.path().join("genotypes.jsonl");
    let lines: Vec<String> = genotypes
        .iter()
        .map(|g| g.to_json().replace('\n', ""))
        .collect();
    std::fs::write(&geno_file, lines.join("\n")).unwrap();
    let json = reference(&[
        "score",
        "--space",
        "supernets/tiny.toml",
        "--input",
        "1x28x28",
        "--weights",
        weights_file.to_str().unwrap(),
        "--io",
        io_file.to_str().unwrap(),
        "--genotypes",
        geno_file.to_str().unwrap(),
    ]);
    let py: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    for (g, p) in genotypes.iter().zip(py["scores"].as_array().unwrap()) {
        let r = scorer.score(g).unwrap();
        let (loss, acc) = (p[0].as_f64().unwrap(), p[1].as_f64().unwrap());
        assert!(
            (r.loss - loss).abs() <= 1e-5 * loss.abs(),
            "loss {} vs PyTorch {loss}: {}",
            r.loss,
            r.text
        );
        assert!(
            (r.accuracy - acc).abs() <= 1.0 / 40.0,
            "{} vs {acc}",
            r.accuracy
        );
    }
}
