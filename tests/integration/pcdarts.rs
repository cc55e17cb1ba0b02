//! PC-DARTS partial channel connections and edge normalisation: parity with the PyTorch
//! reference, the channel shuffle, derivation with betas, exact resume, bad configs.
use super::reference::{compare_logits, reference_count, rust_count};
use super::search::{
    fails_with, final_alphas, ok, search_killed_and_resumed, supernet, tiny_search,
};
use super::space::space;
use super::supernet::input;
use std::path::Path;
use supernet::arch::ArchParams;
use supernet::derive::{derive, scale_by_betas, RuleArg};
use supernet::record::derive_run;
use supernet::record::{read_run, write_run, AlphaRecord, RunLog, RunMeta};
use supernet::search::{Batch, FirstOrder, SearchConfig, SearchState, SecondOrder, Strategy};
use supernet::space::CellType;
use supernet::supernet::{channel_shuffle, PartialChannels};
use tch::{Device, Kind, Tensor};

#[test]
fn pc_darts_parameter_counts_equal_the_pytorch_reference() {
    for (name, shape, k, expected) in [
        ("darts_cnn", "3x32x32", 4, 299_578),
        ("fmnist_small", "1x28x28", 4, 13_682),
        ("tiny", "1x28x28", 2, 1_146),
    ] {
        let s = space(name);
        let rust = rust_count(&s, shape, k);
        assert_eq!(rust, reference_count(name, shape, k), "{name} K={k}");
        assert_eq!(rust, expected, "{name} K={k}");
        assert!(rust < rust_count(&s, shape, 1), "{name}: K={k} is smaller");
    }
}

#[test]
fn pc_darts_logits_equal_the_pytorch_reference() {
    compare_logits("supernets/fmnist_small.toml", "1x28x28", &[], None, 4);
    compare_logits("supernets/darts_cnn.toml", "3x32x32", &[], None, 4);
    compare_logits(
        "supernets/nb201.toml",
        "3x16x16",
        &["--layers", "2", "--channels", "8"],
        None,
        2,
    );
}

/// Channels labelled by their index: `[1, C, 2, 2]` with value `c` in channel `c`.
fn labelled(c: i64, hw: i64, offset: f64) -> Tensor {
    (Tensor::arange(c, (Kind::Float, Device::Cpu)) + offset)
        .view([1, c, 1, 1])
        .expand([1, c, hw, hw], false)
        .contiguous()
}

fn channel_values(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.amax([0, 2, 3], false)).unwrap()
}

#[test]
fn channel_shuffle_interleaves_ops_and_bypass_channels() {
    // C = 8, K = 4: groups [0,1] [2,3] [4,5] [6,7]; channel g*2+j moves to j*4+g.
    let x = labelled(8, 2, 0.0);
    assert_eq!(
        channel_values(&channel_shuffle(&x, 4)),
        vec![0., 2., 4., 6., 1., 3., 5., 7.]
    );
    let pc = PartialChannels(4);
    assert_eq!(channel_values(&pc.ops_part(&x)), vec![0., 1.]);
    // The mixed part (C/K = 2 channels, labelled 100, 101) replaces channels 0 and 1; the
    // rest bypass, and the result is shuffled.
    let mixed = labelled(2, 2, 100.0);
    assert_eq!(
        channel_values(&pc.combine(&mixed, &x)),
        vec![100., 2., 4., 6., 101., 3., 5., 7.]
    );
    // Stride 2: the bypassed channels go through 2x2 max pooling.
    let x = Tensor::randn([2, 8, 4, 4], (Kind::Float, Device::Cpu));
    let mixed = Tensor::zeros([2, 2, 2, 2], (Kind::Float, Device::Cpu));
    let out = pc.combine(&mixed, &x);
    assert_eq!(out.size(), vec![2, 8, 2, 2]);
    let pooled = x
        .narrow(1, 2, 6)
        .max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false);
    // Bypassed channel 2 + i (group 1 + i/2, element i%2) sits at (i%2)*4 + 1 + i/2.
    for i in 0..6 {
        let at = (i % 2) * 4 + 1 + i / 2;
        assert!(
            out.get(0).get(at).equal(&pooled.get(0).get(i)),
            "channel {i}"
        );
    }
}

