//! SGD with momentum and L2 weight decay (PyTorch semantics, dampening 0), optionally with
//! Nesterov momentum.
use tch::Tensor;

pub struct Sgd {
    pub momentum: f64,
    pub weight_decay: f64,
    /// Nesterov momentum (PyTorch `nesterov=True`): the step is `d + momentum * buf`
    /// instead of `buf`. Off unless set after [`Sgd::new`].
    pub nesterov: bool,
    /// One buffer per parameter, zero until the first step (PyTorch starts from the first
    /// gradient, which is the same thing: 0 * momentum + g).
    pub buffers: Vec<Tensor>,
}

impl Sgd {
    pub fn new(params: &[Tensor], momentum: f64, weight_decay: f64) -> Self {
        Sgd {
            momentum,
            weight_decay,
            nesterov: false,
            buffers: params.iter().map(|p| p.zeros_like().detach()).collect(),
        }
    }

    /// `d = g + wd * w`; `buf = momentum * buf + d`; `w -= lr * buf` (Nesterov:
    /// `w -= lr * (d + momentum * buf)`). Parameters without a gradient are left alone.
    pub fn step(&mut self, params: &[Tensor], lr: f64) {
        self.step_where(params, lr, |_| true)
    }

    /// [`Self::step`] on the parameters whose index `active` accepts; the others (and
    /// their momentum buffers) are left alone, as PyTorch does for a parameter whose
    /// gradient is `None`.
    pub fn step_where(&mut self, params: &[Tensor], lr: f64, active: impl Fn(usize) -> bool) {
        tch::no_grad(|| {
            for (i, (p, buf)) in params.iter().zip(self.buffers.iter_mut()).enumerate() {
                let g = p.grad();
                if !active(i) || !g.defined() {
                    continue;
                }
                let d = &g + p * self.weight_decay;
                let _ = buf.g_mul_scalar_(self.momentum).g_add_(&d);
                let mut p = p.shallow_clone();
                if self.nesterov {
                    let _ = p.g_sub_(&((d + &*buf * self.momentum) * lr));
                } else {
                    let _ = p.g_sub_(&(&*buf * lr));
                }
            }
        });
    }
}
