//! Scoring a network on a data split: loss and top-1 accuracy, no gradients.
use crate::data::Loader;
use crate::supernet::{ArchWeights, Supernet};
use tch::{Device, Kind, Tensor};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    pub loss: f64,
    pub accuracy: f64,
    pub samples: usize,
}

/// Mean cross-entropy and accuracy of `net` under `weights` over one pass of `loader`.
/// `train` selects BN batch statistics (true) or the stored running statistics (false).
pub fn evaluate(
    net: &Supernet,
    weights: &ArchWeights,
    loader: &Loader,
    device: Device,
    train: bool,
) -> Score {
    evaluate_batches(net, weights, loader, device, train, None)
}

/// [`evaluate`] over the first `max_batches` batches of `loader` (all when `None`).
pub fn evaluate_batches(
    net: &Supernet,
    weights: &ArchWeights,
    loader: &Loader,
    device: Device,
    train: bool,
    max_batches: Option<usize>,
) -> Score {
    evaluate_with(
        |xs| net.forward_t(xs, weights, train),
        loader,
        device,
        max_batches,
    )
}

/// Loss and accuracy of the logits `forward` gives for the first `max_batches` batches of
/// `loader` (all when `None`), without gradients: any network's evaluation.
pub fn evaluate_with(
    forward: impl Fn(&Tensor) -> Tensor,
    loader: &Loader,
    device: Device,
    max_batches: Option<usize>,
) -> Score {
    let mut loss_sum = 0.0;
    let mut correct = 0i64;
    let mut samples = 0usize;
    tch::no_grad(|| {
        for batch in loader.epoch(0, 0).take(max_batches.unwrap_or(usize::MAX)) {
            let xs = batch.images.to_device(device);
            let ys = batch.labels.to_device(device);
            let logits = forward(&xs);
            let n = ys.size()[0];
            let loss =
                logits.cross_entropy_loss::<Tensor>(&ys, None, tch::Reduction::Sum, -100, 0.0);
            loss_sum += loss.double_value(&[]);
            correct += logits
                .argmax(-1, false)
                .eq_tensor(&ys)
                .sum(Kind::Int64)
                .int64_value(&[]);
            samples += n as usize;
        }
    });
    let n = samples.max(1) as f64;
    Score {
        loss: loss_sum / n,
        accuracy: correct as f64 / n,
        samples,
    }
}

/// Fraction of correct top-1 predictions.
pub fn accuracy(logits: &Tensor, labels: &Tensor) -> f64 {
    let correct = logits
        .argmax(-1, false)
        .eq_tensor(labels)
        .sum(Kind::Int64)
        .int64_value(&[]);
    correct as f64 / labels.size()[0] as f64
}
