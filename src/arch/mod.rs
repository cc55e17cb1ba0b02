//! Architecture parameters (the alphas, and PC-DARTS's edge betas), in a store of their own
//! so that the network optimizer never sees them, and their relaxation into mixing weights.
use crate::derive::{derive_raw, RawCell};
use crate::rng::Rng;
use crate::space::{CellSpec, CellType, Genotype, NetworkSpec, SearchSpace};
use crate::supernet::{ArchWeights, MixWeights};
use tch::{nn, Device, Kind, Tensor};

pub struct ArchParams {
    pub vs: nn::VarStore,
    /// One `[edges, ops]` tensor per cell type of the space, in `cell_types()` order.
    pub alphas: Vec<(CellType, Tensor)>,
    /// PC-DARTS edge normalisation: one `[edges]` tensor per cell type (empty when off).
    pub betas: Vec<(CellType, Tensor)>,
    /// The cell layout the betas are normalised by (a softmax per node).
    cell: CellSpec,
    /// GDAS: whether the ops left out of an edge add their (zero-valued) hard weights to
    /// the edge output. xautodl's NAS-Bench-201 `TinyNetworkGDAS` does
    /// (`NAS201SearchCell.forward_gdas`), its DARTS-space `NASNetworkGDAS` does not
    /// (`MixedOp.forward_gdas` returns `op(x) * w[index]` alone); each space follows its own.
    gdas_left_out_sum: bool,
}

impl ArchParams {
    /// `1e-3 * randn` per cell type (the DARTS initialisation), drawn from libtorch's
    /// global generator: seed it first for reproducible runs.
    pub fn new(space: &SearchSpace, device: Device) -> Self {
        Self::with_edge_betas(space, device, false)
    }

    /// With `betas`, also one beta per edge and cell type (PC-DARTS edge normalisation),
    /// `1e-3 * randn` too, drawn after all the alphas.
    pub fn with_edge_betas(space: &SearchSpace, device: Device, betas: bool) -> Self {
        let vs = nn::VarStore::new(device);
        let edges = space.cell.num_edges() as i64;
        let types = space.network.cell_types();
        let draw = |name: String, shape: &[i64]| {
            let init = nn::Init::Randn {
                mean: 0.0,
                stdev: 1e-3,
            };
            vs.root().var(&name, shape, init)
        };
        let alphas = types
            .iter()
            .map(|&t| (t, draw(t.name().into(), &[edges, space.ops.len() as i64])))
            .collect();
        let betas = if betas {
            types
                .iter()
                .map(|&t| (t, draw(format!("betas_{}", t.name()), &[edges])))
                .collect()
        } else {
            Vec::new()
        };
        ArchParams {
            vs,
            alphas,
            betas,
            cell: space.cell.clone(),
            gdas_left_out_sum: matches!(space.network, NetworkSpec::Nb201 { .. }),
        }
    }

    /// Every architecture tensor: the alphas, then the betas (the Adam and checkpoint order).
    pub fn tensors(&self) -> Vec<Tensor> {
        self.named().into_iter().map(|(_, t)| t).collect()
    }

    /// [`Self::tensors`] with stable names: `normal`, `reduce`, `betas_normal`, `betas_reduce`.
    pub fn named(&self) -> Vec<(String, Tensor)> {
        let alphas = self.alphas.iter().map(|(t, a)| (t.name().to_string(), a));
        let betas = self
            .betas
            .iter()
            .map(|(t, b)| (format!("betas_{}", t.name()), b));
        alphas
            .chain(betas)
            .map(|(n, t)| (n, t.shallow_clone()))
            .collect()
    }

    pub fn beta(&self, t: CellType) -> Option<&Tensor> {
        self.betas.iter().find(|(c, _)| *c == t).map(|(_, b)| b)
    }

    pub fn get(&self, t: CellType) -> Option<&Tensor> {
        self.alphas.iter().find(|(c, _)| *c == t).map(|(_, a)| a)
    }

    /// DARTS relaxation: softmax over the ops of each edge (differentiable).
    pub fn softmax(&self) -> ArchWeights {
        self.relax(false)
    }

    /// The softmax weights as constants (no gradient flows to the alphas).
    pub fn softmax_detached(&self) -> ArchWeights {
        self.relax(true)
    }

    fn relax(&self, detach: bool) -> ArchWeights {
        let w = |t: CellType| {
            self.get(t).map(|a| {
                let a = if detach {
                    a.detach()
                } else {
                    a.shallow_clone()
                };
                let w = MixWeights::dense(a.softmax(-1, Kind::Float));
                match self.beta(t) {
                    Some(b) if detach => w.with_betas(&b.detach(), &self.cell),
                    Some(b) => w.with_betas(b, &self.cell),
                    None => w,
                }
            })
        };
        ArchWeights {
            normal: w(CellType::Normal).expect("every space has normal cells"),
            reduce: w(CellType::Reduce),
        }
    }

