//! Supernet invariants: shapes, mixing weights, and one-hot forward == inherited sub-network.
use super::space::{space, DARTS_V2};
use supernet::derive::derive;
use supernet::space::{Genotype, SearchSpace};
use supernet::supernet::{ArchWeights, InputShape, MixWeights, Supernet};
use tch::{nn, Device, Kind, Tensor};

pub fn input(text: &str) -> InputShape {
    InputShape::parse(text, 10).unwrap()
}

/// Random softmax mixing weights for every cell type of `space`.
pub fn softmax_weights(space: &SearchSpace, scale: f64) -> ArchWeights {
    let shape = [space.cell.num_edges() as i64, space.ops.len() as i64];
    let w = || {
        MixWeights::dense(
            (Tensor::randn(shape, (Kind::Float, Device::Cpu)) * scale).softmax(-1, Kind::Float),
        )
    };
    let has_reduce = space.network.cell_types().len() == 2;
    ArchWeights {
        normal: w(),
        reduce: has_reduce.then(w),
    }
}

pub fn rows(w: &Tensor) -> Vec<Vec<f32>> {
    Vec::<Vec<f32>>::try_from(w).unwrap()
}

pub fn max_rel_diff(a: &Tensor, b: &Tensor) -> f64 {
    let scale = b.abs().max().double_value(&[]).max(1e-12);
    (a - b).abs().max().double_value(&[]) / scale
}

/// A float32 result against the float64 answer of a reference implementation, relative to
/// the answer's largest entry, when a fixed bound would be too tight: training-mode BN
/// divides by batch deviations that amplify summation order, cell after cell. Returns
/// (ours, the reference's own float32 error: the largest of `ref32`, tolerance): `ours` must
/// be within `factor` times that error (summation noise of the same order) or within `floor`.
pub fn float64_parity(
    ours: &Tensor,
    ref32: &[&Tensor],
    ref64: &Tensor,
    factor: f64,
    floor: f64,
) -> (f64, f64, f64) {
    let ref64 = ref64.to_kind(Kind::Double);
    let rel = |t: &Tensor| max_rel_diff(&t.to_kind(Kind::Double), &ref64);
    let noise = ref32.iter().map(|t| rel(t)).fold(0.0, f64::max);
    (rel(ours), noise, (factor * noise).max(floor))
}

#[test]
fn logits_have_the_classes_and_mixing_rows_sum_to_one() {
    tch::manual_seed(0);
    for (name, shape) in [("tiny", "1x28x28"), ("nb201", "3x16x16")] {
        let s = space(name).with_overrides(Default::default()).unwrap();
        let vs = nn::VarStore::new(Device::Cpu);
        let net = Supernet::new(&vs.root(), &s, input(shape)).unwrap();
        let w = softmax_weights(&s, 1.0);
        let sums = w.normal.weights.sum_dim_intlist(-1, false, Kind::Float);
        assert!(max_rel_diff(&sums, &Tensor::ones_like(&sums)) < 1e-6);
        let x = Tensor::randn(
            [
                3,
                input(shape).channels,
                input(shape).height,
                input(shape).width,
            ],
            (Kind::Float, Device::Cpu),
        );
        assert_eq!(net.forward_t(&x, &w, true).size(), vec![3, 10]);
    }
}

