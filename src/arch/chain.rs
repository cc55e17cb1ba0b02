//! The alphas of a chain space: one `[searchable layers, choices]` tensor in a store of its
//! own, and its relaxations. A layer that does not allow a column (`skip` where the layer
//! may not be skipped) has that column masked out of every softmax and argmax.
use super::binary_gate::{self, TwoPaths};
use crate::rng::Rng;
use crate::space::chain::{uniform_arch, ChainArch, ChainSpace};
use crate::supernet::MixWeights;
use tch::{nn, Device, Kind, Tensor};

pub struct ChainAlphas {
    pub vs: nn::VarStore,
    /// `[searchable layers, choices]`, alpha columns in [`ChainSpace::choices`] order.
    pub alphas: Tensor,
    /// 0 where a layer allows the column, -inf where it does not (same shape).
    mask: Tensor,
    /// Per layer, the columns it allows.
    allowed: Vec<Vec<usize>>,
}

impl ChainAlphas {
    /// `1e-3 * randn` (the DARTS initialisation) from libtorch's global generator.
    pub fn new(space: &ChainSpace, device: Device) -> Self {
        let vs = nn::VarStore::new(device);
        let columns = space.choices();
        let rows = space.num_searchable();
        let init = nn::Init::Randn {
            mean: 0.0,
            stdev: 1e-3,
        };
        let alphas = vs
            .root()
            .var("chain", &[rows as i64, columns.len() as i64], init);
        let allowed: Vec<Vec<usize>> = space
            .plan((1, 1))
            .iter()
            .filter(|l| l.searchable.is_some())
            .map(|l| {
                (0..columns.len())
                    .filter(|&k| l.choices.contains(&columns[k]))
                    .collect()
            })
            .collect();
        let mask: Vec<f32> = allowed
            .iter()
            .flat_map(|a| {
                (0..columns.len()).map(move |k| {
                    if a.contains(&k) {
                        0.0
                    } else {
                        f32::NEG_INFINITY
                    }
                })
            })
            .collect();
        let mask = Tensor::from_slice(&mask)
            .view([rows as i64, columns.len() as i64])
            .to_device(device);
        ChainAlphas {
            vs,
            alphas,
            mask,
            allowed,
        }
    }

    /// DARTS relaxation: per layer the softmax over the choices it allows.
    pub fn softmax(&self) -> MixWeights {
        MixWeights::dense((&self.alphas + &self.mask).softmax(-1, Kind::Float))
    }

    /// The same weights as constants.
    pub fn softmax_detached(&self) -> MixWeights {
        MixWeights::dense((self.alphas.detach() + &self.mask).softmax(-1, Kind::Float))
    }

    /// Per layer the choice probabilities (the rows recorded and plotted).
    pub fn probabilities(&self) -> Vec<Vec<f32>> {
        let p = self.softmax_detached().weights.to_device(Device::Cpu);
        Vec::<Vec<f32>>::try_from(p).expect("a 2-D tensor")
    }

    /// The architecture the alphas stand for: per layer its strongest allowed choice
    /// (the lower column on a tie), as [`crate::derive::derive_chain`] derives it from the
    /// alphas a run file records.
    pub fn derive(&self, space: &ChainSpace) -> ChainArch {
        let a = self.alphas.detach().flatten(0, -1).to_device(Device::Cpu);
        let flat = Vec::<f32>::try_from(a).expect("float alphas");
        crate::derive::derive_chain(space, &flat).expect("alphas of the space's shape")
    }

    /// GDAS / FBNet relaxation: per layer a hard one-hot sample of the Gumbel-softmax
    /// `softmax((log_softmax(alpha) + g) / tau)` over the allowed choices (noise `g` drawn from
    /// `rng` row by row), as `one_hot - p.detach() + p` so that only the sampled block runs and
    /// the gradient reaches the alphas straight through `p`; with `detach` the plain one-hot
    /// constants. Also the sampled architecture.
    pub fn gumbel_hard(
        &self,
        space: &ChainSpace,
        tau: f64,
        rng: &mut Rng,
        detach: bool,
    ) -> (ChainArch, MixWeights) {
        let noise: Vec<f32> = (0..self.alphas.numel())
            .map(|_| super::gumbel(rng))
            .collect();
        let g = Tensor::from_slice(&noise)
            .view_(self.alphas.size())
            .to_device(self.alphas.device());
        let a = if detach {
            self.alphas.detach()
        } else {
            self.alphas.shallow_clone()
        };
        let probs =
            (((a + &self.mask).log_softmax(-1, Kind::Float) + g) / tau).softmax(-1, Kind::Float);
        let index = probs.argmax(-1, true);
        let one_hot = probs.zeros_like().scatter_value(-1, &index, 1.0);
        let columns = space.choices();
        let picked = Vec::<i64>::try_from(index.flatten(0, -1).to_device(Device::Cpu))
            .expect("an index per layer");
        let arch = ChainArch {
            layers: picked.iter().map(|&k| columns[k as usize]).collect(),
        };
        let w = if detach {
            MixWeights::sparse(one_hot)
        } else {
            MixWeights::sparse(one_hot - probs.detach() + probs)
        };
        (arch, w)
    }

    /// SPOS: one uniformly drawn path as one-hot weights, and the architecture.
    pub fn uniform_path(
        space: &ChainSpace,
        rng: &mut Rng,
        device: Device,
    ) -> (ChainArch, MixWeights) {
        let arch = uniform_arch(space, rng);
        let w = MixWeights::one_hot_rows(&arch.columns(space), space.choices().len(), device);
        (arch, w)
    }

    /// The alphas on the host in f64, one row per layer.
    pub fn host(&self) -> Vec<Vec<f64>> {
        let a = self
            .alphas
            .detach()
            .to_kind(Kind::Double)
            .to_device(Device::Cpu);
        Vec::<Vec<f64>>::try_from(a).expect("a 2-D tensor")
    }

    /// Per layer, the columns it allows.
    pub fn allowed(&self) -> &[Vec<usize>] {
        &self.allowed
    }

    /// ProxylessNAS's weight step: per layer one choice drawn by the multinomial of the
    /// softmax over its allowed choices.
    pub fn sample_path(&self, space: &ChainSpace, rng: &mut Rng) -> ChainArch {
        let columns = space.choices();
        let layers = self
            .host()
            .iter()
            .zip(&self.allowed)
            .map(|(a, allowed)| {
                let p = binary_gate::probabilities(a, allowed);
                columns[binary_gate::multinomial(&p, None, rng)]
            })
            .collect();
        ChainArch { layers }
    }

    /// ProxylessNAS's architecture step: per layer two choices and which of them is active.
    pub fn two_paths(&self, rng: &mut Rng) -> Vec<TwoPaths> {
        self.host()
            .iter()
            .zip(&self.allowed)
            .map(|(a, allowed)| TwoPaths::draw(a, &binary_gate::probabilities(a, allowed), rng))
            .collect()
    }
}
