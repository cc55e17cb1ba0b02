//! Adam with L2 weight decay added to the gradient (PyTorch `Adam`, not `AdamW`).
use tch::Tensor;

pub struct Adam {
    pub betas: (f64, f64),
    pub eps: f64,
    pub weight_decay: f64,
    /// Steps taken (for bias correction).
    pub step: i64,
    pub exp_avg: Vec<Tensor>,
    pub exp_avg_sq: Vec<Tensor>,
}

impl Adam {
    pub fn new(params: &[Tensor], betas: (f64, f64), weight_decay: f64) -> Self {
        Adam {
            betas,
            eps: 1e-8,
            weight_decay,
            step: 0,
            exp_avg: params.iter().map(|p| p.zeros_like().detach()).collect(),
            exp_avg_sq: params.iter().map(|p| p.zeros_like().detach()).collect(),
        }
    }

    pub fn step(&mut self, params: &[Tensor], lr: f64) {
        self.step += 1;
        let (b1, b2) = self.betas;
        let bias1 = 1.0 - b1.powi(self.step as i32);
        let bias2 = 1.0 - b2.powi(self.step as i32);
        tch::no_grad(|| {
            for ((p, m), v) in params
                .iter()
                .zip(&mut self.exp_avg)
                .zip(&mut self.exp_avg_sq)
            {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let g = &g + p * self.weight_decay;
                let _ = m.g_mul_scalar_(b1).g_add_(&(&g * (1.0 - b1)));
                let _ = v.g_mul_scalar_(b2).g_add_(&(&g * &g * (1.0 - b2)));
                let denom = v.sqrt() / bias2.sqrt() + self.eps;
                let mut p = p.shallow_clone();
                let _ = p.g_sub_(&(&*m / denom * (lr / bias1)));
            }
        });
    }
}
