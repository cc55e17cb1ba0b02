//! Learning-rate schedules.

/// Cosine annealing from `lr` to `lr_min` over `epochs` (PyTorch `CosineAnnealingLR` with
/// `T_max = epochs`, stepped once per epoch as in DARTS): the rate used during `epoch`.
pub fn cosine_lr(lr: f64, lr_min: f64, epoch: usize, epochs: usize) -> f64 {
    if epochs == 0 {
        return lr;
    }
    let t = epoch as f64 / epochs as f64;
    lr_min + (lr - lr_min) * (1.0 + (std::f64::consts::PI * t).cos()) / 2.0
}
