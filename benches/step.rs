//! One search configuration timed the way scripts/reference.py times PyTorch: median seconds
//! per forward or per search step on random data, and the process's peak memory.
//! `cargo bench --bench step -- SPACE CxHxW BATCH forward|first-order|second-order STEPS
//! [--recompute]` prints one JSON line (scripts/bench runs it beside the PyTorch reference).
//! `... SPACE CxHxW BATCH score ARCHS [VAL_IMAGES [K [GENOTYPES_OUT]]]` times
//! `supernet sample`'s scoring of ARCHS uniform sub-networks (recalibrate:K BN on
//! training batches of BATCH, then evaluation of VAL_IMAGES in batches of 256) and writes
//! the architectures as JSON lines to GENOTYPES_OUT for the reference to score the same.
//! A trailing `--partial-channels=K` builds the PC-DARTS supernet (ops on C/K channels,
//! edge betas), as `scripts/reference.py bench --partial-channels K` does.
use std::time::Instant;
use supernet::search::{
    Batch, FirstOrder, SearchConfig, SearchState, SecondOrder, Strategy, StrategyKind,
};
use supernet::space::SearchSpace;
use supernet::supernet::InputShape;
use tch::{Device, Kind, Tensor};

/// Sub-networks scored per minute with inherited weights (random weights and synthetic
/// data: the cost does not depend on the values).
#[allow(clippy::too_many_arguments)]
fn score(
    st: SearchState,
    cfg: SearchConfig,
    input: InputShape,
    batch: usize,
    archs: usize,
    val: usize,
    k: usize,
    out: &str,
    rss_before: u64,
) {
    use std::sync::Arc;
    use supernet::data::{Augment, Dataset, Loader, LoaderConfig, Subset};
    use supernet::sample::{draw_distinct, BnMode, Sampler, Scorer};
    let data = |n: usize, seed: u64| {
        let d = Dataset::synthetic(
            n,
            input.classes as usize,
            input.channels as usize,
            input.height as usize,
            input.width as usize,
            seed,
        )
        .unwrap();
        Subset::all(&Arc::new(d))
    };
    let val_loader = Loader::eval(data(val, 1), 256).unwrap();
    let train = Loader::new(
        data(batch * k, 2),
        LoaderConfig::train(batch, Augment::default(), 0),
    )
    .unwrap();
    let space = st.space.clone();
    let scorer = Scorer::new(st, cfg, val_loader, train, BnMode::Recalibrate(k), None).unwrap();
    // One extra architecture warms up and is not timed.
    let (genotypes, _) = draw_distinct(&Sampler::Uniform, &space, archs + 1, 0);
    let mut lines = String::new();
    let mut times = Vec::new();
    for (i, g) in genotypes.iter().enumerate() {
        let t = Instant::now();
        scorer.score(g).unwrap();
        if i > 0 {
            times.push(t.elapsed().as_secs_f64());
            lines.push_str(&g.to_json().replace('\n', ""));
            lines.push('\n');
        }
    }
    std::fs::write(out, lines).unwrap();
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let total: f64 = times.iter().sum();
    println!(
        "{{\"tool\": \"supernet\", \"space\": \"{}\", \"mode\": \"score\", \"batch\": {batch}, \"threads\": {}, \"steps\": {}, \"val_images\": {val}, \"recalibration_batches\": {k}, \"median_s\": {}, \"archs_per_minute\": {}, \"times_s\": {:?}, \"peak_memory_bytes\": {}, \"rss_before_model_bytes\": {rss_before}}}",
        space.name,
        tch::get_num_threads(),
        times.len(),
        sorted[sorted.len() / 2],
        60.0 * times.len() as f64 / total,
        times,
        supernet::memory::peak_rss()
    );
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let partial_channels: usize = std::env::args()
        .find_map(|a| {
            a.strip_prefix("--partial-channels=")
                .map(|k| k.parse().expect("--partial-channels=K with K >= 1"))
        })
        .unwrap_or(1);
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.to_string());
    let space_path = arg(0, "supernets/darts_cnn.toml");
    let input = InputShape::parse(&arg(1, "3x32x32"), 10).unwrap();
    let batch: i64 = arg(2, "64").parse().unwrap();
    let mode = arg(3, "first-order");
    let steps: usize = arg(4, "5").parse().unwrap();
    let space = SearchSpace::from_file(space_path.as_ref()).unwrap();
    let rss_before = supernet::memory::peak_rss();
    // Options after the positional arguments: `--recompute`, `--partial-channels=K`.
    let recompute = std::env::args().any(|a| a == "--recompute");
    let cfg = SearchConfig {
        recompute,
        partial_channels,
        space: space_path.clone().into(),
        strategy: if mode == "second-order" {
            StrategyKind::SecondOrder
        } else {
            StrategyKind::FirstOrder
        },
        ..SearchConfig::default()
    };
    cfg.validate().unwrap();
    // What `supernet search` predicts for this step, to compare with the measured peak.
    let predicted = if mode.ends_with("-order") {
        let exe = std::path::Path::new(env!("CARGO_BIN_EXE_supernet"));
        match supernet::memory::predict(exe, &cfg, input, batch as usize, Device::Cpu, None)
            .unwrap()
        {
            supernet::memory::Probed::Predicted(p) => p.peak,
            over => panic!("no limit was given, yet {over:?}"),
        }
    } else {
        0
    };
    let mut label = mode.clone();
    if recompute {
        label.push_str("+recompute");
    }
    if partial_channels > 1 {
        label.push_str(&format!("+pc{partial_channels}"));
    }
    let mut st = SearchState::new(&space, input, &cfg, Device::Cpu).unwrap();
    let random_batch = || Batch {
        images: Tensor::randn(
            [batch, input.channels, input.height, input.width],
            (Kind::Float, Device::Cpu),
        ),
        labels: Tensor::randint(input.classes, [batch], (Kind::Int64, Device::Cpu)),
    };
    if mode == "score" {
        let val: usize = arg(5, "1280").parse().unwrap();
        let k: usize = arg(6, "10").parse().unwrap();
        let out = arg(7, "target/score_genotypes.jsonl");
        return score(
            st,
            cfg,
            input,
            batch as usize,
            steps,
            val,
            k,
            &out,
            rss_before,
        );
    }
    let mut strategy: Option<Box<dyn Strategy>> = match mode.as_str() {
        "forward" => None,
        "first-order" => Some(Box::new(FirstOrder)),
        "second-order" => Some(Box::new(SecondOrder)),
        m => panic!("unknown mode {m}"),
    };
    let mut times = Vec::new();
    let mut alpha_times = Vec::new();
    for i in 0..=steps {
        let (train, val) = (random_batch(), random_batch());
        let t = Instant::now();
        match &mut strategy {
            None => {
                let _ = tch::no_grad(|| {
                    st.net
                        .forward_t(&train.images, &st.arch.softmax_detached(), false)
                });
            }
            // First order, as `FirstOrder::step` does it, timing its two halves.
            Some(_) if mode == "first-order" => {
                st.zero_arch_grad();
                st.arch_backward(&val).unwrap();
                st.arch_update().unwrap();
                let alpha = t.elapsed().as_secs_f64();
                st.weight_step(&train).unwrap();
                if i > 0 {
                    alpha_times.push(alpha);
                }
            }
            Some(s) => {
                s.step(&mut st, &train, &val).unwrap();
            }
        }
        if i > 0 {
            times.push(t.elapsed().as_secs_f64()); // step 0 is the warm-up
        }
    }
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(|a, b| a.total_cmp(b));
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    println!(
        "{{\"tool\": \"supernet\", \"space\": \"{space_path}\", \"mode\": \"{label}\", \"alpha_step_median_s\": {}, \"batch\": {batch}, \"threads\": {}, \"steps\": {steps}, \"partial_channels\": {partial_channels}, \"median_s\": {}, \"times_s\": {:?}, \"peak_memory_bytes\": {}, \"predicted_peak_bytes\": {predicted}, \"rss_before_model_bytes\": {rss_before}}}",
        median(&alpha_times),
        tch::get_num_threads(),
        median(&times),
        times,
        supernet::memory::peak_rss()
    );
}
