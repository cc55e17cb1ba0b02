//! Forward time of a supernet with the full softmax mixture against a one-hot sub-network
//! (DARTS_V2-like genotype derived from random alphas), and of a first-order-style
//! forward+backward. `cargo bench --bench forward -- [space.toml] [CxHxW] [batch]`.
use std::time::Instant;
use supernet::arch::ArchParams;
use supernet::space::SearchSpace;
use supernet::supernet::{ArchWeights, InputShape, Supernet};
use tch::{nn, Device, Kind, Tensor};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn time(reps: usize, mut f: impl FnMut()) -> f64 {
    f(); // warm-up
    median(
        (0..reps)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let space_path = args
        .first()
        .map(String::as_str)
        .unwrap_or("supernets/darts_cnn.toml");
    let input =
        InputShape::parse(args.get(1).map(String::as_str).unwrap_or("3x32x32"), 10).unwrap();
    let batch: i64 = args.get(2).map(|b| b.parse().unwrap()).unwrap_or(64);
    let reps = 5;
    tch::manual_seed(0);
    let space = SearchSpace::from_file(space_path.as_ref()).unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let net = Supernet::new(&vs.root(), &space, input).unwrap();
    let arch = ArchParams::new(&space, Device::Cpu);
    let dense = || arch.softmax();
    let genotype = arch.genotype(&space).expect("finite alphas");
    let one_hot = ArchWeights::from_genotype(&genotype, &space, Device::Cpu).unwrap();
    let xs = Tensor::randn(
        [batch, input.channels, input.height, input.width],
        (Kind::Float, Device::Cpu),
    );
    let ys = Tensor::randint(input.classes, [batch], (Kind::Int64, Device::Cpu));
    println!(
        "space {space_path}, input {input:?}, batch {batch}, threads {}",
        tch::get_num_threads()
    );
    let t_mix = time(reps, || {
        let _ = tch::no_grad(|| net.forward_t(&xs, &dense(), false));
    });
    let t_hot = time(reps, || {
        let _ = tch::no_grad(|| net.forward_t(&xs, &one_hot, false));
    });
    let t_step = time(reps, || {
        let loss = net
            .forward_t(&xs, &dense(), true)
            .cross_entropy_for_logits(&ys);
        loss.backward();
    });
    println!("forward, full mixture    {t_mix:.4} s (median of {reps})");
    println!(
        "forward, one-hot subnet  {t_hot:.4} s ({:.1}x faster)",
        t_mix / t_hot
    );
    println!("forward+backward mixture {t_step:.4} s");
    println!("genotype {}", genotype.to_text());
}
