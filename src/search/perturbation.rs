//! DARTS-PT (Wang et al., "Rethinking Architecture Selection in Differentiable NAS", ICLR
//! 2021): the architecture is selected by what each operation contributes to the
//! supernet's validation accuracy, not by the size of its alpha. Edge by edge (in a seeded
//! random order, one edge per cell type per round) every candidate op is masked out of the
//! edge's mixture in turn; the op whose removal drops the accuracy most is kept and the
//! edge is fixed to it; the network weights are fine-tuned under the partly fixed
//! supernet before the next round. In spaces that keep `k` inputs per node (DARTS), each
//! node with more inputs then drops, one at a time, the incoming edge whose removal leaves
//! the highest accuracy, until `k` are left, with fine-tuning between rounds as well.
//!
//! As in the authors' code (`sota/cnn/projection.py`): the removed op's weight is set to 0
//! without renormalising the edge, evaluation uses BN batch statistics, the criterion is
//! accuracy, ties keep the first op and drop the last edge, and fine-tuning starts a fresh
//! SGD at a tenth of the search learning rate, cosine-annealed to its minimum over all
//! fine-tuning steps. Differences: `none` is no candidate in spaces whose genotypes cannot
//! hold it (DARTS), and fine-tuning trains the weights only (the authors' code also steps
//! the alphas of the edges not yet decided).
use super::{Batch, TrainedSupernet};
use crate::data::{EpochIter, Loader};
use crate::evaluate::evaluate_batches;
use crate::optim::{cosine_lr, Sgd};
use crate::rng::{Rng, PURPOSE_PERTURBATION};
use crate::space::{CellGenotype, CellType, DeriveRule, EdgeId, GeneEdge, Genotype};
use crate::supernet::{ArchWeights, MixWeights};
use crate::{Error, Result};
use tch::Tensor;

/// The paper's fine-tuning between two decisions: 5 epochs (`--proj_intv 5` in the
/// authors' DARTS-space script).
pub const PAPER_TUNE_EPOCHS: usize = 5;
/// `--tune-steps` when not given: a few weight steps, for small CPU runs.
pub const DEFAULT_TUNE_STEPS: usize = 10;

/// How a selection runs.
#[derive(Debug, Clone, Copy)]
pub struct PtConfig {
    /// Weight steps of fine-tuning after each round but the last.
    pub tune_steps: usize,
    /// Seed of the order in which edges and nodes are decided.
    pub seed: u64,
    /// Evaluate on at most this many batches of the architecture half (`None`: all).
    pub max_batches: Option<usize>,
}

/// What a decision compared: an op masked out of an edge, or an edge out of its node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Op,
    Edge,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Op => "op",
            Stage::Edge => "edge",
        }
    }
}

/// One evaluation of the supernet with one candidate removed.
#[derive(Debug, Clone, PartialEq)]
pub struct Perturbation {
    /// Round of decisions (fine-tuning runs between rounds), from 0.
    pub round: usize,
    pub cell: CellType,
    pub stage: Stage,
    /// The edge the op was masked on, or the edge removed from its node.
    pub edge: EdgeId,
    /// The op masked out (stage op), or the op the removed edge holds (stage edge).
    pub op: crate::space::OpKind,
    /// Validation accuracy before and with the removal, and its drop (before - with).
    pub base_accuracy: f64,
    pub accuracy: f64,
    /// The op kept for its edge (stage op), or the edge dropped from its node (stage edge).
    pub chosen: bool,
}

impl Perturbation {
    pub fn drop(&self) -> f64 {
        self.base_accuracy - self.accuracy
    }
}

/// The selected architecture and every measurement that led to it.
#[derive(Debug, Clone)]
pub struct Selection {
    pub genotype: Genotype,
    pub perturbations: Vec<Perturbation>,
}

/// The decisions so far for one cell type.
struct Projection {
    cell: CellType,
    /// Host softmax of the alphas, `[edges][ops]`.
    softmax: Vec<Vec<f32>>,
    /// The op each decided edge is fixed to.
    ops: Vec<Option<usize>>,
    /// Edges removed from their node.
    dropped: Vec<bool>,
    /// Nodes whose inputs have been decided.
    nodes_done: Vec<bool>,
}

