//! The CPU against another device, op path by op path: the same supernet (same weights,
//! alphas and batch) must give the same logits, loss, BN statistics and gradients on both.
//! The paths that differ by device are covered: channels-last or not on CUDA (always on the
//! CPU), the polyphase dilated convolution (CPU training passes at 16x16 and up) against
//! the dilated one, PC-DARTS's channel shuffle in either layout, GDAS's straight-through
//! sparse mixture, a one-hot SPOS path, NAS-Bench-201, and autocast to bf16.
use crate::backend::{self, Precision};
use crate::rng::Rng;
use crate::search::{Batch, SearchConfig, SearchState};
use crate::space::{NetworkOverrides, SearchSpace};
use crate::supernet::{ArchWeights, InputShape};
use crate::Result;
use std::path::Path;
use tch::{Device, Kind, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mix {
    Softmax,
    /// GDAS: hard Gumbel sample with the straight-through gradient.
    Gumbel,
    /// SPOS: one uniform path, one-hot.
    Path,
}

struct Case {
    name: &'static str,
    space: &'static str,
    overrides: NetworkOverrides,
    partial_channels: usize,
    mix: Mix,
    channels_last: bool,
    precision: Precision,
}

/// One compared case: the largest relative differences found, and the bound they must keep.
#[derive(Debug, Clone)]
pub struct Row {
    pub case: &'static str,
    /// Max |device - cpu| / max |cpu| over the logits; relative difference of the loss.
    pub logits: f64,
    pub loss: f64,
    /// Relative L2 difference of the BN running statistics after the pass, of all weight
    /// gradients together, and of all alpha gradients together (0 when none flow).
    pub bn_stats: f64,
    pub weight_grads: f64,
    pub alpha_grads: f64,
    pub bound: f64,
}

impl Row {
    pub fn ok(&self) -> bool {
        [
            self.logits,
            self.loss,
            self.bn_stats,
            self.weight_grads,
            self.alpha_grads,
        ]
        .iter()
        .all(|d| d.is_finite() && *d <= self.bound)
    }
}

/// Float32 bound: the two devices sum in different orders (and batch statistics amplify
/// it); a wrong layout, phase or mixture gives differences of order 1.
pub const FP32_BOUND: f64 = 1e-3;
/// bf16 against float32 (the CPU bf16 tests measure 10-30% at initialisation).
pub const BF16_BOUND: f64 = 0.35;

fn cases() -> Vec<Case> {
    let darts = NetworkOverrides {
        layers: Some(3),
        channels: Some(8),
    };
    let nb201 = NetworkOverrides {
        layers: Some(1),
        channels: Some(8),
    };
    let case = |name, space, overrides, mix, channels_last| Case {
        name,
        space,
        overrides,
        partial_channels: 1,
        mix,
        channels_last,
        precision: Precision::Fp32,
    };
    vec![
        case(
            "darts softmax, NCHW",
            "darts_cnn",
            darts,
            Mix::Softmax,
            false,
        ),
        case(
            "darts softmax, channels-last",
            "darts_cnn",
            darts,
            Mix::Softmax,
            true,
        ),
        Case {
            partial_channels: 4,
            ..case(
                "pc-darts K=4, NCHW",
                "darts_cnn",
                darts,
                Mix::Softmax,
                false,
            )
        },
        Case {
            partial_channels: 4,
            ..case(
                "pc-darts K=4, channels-last",
                "darts_cnn",
                darts,
                Mix::Softmax,
                true,
            )
        },
        case("darts gdas sample", "darts_cnn", darts, Mix::Gumbel, false),
        case("darts spos path", "darts_cnn", darts, Mix::Path, false),
        case("nb201 softmax", "nb201", nb201, Mix::Softmax, false),
        Case {
            precision: Precision::Bf16,
            ..case(
                "darts softmax, bf16 autocast",
                "darts_cnn",
                darts,
                Mix::Softmax,
                true,
            )
        },
    ]
}

/// A fixed batch of 4 images of 3x16x16 (no generator involved).
fn batch(device: Device) -> Batch {
    let n = 4 * 3 * 16 * 16;
    let x: Vec<f32> = (0..n)
        .map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0)
        .collect();
    let y: Vec<i64> = (0..4).map(|i| (i * 3 % 10) as i64).collect();
    Batch {
        images: Tensor::from_slice(&x)
            .view([4, 3, 16, 16])
            .to_device(device),
        labels: Tensor::from_slice(&y).to_device(device),
    }
}

fn mix_of(st: &SearchState, mix: Mix) -> Result<ArchWeights> {
    let mut rng = Rng::from_key(&[17, 1]);
    Ok(match mix {
        Mix::Softmax => st.arch.softmax(),
        Mix::Gumbel => st.arch.gumbel_hard(1.0, &mut rng, false),
        Mix::Path => ArchWeights::from_genotype(
            &crate::space::uniform_genotype(&st.space, &mut rng),
            &st.space,
            st.device,
        )?,
    })
}

/// Logits, loss, BN statistics after the pass, weight gradients and alpha gradients, on
/// the CPU.
type Pass = (Tensor, Tensor, Vec<Tensor>, Vec<Tensor>, Vec<Tensor>);

