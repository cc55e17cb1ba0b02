//! Stand-alone networks: the published evaluation networks' sizes, training with exact
//! resume, extraction from a supernet, and the export rebuilt in PyTorch.
use super::search::{fails_with, kill_after_first_mid_run_checkpoint, ok, supernet, tiny_search};
use std::path::Path;
use std::process::Command;
use supernet::model::{Model, ModelSpec};
use supernet::record::read_run;
use supernet::space::{Genotype, NetworkOverrides, SearchSpace};
use supernet::supernet::{InputShape, OpStyle};
use tch::{Device, Tensor};

const TINY_GENOTYPE: &str = "Genotype(normal=[('sep_conv_3x3', 0), ('skip_connect', 1), ('sep_conv_3x3', 2), ('max_pool_3x3', 0)], normal_concat=[2, 3], reduce=[('max_pool_3x3', 0), ('sep_conv_3x3', 1), ('skip_connect', 2), ('sep_conv_3x3', 1)], reduce_concat=[2, 3])";

/// Rebuild an export with scripts/rebuild_model.py and compare its logits on the probe.
pub(crate) fn rebuild_in_pytorch(model_dir: &Path) -> String {
    let out = rebuild_with(model_dir, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "rebuild_model.py {} failed:\n{stdout}\n{}",
        model_dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// scripts/rebuild_model.py on `model_dir` with `extra` arguments, whatever its outcome.
pub(crate) fn rebuild_with(model_dir: &Path, extra: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new(".venv/bin/python")
        .arg("scripts/rebuild_model.py")
        .arg(model_dir)
        .args(extra)
        .output()
        .expect("run .venv/bin/python (scripts/setup creates it)")
}

fn evaluation_model(genotype_file: &str, auxiliary: bool) -> Model {
    let space = SearchSpace::from_file("supernets/darts_cnn.toml".as_ref())
        .unwrap()
        .with_overrides(NetworkOverrides {
            layers: Some(20),
            channels: Some(36),
        })
        .unwrap();
    let spec = ModelSpec {
        space_file: "supernets/darts_cnn.toml".into(),
        space,
        genotype: Genotype::from_arg(genotype_file).unwrap(),
        input: InputShape::parse("3x32x32", 10).unwrap(),
        style: OpStyle::Standalone,
        auxiliary,
    };
    Model::new(spec, Device::Cpu).unwrap()
}

#[test]
fn published_evaluation_networks_have_the_reference_sizes_and_rebuild_in_pytorch() {
    // DARTS (Liu et al. 2019) reports 3.3 M parameters for DARTS_V2, PC-DARTS (Xu et al.
    // 2020) 3.6 M; their training logs count without the auxiliary head.
    for (file, without_aux, with_aux) in [
        ("supernets/genotypes/darts_v2.txt", 3_349_342, 3_825_768),
        ("supernets/genotypes/pc_darts.txt", 3_634_678, 4_111_104),
    ] {
        let model = evaluation_model(file, true);
        assert_eq!(model.parameter_counts(), (with_aux, without_aux), "{file}");
        let dir = tempfile::tempdir().unwrap();
        model.export(dir.path(), 1, "test").unwrap();
        let report = rebuild_in_pytorch(dir.path());
        assert!(report.contains(&with_aux.to_string()), "{report}");
    }
}

/// A short tiny-space training run with every training feature on.
fn tiny_train(out: &Path, epochs: usize, extra: &[&str]) -> Command {
    let mut c = supernet();
    c.args([
        "train",
        "--space",
        "supernets/tiny.toml",
        "--genotype",
        TINY_GENOTYPE,
    ])
    .args(["--layers", "2", "--channels", "4", "--subset", "256"])
    .args(["--test-subset", "64", "--batch-size", "32", "--cutout", "8"])
    .args(["--drop-path", "0.3", "--auxiliary-weight", "0.4"])
    .args([
        "--epochs",
        &epochs.to_string(),
        "--seed",
        "3",
        "--threads",
        "1",
    ])
    .args(["--quiet", "--out"])
    .arg(out)
    .args(extra);
    c
}

/// The network tensors of a run's checkpoint, bit for bit.
fn final_weights(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut t: Vec<(String, Vec<u8>)> =
        Tensor::read_safetensors(dir.join("checkpoint.safetensors"))
            .unwrap()
            .into_iter()
            .filter(|(k, _)| k.starts_with("net."))
            .map(|(k, v)| {
                let bytes: Vec<f32> = Vec::try_from(v.flatten(0, -1)).unwrap();
                (k, bytes.iter().flat_map(|f| f.to_le_bytes()).collect())
            })
            .collect();
    t.sort();
    t
}

#[test]
fn training_is_deterministic_and_resumes_exactly_after_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
    );
    let every = ["--checkpoint-every", "3"];
    let out = ok(tiny_train(&a, 2, &every).output().unwrap());
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("test accuracy"), "{printed}");
    ok(tiny_train(&b, 2, &every).output().unwrap());
    assert!(
        final_weights(&a) == final_weights(&b),
        "same seed, different weights"
    );

    kill_after_first_mid_run_checkpoint(tiny_train(&c, 2, &every), &c, "model");
    ok(supernet()
        .args(["train", "--quiet", "--resume"])
        .arg(&c)
        .output()
        .unwrap());
    assert!(
        final_weights(&a) == final_weights(&c),
        "resumed run differs"
    );
    let (la, lc) = (
        read_run(&a.join("run.h5")).unwrap(),
        read_run(&c.join("run.h5")).unwrap(),
    );
    assert_eq!(la.meta.kind, "train");
    assert_eq!(lc.steps.len(), 16, "every step once");
    let losses = |l: &supernet::record::RunLog| -> Vec<u64> {
        l.steps.iter().map(|s| s.train_loss.to_bits()).collect()
    };
    assert_eq!(losses(&la), losses(&lc));
    assert_eq!(
        la.epochs.last().unwrap().val_acc,
        lc.epochs.last().unwrap().val_acc
    );
    // The export rebuilds in PyTorch with the same logits.
    rebuild_in_pytorch(&a.join("model"));
}

