//! Stand-alone chain networks (extracted from a chain search, trained on their own) in the
//! model export, their PyTorch rebuild, and the deployment formats (ONNX run in onnxruntime,
//! TorchScript loaded back) for chain and cell networks.
use super::chain::chain_run;
use super::search::{extract, fails_with, ok, supernet, tiny_search};
use super::train::{rebuild_in_pytorch, rebuild_with};
use std::ffi::OsStr;
use std::path::Path;
use supernet::model::{load_any, read_description, Model, NetworkKind};
use tch::{Device, Tensor};

fn named(file: &Path) -> Vec<(String, Tensor)> {
    Tensor::read_safetensors(file).unwrap()
}

fn get<'a>(tensors: &'a [(String, Tensor)], name: &str) -> &'a Tensor {
    &tensors.iter().find(|(k, _)| k == name).unwrap().1
}

/// Rebuild `model_dir` writing ONNX and TorchScript files, both checked against the probe.
fn deploy(model_dir: &Path, dir: &Path) {
    let (onnx, ts) = (dir.join("net.onnx"), dir.join("net.pt"));
    let out = rebuild_with(
        model_dir,
        &[
            OsStr::new("--onnx"),
            onnx.as_os_str(),
            OsStr::new("--torchscript"),
            ts.as_os_str(),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "rebuild_model.py --onnx --torchscript failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("onnxruntime max |diff|"), "{stdout}");
    assert!(stdout.contains("torch.jit.load max |diff|"), "{stdout}");
    assert!(onnx.is_file() && ts.is_file());
}

fn train_args(out: &Path) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = [
        "--subset",
        "64",
        "--test-subset",
        "64",
        "--batch-size",
        "32",
        "--epochs",
        "1",
        "--threads",
        "1",
        "--quiet",
        "--out",
    ]
    .iter()
    .map(|s| s.into())
    .collect();
    args.push(out.into());
    args
}

#[test]
fn a_chain_search_extracts_retrains_rebuilds_and_deploys() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("search");
    ok(chain_run(&run, &[]).output().unwrap());
    let derived = std::fs::read_to_string(run.join("genotype.txt")).unwrap();
    let derived = derived.trim();

    // Extraction: the derived architecture, every tensor the supernet's of the same name.
    let extracted = dir.path().join("extracted");
    ok(extract(&run, &extracted, &[]).output().unwrap());
    let desc = read_description(&extracted.join("model.json")).unwrap();
    assert_eq!(desc.network, NetworkKind::Chain);
    assert_eq!(desc.genotype_text, derived);
    assert!(desc.genotype.is_none());
    let checkpoint = named(&run.join("checkpoint.safetensors"));
    let weights = named(&extracted.join("model.safetensors"));
    assert_eq!(weights.len(), desc.tensors.len());
    for (name, t) in &weights {
        assert!(
            t.equal(get(&checkpoint, &format!("net.{name}"))),
            "{name} is not the supernet's"
        );
    }
    // The loaded export gives the probe logits it was written with.
    let (model, _) = load_any(&extracted, Device::Cpu).unwrap();
    let probe = named(&extracted.join("model.probe.safetensors"));
    let logits = tch::no_grad(|| {
        model
            .forward(get(&probe, "images"), supernet::supernet::Pass::new(false))
            .main
    });
    // Not bit for bit: the probe was computed by the extract process at its thread count, and
    // in-process searches of other tests may have changed this process's.
    let expected = get(&probe, "logits");
    let diff = (&logits - expected).abs().max().double_value(&[]);
    assert!(diff <= 1e-5, "probe logits differ by {diff}");
    // A cell loader refuses it by name.
    let err = Model::load(&extracted, Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("a chain network"), "{err}");

    // PyTorch rebuild, ONNX and TorchScript.
    rebuild_in_pytorch(&extracted);
    deploy(&extracted, dir.path());

    // The rebuild reads the architecture: another choice for layer 0 does not match the file.
    let tampered = dir.path().join("tampered");
    std::fs::create_dir(&tampered).unwrap();
    for f in ["model.safetensors", "model.probe.safetensors"] {
        std::fs::copy(extracted.join(f), tampered.join(f)).unwrap();
    }
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(extracted.join("model.json")).unwrap())
            .unwrap();
    let first = json["architecture"][0].as_str().unwrap().to_string();
    let other = if first == "mbconv_k3_e3" {
        "mbconv_k5_e6"
    } else {
        "mbconv_k3_e3"
    };
    json["architecture"][0] = other.into();
    std::fs::write(tampered.join("model.json"), json.to_string()).unwrap();
    let out = rebuild_with(&tampered, &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("tensor names"));

    // Fine-tuning the extracted network keeps its architecture and size.
    let tuned = dir.path().join("tuned");
    ok(supernet()
        .args(["train", "--init"])
        .arg(&extracted)
        .args(train_args(&tuned))
        .output()
        .unwrap());
    let tuned_desc = read_description(&tuned.join("model").join("model.json")).unwrap();
    assert_eq!(tuned_desc.architecture, desc.architecture);
    assert_eq!(tuned_desc.parameters, desc.parameters);

    // Training the derived architecture from scratch, named by the search's genotype.txt.
    let fresh = dir.path().join("fresh");
    ok(supernet()
        .args([
            "train",
            "--space",
            "supernets/mbv3_chain.toml",
            "--genotype",
        ])
        .arg(run.join("genotype.txt"))
        .args(train_args(&fresh))
        .output()
        .unwrap());
    let fresh_desc = read_description(&fresh.join("model").join("model.json")).unwrap();
    assert_eq!(fresh_desc.genotype_text, derived);
    assert_eq!(fresh_desc.parameters, desc.parameters);
    let log = supernet::record::read_run(&fresh.join("run.h5")).unwrap();
    assert_eq!(log.meta.kind, "train");
    assert_eq!(log.genotype.as_ref().unwrap().0, derived);
    rebuild_in_pytorch(&fresh.join("model"));
}

