//! The ENAS controller (Pham et al. 2018): an LSTM that writes a cell as a sequence of
//! decisions, each a categorical over `tanh_constant * tanh(logits / temperature)`, the
//! chosen option's embedding being the next input. NAS-Bench-201 spaces (argmax rule): one
//! op per edge, `none` included (xautodl `search_model_enas_utils.Controller`). DARTS spaces
//! (top-k rule): per node `keep` times an input (without replacement) then its op, `none`
//! excluded (the ENAS micro space; DARTS's derivation keeps distinct inputs). Normal cell
//! first, then the reduction cell, in one sequence with one state, as ENAS's micro
//! controller continues its state from the normal into the reduction cell.
use crate::rng::Rng;
use crate::space::{CellGenotype, CellType, DeriveRule, GeneEdge, Genotype, SearchSpace};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use tch::nn::{self, Module, RNN};
use tch::{Device, Kind, Tensor};

/// Controller settings. Defaults: xautodl's NAS-Bench-201 ENAS (`search_model_enas_utils.py`:
/// LSTM 32 x 2, tanh constant 2.5, temperature 5; `configs/nas-benchmark/algos/ENAS.config`:
/// Adam lr 1e-3, betas (0, 0.999), eps 1e-3; `scripts-search/algos/ENAS.sh`: entropy weight
/// 1e-4, baseline decay 0.99, 20 samples aggregated per update; `ENAS.py`: gradient clip 5,
/// 100 samples for the final choice).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnasSettings {
    pub lstm_size: usize,
    pub lstm_layers: usize,
    pub tanh_constant: f64,
    pub temperature: f64,
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub entropy_weight: f64,
    pub baseline_decay: f64,
    /// Controller samples whose REINFORCE gradients are averaged into one Adam step.
    pub aggregate: usize,
    pub grad_clip: f64,
}

impl Default for EnasSettings {
    fn default() -> Self {
        EnasSettings {
            lstm_size: 32,
            lstm_layers: 2,
            tanh_constant: 2.5,
            temperature: 5.0,
            lr: 1e-3,
            beta1: 0.0,
            beta2: 0.999,
            eps: 1e-3,
            entropy_weight: 1e-4,
            baseline_decay: 0.99,
            aggregate: 20,
            grad_clip: 5.0,
        }
    }
}

impl EnasSettings {
    /// Reject values no controller can train with, naming the field (`enas.<field>`).
    pub fn validate(&self) -> Result<()> {
        use crate::run::check::{at_least_one, fraction, positive};
        at_least_one("enas.lstm_size", self.lstm_size)?;
        at_least_one("enas.lstm_layers", self.lstm_layers)?;
        at_least_one("enas.aggregate", self.aggregate)?;
        positive("enas.tanh_constant", self.tanh_constant)?;
        positive("enas.temperature", self.temperature)?;
        positive("enas.lr", self.lr)?;
        positive("enas.eps", self.eps)?;
        positive("enas.grad_clip", self.grad_clip)?;
        fraction("enas.beta1", self.beta1)?;
        fraction("enas.beta2", self.beta2)?;
        fraction("enas.baseline_decay", self.baseline_decay)?;
        if !(self.entropy_weight >= 0.0 && self.entropy_weight.is_finite()) {
            return Err(Error::invalid(
                "enas.entropy_weight",
                self.entropy_weight,
                "a finite number >= 0",
            ));
        }
        Ok(())
    }
}

/// One decision of the sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    /// An input of intermediate node `node` (top-k rule).
    Input { node: usize },
    /// The op of the edge `edge` (row of the cell's alphas); with the top-k rule the edge
    /// is the one the previous input decision chose, and `edge` is its node's first row.
    Op { edge: usize },
}

/// Decisions that belong together: one node (top-k) or one edge (argmax).
struct Group {
    cell: CellType,
    node: usize,
    decisions: Vec<Decision>,
}

/// One rollout: the choices (indices into each decision's options), the summed log
/// probability (with its graph when sampled for training) and entropy, and the genotype.
pub struct Rollout {
    pub choices: Vec<usize>,
    pub log_prob: Tensor,
    pub entropy: f64,
    pub genotype: Genotype,
    /// Per decision, for checking the gradient: the raw head output `z` (before
    /// `c * tanh(z / T)`), the head's parameter path and the options it was allowed.
    pub raw_logits: Vec<Tensor>,
    pub heads: Vec<String>,
    pub allowed: Vec<Vec<usize>>,
}

pub struct Controller {
    pub vs: nn::VarStore,
    lstm: nn::LSTM,
    /// The first input (xautodl's `input_vars`).
    start: Tensor,
    op_head: nn::Linear,
    op_embed: nn::Embedding,
    /// Per intermediate node (top-k rule): a head over its inputs and their embeddings.
    in_heads: Vec<nn::Linear>,
    in_embeds: Vec<nn::Embedding>,
    groups: Vec<Group>,
    /// Space op index of each op option.
    op_options: Vec<usize>,
    space: SearchSpace,
    tanh_constant: f64,
    temperature: f64,
}