/// What to leave out of one evaluation.
#[derive(Clone, Copy)]
enum Mask {
    Nothing,
    Op(usize, usize),
    Edge(usize),
}

impl Projection {
    /// Mixing weights: decided edges one-hot, dropped edges zero, the others their
    /// softmax; then `mask` applied (a weight, or a whole edge, set to 0).
    fn weights(&self, mask: Mask, device: tch::Device) -> MixWeights {
        let n_ops = self.softmax[0].len();
        let mut flat = Vec::with_capacity(self.softmax.len() * n_ops);
        for (e, row) in self.softmax.iter().enumerate() {
            let mut row = match self.ops[e] {
                Some(k) => (0..n_ops).map(|j| if j == k { 1.0 } else { 0.0 }).collect(),
                None => row.clone(),
            };
            if self.dropped[e] || matches!(mask, Mask::Edge(m) if m == e) {
                row.iter_mut().for_each(|w| *w = 0.0);
            }
            if let Mask::Op(m, k) = mask {
                if m == e {
                    row[k] = 0.0;
                }
            }
            flat.extend(row);
        }
        let t = Tensor::from_slice(&flat)
            .view([self.softmax.len() as i64, n_ops as i64])
            .to_device(device);
        // Zero weights cost no compute: a masked op or dropped edge is simply not run.
        MixWeights::sparse(t)
    }
}

/// Runs DARTS-PT on a trained supernet (its weights are fine-tuned in memory only; the
/// run's checkpoint is never written). `progress` sees a line per decision.
pub fn select(
    mut t: TrainedSupernet,
    cfg: PtConfig,
    mut progress: impl FnMut(&str),
) -> Result<Selection> {
    use super::StrategyKind;
    if !matches!(
        t.cfg.strategy,
        StrategyKind::FirstOrder | StrategyKind::SecondOrder
    ) {
        return Err(Error::invalid(
            "--rule",
            "perturbation",
            format!(
                "a run of the first-order or second-order strategy (this run used {}: DARTS-PT masks ops out of the softmax mixture those train)",
                t.cfg.strategy.name()
            ),
        ));
    }
    t.cfg
        .require_full_channels("DARTS-PT selection (it masks whole ops of an edge)")?;
    if cfg.max_batches == Some(0) {
        return Err(Error::invalid("--batches", 0, "at least 1"));
    }
    let space = t.setup.space.clone();
    let spec = &space.cell;
    let edges = spec.edges();
    let keep = match spec.derive {
        DeriveRule::TopK { keep } => Some(keep),
        DeriveRule::Argmax => None,
    };
    // Candidate ops: `none` only where a genotype may keep it (argmax spaces).
    let candidates: Vec<usize> = (0..space.ops.len())
        .filter(|&k| keep.is_none() || !space.ops[k].is_none())
        .collect();
    let mut cells: Vec<Projection> = space
        .network
        .cell_types()
        .iter()
        .map(|&cell| Projection {
            cell,
            softmax: t
                .state
                .arch
                .softmax_rows(cell)
                .expect("alphas of every cell type"),
            ops: vec![None; edges.len()],
            dropped: vec![false; edges.len()],
            nodes_done: vec![false; spec.nodes],
        })
        .collect();
    let contested: Vec<usize> = match keep {
        Some(k) => (0..spec.nodes).filter(|&i| spec.inputs + i > k).collect(),
        None => Vec::new(),
    };
    let rounds = edges.len() + contested.len();
    let total_tune = cfg.tune_steps * rounds.saturating_sub(1);
    let mut tuner = Tuner::new(&mut t, total_tune);
    let mut rng = Rng::from_key(&[cfg.seed, PURPOSE_PERTURBATION]);
    let mut out = Vec::new();
    for round in 0..rounds {
        let judge = Judge {
            t: &t,
            space: &space,
            edges: &edges,
            max_batches: cfg.max_batches,
            round,
        };
        for c in 0..cells.len() {
            if round < edges.len() {
                judge.decide_op(
                    &mut cells,
                    c,
                    &candidates,
                    &mut rng,
                    &mut out,
                    &mut progress,
                );
            } else {
                let keep = keep.expect("node rounds only in top-k spaces");
                let open: Vec<usize> = contested
                    .iter()
                    .copied()
                    .filter(|&i| !cells[c].nodes_done[i])
                    .collect();
                let node = open[rng.below(open.len())];
                judge.decide_node(&mut cells, c, node, keep, &mut out, &mut progress);
            }
        }
        if round + 1 < rounds && cfg.tune_steps > 0 {
            let mix = mixture(&cells, 0, Mask::Nothing, t.setup.device);
            let loss = tuner.tune(&mut t, &mix, cfg.tune_steps)?;
            progress(&format!(
                "round {:>2}: fine-tuned {} steps, mean training loss {loss:.4}",
                round + 1,
                cfg.tune_steps
            ));
        }
    }
    let genotype = genotype(&cells, &space)?;
    Ok(Selection {
        genotype,
        perturbations: out,
    })
}

