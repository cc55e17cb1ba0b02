//! Hardware-aware chain search: latency tables (written, read back, refused), the
//! expected-cost penalty against its formula, and a penalised search resumed after SIGKILL.
use super::search::{checkpoint_bits, ok, search_killed_and_resumed, supernet};
use supernet::arch::ChainAlphas;
use supernet::profile::{CostMatrix, LatencyTable};
use supernet::record::Column;
use supernet::search::hardware::{Hardware, HardwarePenalty, HARDWARE_TABLE};
use supernet::space::chain::{ChainSpace, ImageShape};
use tch::{Device, Tensor};

/// Two searchable layers (kernels 3 and 5, expansion 2), the second skippable: 3 columns,
/// the first layer's `skip` masked.
pub(crate) const TINY: &str = r#"
name = "tiny_chain"
kernels = [3, 5]
expansions = [2]

[network]
kind = "chain"
stem = { channels = 4, stride = 1, act = "relu" }
head = { act = "relu" }

[[network.stages]]
channels = 4
layers = 2
act = "relu"
skippable = 1
"#;

const TINY_INPUT: ImageShape = ImageShape {
    channels: 1,
    hw: (8, 8),
    classes: 3,
};

pub(crate) fn tiny() -> ChainSpace {
    ChainSpace::from_toml(TINY).unwrap()
}