impl Controller {
    /// A controller for `space`; every parameter `U(-0.1, 0.1)` (ENAS's initialiser), drawn
    /// from libtorch's generator. DARTS spaces need `none` among the ops: its column of the
    /// recorded probabilities holds the chance that an edge is left out.
    pub fn new(space: &SearchSpace, s: &EnasSettings, device: Device) -> Result<Self> {
        let rule = space.cell.derive;
        let topk = matches!(rule, DeriveRule::TopK { .. });
        if topk && !space.ops.iter().any(|o| o.is_none()) {
            return Err(Error::invalid(
                "strategy",
                "enas",
                format!(
                    "a space with `none` among its ops for ENAS under the top_k rule (space '{}' has none; its column records the probability that an edge is left out)",
                    space.name
                ),
            ));
        }
        let op_options: Vec<usize> = (0..space.ops.len())
            .filter(|&k| !(topk && space.ops[k].is_none()))
            .collect();
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let h = s.lstm_size as i64;
        let cfg = nn::RNNConfig {
            num_layers: s.lstm_layers as i64,
            ..Default::default()
        };
        let lstm = nn::lstm(&root / "lstm", h, h, cfg);
        let start = root.var("start", &[1, h], nn::Init::Const(0.0));
        let n_ops = op_options.len() as i64;
        let op_head = nn::linear(&root / "op_head", h, n_ops, Default::default());
        let op_embed = nn::embedding(&root / "op_embed", n_ops, h, Default::default());
        let (mut in_heads, mut in_embeds) = (Vec::new(), Vec::new());
        if topk {
            for j in 0..space.cell.nodes {
                let n_in = (space.cell.inputs + j) as i64;
                in_heads.push(nn::linear(
                    &root / format!("in_head_{j}"),
                    h,
                    n_in,
                    Default::default(),
                ));
                in_embeds.push(nn::embedding(
                    &root / format!("in_embed_{j}"),
                    n_in,
                    h,
                    Default::default(),
                ));
            }
        }
        tch::no_grad(|| {
            let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
            vars.sort_by(|a, b| a.0.cmp(&b.0));
            for (_, mut v) in vars {
                let _ = v.uniform_(-0.1, 0.1);
            }
        });
        let groups = plan(space);
        Ok(Controller {
            vs,
            lstm,
            start,
            op_head,
            op_embed,
            in_heads,
            in_embeds,
            groups,
            op_options,
            space: space.clone(),
            tanh_constant: s.tanh_constant,
            temperature: s.temperature,
        })
    }

    /// Trainable tensors, sorted by name (the Adam and checkpoint order).
    pub fn parameters(&self) -> Vec<(String, Tensor)> {
        let mut vars: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        vars
    }

    /// [`Self::parameters`] without their names.
    pub fn tensors(&self) -> Vec<Tensor> {
        self.parameters().into_iter().map(|(_, t)| t).collect()
    }

    /// One LSTM step for a batch of inputs `[B, H]`.
    fn cell(&self, x: &Tensor, state: &nn::LSTMState) -> (Tensor, nn::LSTMState) {
        let (out, state) = self.lstm.seq_init(&x.unsqueeze(1), state);
        (out.squeeze_dim(1), state)
    }

    /// Raw head output `z` of a decision for LSTM outputs `[B, H]`.
    fn head(&self, d: Decision, out: &Tensor) -> Tensor {
        match d {
            Decision::Input { node } => self.in_heads[node].forward(out),
            Decision::Op { .. } => self.op_head.forward(out),
        }
    }

    /// `c * tanh(z / T)`: the logits the categorical is over.
    fn logits(&self, z: &Tensor) -> Tensor {
        (z / self.temperature).tanh() * self.tanh_constant
    }

    fn embed(&self, d: Decision, choice: &Tensor) -> Tensor {
        match d {
            Decision::Input { node } => self.in_embeds[node].forward(choice),
            Decision::Op { .. } => self.op_embed.forward(choice),
        }
    }