/// The decisions of one round, by the supernet's accuracy with a candidate removed.
struct Judge<'a> {
    t: &'a TrainedSupernet,
    space: &'a crate::space::SearchSpace,
    edges: &'a [EdgeId],
    max_batches: Option<usize>,
    round: usize,
}

impl Judge<'_> {
    /// Validation accuracy (BN batch statistics) with `mask` applied to cell type `c`.
    fn accuracy(&self, cells: &[Projection], c: usize, mask: Mask) -> f64 {
        let device = self.t.setup.device;
        let mix = mixture(cells, c, mask, device);
        let (net, val) = (&self.t.state.net, &self.t.setup.val);
        evaluate_batches(net, &mix, val, device, true, self.max_batches).accuracy
    }

    fn row(
        &self,
        c: &Projection,
        stage: Stage,
        e: usize,
        op: usize,
        base: f64,
        acc: f64,
    ) -> Perturbation {
        Perturbation {
            round: self.round,
            cell: c.cell,
            stage,
            edge: self.edges[e],
            op: self.space.ops[op],
            base_accuracy: base,
            accuracy: acc,
            chosen: false,
        }
    }

    /// Fix a random undecided edge of cell type `c` to the op whose removal hurts most
    /// (the first on ties).
    fn decide_op(
        &self,
        cells: &mut [Projection],
        c: usize,
        candidates: &[usize],
        rng: &mut Rng,
        out: &mut Vec<Perturbation>,
        progress: &mut impl FnMut(&str),
    ) {
        let open: Vec<usize> = (0..self.edges.len())
            .filter(|&e| cells[c].ops[e].is_none())
            .collect();
        let e = open[rng.below(open.len())];
        let base = self.accuracy(cells, c, Mask::Nothing);
        let mut best: Option<(usize, f64)> = None;
        let first = out.len();
        for &k in candidates {
            let acc = self.accuracy(cells, c, Mask::Op(e, k));
            out.push(self.row(&cells[c], Stage::Op, e, k, base, acc));
            if best.is_none_or(|(_, b)| acc < b) {
                best = Some((k, acc));
            }
        }
        let (k, without) = best.expect("a space has candidate ops");
        for p in &mut out[first..] {
            p.chosen = p.op == self.space.ops[k];
        }
        cells[c].ops[e] = Some(k);
        progress(&format!(
            "round {:>2} {} edge {}: keeps {} (accuracy {:.2}%, {:.2}% without it)",
            self.round + 1,
            cells[c].cell.name(),
            self.edges[e].key(),
            self.space.ops[k].name(),
            100.0 * base,
            100.0 * without
        ));
    }

    /// Drop, one at a time, the incoming edge of `node` (of cell type `c`) whose removal
    /// leaves the highest accuracy (the last on ties) until `keep` remain.
    fn decide_node(
        &self,
        cells: &mut [Projection],
        c: usize,
        node: usize,
        keep: usize,
        out: &mut Vec<Perturbation>,
        progress: &mut impl FnMut(&str),
    ) {
        let to = self.space.cell.inputs + node;
        let mut kept: Vec<usize> = (0..self.edges.len())
            .filter(|&e| self.edges[e].to == to)
            .collect();
        while kept.len() > keep {
            // Base: the node with the edges dropped so far.
            let base = self.accuracy(cells, c, Mask::Nothing);
            let mut worst: Option<(usize, f64)> = None;
            let first = out.len();
            for &e in &kept {
                let acc = self.accuracy(cells, c, Mask::Edge(e));
                let op = cells[c].ops[e].expect("every edge is decided first");
                out.push(self.row(&cells[c], Stage::Edge, e, op, base, acc));
                if worst.is_none_or(|(_, w)| acc >= w) {
                    worst = Some((e, acc));
                }
            }
            let (e, _) = worst.expect("a contested node has edges");
            for p in &mut out[first..] {
                p.chosen = p.edge == self.edges[e];
            }
            cells[c].dropped[e] = true;
            kept.retain(|&k| k != e);
            progress(&format!(
                "round {:>2} {} node {to}: drops edge {}",
                self.round + 1,
                cells[c].cell.name(),
                self.edges[e].key()
            ));
        }
        cells[c].nodes_done[node] = true;
    }
}