#[test]
fn extracted_subnetwork_keeps_the_supernet_logits_and_fine_tunes() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("search");
    ok(tiny_search(&run, 1, &[]).output().unwrap());
    let model_dir = dir.path().join("extracted");
    ok(super::search::extract(&run, &model_dir, &[])
        .output()
        .unwrap());
    // The one-hot supernet and the extracted network agree on the probe images.
    let trained = supernet::search::load_trained(&run).unwrap();
    let (model, desc) = Model::load(&model_dir, Device::Cpu).unwrap();
    assert_eq!(desc.style, OpStyle::Inherited);
    assert_eq!(
        desc.genotype_text,
        std::fs::read_to_string(run.join("genotype.txt"))
            .unwrap()
            .trim()
    );
    let probe = Tensor::read_safetensors(model_dir.join("model.probe.safetensors")).unwrap();
    let images = &probe.iter().find(|(k, _)| k == "images").unwrap().1;
    let weights = supernet::supernet::ArchWeights::from_genotype(
        &model.spec.genotype,
        &trained.setup.space,
        Device::Cpu,
    )
    .unwrap();
    let via_supernet = tch::no_grad(|| trained.state.net.forward_t(images, &weights, false));
    let via_model = tch::no_grad(|| model.net.forward_t(images, model.arch_weights(), false));
    assert!(
        via_supernet.equal(&via_model),
        "inherited weights changed the logits"
    );
    rebuild_in_pytorch(&model_dir);

    // Fine-tuning starts from exactly those weights.
    let tuned = dir.path().join("tuned");
    ok(supernet()
        .args(["train", "--init"])
        .arg(&model_dir)
        .args([
            "--subset",
            "64",
            "--test-subset",
            "64",
            "--batch-size",
            "32",
        ])
        .args(["--epochs", "1", "--quiet", "--out"])
        .arg(&tuned)
        .output()
        .unwrap());
    let (tuned_model, tuned_desc) = Model::load(&tuned.join("model"), Device::Cpu).unwrap();
    assert_eq!(tuned_desc.genotype, desc.genotype);
    assert_eq!(tuned_model.parameter_counts(), model.parameter_counts());
}

#[test]
fn inspect_describes_the_evaluation_network() {
    let out = ok(supernet()
        .args([
            "inspect",
            "--space",
            "supernets/darts_cnn.toml",
            "--input",
            "3x32x32",
        ])
        .args(["--genotype", "supernets/genotypes/darts_v2.txt"])
        .output()
        .unwrap());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("stand-alone network"), "{text}");
    assert!(text.contains("parameters      3825768"), "{text}");
    assert!(text.contains("without aux     3349342"), "{text}");
    assert!(text.contains("19:normal"), "{text}");
}

#[test]
fn bad_training_input_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        supernet()
            .arg("train")
            .args(args)
            .arg("--out")
            .arg(dir.path().join("x"))
            .output()
            .unwrap()
    };
    fails_with(run(&["--space", "supernets/tiny.toml"]), &["genotype"]);
    fails_with(
        run(&[
            "--space",
            "supernets/nb201.toml",
            "--genotype",
            "|nor_conv_3x3~0|+|skip_connect~0|none~1|+|avg_pool_3x3~0|nor_conv_1x1~1|skip_connect~2|",
            "--auxiliary-weight",
            "0.4",
            "--subset",
            "64",
            "--batch-size",
            "32",
        ]),
        &["auxiliary head", "NAS-Bench-201"],
    );
    fails_with(
        run(&["--init", "/nonexistent/model", "--subset", "32"]),
        &["/nonexistent/model"],
    );
    fails_with(
        run(&[
            "--space",
            "supernets/tiny.toml",
            "--genotype",
            TINY_GENOTYPE,
            "--drop-path",
            "1.5",
        ]),
        &["drop_path", "1.5"],
    );
    fails_with(
        run(&[
            "--space",
            "supernets/tiny.toml",
            "--genotype",
            "Genotype(normal=[('sep_conv_5x5', 0)])",
        ]),
        &["sep_conv_5x5"],
    );
}

