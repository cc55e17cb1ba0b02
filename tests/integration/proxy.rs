//! Zero-cost proxies (src/sample/proxy.rs) against an independent PyTorch computation of the
//! published formulas (scripts/proxies_reference.py) on the same fresh network and batch;
//! `--score` end to end, and its bad input.
use super::search::{fails_with, ok, supernet, tiny_search};
use std::path::Path;
use std::process::Command;
use supernet::model::{Model, ModelSpec};
use supernet::record::{read_run, Column};
use supernet::sample::proxy::{proxy_score, Proxy};
use supernet::sample::{draw_distinct, Sampler};
use supernet::space::{NetworkOverrides, SearchSpace};
use supernet::supernet::{InputShape, OpStyle};
use tch::{Device, Kind, Tensor};

/// The reference's proxies of the export in `model` on the batch in `batch`.
fn reference(model: &Path, batch: &Path) -> serde_json::Value {
    let out = Command::new(".venv/bin/python")
        .arg("scripts/proxies_reference.py")
        .arg(model)
        .arg(batch)
        .output()
        .expect("run .venv/bin/python (scripts/setup creates it)");
    assert!(
        out.status.success(),
        "proxies_reference.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn proxies_equal_the_pytorch_reference_formulas() {
    let dir = tempfile::tempdir().unwrap();
    let nb201 = SearchSpace::from_file("supernets/nb201.toml".as_ref())
        .unwrap()
        .with_overrides(NetworkOverrides {
            layers: Some(1),
            channels: Some(4),
        })
        .unwrap();
    let spaces = [
        (
            "supernets/tiny.toml",
            SearchSpace::from_file("supernets/tiny.toml".as_ref()).unwrap(),
        ),
        ("supernets/nb201.toml", nb201),
    ];
    tch::manual_seed(3);
    let images = Tensor::randn([8, 1, 12, 12], (Kind::Float, Device::Cpu));
    let labels = Tensor::randint(10, [8], (Kind::Int64, Device::Cpu));
    let batch = dir.path().join("batch.safetensors");
    supernet::tensorfile::save(
        vec![
            ("images".into(), images.shallow_clone()),
            ("labels".into(), labels.shallow_clone()),
        ],
        &batch,
    )
    .unwrap();
    let seed = 17;
    let mut jacov_nan = 0;
    for (file, space) in spaces {
        let (genotypes, _) = draw_distinct(&Sampler::Uniform, &space, 3, 5);
        for (i, g) in genotypes.into_iter().enumerate() {
            let spec = ModelSpec {
                space_file: file.into(),
                space: space.clone(),
                genotype: g.clone(),
                input: InputShape::parse("1x12x12", 10).unwrap(),
                style: OpStyle::Standalone,
                auxiliary: false,
            };
            // The network proxy_score builds: the same seed, the same weights.
            tch::manual_seed(seed);
            let model_dir = dir.path().join(format!("{}-{i}", space.name));
            Model::new(spec.clone(), Device::Cpu)
                .unwrap()
                .export(&model_dir, 0, "test")
                .unwrap();
            let py = reference(&model_dir, &batch);
            for (proxy, rtol) in [
                (Proxy::GradNorm, 1e-4),
                (Proxy::Snip, 1e-4),
                (Proxy::Synflow, 1e-9),
                (Proxy::Naswot, 1e-9),
                (Proxy::Jacov, 1e-4),
            ] {
                let ours =
                    proxy_score(proxy, spec.clone(), seed, Device::Cpu, &images, &labels).unwrap();
                let theirs = py[proxy.name()].as_f64().unwrap_or(f64::NAN);
                if proxy == Proxy::Jacov && theirs.is_nan() {
                    // An output independent of the input (some tiny cells are).
                    assert!(ours.is_nan(), "jacov of {}: ours {ours}", g.to_text());
                    jacov_nan += 1;
                    continue;
                }
                assert!(ours.is_finite() && ours != 0.0, "{} {ours}", proxy.name());
                assert!(
                    (ours - theirs).abs() <= rtol * theirs.abs(),
                    "{} of {}: ours {ours}, PyTorch {theirs}",
                    proxy.name(),
                    g.to_text()
                );
            }
        }
    }
    assert!(
        jacov_nan < 6,
        "jacov undefined for every network: nothing compared"
    );
}

/// A cell whose output is cut off from its input by `none` leaves the input without any
/// gradient: jacov is undefined (NaN, ranked last), never a panic; the other proxies still
/// have their weights' gradients.
#[test]
fn proxies_of_a_cell_cut_off_by_none() {
    let space = SearchSpace::from_file("supernets/micro.toml".as_ref()).unwrap();
    let genotype = supernet::space::Genotype::parse("|none~0|+|none~0|none~1|").unwrap();
    let spec = ModelSpec {
        space_file: "supernets/micro.toml".into(),
        space,
        genotype,
        input: InputShape::parse("1x12x12", 10).unwrap(),
        style: OpStyle::Standalone,
        auxiliary: false,
    };
    tch::manual_seed(3);
    let images = Tensor::randn([8, 1, 12, 12], (Kind::Float, Device::Cpu));
    let labels = Tensor::randint(10, [8], (Kind::Int64, Device::Cpu));
    for proxy in Proxy::ALL {
        let score = proxy_score(proxy, spec.clone(), 17, Device::Cpu, &images, &labels).unwrap();
        match proxy {
            Proxy::Jacov => assert!(score.is_nan(), "jacov {score}"),
            _ => assert!(!score.is_nan(), "{} {score}", proxy.name()),
        }
    }
}

#[test]
fn score_option_records_the_proxy_and_refuses_inherited_only_flags() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    ok(tiny_search(&run, 1, &[]).output().unwrap());
    let sample = |score: &str| {
        ok(supernet()
            .args(["sample", "--n", "3", "--quiet", "--score", score, "--run"])
            .arg(&run)
            .output()
            .unwrap());
        std::fs::read_to_string(run.join(format!("samples-uniform-{score}-seed0.csv"))).unwrap()
    };
    let first = sample("naswot");
    let log = read_run(&run.join("run.h5")).unwrap();
    let table = log.table("samples/uniform-naswot-seed0").unwrap();
    assert_eq!(table.attr("score"), Some("naswot"));
    assert_eq!(table.attr("bn"), None);
    let names: Vec<&str> = table.columns.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["architecture", "naswot", "parameters", "macs"]);
    let Some(Column::F64(values)) = table.column("naswot") else {
        panic!("no naswot column")
    };
    assert!(values.iter().all(|v| v.is_finite()), "{values:?}");
    assert!(
        first.starts_with("architecture,naswot,parameters,macs\n"),
        "{first}"
    );
    // Deterministic: the same fresh initialisation and batch give the same table.
    assert_eq!(sample("naswot"), first);
    ok(supernet()
        .args([
            "evolve",
            "--random",
            "3",
            "--quiet",
            "--score",
            "grad-norm",
            "--run",
        ])
        .arg(&run)
        .output()
        .unwrap());
    let log = read_run(&run.join("run.h5")).unwrap();
    let evolution = log.table("evolution/random-seed0").unwrap();
    assert_eq!(evolution.attr("score"), Some("grad-norm"));
    assert!(evolution.attr("best_grad_norm").is_some());
    assert!(evolution.column("grad_norm").is_some());

    // rank-check starts from inherited-weight tables only.
    fails_with(
        supernet()
            .args(["rank-check", "--k", "3", "--run"])
            .arg(&run)
            .output()
            .unwrap(),
        &[
            "samples/uniform-naswot-seed0",
            "proxy 'naswot'",
            "--score naswot",
        ],
    );
    // derive --rule sample-top:K keeps the best by the proxy.
    ok(supernet()
        .args([
            "derive",
            "--rule",
            "sample-top:3",
            "--score",
            "snip",
            "--quiet",
            "--run",
        ])
        .arg(&run)
        .output()
        .unwrap());
    let log = read_run(&run.join("run.h5")).unwrap();
    let table = log.table("samples/derive-sample-top3-seed0").unwrap();
    let (Some(Column::Text(archs)), Some(Column::F64(snip))) =
        (table.column("architecture"), table.column("snip"))
    else {
        panic!("no snip column")
    };
    let best = (0..snip.len())
        .max_by(|&a, &b| snip[a].total_cmp(&snip[b]))
        .unwrap();
    let derived = std::fs::read_to_string(run.join("genotype-sample-top3.txt")).unwrap();
    assert_eq!(derived.trim(), archs[best]);
    for (args, needles) in [
        (
            vec!["--score", "zen"],
            vec!["--score", "zen", "synflow", "naswot"],
        ),
        (
            vec!["--score", "snip", "--bn", "batch"],
            vec!["--bn", "batch", "--score snip", "inherited only"],
        ),
        (
            vec!["--score", "jacov", "--batches", "2"],
            vec!["--batches", "2", "--score jacov"],
        ),
    ] {
        let out = supernet()
            .args(["sample", "--n", "2"])
            .args(&args)
            .arg("--run")
            .arg(&run)
            .output()
            .unwrap();
        fails_with(out, &needles);
    }
}