/// Tiny cell (2 inputs, 2 nodes: edges 2_0 2_1 3_0 3_1 3_2), ops none, max_pool_3x3,
/// skip_connect, sep_conv_3x3. Node 3 keeps edges 0 and 1 by the alphas alone; the betas
/// make edge 3_0 weak, so it keeps 1 and 2.
const ROWS: [[f32; 4]; 5] = [
    [0.1, 0.5, 0.2, 0.2],
    [0.1, 0.1, 0.35, 0.45],
    [0.1, 0.1, 0.2, 0.6],
    [0.1, 0.2, 0.2, 0.5],
    [0.2, 0.2, 0.4, 0.2],
];
const BETAS: [f32; 5] = [0.0, 0.0, -3.0, 0.0, 0.0];
const WITHOUT: &str =
    "[('max_pool_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1)]";
const WITH: &str =
    "[('max_pool_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 2)]";

fn rows() -> Vec<Vec<f32>> {
    ROWS.iter().map(|r| r.to_vec()).collect()
}

#[test]
fn derivation_weights_edges_by_their_normalised_betas() {
    let s = space("tiny");
    let plain = derive(&s, &rows(), Some(&rows())).to_text();
    assert!(plain.contains(&format!("normal={WITHOUT}")), "{plain}");
    let scaled = scale_by_betas(rows(), Some(&BETAS), &s.cell);
    let pc = derive(&s, &scaled, Some(&scaled)).to_text();
    assert!(pc.contains(&format!("normal={WITH}")), "{pc}");
    assert!(pc.contains(&format!("reduce={WITH}")), "{pc}");

    // The same from live architecture parameters (softmax(ln p) = p) ...
    let arch = ArchParams::with_edge_betas(&s, Device::Cpu, true);
    let log_p = Tensor::from_slice(&ROWS.concat()).view([5, 4]).log();
    tch::no_grad(|| {
        for t in [CellType::Normal, CellType::Reduce] {
            arch.get(t).unwrap().shallow_clone().copy_(&log_p);
            arch.beta(t)
                .unwrap()
                .shallow_clone()
                .copy_(&Tensor::from_slice(&BETAS));
        }
    });
    assert_eq!(arch.genotype(&s).unwrap().to_text(), pc);

    // ... and from a run file, with and without the betas.
    let dir = tempfile::tempdir().unwrap();
    let mut log = RunLog {
        meta: RunMeta {
            kind: "search".into(),
            space: s.to_toml(),
            ops: s.ops.iter().map(|o| o.name().to_string()).collect(),
            edges: s.cell.edges().iter().map(|e| e.key()).collect(),
            cell_types: vec!["normal".into(), "reduce".into()],
            ..Default::default()
        },
        ..Default::default()
    };
    let raw: Vec<f32> = ROWS.concat().iter().map(|p| p.ln()).collect();
    log.alphas.push(AlphaRecord {
        step: 0,
        epoch: 0,
        normal: raw.clone(),
        reduce: Some(raw),
        normal_betas: Some(BETAS.to_vec()),
        reduce_betas: Some(BETAS.to_vec()),
    });
    let run = dir.path().join("run.h5");
    write_run(&log, &run).unwrap();
    assert_eq!(
        read_run(&run).unwrap().alphas,
        log.alphas,
        "betas round-trip"
    );
    assert_eq!(derive_run(dir.path(), RuleArg::Top2).unwrap().to_text(), pc);
    log.alphas[0].normal_betas = None;
    log.alphas[0].reduce_betas = None;
    write_run(&log, &run).unwrap();
    assert_eq!(
        derive_run(dir.path(), RuleArg::Top2).unwrap().to_text(),
        plain
    );
}

fn betas_of(dir: &Path) -> Vec<(String, Vec<u32>)> {
    final_alphas(dir)
        .into_iter()
        .filter(|(k, _)| k.starts_with("arch.betas_"))
        .collect()
}