#[test]
fn rank_check_spreads_over_the_scores_and_stores_its_measures() {
    use supernet::sample::spread;
    assert_eq!(spread(&[0.5, 0.1, 0.9, 0.3, 0.7], 3), vec![1, 0, 2]);
    assert_eq!(spread(&[0.2, 0.1], 5), vec![1, 0]);

    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("search");
    ok(tiny_search(&run, 1, &[]).output().unwrap());
    ok(supernet()
        .args(["sample", "--n", "6", "--batches", "1", "--quiet", "--run"])
        .arg(&run)
        .output()
        .unwrap());
    let rank_check = || {
        ok(supernet()
            .args(["rank-check", "--k", "3", "--top", "1", "--epochs", "1"])
            .args([
                "--subset",
                "128",
                "--test-subset",
                "64",
                "--batch-size",
                "32",
            ])
            .args(["--score", "synflow", "--threads", "1", "--quiet", "--run"])
            .arg(&run)
            .output()
            .unwrap())
    };
    let first = String::from_utf8_lossy(&rank_check().stdout).to_string();
    assert!(first.contains("Kendall tau"), "{first}");
    let log = read_run(&run.join("run.h5")).unwrap();
    let table = log
        .tables
        .iter()
        .find(|t| t.group.starts_with("rank_check/"))
        .expect("a rank_check table");
    let samples = log
        .tables
        .iter()
        .find(|t| t.group.starts_with("samples/"))
        .unwrap();
    let (
        Some(supernet::record::Column::F64(inherited)),
        Some(supernet::record::Column::F64(sampled)),
    ) = (
        table.column("inherited_accuracy"),
        samples.column("accuracy"),
    )
    else {
        panic!("accuracy columns missing")
    };
    assert_eq!(inherited.len(), 3);
    // The lowest and the highest sampled score are among the checked ones.
    let min = sampled.iter().cloned().fold(f64::INFINITY, f64::min);
    let max = sampled.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    assert!(inherited.contains(&min) && inherited.contains(&max));
    for measure in [
        "kendall_tau",
        "sparse_kendall_tau",
        "spearman_rho",
        "top_overlap",
        "top_kendall_tau",
    ] {
        assert!(table.attr(measure).is_some(), "{measure}");
    }
    // --top 1: a Kendall tau over one item is undefined.
    assert_eq!(table.attr("top_kendall_tau"), Some("undefined"));
    // --score synflow: the proxy of each checked architecture, and its measures.
    assert!(first.contains("synflow: Kendall tau"), "{first}");
    assert_eq!(table.attr("proxies"), Some("synflow"));
    assert!(table.attr("synflow_sparse_kendall_tau").is_some());
    let (Some(supernet::record::Column::Text(archs)), Some(supernet::record::Column::F64(synflow))) =
        (table.column("architecture"), table.column("synflow"))
    else {
        panic!("no synflow column")
    };
    let scorer = supernet::sample::Scorer::open(&run, Default::default(), None)
        .unwrap()
        .with_score("synflow".parse().unwrap());
    for (text, v) in archs.iter().zip(synflow) {
        let g = Genotype::parse(text).unwrap();
        assert_eq!(scorer.score(&g).unwrap().proxy, Some(*v), "{text}");
    }
    // A second call reuses the finished stand-alone runs (untouched) and reports the same.
    let trained = run.join("rank-check").join(
        table
            .group
            .strip_prefix("rank_check/")
            .expect("a rank_check group"),
    );
    let stamps = || -> Vec<std::time::SystemTime> {
        (0..3)
            .map(|i| {
                std::fs::metadata(trained.join(i.to_string()).join("run.h5"))
                    .and_then(|m| m.modified())
                    .expect("a stand-alone run per checked sub-network")
            })
            .collect()
    };
    let before = stamps();
    assert_eq!(String::from_utf8_lossy(&rank_check().stdout), first);
    assert_eq!(
        stamps(),
        before,
        "finished stand-alone runs were trained again"
    );
    let png = run.join("plots");
    ok(supernet()
        .args(["plot", "--run"])
        .arg(&run)
        .arg("--out")
        .arg(&png)
        .output()
        .unwrap());
    let names: Vec<String> = std::fs::read_dir(&png)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    // The inherited scatter and one per proxy.
    let scatters = |suffix: &str| {
        names
            .iter()
            .filter(|n| n.starts_with("rank_check-") && n.ends_with(suffix))
            .count()
    };
    assert_eq!(scatters("-synflow.png"), 1, "{names:?}");
    assert_eq!(scatters(".png"), 2, "{names:?}");
}

#[test]
fn non_finite_training_loss_stops_with_epoch_and_step_and_keeps_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("nan");
    fails_with(
        tiny_train(&out, 1, &["--lr", "1e30"]).output().unwrap(),
        &["non-finite", "epoch 0, step"],
    );
    read_run(&out.join("run.h5")).unwrap();
    assert!(!final_weights(&out).is_empty());
}
