//! How large a space's supernet is at least, computed from the space alone (no tensors), so
//! that a size no machine can hold is refused before anything is allocated.
//!
//! The bound counts only what every supernet of the space certainly has: the convolution
//! weights of its parametric operations (depthwise and pointwise parts; no BN, biases,
//! stem, preprocessing or classifier), and the output of every operation of every edge that
//! a forward pass keeps for the backward pass. The real network is larger (the memory probe
//! of `supernet search` measures it); the bound only has to be cheap and never above it.
use super::{CellType, Genotype, NetworkSpec, OpKind, SearchSpace};

/// A lower bound on a supernet's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeBound {
    /// Trainable parameters.
    pub parameters: u64,
    /// Floats the forward pass keeps per image.
    pub activations_per_image: u64,
}

impl SizeBound {
    /// Bytes of a search step at `batch`: the weights, their gradients and momentum in f32,
    /// and the kept activations.
    pub fn step_bytes(&self, batch: usize) -> u64 {
        let weights = self.parameters.saturating_mul(3 * 4);
        let activations = self
            .activations_per_image
            .saturating_mul(batch as u64)
            .saturating_mul(4);
        weights.saturating_add(activations)
    }

    /// Bytes of the weights alone (what building the network allocates).
    pub fn weight_bytes(&self) -> u64 {
        self.parameters.saturating_mul(4)
    }
}

/// Convolution weights of `op` on `c` channels, at least.
fn op_parameters(op: OpKind, c: u64) -> u64 {
    let pointwise = c.saturating_mul(c);
    let dil = |k: u64| c.saturating_mul(k * k).saturating_add(pointwise);
    match op {
        OpKind::None | OpKind::MaxPool3x3 | OpKind::AvgPool3x3 | OpKind::SkipConnect => 0,
        OpKind::SepConv3x3 => dil(3).saturating_mul(2),
        OpKind::SepConv5x5 => dil(5).saturating_mul(2),
        OpKind::DilConv3x3 => dil(3),
        OpKind::DilConv5x5 => dil(5),
        OpKind::NorConv1x1 => pointwise,
        OpKind::NorConv3x3 => pointwise.saturating_mul(9),
    }
}

impl SearchSpace {
    /// The lower bound for this space's supernet on inputs of `height x width` pixels.
    pub fn size_bound(&self, height: usize, width: usize) -> SizeBound {
        let every_op = |_: CellType| {
            let edge: Vec<OpKind> = self.ops.clone();
            vec![edge; self.cell.num_edges()]
        };
        self.bound(height, width, every_op)
    }

    /// The lower bound for the network of one `genotype` of this space (its kept edges and
    /// ops only).
    pub fn size_bound_of(&self, genotype: &Genotype, height: usize, width: usize) -> SizeBound {
        let kept = |t: CellType| {
            genotype
                .cell(t)
                .or(Some(&genotype.normal))
                .map(|c| c.nodes.iter().flatten().map(|e| vec![e.op]).collect())
                .unwrap_or_default()
        };
        self.bound(height, width, kept)
    }

    /// Sum over the cells (their type, channels and resolution) of the ops on their edges,
    /// `edges(t)` giving the ops of each edge of a cell of type `t`. Saturates instead of
    /// overflowing, and stops counting once the bound passes any machine's memory.
    fn bound(
        &self,
        height: usize,
        width: usize,
        edges: impl Fn(CellType) -> Vec<Vec<OpKind>>,
    ) -> SizeBound {
        /// Far beyond any machine.
        const ENOUGH: u64 = 1 << 56;
        let cells = [CellType::Normal, CellType::Reduce].map(edges);
        let mut bound = SizeBound {
            parameters: 0,
            activations_per_image: 0,
        };
        let mut add_cell = |t: CellType, c: u64, hw: u64| {
            let ops = &cells[t as usize];
            for edge in ops {
                for &op in edge {
                    bound.parameters = bound.parameters.saturating_add(op_parameters(op, c));
                    if !op.is_none() {
                        bound.activations_per_image = bound
                            .activations_per_image
                            .saturating_add(c.saturating_mul(hw));
                    }
                }
            }
            bound.parameters >= ENOUGH || bound.activations_per_image >= ENOUGH
        };
        let (mut h, mut w) = (height.max(1) as u64, width.max(1) as u64);
        match &self.network {
            NetworkSpec::Darts {
                layers, channels, ..
            } => {
                let reductions = self.network.reduction_layers();
                let mut c = *channels as u64;
                for i in 0..*layers {
                    let mut t = CellType::Normal;
                    if reductions.contains(&i) {
                        c = c.saturating_mul(2);
                        (h, w) = (h.div_ceil(2), w.div_ceil(2));
                        t = CellType::Reduce;
                    }
                    if add_cell(t, c, h.saturating_mul(w)) {
                        break;
                    }
                }
            }
            NetworkSpec::Nb201 {
                cells_per_stage,
                channels,
            } => {
                let mut c = *channels as u64;
                'stages: for stage in 0..3 {
                    if stage > 0 {
                        c = c.saturating_mul(2);
                        (h, w) = (h.div_ceil(2), w.div_ceil(2));
                    }
                    for _ in 0..*cells_per_stage {
                        if add_cell(CellType::Normal, c, h.saturating_mul(w)) {
                            break 'stages;
                        }
                    }
                }
            }
        }
        bound
    }
}