    /// GDAS relaxation: per edge a hard one-hot sample of the Gumbel-softmax
    /// `softmax((log_softmax(alpha) + g) / tau)` with the noise `g` of
    /// [`Self::gumbel_noise`], as `one_hot - p.detach() + p`: the forward uses exactly one op
    /// per edge and the gradient reaches the alphas straight through `p` (in NAS-Bench-201
    /// spaces the left-out ops' weights are added to the edge output too, as upstream does
    /// there; see `gdas_left_out_sum`). With `detach` the weights are the plain one-hot
    /// constants.
    pub fn gumbel_hard(&self, tau: f64, rng: &mut Rng, detach: bool) -> ArchWeights {
        let mut noise = self.gumbel_noise(rng).into_iter();
        let mut w = |t: CellType| {
            self.get(t).map(|a| {
                let (_, g) = noise.next().expect("noise for every cell type");
                let a = if detach {
                    a.detach()
                } else {
                    a.shallow_clone()
                };
                let probs = ((a.log_softmax(-1, Kind::Float) + g) / tau).softmax(-1, Kind::Float);
                let index = probs.argmax(-1, true);
                let one_hot = probs.zeros_like().scatter_value(-1, &index, 1.0);
                if detach {
                    MixWeights::sparse(one_hot)
                } else if self.gdas_left_out_sum {
                    MixWeights::straight_through(one_hot - probs.detach() + probs)
                } else {
                    MixWeights::sparse(one_hot - probs.detach() + probs)
                }
            })
        };
        let normal = w(CellType::Normal).expect("every space has normal cells");
        ArchWeights {
            normal,
            reduce: w(CellType::Reduce),
        }
    }

    /// The Gumbel noise `g = -log(-log u)` of one GDAS sample, one tensor per cell type
    /// shaped like its alphas, drawn from `rng` (normal cell first, then reduction) exactly
    /// as [`Self::gumbel_hard`] draws it: the same `rng` state gives the same noise.
    pub fn gumbel_noise(&self, rng: &mut Rng) -> Vec<(CellType, Tensor)> {
        self.alphas
            .iter()
            .map(|(t, a)| {
                let noise: Vec<f32> = (0..a.numel())
                    .map(|_| {
                        // u in (0, 1): never 0, so the Gumbel sample is finite.
                        let u = ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
                        -(-u.ln()).ln() as f32
                    })
                    .collect();
                let g = Tensor::from_slice(&noise)
                    .view_(a.size())
                    .to_device(a.device());
                (*t, g)
            })
            .collect()
    }

    /// Softmax weights of one cell type as host rows `[edges][ops]` (the host softmax
    /// derivation uses).
    pub fn softmax_rows(&self, t: CellType) -> Option<Vec<Vec<f32>>> {
        let n_ops = self.get(t)?.size()[1] as usize;
        Some(
            self.raw(t)?
                .chunks(n_ops)
                .map(crate::numeric::softmax)
                .collect(),
        )
    }

    /// Raw alphas of one cell type as a flat host vector (row-major `[edges, ops]`).
    pub fn raw(&self, t: CellType) -> Option<Vec<f32>> {
        self.get(t).map(|a| {
            Vec::<f32>::try_from(a.detach().to_device(Device::Cpu).flatten(0, -1))
                .expect("alphas are float")
        })
    }

    /// Raw betas of one cell type as a host vector `[edges]` (`None` without betas).
    pub fn raw_betas(&self, t: CellType) -> Option<Vec<f32>> {
        self.beta(t).map(|b| {
            Vec::<f32>::try_from(b.detach().to_device(Device::Cpu)).expect("betas are float")
        })
    }

    /// The genotype the alphas (and betas) currently derive to; an error names the cell
    /// and edge of an alpha that is not finite.
    pub fn genotype(&self, space: &SearchSpace) -> crate::Result<Genotype> {
        fn cell(r: &(Vec<f32>, Option<Vec<f32>>)) -> RawCell<'_> {
            RawCell {
                alphas: &r.0,
                betas: r.1.as_deref(),
            }
        }
        let raw = |t: CellType| self.raw(t).map(|a| (a, self.raw_betas(t)));
        let normal = raw(CellType::Normal).expect("every space has normal alphas");
        let reduce = raw(CellType::Reduce);
        derive_raw(space, cell(&normal), reduce.as_ref().map(cell))
    }
}
