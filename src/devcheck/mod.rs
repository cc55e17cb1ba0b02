//! `supernet check`: a short forward/backward of a supernet on the chosen device, saying
//! plainly where it ran; [`bench`] and [`parity`], the timing and CPU-against-device
//! checks. Used by scripts/gpu-check on machines without Rust.
pub mod bench;
pub mod parity;

use crate::arch::ArchParams;
use crate::space::SearchSpace;
use crate::supernet::{InputShape, Supernet};
use crate::Result;
use std::fmt::Write as _;
use std::time::Instant;
use tch::{nn, Device, Kind, Tensor};

/// Run `steps` forward/backward passes of `space` at `batch` on `device`; a report.
pub fn check(
    space: &SearchSpace,
    input: InputShape,
    batch: i64,
    steps: usize,
    device: Device,
) -> Result<String> {
    let mut report = String::new();
    let _ = writeln!(
        report,
        "device requested: {}; CUDA available to libtorch: {}",
        crate::run::device_name(device),
        tch::Cuda::is_available()
    );
    tch::manual_seed(0);
    let vs = nn::VarStore::new(device);
    let net = Supernet::new(&vs.root(), space, input)?;
    let arch = ArchParams::new(space, device);
    let xs = Tensor::randn(
        [batch, input.channels, input.height, input.width],
        (Kind::Float, device),
    );
    let ys = Tensor::randint(input.classes, [batch], (Kind::Int64, device));
    let mut times = Vec::new();
    let mut loss_value = 0.0;
    for _ in 0..steps {
        let t = Instant::now();
        let logits = net.forward_t(&xs, &arch.softmax(), true);
        let loss = logits.cross_entropy_for_logits(&ys);
        loss.backward();
        loss_value = loss.double_value(&[]); // synchronises the device
        times.push(t.elapsed().as_secs_f64());
    }
    let weights_on_cuda = vs
        .trainable_variables()
        .iter()
        .all(|t| t.device().is_cuda());
    let used_cuda =
        xs.device().is_cuda() && arch.tensors()[0].grad().device().is_cuda() && weights_on_cuda;
    times.sort_by(|a, b| a.total_cmp(b));
    let _ = writeln!(
        report,
        "space '{}', batch {batch}, input {}x{}x{}: {steps} forward/backward passes, median {:.4} s, loss {loss_value:.4}",
        space.name, input.channels, input.height, input.width, times[times.len() / 2]
    );
    let _ = write!(
        report,
        "{}",
        if used_cuda {
            "CUDA WAS USED: the network, the data and the gradients lived on the GPU"
        } else {
            "CUDA WAS NOT USED: everything ran on the CPU"
        }
    );
    Ok(report)
}