#[test]
fn chain_training_refuses_cell_settings_and_bad_architectures() {
    let dir = tempfile::tempdir().unwrap();
    let arch = "mbconv_k3_e3,mbconv_k5_e4,mbconv_k7_e6,mbconv_k3_e3,mbconv_k3_e4,skip";
    let train = |extra: &[&str]| {
        let mut c = supernet();
        c.args(["train", "--space", "mbv3_chain"])
            .args(extra)
            .args(train_args(&dir.path().join("never")));
        c.output().unwrap()
    };
    fails_with(
        train(&["--genotype", arch, "--drop-path", "0.1"]),
        &["drop_path", "chain network"],
    );
    fails_with(
        train(&["--genotype", arch, "--auxiliary-weight", "0.4"]),
        &["auxiliary_weight", "chain network"],
    );
    fails_with(
        train(&["--genotype", arch, "--layers", "3"]),
        &["--layers/--channels", "chain network"],
    );
    fails_with(
        train(&["--genotype", "mbconv_k3_e3,skip"]),
        &["architecture", "2 layer choices", "6"],
    );
    fails_with(
        train(&[
            "--genotype",
            "skip,mbconv_k3_e3,mbconv_k3_e3,mbconv_k3_e3,mbconv_k3_e3,skip",
        ]),
        &["architecture layer 0", "skip"],
    );
    fails_with(
        train(&["--genotype", "no/such/genotype.txt"]),
        &["no/such/genotype.txt", "no such architecture file"],
    );
    assert!(!dir.path().join("never").exists());
}

#[test]
fn cell_exports_deploy_to_onnx_and_torchscript() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("search");
    ok(tiny_search(&run, 1, &[]).output().unwrap());
    let extracted = dir.path().join("extracted");
    ok(extract(&run, &extracted, &[]).output().unwrap());
    let desc = read_description(&extracted.join("model.json")).unwrap();
    assert_eq!(desc.network, NetworkKind::Cell);
    deploy(&extracted, dir.path());
}