fn run(st: &SearchState, mix: Mix, precision: Precision) -> Result<Pass> {
    let b = batch(st.device);
    let m = mix_of(st, mix)?;
    let logits = backend::autocast(st.device, precision, || {
        st.net.forward_t(&b.images, &m, true)
    })?
    .to_kind(Kind::Float);
    let loss = logits.cross_entropy_for_logits(&b.labels);
    let alphas = st.arch.tensors();
    let mut wrt: Vec<Tensor> = alphas.iter().map(|a| a.shallow_clone()).collect();
    wrt.extend(st.weights.iter().map(|w| w.shallow_clone()));
    let grads = Tensor::run_backward(&[&loss], &wrt, false, false);
    let host = |t: &Tensor| {
        if t.defined() {
            t.detach().to_device(Device::Cpu).to_kind(Kind::Double)
        } else {
            Tensor::zeros([1], (Kind::Double, Device::Cpu))
        }
    };
    let (a, w) = grads.split_at(alphas.len());
    Ok((
        host(&logits),
        host(&loss),
        st.buffers.iter().map(host).collect(),
        w.iter().map(host).collect(),
        a.iter().map(host).collect(),
    ))
}

/// Relative L2 difference of two lists of tensors taken as one vector (0 when both are 0).
fn rel_l2(got: &[Tensor], want: &[Tensor]) -> f64 {
    let flat =
        |ts: &[Tensor]| Tensor::cat(&ts.iter().map(|t| t.flatten(0, -1)).collect::<Vec<_>>(), 0);
    let (g, w) = (flat(got), flat(want));
    let diff = (&g - &w).norm().double_value(&[]);
    let norm = w.norm().double_value(&[]);
    if norm == 0.0 {
        diff
    } else {
        diff / norm
    }
}

fn max_rel(got: &Tensor, want: &Tensor) -> f64 {
    let scale = want.abs().max().double_value(&[]).max(f64::MIN_POSITIVE);
    (got - want).abs().max().double_value(&[]) / scale
}

/// Compare `device` with the CPU on every case whose name `only` accepts; with `device`
/// the CPU itself every float32 row must be exactly 0. TF32 is switched off for the
/// comparison (and restored to PyTorch's default after it), so that float32 on CUDA is
/// float32.
pub fn parity(device: Device, only: impl Fn(&str) -> bool) -> Result<Vec<Row>> {
    if device.is_cuda() {
        backend::set_tf32(false)?;
    }
    let rows = cases()
        .into_iter()
        .filter(|c| only(c.name))
        .map(|c| compare(&c, device))
        .collect::<Result<Vec<_>>>();
    if device.is_cuda() {
        backend::set_tf32(true)?;
        // Leave the layout switch as a search would find it.
        backend::set_cuda_channels_last(false);
    }
    rows
}

fn compare(c: &Case, device: Device) -> Result<Row> {
    let space = SearchSpace::load(Path::new(c.space))?.with_overrides(c.overrides)?;
    let input = InputShape::parse("3x16x16", 10)?;
    let cfg = SearchConfig {
        partial_channels: c.partial_channels,
        channels_last: c.channels_last,
        ..SearchConfig::default()
    };
    let cpu = SearchState::new(&space, input, &cfg, Device::Cpu)?;
    let mut dev = SearchState::new(&space, input, &cfg, device)?;
    dev.vs.copy(&cpu.vs)?;
    tch::no_grad(|| {
        for (d, s) in dev.arch.tensors().iter().zip(cpu.arch.tensors()) {
            d.shallow_clone().copy_(&s);
        }
    });
    let want = run(&cpu, c.mix, Precision::Fp32)?;
    // SearchState::new set the device's layout switch for this case; nothing since changed it.
    let got = run(&dev, c.mix, c.precision)?;
    Ok(Row {
        case: c.name,
        logits: max_rel(&got.0, &want.0),
        loss: max_rel(&got.1, &want.1),
        bn_stats: rel_l2(&got.2, &want.2),
        weight_grads: rel_l2(&got.3, &want.3),
        alpha_grads: rel_l2(&got.4, &want.4),
        bound: if c.precision == Precision::Fp32 {
            FP32_BOUND
        } else {
            BF16_BOUND
        },
    })
}

/// The rows as a Markdown table.
pub fn table(device: Device, rows: &[Row]) -> String {
    let mut s = format!(
        "| case ({} vs cpu) | logits | loss | BN statistics | weight gradients | alpha gradients | bound | ok |\n|---|---|---|---|---|---|---|---|\n",
        crate::run::device_name(device)
    );
    for r in rows {
        s.push_str(&format!(
            "| {} | {:.1e} | {:.1e} | {:.1e} | {:.1e} | {:.1e} | {:.0e} | {} |\n",
            r.case,
            r.logits,
            r.loss,
            r.bn_stats,
            r.weight_grads,
            r.alpha_grads,
            r.bound,
            if r.ok() { "yes" } else { "NO" }
        ));
    }
    s
}
