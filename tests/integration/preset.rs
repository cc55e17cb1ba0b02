//! Published search settings (`supernet::search::preset`) and the two settings they need
//! that DARTS did not have: Nesterov momentum and PC-DARTS's warm-up epochs.
use super::space::space;
use super::supernet::input;
use supernet::optim::Sgd;
use supernet::search::preset::Preset;
use supernet::search::{Batch, FirstOrder, SearchConfig, SearchState, Strategy, StrategyKind};
use supernet::space::CellType;
use tch::{Device, Kind, Tensor};

#[test]
fn presets_set_the_published_values_and_leave_the_rest() {
    for p in Preset::ALL {
        assert_eq!(p.name().parse::<Preset>().unwrap(), p);
        let mut cfg = SearchConfig {
            seed: 7,
            subset: Some(100),
            ..Default::default()
        };
        p.apply(&mut cfg);
        cfg.validate().unwrap();
        assert_eq!((cfg.seed, cfg.subset), (7, Some(100)), "{p}");
        assert_eq!(cfg.preset, Some(p));
        // config.toml names the preset and reads back to the same settings.
        let text = cfg.to_toml();
        assert!(text.contains(&format!("preset = \"{p}\"")), "{text}");
        assert_eq!(SearchConfig::from_toml(&text, "x".as_ref()).unwrap(), cfg);
        // Every preset's space builds at its size.
        let s = supernet::space::SearchSpace::load(&cfg.space)
            .unwrap()
            .with_overrides(cfg.network)
            .unwrap();
        s.validate().unwrap();
    }
    let e = "darts2".parse::<Preset>().unwrap_err().to_string();
    assert!(e.contains("pc-darts") && e.contains("nb201-darts"), "{e}");

    let mut c = SearchConfig::default();
    Preset::PcDarts.apply(&mut c);
    assert_eq!(
        (
            c.partial_channels,
            c.arch_warmup_epochs,
            c.batch_size,
            c.lr,
            c.arch_lr
        ),
        (4, 15, 256, 0.1, 6e-4)
    );
    Preset::Gdas.apply(&mut c);
    assert_eq!(c.strategy, StrategyKind::Gdas);
    assert_eq!(
        (c.tau_max, c.tau_min, c.nesterov, c.weight_decay),
        (10.0, 0.1, true, 5e-4)
    );
    assert_eq!((c.partial_channels, c.arch_warmup_epochs), (1, 0));
    // A config written before these fields existed still reads (serde defaults).
    let old = SearchConfig::default()
        .to_toml()
        .lines()
        .filter(|l| !l.starts_with("nesterov") && !l.starts_with("arch_warmup_epochs"))
        .collect::<Vec<_>>()
        .join("\n");
    let c = SearchConfig::from_toml(&old, "x".as_ref()).unwrap();
    assert_eq!(
        (c.nesterov, c.arch_warmup_epochs, c.preset),
        (false, 0, None)
    );
}

#[test]
fn warmup_epochs_train_the_weights_only() {
    let s = space("tiny");
    let cfg = SearchConfig {
        arch_warmup_epochs: 2,
        ..Default::default()
    };
    let mut st = SearchState::new(&s, input("1x28x28"), &cfg, Device::Cpu).unwrap();
    let batch = || Batch {
        images: Tensor::randn([4, 1, 28, 28], (Kind::Float, Device::Cpu)),
        labels: Tensor::from_slice(&[0i64, 1, 2, 3]),
    };
    let alphas = || st_alphas(&st);
    fn st_alphas(st: &SearchState) -> Vec<f32> {
        st.arch.raw(CellType::Normal).unwrap()
    }
    let before = alphas();
    for epoch in 0..2 {
        st.epoch = epoch;
        let w = st.weights[0].detach().copy();
        let stats = FirstOrder.step(&mut st, &batch(), &batch()).unwrap();
        assert!(stats.val_loss.is_finite() && stats.val_loss > 0.0);
        assert!(
            !st.weights[0].equal(&w),
            "the weights train during the warm-up"
        );
        assert_eq!(st_alphas(&st), before, "epoch {epoch}: alphas moved");
        assert_eq!(st.adam.step, 0);
    }
    st.epoch = 2;
    FirstOrder.step(&mut st, &batch(), &batch()).unwrap();
    assert_ne!(st_alphas(&st), before);
    assert_eq!(st.adam.step, 1);
    // The warm-up is for the DARTS strategies only.
    let bad = SearchConfig {
        strategy: StrategyKind::Gdas,
        ..cfg
    };
    assert!(bad
        .validate()
        .unwrap_err()
        .to_string()
        .contains("arch_warmup_epochs"));
}

/// PyTorch `SGD(nesterov=True)`: `buf = m * buf + d`, `w -= lr * (d + m * buf)`.
#[test]
fn nesterov_sgd_follows_pytorch() {
    let w = Tensor::from_slice(&[1.0f64, -2.0]).set_requires_grad(true);
    let mut sgd = Sgd::new(&[w.shallow_clone()], 0.9, 0.1);
    sgd.nesterov = true;
    let _ = sgd.buffers[0].shallow_clone().fill_(0.5);
    (&w * Tensor::from_slice(&[3.0f64, 4.0]))
        .sum(Kind::Double)
        .backward();
    sgd.step(&[w.shallow_clone()], 0.01);
    // d = g + wd * w = [3.1, 3.8]; buf = 0.9 * 0.5 + d = [3.55, 4.25];
    // w -= 0.01 * (d + 0.9 * buf) = [1 - 0.06295, -2 - 0.07625]
    let got = Vec::<f64>::try_from(w.detach()).unwrap();
    for (g, e) in got.iter().zip([1.0 - 0.06295, -2.0 - 0.07625]) {
        assert!((g - e).abs() < 1e-12, "{got:?}");
    }
}

#[test]
fn the_preset_flag_applies_over_the_defaults_and_flags_win() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let out = super::search::supernet()
        .args([
            "search",
            "--preset",
            "pc-darts",
            "--space",
            "supernets/tiny.toml",
        ])
        .args([
            "--layers",
            "2",
            "--channels",
            "4",
            "--epochs",
            "1",
            "--subset",
            "256",
        ])
        .args([
            "--batch-size",
            "32",
            "--threads",
            "1",
            "--quiet",
            "--no-memory-check",
        ])
        .arg("--out")
        .arg(&dir)
        .output()
        .unwrap();
    super::search::ok(out);
    let cfg = SearchConfig::from_file(&dir.join("config.toml")).unwrap();
    assert_eq!(cfg.preset, Some(Preset::PcDarts));
    // From the preset:
    assert_eq!(
        (cfg.partial_channels, cfg.arch_warmup_epochs, cfg.lr),
        (4, 15, 0.1)
    );
    // Given as flags:
    assert_eq!((cfg.epochs, cfg.batch_size), (1, 32));
    assert!(cfg.space.ends_with("supernets/tiny.toml"));
    // A preset on --resume would be ignored: refused.
    let out = super::search::supernet()
        .args(["search", "--preset", "darts", "--resume"])
        .arg(&dir)
        .output()
        .unwrap();
    super::search::fails_with(out, &["--preset", "would be ignored"]);
}
