//! Loss scaling for float16 steps, PyTorch's `torch.amp.GradScaler` with its defaults:
//! the loss is multiplied by the scale before the backward pass, the gradients divided by
//! it after; a step whose gradients are not finite is skipped and halves the scale, and
//! 2000 finite steps in a row double it (libtorch's own `_amp_update_scale_`). The state
//! lives in two device tensors, so nothing here reads the device.
use tch::{Device, Kind, Tensor};

pub struct GradScaler {
    /// The current scale (float32, one element).
    pub scale: Tensor,
    /// Finite steps since the scale last changed (int32, one element).
    pub growth_tracker: Tensor,
}

/// `GradScaler` defaults: `init_scale`, `growth_factor`, `backoff_factor`, `growth_interval`.
pub const INIT_SCALE: f64 = 65536.0;
pub const GROWTH_FACTOR: f64 = 2.0;
pub const BACKOFF_FACTOR: f64 = 0.5;
pub const GROWTH_INTERVAL: i64 = 2000;

impl GradScaler {
    pub fn new(device: Device) -> Self {
        GradScaler {
            scale: Tensor::full([1], INIT_SCALE, (Kind::Float, device)),
            growth_tracker: Tensor::zeros([1], (Kind::Int, device)),
        }
    }

    /// `loss * scale`, the tensor to call `backward` on.
    pub fn scale_loss(&self, loss: &Tensor) -> Tensor {
        loss * &self.scale
    }

    /// Divide the gradients of `params` by the scale, in place (`unscale_`).
    pub fn unscale(&self, params: &[Tensor]) {
        let inv = self.scale.reciprocal();
        tch::no_grad(|| {
            for p in params {
                let mut g = p.grad();
                if g.defined() {
                    let _ = g.g_mul_(&inv);
                }
            }
        });
    }

    /// After a step: `found_inf` says whether its gradients were not finite.
    pub fn update(&mut self, found_inf: bool) {
        let found = Tensor::full(
            [1],
            if found_inf { 1.0 } else { 0.0 },
            (Kind::Float, self.scale.device()),
        );
        let _ = self.scale.internal_amp_update_scale_(
            &self.growth_tracker,
            &found,
            GROWTH_FACTOR,
            BACKOFF_FACTOR,
            GROWTH_INTERVAL,
        );
    }
}
