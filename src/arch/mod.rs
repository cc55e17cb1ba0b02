//! Architecture parameters (the alphas, and PC-DARTS's edge betas), in a store of their own
//! so that the network optimizer never sees them, and their relaxation into mixing weights.
pub mod binary_gate;
mod chain;

pub use chain::ChainAlphas;

use crate::derive::{derive_raw, RawCell};
use crate::rng::Rng;
use crate::space::{CellSpec, CellType, EdgeSplit, Genotype, NetworkSpec, SearchSpace};
use crate::supernet::{ArchWeights, MixWeights};
use tch::{nn, Device, Kind, Tensor};

/// One standard Gumbel sample `-log(-log u)` from `rng`.
pub fn gumbel(rng: &mut Rng) -> f32 {
    // u in (0, 1): never 0, so the Gumbel sample is finite.
    let u = ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    -(-u.ln()).ln() as f32
}

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
    /// DARTS-: an auxiliary skip connection on every stride-1 edge, added to the softmax
    /// relaxations outside the softmax (see [`Self::set_aux_skip`]).
    aux_skip: Option<AuxSkip>,
    /// A few-shot sub-supernet's split: derivation sees its edge as the network computes
    /// it, the fixed op at weight 1 ([`Self::set_split`]).
    split: Option<EdgeSplit>,
}

/// DARTS-'s auxiliary skip connection: weight `beta` added to the op column `column`
/// (the space's `skip_connect`, the identity on a stride-1 edge).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AuxSkip {
    pub beta: f64,
    pub column: usize,
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
            aux_skip: None,
            split: None,
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
        self.mix_each(
            |_, a| {
                let a = if detach {
                    a.detach()
                } else {
                    a.shallow_clone()
                };
                a.softmax(-1, Kind::Float)
            },
            detach,
        )
    }

    /// Derive genotypes with the normal cell's edge `split.edge` fixed to `split.op` (a
    /// few-shot sub-supernet, whose network ignores that edge's alphas).
    pub fn set_split(&mut self, split: Option<EdgeSplit>) {
        self.split = split;
    }

    /// Set (or with `None` clear) DARTS-'s auxiliary skip connection: from now on the
    /// softmax relaxations (and [`Self::perturbed_detached`]) add `beta` to the weight of
    /// `column` on every stride-1 edge (all edges of a normal cell; in a reduction cell
    /// those that do not start at a cell input).
    pub fn set_aux_skip(&mut self, aux: Option<AuxSkip>) {
        self.aux_skip = aux;
    }

    /// The additive `[edges, ops]` term of the auxiliary skip connection for cell type `t`.
    fn aux_term(&self, t: CellType, like: &Tensor) -> Option<Tensor> {
        let aux = self.aux_skip?;
        let n_ops = like.size()[1] as usize;
        let term: Vec<f32> = self
            .cell
            .edges()
            .iter()
            .flat_map(|e| {
                let stride_one = t == CellType::Normal || e.from >= self.cell.inputs;
                (0..n_ops).map(move |k| {
                    if stride_one && k == aux.column {
                        aux.beta as f32
                    } else {
                        0.0
                    }
                })
            })
            .collect();
        Some(
            Tensor::from_slice(&term)
                .view_(like.size())
                .to_device(like.device()),
        )
    }

    /// Mixing weights from per-cell-type probabilities `probs(t, alphas)`: the auxiliary
    /// skip term added (when set), then the PC-DARTS betas (detached with `detach`).
    fn mix_each(&self, probs: impl Fn(CellType, &Tensor) -> Tensor, detach: bool) -> ArchWeights {
        let w = |t: CellType| {
            self.get(t).map(|a| {
                let p = probs(t, a);
                let p = match self.aux_term(t, &p) {
                    Some(term) => p + term,
                    None => p,
                };
                let w = MixWeights::dense(p);
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

    /// SDARTS-RS relaxation of a weight step, as constants: per edge the softmax of the
    /// alphas plus uniform noise in `[-epsilon, epsilon]` drawn from `rng` (normal cell
    /// first, row-major), clipped to [0, 1] and divided by its sum (SDARTS `clip()`: an
    /// edge whose clipped weights are all 0 keeps its strongest op, the argmax of the
    /// noisy weights, at 1).
    pub fn perturbed_detached(&self, epsilon: f64, rng: &mut Rng) -> ArchWeights {
        let mut noisy: Vec<(CellType, Tensor)> = Vec::new();
        for (t, a) in &self.alphas {
            let rows = self.softmax_rows(*t).expect("alphas of every cell type");
            let flat: Vec<f32> = rows
                .into_iter()
                .flat_map(|row| {
                    let row: Vec<f32> = row
                        .iter()
                        .map(|&p| p + (epsilon * (2.0 * rng.unit() - 1.0)) as f32)
                        .collect();
                    sdarts_clip(&row)
                })
                .collect();
            let w = Tensor::from_slice(&flat)
                .view_(a.size())
                .to_device(a.device());
            noisy.push((*t, w));
        }
        self.mix_each(
            |t, _| {
                let (_, w) = noisy
                    .iter()
                    .find(|(c, _)| *c == t)
                    .expect("noise per cell type");
                w.shallow_clone()
            },
            true,
        )
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
                let noise: Vec<f32> = (0..a.numel()).map(|_| gumbel(rng)).collect();
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
        let mut normal = raw(CellType::Normal).expect("every space has normal alphas");
        if let Some(split) = self.split {
            // Softmax of this row: 1 on the fixed op, 0 (in float32) elsewhere.
            let k = space.index_of(split.op).expect("checked with the config");
            let n_ops = space.ops.len();
            for (j, a) in normal.0[split.edge * n_ops..][..n_ops]
                .iter_mut()
                .enumerate()
            {
                *a = if j == k { 0.0 } else { -1e30 };
            }
        }
        let reduce = raw(CellType::Reduce);
        derive_raw(space, cell(&normal), reduce.as_ref().map(cell))
    }
}

/// SDARTS's `clip()` of one edge's noisy weights: clamp to [0, 1]; if every weight is then
/// 0, the argmax of the noisy row becomes 1; divide by the sum.
pub fn sdarts_clip(row: &[f32]) -> Vec<f32> {
    let argmax = row
        .iter()
        .enumerate()
        .fold(0, |best, (k, &v)| if v > row[best] { k } else { best });
    let mut out: Vec<f32> = row.iter().map(|v| v.clamp(0.0, 1.0)).collect();
    let sum: f32 = out.iter().sum();
    if sum == 0.0 {
        out[argmax] = 1.0;
        return out;
    }
    out.iter_mut().for_each(|v| *v /= sum);
    out
}