#[test]
fn pc_darts_search_resumes_exactly_with_betas_and_refuses_inheritance() {
    let dir = tempfile::tempdir().unwrap();
    let (a, c) = (dir.path().join("a"), dir.path().join("c"));
    let flags = ["--checkpoint-every", "3", "--partial-channels", "4"];
    ok(tiny_search(&a, 2, &flags).output().unwrap());
    let config = std::fs::read_to_string(a.join("config.toml")).unwrap();
    assert!(config.contains("partial_channels = 4"), "{config}");
    assert_eq!(
        betas_of(&a).len(),
        2,
        "betas of both cell types checkpointed"
    );

    search_killed_and_resumed(tiny_search(&c, 2, &flags), &c);
    assert_eq!(final_alphas(&a), final_alphas(&c), "alphas and betas");
    let (la, lc) = (
        read_run(&a.join("run.h5")).unwrap(),
        read_run(&c.join("run.h5")).unwrap(),
    );
    assert_eq!(la.alphas, lc.alphas, "every alpha and beta record");
    assert_eq!(lc.steps.len(), 16);
    let (first, last) = (la.alphas.first().unwrap(), la.alphas.last().unwrap());
    assert!(last.normal_betas.is_some() && last.reduce_betas.is_some());
    assert_ne!(
        first.normal_betas, last.normal_betas,
        "the betas are trained"
    );
    // The genotype written at the end is the one derived with the betas.
    let text = std::fs::read_to_string(a.join("genotype.txt")).unwrap();
    assert_eq!(
        derive_run(&a, RuleArg::Top2).unwrap().to_text(),
        text.trim()
    );
    assert_eq!(
        std::fs::read_to_string(c.join("genotype.txt")).unwrap(),
        text
    );

    // The edge weights are plotted.
    let plots =
        supernet::plot::plot_run(&a, &dir.path().join("plots"), supernet::plot::Format::Png)
            .unwrap();
    for cell in ["normal", "reduce"] {
        assert!(plots
            .iter()
            .any(|p| p.ends_with(format!("betas_{cell}.png"))));
    }

    // Sub-networks cannot inherit C/K-channel operations: refused, not mis-built.
    let out = dir.path().join("x");
    fails_with(
        super::search::extract(&a, &out, &[]).output().unwrap(),
        &["partial_channels = 4", "inherit"],
    );
    assert!(!out.exists());
    fails_with(
        supernet()
            .args(["sample", "--quiet", "--n", "2", "--run"])
            .arg(&a)
            .output()
            .unwrap(),
        &["partial_channels = 4", "inherit"],
    );
}

#[test]
fn both_darts_strategies_train_the_betas() {
    let s = space("tiny");
    let i = input("1x28x28");
    let batch = || Batch {
        images: Tensor::randn([8, 1, 28, 28], (Kind::Float, Device::Cpu)),
        labels: Tensor::randint(10, [8], (Kind::Int64, Device::Cpu)),
    };
    let strategies: [Box<dyn Strategy>; 2] = [Box::new(FirstOrder), Box::new(SecondOrder)];
    for mut strat in strategies {
        let cfg = SearchConfig {
            partial_channels: 4,
            ..SearchConfig::default()
        };
        let mut st = SearchState::new(&s, i, &cfg, Device::Cpu).unwrap();
        let before = st.arch.raw_betas(CellType::Normal).unwrap();
        strat.step(&mut st, &batch(), &batch()).unwrap();
        let after = st.arch.raw_betas(CellType::Normal).unwrap();
        assert!(after.iter().all(|b| b.is_finite()));
        assert_ne!(before, after, "{}: the betas moved", strat.name());
        let grad = st.arch.beta(CellType::Reduce).unwrap().grad();
        assert!(grad.abs().sum(Kind::Float).double_value(&[]) > 0.0);
    }
}

#[test]
fn partial_channels_are_validated_with_the_field_and_value() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x");
    let run = |flags: &[&str]| tiny_search(&out, 1, flags).output().unwrap();
    fails_with(
        run(&["--partial-channels", "0"]),
        &["partial_channels = 0", "at least 1"],
    );
    // tiny has C = 4 in its normal cell.
    fails_with(
        run(&["--partial-channels", "3"]),
        &["partial_channels = 3", "C = 4"],
    );
    fails_with(
        run(&["--partial-channels", "8"]),
        &["partial_channels = 8", "C = 4"],
    );
    fails_with(
        run(&["--partial-channels", "2", "--strategy", "spos"]),
        &["partial_channels = 2", "spos"],
    );
    fails_with(
        run(&["--partial-channels", "2", "--strategy", "gdas"]),
        &["partial_channels = 2", "gdas"],
    );
    assert!(!out.exists(), "no run directory for a rejected config");
    // Config files written before the option exist load with it off.
    let old = SearchConfig::default()
        .to_toml()
        .replace("partial_channels = 1\n", "");
    assert!(!old.contains("partial_channels"));
    let cfg = SearchConfig::from_toml(&old, "old.toml".as_ref()).unwrap();
    assert_eq!(cfg.partial_channels, 1);
}
