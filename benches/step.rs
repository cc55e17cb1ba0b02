//! One search configuration timed the way scripts/reference.py times PyTorch: median seconds
//! per forward or per search step on random data, and the process's peak memory.
//! `cargo bench --bench step -- SPACE CxHxW BATCH forward|first-order|second-order STEPS`
//! prints one JSON line (scripts/bench runs it beside the PyTorch reference).
use std::time::Instant;
use supernet::search::{Batch, FirstOrder, SearchConfig, SearchState, SecondOrder, Strategy};
use supernet::space::SearchSpace;
use supernet::supernet::InputShape;
use tch::{Device, Kind, Tensor};

fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.to_string());
    let space_path = arg(0, "supernets/darts_cnn.toml");
    let input = InputShape::parse(&arg(1, "3x32x32"), 10).unwrap();
    let batch: i64 = arg(2, "64").parse().unwrap();
    let mode = arg(3, "first-order");
    let steps: usize = arg(4, "5").parse().unwrap();
    let space = SearchSpace::from_file(space_path.as_ref()).unwrap();
    let rss_before = peak_rss_bytes();
    let cfg = SearchConfig::default();
    let mut st = SearchState::new(&space, input, &cfg, Device::Cpu).unwrap();
    let random_batch = || Batch {
        images: Tensor::randn(
            [batch, input.channels, input.height, input.width],
            (Kind::Float, Device::Cpu),
        ),
        labels: Tensor::randint(input.classes, [batch], (Kind::Int64, Device::Cpu)),
    };
    let mut strategy: Option<Box<dyn Strategy>> = match mode.as_str() {
        "forward" => None,
        "first-order" => Some(Box::new(FirstOrder)),
        "second-order" => Some(Box::new(SecondOrder)),
        m => panic!("unknown mode {m}"),
    };
    let mut times = Vec::new();
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
            Some(s) => {
                s.step(&mut st, &train, &val).unwrap();
            }
        }
        if i > 0 {
            times.push(t.elapsed().as_secs_f64()); // step 0 is the warm-up
        }
    }
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    println!(
        "{{\"tool\": \"supernet\", \"space\": \"{space_path}\", \"mode\": \"{mode}\", \"batch\": {batch}, \"threads\": {}, \"steps\": {steps}, \"median_s\": {}, \"times_s\": {:?}, \"peak_memory_bytes\": {}, \"rss_before_model_bytes\": {rss_before}}}",
        tch::get_num_threads(),
        sorted[sorted.len() / 2],
        times,
        peak_rss_bytes()
    );
}