pub(crate) fn profile(
    space: &std::path::Path,
    input: &str,
    classes: &str,
    out: &std::path::Path,
) -> String {
    let o = ok(supernet()
        .args(["profile", "--space"])
        .arg(space)
        .args(["--input", input, "--classes", classes, "--threads", "1"])
        .args(["--warmup", "1", "--repeats", "3", "--check", "3", "--out"])
        .arg(out)
        .output()
        .unwrap());
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn a_latency_table_is_written_read_back_and_refused_when_it_does_not_fit() {
    let dir = tempfile::tempdir().unwrap();
    let space_file = dir.path().join("tiny_chain.toml");
    std::fs::write(&space_file, TINY).unwrap();
    let lut = dir.path().join("lut.json");
    let stdout = profile(&space_file, "1x8x8", "3", &lut);
    assert!(stdout.contains("mean |relative error|"), "{stdout}");
    let space = tiny();
    let table = LatencyTable::read(&lut).unwrap();
    table.check_for(&lut, &space, "cpu", [1, 8, 8], 3).unwrap();
    assert_eq!(
        (table.device.as_str(), table.threads, table.batch),
        ("cpu", 1, 1)
    );
    assert_eq!(table.layers.len(), 2);
    assert_eq!(table.layers[1].ms["skip"], 0.0);
    assert!(
        !table.layers[0].ms.contains_key("skip"),
        "layer 0 may not be skipped"
    );
    // The check: 3 architectures, their prediction is the table's sum.
    let check = table.check.as_ref().unwrap();
    assert_eq!(check.archs.len(), 3);
    for (text, &p) in check.archs.iter().zip(&check.predicted_ms) {
        let arch = supernet::space::chain::ChainArch::parse(text).unwrap();
        let sum = table.stem_ms
            + table.head_ms
            + table.entry(0, arch.layers[0])
            + table.entry(1, arch.layers[1]);
        assert!((p - sum).abs() < 1e-12, "{p} vs {sum}");
        assert!((p - table.predict(&space, &arch)).abs() < 1e-12);
    }
    let abs: Vec<f64> = check.rel_errors.iter().map(|e| e.abs()).collect();
    assert_eq!(
        check.max_abs_rel_error,
        abs.iter().copied().fold(0.0, f64::max)
    );

    // Refusals name the file and the field.
    let err = |r: supernet::Result<()>| r.unwrap_err().to_string();
    let lut_name = lut.display().to_string();
    let e = err(table.check_for(&lut, &space, "cuda:0", [1, 8, 8], 3));
    assert!(
        e.contains(&lut_name) && e.contains("'device'") && e.contains("cuda:0"),
        "{e}"
    );
    let e = err(table.check_for(&lut, &space, "cpu", [1, 16, 16], 3));
    assert!(e.contains(&lut_name) && e.contains("'input'"), "{e}");
    let other =
        ChainSpace::from_toml(&TINY.replace("expansions = [2]", "expansions = [3]")).unwrap();
    let e = err(table.check_for(&lut, &other, "cpu", [1, 8, 8], 3));
    assert!(e.contains("'space_hash'"), "{e}");
    let mut missing = table.clone();
    missing.layers[1].ms.remove("mbconv_k5_e2");
    let e = err(missing.check_for(&lut, &space, "cpu", [1, 8, 8], 3));
    assert!(
        e.contains("layers[1].ms") && e.contains("mbconv_k5_e2"),
        "{e}"
    );
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{ not json").unwrap();
    let e = LatencyTable::read(&bad).unwrap_err().to_string();
    assert!(
        e.contains(&bad.display().to_string()) && e.contains("latency table"),
        "{e}"
    );
    let text = std::fs::read_to_string(&lut).unwrap();
    std::fs::write(&bad, text.replace("supernet-latency-table/1", "v0")).unwrap();
    let e = LatencyTable::read(&bad).unwrap_err().to_string();
    assert!(e.contains("'format'") && e.contains("v0"), "{e}");
}

#[test]
fn the_penalty_and_its_gradient_follow_the_hinge_formula() {
    let space = tiny();
    let macs = CostMatrix::macs(&space, TINY_INPUT);
    let mut arch = ChainAlphas::new(&space, Device::Cpu);
    tch::no_grad(|| {
        arch.alphas
            .copy_(&Tensor::from_slice(&[0.3f32, -0.2, 0.0, 0.1, 0.5, -0.4]).view([2, 3]))
    });
    let probs = arch.probabilities();
    assert_eq!(probs[0][2], 0.0, "layer 0's skip is masked");
    let e: f64 = macs.fixed
        + (0..2)
            .flat_map(|r| (0..3).map(move |k| (r, k)))
            .map(|(r, k)| probs[r][k] as f64 * macs.per_choice[r][k])
            .sum::<f64>();
    assert!((macs.expected(&probs) - e).abs() < 1e-6 * e);
    for (target, weight) in [(0.8 * e, 2.5), (1.2 * e, 2.5)] {
        let hw = Hardware {
            macs_target: Some(target),
            macs_weight: Some(weight),
            ..Default::default()
        };
        let penalty = HardwarePenalty::new(&hw, &space, TINY_INPUT, Device::Cpu)
            .unwrap()
            .unwrap();
        let value = penalty.value(&arch.softmax().weights);
        let grad = &Tensor::run_backward(&[&value], &[&arch.alphas], false, false)[0];
        let expected = weight * (e / target - 1.0).max(0.0);
        let got = value.double_value(&[]);
        assert!(
            (got - expected).abs() < 1e-5 * expected.max(1.0),
            "{got} vs {expected}"
        );
        // d/d alpha_rk = weight / target * p_rk * (c_rk - sum_j p_rj c_rj) above the target.
        let grad = Vec::<Vec<f32>>::try_from(grad).unwrap();
        for r in 0..2 {
            let mean: f64 = (0..3)
                .map(|j| probs[r][j] as f64 * macs.per_choice[r][j])
                .sum();
            for k in 0..3 {
                let want = if e > target {
                    weight / target * probs[r][k] as f64 * (macs.per_choice[r][k] - mean)
                } else {
                    0.0
                };
                let g = grad[r][k] as f64;
                assert!(
                    (g - want).abs() <= 1e-4 * want.abs().max(1e-6),
                    "target {target}: grad[{r}][{k}] {g} vs {want}"
                );
            }
        }
    }
    // Under the GDAS sample the expected cost is the sampled path's.
    let hw = Hardware {
        macs_target: Some(1.0),
        ..Default::default()
    };
    let penalty = HardwarePenalty::new(&hw, &space, TINY_INPUT, Device::Cpu)
        .unwrap()
        .unwrap();
    let mut rng = supernet::rng::Rng::from_key(&[1, 2]);
    let (sampled, w) = arch.gumbel_hard(&space, 1.0, &mut rng, false);
    let cost = penalty.terms[0].expected(&w.weights).double_value(&[]);
    let exact = macs.of_arch(&space, &sampled);
    assert!((cost - exact).abs() < 1e-6 * exact, "{cost} vs {exact}");
}

#[test]
fn a_penalised_chain_search_resumes_after_sigkill_records_its_costs_and_samples_within_limits() {
    let dir = tempfile::tempdir().unwrap();
    let lut = dir.path().join("lut.json");
    profile("supernets/mbv3_chain.toml".as_ref(), "1x28x28", "10", &lut);
    let lut_arg = lut.to_str().unwrap();
    let run = |out: &std::path::Path, strategy: &str| {
        let mut c = super::chain::chain_run(
            out,
            &[
                "--device",
                "cpu",
                "--strategy",
                strategy,
                "--latency-target",
                "0.2",
            ],
        );
        c.args(["--latency-weight", "5", "--macs-target", "1e6"])
            .args(["--latency-table", lut_arg]);
        c
    };
    for strategy in ["first-order", "gdas"] {
        let (a, c) = (
            dir.path().join(strategy),
            dir.path().join(format!("{strategy}-c")),
        );
        ok(run(&a, strategy).output().unwrap());
        search_killed_and_resumed(run(&c, strategy), &c);
        assert_eq!(
            checkpoint_bits(&a),
            checkpoint_bits(&c),
            "{strategy}: resumed run differs from the uninterrupted one"
        );
        let log = supernet::record::read_run(&c.join("run.h5")).unwrap();
        let t = log.table(HARDWARE_TABLE).expect("the hardware table");
        assert_eq!(t.column("epoch"), Some(&Column::U64(vec![0, 1])));
        for name in [
            "expected_latency_ms",
            "derived_latency_ms",
            "expected_macs",
            "derived_macs",
        ] {
            match t.column(name) {
                Some(Column::F64(v)) => {
                    assert!(v.len() == 2 && v.iter().all(|x| *x > 0.0), "{name}: {v:?}")
                }
                other => panic!("{name}: {other:?}"),
            }
        }
        assert_eq!(t.attr("latency_ms_target"), Some("0.2"));
        // The derived network's MACs are the exact cost model's.
        let space = super::chain::chain_space("mbv3_chain");
        let arch = supernet::space::chain::ChainArch::parse(
            std::fs::read_to_string(c.join("genotype.txt"))
                .unwrap()
                .trim(),
        )
        .unwrap();
        let input = ImageShape {
            channels: 1,
            hw: (28, 28),
            classes: 10,
        };
        let exact = supernet::space::chain::arch_cost(&space, &arch, input).macs as f64;
        match t.column("derived_macs") {
            Some(Column::F64(v)) => assert_eq!(v[1], exact),
            other => panic!("{other:?}"),
        }
    }
    // A constrained sample of the finished run never returns an architecture over a limit.
    let space = super::chain::chain_space("mbv3_chain");
    let input = ImageShape {
        channels: 1,
        hw: (28, 28),
        classes: 10,
    };
    let table = LatencyTable::read(&lut).unwrap();
    let small = supernet::space::chain::extreme_arch(&space, input, false);
    let large = supernet::space::chain::extreme_arch(&space, input, true);
    let max_ms = 0.5 * (table.predict(&space, &small) + table.predict(&space, &large));
    let (max_macs, max_params) = (2_000_000u64, 80_000u64);
    let run_dir = dir.path().join("first-order");
    let out = ok(supernet()
        .args(["sample", "--run"])
        .arg(&run_dir)
        .args([
            "--n",
            "6",
            "--threads",
            "1",
            "--bn",
            "recalibrate:1",
            "--batches",
            "1",
        ])
        .args(["--name", "limited", "--latency-table"])
        .arg(&lut)
        .args(["--max-latency-ms", &max_ms.to_string()])
        .args(["--max-macs", &max_macs.to_string()])
        .args(["--max-params", &max_params.to_string()])
        .output()
        .unwrap());
    let log = supernet::record::read_run(&run_dir.join("run.h5")).unwrap();
    let t = log.table("samples/limited").expect("the sample table");
    let Some(Column::Text(archs)) = t.column("arch") else {
        panic!("{}", String::from_utf8_lossy(&out.stderr))
    };
    assert!(!archs.is_empty());
    let (Some(Column::F64(acc)), Some(Column::F64(lat)), Some(Column::U64(pareto))) = (
        t.column("accuracy"),
        t.column("latency_ms"),
        t.column("pareto"),
    ) else {
        panic!("columns")
    };
    for (i, text) in archs.iter().enumerate() {
        let arch = supernet::space::chain::ChainArch::parse(text).unwrap();
        let cost = supernet::space::chain::arch_cost(&space, &arch, input);
        let ms = table.predict(&space, &arch);
        assert!(
            ms <= max_ms && cost.macs <= max_macs && cost.params <= max_params,
            "{text}"
        );
        assert!((lat[i] - ms).abs() < 1e-9);
        // On the front exactly when no other row is at least as accurate and as fast, and
        // better in one.
        let dominated = (0..archs.len())
            .any(|j| acc[j] >= acc[i] && lat[j] <= lat[i] && (acc[j] > acc[i] || lat[j] < lat[i]));
        assert_eq!(pareto[i] == 1, !dominated, "row {i}");
    }
    assert!(std::fs::read_to_string(run_dir.join("samples-limited.csv"))
        .unwrap()
        .starts_with("arch,accuracy,loss,params,macs,latency_ms,pareto"));
    // A table for another input is refused, naming the file and the field.
    let other = dir.path().join("lut32.json");
    profile(
        "supernets/mbv3_chain.toml".as_ref(),
        "3x32x32",
        "10",
        &other,
    );
    let out = supernet()
        .args([
            "search",
            "--space",
            "supernets/mbv3_chain.toml",
            "--subset",
            "256",
            "--batch-size",
            "32",
        ])
        .args([
            "--epochs",
            "1",
            "--quiet",
            "--device",
            "cpu",
            "--latency-target",
            "1",
        ])
        .arg("--latency-table")
        .arg(&other)
        .arg("--out")
        .arg(dir.path().join("refused"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("lut32.json") && err.contains("'input'"),
        "{err}"
    );
    // SPOS has no alphas to penalise.
    let out = supernet()
        .args([
            "search",
            "--space",
            "supernets/mbv3_chain.toml",
            "--strategy",
            "spos",
        ])
        .args(["--macs-target", "1e6", "--quiet", "--out"])
        .arg(dir.path().join("spos"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("spos"));
}

#[test]
fn given_architectures_are_timed_against_an_existing_table() {
    let dir = tempfile::tempdir().unwrap();
    let space_file = dir.path().join("tiny_chain.toml");
    std::fs::write(&space_file, TINY).unwrap();
    let lut = dir.path().join("lut.json");
    profile(&space_file, "1x8x8", "3", &lut);
    let table = LatencyTable::read(&lut).unwrap();
    let genotype = dir.path().join("genotype.txt");
    std::fs::write(&genotype, "mbconv_k5_e2,skip\n").unwrap();
    let run = |archs: &[&str]| {
        let mut c = supernet();
        c.args(["profile", "--space"]).arg(&space_file);
        c.arg("--table").arg(&lut);
        for a in archs {
            c.args(["--arch", a]);
        }
        c.output().unwrap()
    };
    let o = ok(run(&[
        genotype.to_str().unwrap(),
        "mbconv_k3_e2,mbconv_k3_e2",
    ]));
    let stdout = String::from_utf8_lossy(&o.stdout);
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("arch\t"))
        .skip(1)
        .map(|l| l.split('\t').collect())
        .collect();
    assert_eq!(rows.len(), 2, "{stdout}");
    assert_eq!(rows[0][0], "mbconv_k5_e2,skip");
    let space = tiny();
    for row in &rows {
        let arch = supernet::space::chain::ChainArch::parse(row[0]).unwrap();
        let predicted: f64 = row[1].parse().unwrap();
        assert!(
            (predicted - table.predict(&space, &arch)).abs() < 5e-4,
            "{row:?}"
        );
        assert!(row[2].parse::<f64>().unwrap() > 0.0, "{row:?}");
    }
    // A skip where the layer may not be skipped, and the wrong length, name the --arch.
    let o = run(&["skip,skip"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && e.contains("--arch skip,skip") && e.contains("layer 0"),
        "{e}"
    );
    let o = run(&["skip"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && e.contains("--arch skip") && e.contains("(2)"),
        "{e}"
    );
}