/// The mixing weights of every cell type, `mask` applied to cell type number `c`.
fn mixture(cells: &[Projection], c: usize, mask: Mask, device: tch::Device) -> ArchWeights {
    let w = |t: CellType| {
        cells
            .iter()
            .enumerate()
            .find(|(_, p)| p.cell == t)
            .map(|(i, p)| p.weights(if i == c { mask } else { Mask::Nothing }, device))
    };
    ArchWeights {
        normal: w(CellType::Normal).expect("every space has normal cells"),
        reduce: w(CellType::Reduce),
    }
}

/// The genotype of fully decided cells: per node its edges not dropped, with their ops.
fn genotype(cells: &[Projection], space: &crate::space::SearchSpace) -> Result<Genotype> {
    let edges = space.cell.edges();
    let cell = |p: &Projection| CellGenotype {
        nodes: (0..space.cell.nodes)
            .map(|i| {
                (0..edges.len())
                    .filter(|&e| edges[e].to == space.cell.inputs + i && !p.dropped[e])
                    .map(|e| GeneEdge {
                        op: space.ops[p.ops[e].expect("every edge is decided")],
                        from: edges[e].from,
                    })
                    .collect()
            })
            .collect(),
        concat: space.cell.concat.clone(),
    };
    let of = |t: CellType| cells.iter().find(|p| p.cell == t).map(cell);
    let g = Genotype {
        normal: of(CellType::Normal).expect("every space has normal cells"),
        reduce: of(CellType::Reduce),
    };
    g.validate(space)?;
    Ok(g)
}

/// Fine-tuning of the weights between rounds: a fresh SGD (momentum and weight decay of
/// the search) at a tenth of the search learning rate, cosine-annealed to `lr_min` over
/// all `total` steps, on the weight half in the loader's seeded order.
struct Tuner {
    step: usize,
    total: usize,
    loader: Loader,
    epoch: usize,
    batches: EpochIter,
}

impl Tuner {
    fn new(t: &mut TrainedSupernet, total: usize) -> Self {
        let cfg = &t.cfg;
        let mut sgd = Sgd::new(&t.state.weights, cfg.momentum, cfg.weight_decay);
        sgd.nesterov = cfg.nesterov;
        t.state.sgd = sgd;
        let loader = t.setup.loaders.weights.clone();
        Tuner {
            step: 0,
            total,
            batches: loader.epoch(0, 0),
            loader,
            epoch: 0,
        }
    }

    /// `steps` weight steps under `mix`; the mean training loss.
    fn tune(&mut self, t: &mut TrainedSupernet, mix: &ArchWeights, steps: usize) -> Result<f64> {
        let mut sum = 0.0;
        for _ in 0..steps {
            let batch = match self.batches.next() {
                Some(b) => b,
                None => {
                    self.epoch += 1;
                    self.batches = self.loader.epoch(self.epoch, 0);
                    self.batches.next().ok_or_else(|| {
                        Error::Other("the weight half has no batch to fine-tune on".into())
                    })?
                }
            };
            let st = &mut t.state;
            st.lr = cosine_lr(t.cfg.lr / 10.0, t.cfg.lr_min, self.step, self.total);
            let stats = st.weight_step_with(&Batch::to_device(&batch, st.device), mix, false)?;
            sum += stats.train_loss;
            self.step += 1;
        }
        Ok(sum / steps.max(1) as f64)
    }
}