    /// Draw one architecture (`rng`), or the most likely choice at every decision
    /// (`None`: greedy decoding). The log probability keeps its graph.
    pub fn rollout(&self, mut rng: Option<&mut Rng>) -> Rollout {
        let device = self.vs.device();
        let mut x = self.start.shallow_clone();
        let mut state = self.lstm.zero_state(1);
        let (mut log_probs, mut choices, mut raw_logits) = (Vec::new(), Vec::new(), Vec::new());
        let (mut heads, mut allowed_all) = (Vec::new(), Vec::new());
        let mut entropy = 0.0;
        let mut cells: Vec<(CellType, Vec<Vec<GeneEdge>>)> = Vec::new();
        for g in &self.groups {
            if cells.last().map(|c| c.0) != Some(g.cell) {
                cells.push((g.cell, vec![Vec::new(); self.space.cell.nodes]));
            }
            let mut used: Vec<usize> = Vec::new();
            for &d in &g.decisions {
                let (out, next) = self.cell(&x, &state);
                state = next;
                let z = self.head(d, &out);
                let allowed = self.allowed(d, &used);
                let logits = self
                    .logits(&z)
                    .index_select(1, &Tensor::from_slice(&to_i64(&allowed)).to_device(device));
                let log_p = logits.log_softmax(1, Kind::Float);
                let p: Vec<f64> = Vec::<f32>::try_from(log_p.exp().squeeze_dim(0))
                    .expect("probabilities are float")
                    .into_iter()
                    .map(f64::from)
                    .collect();
                entropy -= p
                    .iter()
                    .map(|&q| if q > 0.0 { q * q.ln() } else { 0.0 })
                    .sum::<f64>();
                let pick = match rng.as_deref_mut() {
                    Some(r) => draw(&p, r),
                    None => argmax(&p),
                };
                log_probs.push(log_p.select(1, pick as i64));
                let option = allowed[pick];
                choices.push(option);
                raw_logits.push(z);
                heads.push(match d {
                    Decision::Input { node } => format!("in_head_{node}"),
                    Decision::Op { .. } => "op_head".to_string(),
                });
                allowed_all.push(allowed);
                let nodes = &mut cells.last_mut().expect("pushed above").1;
                match d {
                    Decision::Input { .. } => used.push(option),
                    Decision::Op { edge } => {
                        let from = match self.space.cell.derive {
                            DeriveRule::Argmax => self.space.cell.edges()[edge].from,
                            DeriveRule::TopK { .. } => *used.last().expect("input before op"),
                        };
                        nodes[g.node].push(GeneEdge {
                            op: self.space.ops[self.op_options[option]],
                            from,
                        });
                    }
                }
                x = self.embed(d, &Tensor::from_slice(&[option as i64]).to_device(device));
            }
        }
        let cell = |nodes: Vec<Vec<GeneEdge>>| CellGenotype {
            nodes: nodes
                .into_iter()
                .map(|mut n| {
                    n.sort_by_key(|e| e.from);
                    n
                })
                .collect(),
            concat: self.space.cell.concat.clone(),
        };
        let mut by_type = cells.into_iter();
        let normal = cell(by_type.next().expect("a normal cell").1);
        let reduce = by_type.next().map(|c| cell(c.1));
        Rollout {
            choices,
            log_prob: Tensor::cat(&log_probs, 0).sum(Kind::Float),
            entropy,
            genotype: Genotype { normal, reduce },
            raw_logits,
            heads,
            allowed: allowed_all,
        }
    }

    /// The options of decision `d` (indices of its head), given the inputs its node chose.
    fn allowed(&self, d: Decision, used: &[usize]) -> Vec<usize> {
        match d {
            Decision::Input { node } => (0..self.space.cell.inputs + node)
                .filter(|i| !used.contains(i))
                .collect(),
            Decision::Op { .. } => (0..self.op_options.len()).collect(),
        }
    }

    /// Per cell type, `[edges][ops]` probabilities (row-major) of the policy, given the
    /// greedy decisions before each node (argmax rule: each edge) and marginalised over the
    /// node's own decisions: argmax rule, the op distribution of the edge; top-k rule,
    /// `P(edge kept with op k)`, with `P(edge left out)` in the `none` column (rows sum to
    /// 1). What the run file records in place of the alphas.
    pub fn edge_probabilities(&self) -> Vec<(CellType, Vec<f32>)> {
        tch::no_grad(|| self.edge_probabilities_inner())
    }