/// The sub-network built on its own, with weights copied from the supernet by name,
/// computes exactly what the supernet computes under the one-hot weights.
#[test]
fn one_hot_forward_equals_the_inherited_subnetwork() {
    tch::manual_seed(1);
    let cases: Vec<(SearchSpace, &str, Genotype)> = vec![
        (
            space("darts_cnn")
                .with_overrides(supernet::space::NetworkOverrides {
                    layers: Some(5),
                    channels: Some(6),
                })
                .unwrap(),
            "3x16x16",
            Genotype::parse(DARTS_V2).unwrap(),
        ),
        (
            space("nb201")
                .with_overrides(supernet::space::NetworkOverrides {
                    layers: Some(1),
                    channels: Some(4),
                })
                .unwrap(),
            "3x16x16",
            Genotype::parse(
                "|nor_conv_3x3~0|+|none~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_1x1~1|none~2|",
            )
            .unwrap(),
        ),
    ];
    for (s, shape, g) in cases {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = Supernet::new(&vs.root(), &s, input(shape)).unwrap();
        let i = input(shape);
        let x = Tensor::randn(
            [4, i.channels, i.height, i.width],
            (Kind::Float, Device::Cpu),
        );
        // Move the BN running statistics away from their initial values.
        let _ = tch::no_grad(|| net.forward_t(&x, &softmax_weights(&s, 1.0), true));
        let mut sub_vs = nn::VarStore::new(Device::Cpu);
        let sub = Supernet::subnet(&sub_vs.root(), &s, i, &g).unwrap();
        sub_vs.copy(&vs).unwrap();
        let one_hot = ArchWeights::from_genotype(&g, &s, Device::Cpu).unwrap();
        for train in [false, true] {
            let a = tch::no_grad(|| net.forward_t(&x, &one_hot, train));
            let b = tch::no_grad(|| sub.forward_t(&x, &one_hot, train));
            assert_eq!(max_rel_diff(&a, &b), 0.0, "{} train={train}", s.name);
        }
        // The sub-network holds only its own operations.
        let params = |vs: &nn::VarStore| {
            vs.trainable_variables()
                .iter()
                .map(|t| t.numel())
                .sum::<usize>()
        };
        assert!(params(&sub_vs) < params(&vs));
    }
}

#[test]
fn derived_genotype_of_random_alphas_validates() {
    let s = space("darts_cnn");
    let w = softmax_weights(&s, 1.0);
    let g = derive(
        &s,
        &rows(&w.normal.weights),
        Some(&rows(&w.reduce.as_ref().unwrap().weights)),
    );
    g.validate(&s).unwrap();
}