    fn edge_probabilities_inner(&self) -> Vec<(CellType, Vec<f32>)> {
        let device = self.vs.device();
        let n_ops = self.space.ops.len();
        let n_edges = self.space.cell.num_edges();
        let none = self.space.ops.iter().position(|o| o.is_none());
        let first_edge =
            |node: usize| -> usize { (0..node).map(|j| self.space.cell.inputs + j).sum() };
        let mut out: Vec<(CellType, Vec<f64>)> = Vec::new();
        let greedy = self.rollout(None);
        let mut x = self.start.shallow_clone();
        let mut state = self.lstm.zero_state(1);
        let mut at = 0;
        for g in &self.groups {
            if out.last().map(|c| c.0) != Some(g.cell) {
                out.push((g.cell, vec![0.0; n_edges * n_ops]));
            }
            let probs = &mut out.last_mut().expect("pushed above").1;
            // Enumerate the group's decisions from the greedy prefix, all branches at once.
            let mut bx = x.shallow_clone();
            let mut bstate = nn::LSTMState((state.h(), state.c()));
            let mut mass = vec![1.0f64];
            let mut used: Vec<Vec<usize>> = vec![Vec::new()];
            for (i, &d) in g.decisions.iter().enumerate() {
                let (o, next) = self.cell(&bx, &bstate);
                let p = self.logits(&self.head(d, &o)).to_kind(Kind::Double);
                let last = i + 1 == g.decisions.len();
                let (mut parents, mut picks, mut new_mass, mut new_used) =
                    (Vec::new(), Vec::new(), Vec::new(), Vec::new());
                for (b, prior) in mass.iter().enumerate() {
                    let allowed = self.allowed(d, &used[b]);
                    let row = p
                        .get(b as i64)
                        .index_select(0, &Tensor::from_slice(&to_i64(&allowed)).to_device(device))
                        .softmax(0, Kind::Double);
                    let row = Vec::<f64>::try_from(row).expect("double probabilities");
                    for (q, &option) in row.iter().zip(&allowed) {
                        let m = prior * q;
                        if let Decision::Op { edge } = d {
                            let e = match self.space.cell.derive {
                                DeriveRule::Argmax => edge,
                                DeriveRule::TopK { .. } => {
                                    first_edge(g.node) + used[b].last().expect("input before op")
                                }
                            };
                            probs[e * n_ops + self.op_options[option]] += m;
                        }
                        if !last {
                            parents.push(b as i64);
                            picks.push(option as i64);
                            new_mass.push(m);
                            let mut u = used[b].clone();
                            if let Decision::Input { .. } = d {
                                u.push(option);
                            }
                            new_used.push(u);
                        }
                    }
                }
                if last {
                    break;
                }
                let parents = Tensor::from_slice(&parents).to_device(device);
                bstate = nn::LSTMState((
                    next.h().index_select(1, &parents),
                    next.c().index_select(1, &parents),
                ));
                bx = self.embed(d, &Tensor::from_slice(&picks).to_device(device));
                (mass, used) = (new_mass, new_used);
            }
            // Continue along the greedy decisions.
            for &d in &g.decisions {
                let (_, next) = self.cell(&x, &state);
                state = next;
                x = self.embed(
                    d,
                    &Tensor::from_slice(&[greedy.choices[at] as i64]).to_device(device),
                );
                at += 1;
            }
        }
        out.into_iter()
            .map(|(t, mut p)| {
                if let (Some(none), DeriveRule::TopK { .. }) = (none, self.space.cell.derive) {
                    for e in 0..n_edges {
                        let row = &mut p[e * n_ops..(e + 1) * n_ops];
                        let kept: f64 = row.iter().sum();
                        row[none] = (1.0 - kept).max(0.0);
                    }
                }
                (t, p.into_iter().map(|v| v as f32).collect())
            })
            .collect()
    }
}

/// The decision sequence of `space`: per cell type, node by node.
fn plan(space: &SearchSpace) -> Vec<Group> {
    let edges = space.cell.edges();
    let mut groups = Vec::new();
    for &t in space.network.cell_types().iter() {
        for node in 0..space.cell.nodes {
            let to = space.cell.inputs + node;
            match space.cell.derive {
                DeriveRule::Argmax => {
                    for (e, _) in edges.iter().enumerate().filter(|(_, x)| x.to == to) {
                        groups.push(Group {
                            cell: t,
                            node,
                            decisions: vec![Decision::Op { edge: e }],
                        });
                    }
                }
                DeriveRule::TopK { keep } => {
                    let first = edges.iter().position(|x| x.to == to).unwrap_or(0);
                    let decisions = (0..keep.min(to))
                        .flat_map(|_| [Decision::Input { node }, Decision::Op { edge: first }])
                        .collect();
                    groups.push(Group {
                        cell: t,
                        node,
                        decisions,
                    });
                }
            }
        }
    }
    groups
}

fn to_i64(v: &[usize]) -> Vec<i64> {
    v.iter().map(|&i| i as i64).collect()
}

/// Index drawn from the probabilities `p` (inverse CDF on one uniform draw).
fn draw(p: &[f64], rng: &mut Rng) -> usize {
    let mut u = rng.unit() * p.iter().sum::<f64>();
    for (i, &q) in p.iter().enumerate() {
        if u < q {
            return i;
        }
        u -= q;
    }
    p.iter().rposition(|&q| q > 0.0).unwrap_or(p.len() - 1)
}

/// The first index of the largest value.
fn argmax(p: &[f64]) -> usize {
    p.iter()
        .enumerate()
        .fold(0, |best, (i, &q)| if q > p[best] { i } else { best })
}