#[test]
fn odd_resolution_at_a_reduction_is_an_error_not_a_panic() {
    let s = space("darts_cnn");
    let vs = nn::VarStore::new(Device::Cpu);
    let e = Supernet::new(&vs.root(), &s, input("3x30x30"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("reduction cell 5") && e.contains("15x15"), "{e}");
}

/// Dilated depthwise convolutions run as undilated ones on polyphase components in
/// training passes (a speed-up); values and gradients must equal the dilated convolution's.
#[test]
fn dilated_depthwise_convolution_as_polyphase_gives_the_same_values_and_gradients() {
    use supernet::ops::{Conv, ConvShape};
    let vs = tch::nn::VarStore::new(Device::Cpu);
    // The smallest resolutions that take the polyphase path: 14x14 (fmnist_small), 8x8.
    let cases = [(3, 1), (5, 1), (3, 2), (5, 2)]
        .into_iter()
        .flat_map(|ks| [(16, 20), (14, 14), (8, 10)].map(|hw| (ks, hw)));
    for ((k, stride), (h, w)) in cases {
        let shape = ConvShape::new(6, 6, k)
            .stride(stride)
            .padding(k / 2 * 2)
            .dilation(2)
            .depthwise();
        let conv = Conv::new(vs.root() / format!("c{k}{stride}{h}"), shape);
        let x = Tensor::randn([3, 6, h, w], (Kind::Float, Device::Cpu));
        let grads = |fast: bool| {
            let x = x.detach().set_requires_grad(true);
            let y = if fast {
                conv.forward(&x)
            } else {
                x.apply(&conv.conv)
            };
            let g = Tensor::linspace(-1.0, 1.0, y.numel() as i64, (Kind::Float, Device::Cpu))
                .view(y.size().as_slice());
            let dw = Tensor::run_backward(
                &[(&y * &g).sum(Kind::Float)],
                &[&x, &conv.conv.ws],
                false,
                false,
            );
            (y.detach(), dw)
        };
        let (fast, direct) = (grads(true), grads(false));
        assert_eq!(
            fast.0.size(),
            direct.0.size(),
            "k {k} stride {stride} {h}x{w}"
        );
        let max_diff = |a: &Tensor, b: &Tensor| (a - b).abs().max().double_value(&[]);
        assert!(
            max_diff(&fast.0, &direct.0) < 1e-5,
            "k {k} stride {stride} {h}x{w}: values"
        );
        for (a, b) in fast.1.iter().zip(&direct.1) {
            assert!(
                max_diff(a, b) < 1e-4,
                "k {k} stride {stride} {h}x{w}: gradients"
            );
        }
    }
}

/// The pooling ops of every edge leaving one state share one pooling and one training-mode
/// BN (issue 16): the same outputs and gradients as each edge computing its own, and every
/// edge's running statistics updated exactly as its own BN would update them.
#[test]
fn pooling_shared_across_edges_equals_pooling_per_edge() {
    use supernet::ops::{channels_last, Affine, OpConfig, Operation, SharedInput};
    use supernet::space::OpKind;
    let cfg = OpConfig {
        affine: Affine::No,
        pool_bn: true,
    };
    // 4 channels (libtorch's slow channels-last BN case, normalised in NCHW) and 8.
    for c in [4, 8] {
        for (kind, stride) in [(OpKind::MaxPool3x3, 1), (OpKind::AvgPool3x3, 2)] {
            let vs = nn::VarStore::new(Device::Cpu);
            let edges: Vec<Operation> = (0..3)
                .map(|e| Operation::new(vs.root() / format!("e{e}"), kind, c, stride, cfg))
                .collect();
            let x = channels_last(&Tensor::randn([5, c, 12, 12], (Kind::Float, Device::Cpu)));
            // Earlier steps left the edges with different running statistics.
            for (e, op) in edges.iter().enumerate() {
                if let Operation::Pool { bn: Some(bn), .. } = op {
                    tch::no_grad(|| {
                        let _ = bn.running_mean.shallow_clone().fill_(0.1 * e as f64);
                        let _ = bn.running_var.shallow_clone().fill_(1.0 + e as f64);
                    });
                }
            }
            let snapshot = |ops: &[Operation]| -> Vec<Tensor> {
                ops.iter()
                    .flat_map(|op| match op {
                        Operation::Pool { bn: Some(bn), .. } => {
                            vec![bn.running_mean.copy(), bn.running_var.copy()]
                        }
                        _ => panic!("not a pooling op with BN"),
                    })
                    .collect()
            };
            let before = snapshot(&edges);
            // Output gradients that differ per edge (a constant one has a zero input gradient
            // through BN).
            let out_grads: Vec<Tensor> = (0..edges.len())
                .map(|_| {
                    let out = 12 / stride;
                    Tensor::randn([5, c, out, out], (Kind::Float, Device::Cpu))
                })
                .collect();
            let run = |shared: bool| {
                let xg = x.detach().set_requires_grad(true);
                let input = SharedInput::new(xg.shallow_clone());
                let mut total = Tensor::zeros([], (Kind::Float, Device::Cpu));
                for (e, op) in edges.iter().enumerate() {
                    let y = if shared {
                        op.forward_shared(&input, true)
                    } else {
                        op.forward_t(&xg, true)
                    };
                    total += (&y * &out_grads[e]).sum(Kind::Float);
                }
                let g = Tensor::run_backward(&[&total], &[&xg], false, false);
                (total.detach(), g[0].detach(), snapshot(&edges))
            };
            let (per_edge_total, per_edge_grad, per_edge_stats) = run(false);
            // Back to the statistics before, then the shared computation.
            for (op, stats) in edges.iter().zip(before.chunks(2)) {
                if let Operation::Pool { bn: Some(bn), .. } = op {
                    tch::no_grad(|| {
                        bn.running_mean.shallow_clone().copy_(&stats[0]);
                        bn.running_var.shallow_clone().copy_(&stats[1]);
                    });
                }
            }
            let (total, grad, stats) = run(true);
            let what = format!("{kind:?} stride {stride}, {c} channels");
            assert!(
                max_rel_diff(&total, &per_edge_total) < 1e-6,
                "{what}: values"
            );
            let d = max_rel_diff(&grad, &per_edge_grad);
            assert!(d < 1e-5, "{what}: gradients differ by {d:e} relative");
            for (i, (a, b)) in stats.iter().zip(&per_edge_stats).enumerate() {
                assert!(a.equal(b), "{what}: running statistics {i} differ");
                assert!(!a.equal(&before[i]), "{what}: statistics {i} not updated");
            }
        }
    }
}
