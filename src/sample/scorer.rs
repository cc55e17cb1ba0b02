//! Scoring discrete architectures with the weights they inherit from a trained supernet:
//! one-hot mixing weights ([`ArchWeights::from_genotype`]) so that only the sampled path
//! runs, on the run's architecture (validation) half, with a choice of BN statistics; or
//! with a zero-cost proxy ([`super::proxy`], `--score`) on a fresh stand-alone network.
use super::few_shot::FewShotSet;
use super::proxy::{proxy_score, Proxy, ScoreKind};
use crate::data::Loader;
use crate::evaluate::evaluate_batches;
use crate::model::{Model, ModelSpec};
use crate::search::{load_trained, SearchConfig, SearchState};
use crate::space::{Genotype, SearchSpace};
use crate::supernet::OpStyle;
use crate::supernet::{ArchWeights, InputShape};
use crate::{Error, Result};
use std::path::Path;
use tch::{nn, Device, Tensor};

/// Which BN statistics a sub-network is evaluated with (`--bn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BnMode {
    /// Train-mode BN: the statistics of each evaluation batch (nothing persisted).
    Batch,
    /// Running statistics re-estimated for the sub-network: reset, then the cumulative
    /// average over K training batches in train mode (PyTorch `momentum=None`), then
    /// evaluation with them. The supernet's statistics are restored afterwards.
    Recalibrate(usize),
    /// The supernet's stored running statistics.
    Running,
}

/// Training batches used by `recalibrate` when no count is given.
pub const DEFAULT_RECALIBRATION_BATCHES: usize = 10;

impl BnMode {
    pub fn name(self) -> String {
        match self {
            BnMode::Batch => "batch".into(),
            BnMode::Recalibrate(k) => format!("recalibrate:{k}"),
            BnMode::Running => "running".into(),
        }
    }
}

impl Default for BnMode {
    fn default() -> Self {
        BnMode::Recalibrate(DEFAULT_RECALIBRATION_BATCHES)
    }
}

impl std::str::FromStr for BnMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::invalid(
                "--bn",
                s,
                "batch, running, recalibrate or recalibrate:K with K >= 1",
            )
        };
        match s {
            "batch" => Ok(BnMode::Batch),
            "running" => Ok(BnMode::Running),
            "recalibrate" => Ok(BnMode::default()),
            _ => match s.strip_prefix("recalibrate:").map(str::parse::<usize>) {
                Some(Ok(k)) if k > 0 => Ok(BnMode::Recalibrate(k)),
                _ => Err(bad()),
            },
        }
    }
}

/// One scored architecture.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchScore {
    pub genotype: Genotype,
    /// The genotype in its text form (DARTS or NAS-Bench-201).
    pub text: String,
    /// Inherited-weight validation accuracy and loss (NaN under a proxy).
    pub accuracy: f64,
    pub loss: f64,
    /// The zero-cost proxy's value when scored by one (`--score`).
    pub proxy: Option<f64>,
    /// Trainable parameters of the sub-network (the supernet's cells hold only its ops).
    pub parameters: u64,
    /// Multiply-adds per image of the sub-network.
    pub macs: u64,
}

impl ArchScore {
    /// What ranks it, higher is better: the proxy's value, else the accuracy.
    pub fn fitness(&self) -> f64 {
        self.proxy.unwrap_or(self.accuracy)
    }
}

/// A trained supernet ready to score sub-networks.
pub struct Scorer {
    pub st: SearchState,
    pub cfg: SearchConfig,
    pub space: SearchSpace,
    pub input: InputShape,
    /// Evaluation batches of the architecture half.
    pub val: Loader,
    /// The weight half (training batches, with the run's augmentation) for recalibration.
    pub train: Loader,
    pub device: Device,
    pub bn: BnMode,
    /// Use at most this many evaluation batches (`None`: the whole architecture half).
    pub max_batches: Option<usize>,
    /// Inherited weights or a zero-cost proxy ([`Self::with_score`]).
    pub score: ScoreKind,
    /// BN running statistics as the supernet holds them (restored after every score).
    saved_bn: Vec<Tensor>,
    /// The sub-supernets of `--score few-shot` ([`Self::with_few_shot`]).
    pub few_shot: Option<FewShotSet>,
    /// Steps the supernet's checkpoint has seen (a few-shot set must be split from it).
    global_step: u64,
}

impl Scorer {
    /// The supernet of the run in `dir`: its config, data split and last checkpoint.
    pub fn open(dir: &Path, bn: BnMode, max_batches: Option<usize>) -> Result<Self> {
        let t = load_trained(dir)?;
        let global_step = t.global_step;
        let mut scorer = Self::new(
            t.state,
            t.cfg,
            t.setup.val,
            t.setup.loaders.weights,
            bn,
            max_batches,
        )?;
        scorer.global_step = global_step;
        Ok(scorer)
    }

    /// Score with the few-shot set `name` (the run's only one when `None`) of the run in
    /// `dir`, which this scorer's supernet must be.
    pub fn with_few_shot(mut self, dir: &Path, name: Option<&str>) -> Result<Self> {
        let at = (self.input, self.device);
        let set = FewShotSet::open(dir, name, &self.space, at, self.global_step)?;
        self.few_shot = Some(set);
        self.score = ScoreKind::FewShot;
        Ok(self)
    }

    /// A scorer over a state built elsewhere (benchmarks, tests).
    pub fn new(
        st: SearchState,
        cfg: SearchConfig,
        val: Loader,
        train: Loader,
        bn: BnMode,
        max_batches: Option<usize>,
    ) -> Result<Self> {
        cfg.require_full_channels("scoring sub-networks with inherited weights")?;
        if max_batches == Some(0) {
            return Err(Error::invalid("--batches", 0, "at least 1"));
        }
        let saved_bn = st.save_bn_stats();
        Ok(Scorer {
            space: st.space.clone(),
            input: st.net.input,
            device: st.device,
            st,
            cfg,
            val,
            train,
            bn,
            max_batches,
            score: ScoreKind::Inherited,
            saved_bn,
            few_shot: None,
            global_step: 0,
        })
    }

    /// Score with `score` instead of inherited weights.
    pub fn with_score(mut self, score: ScoreKind) -> Self {
        self.score = score;
        self
    }

    /// [`Self::score`] of every genotype, in order. In a data-parallel job (`st.dist`) rank
    /// r scores the genotypes r, r + world, ... (a score depends on nothing but its
    /// genotype) and every rank gets all the scores; `progress` sees this rank's scores
    /// with their index.
    pub fn score_all(
        &self,
        genotypes: &[Genotype],
        mut progress: impl FnMut(usize, &ArchScore),
    ) -> Result<Vec<ArchScore>> {
        let (rank, world) = self
            .st
            .dist
            .as_ref()
            .map_or((0, 1), |g| (g.rank(), g.world()));
        let mut mine = Vec::new();
        for (i, g) in genotypes.iter().enumerate().skip(rank).step_by(world) {
            let s = self.score(g)?;
            progress(i, &s);
            mine.push((i, s));
        }
        let Some(group) = &self.st.dist else {
            return Ok(mine.into_iter().map(|(_, s)| s).collect());
        };
        // Rows of (index, accuracy bits, loss bits, proxy bits, parameters, macs), gathered.
        let rows: Vec<i64> = mine
            .iter()
            .flat_map(|(i, s)| {
                [
                    *i as i64,
                    s.accuracy.to_bits() as i64,
                    s.loss.to_bits() as i64,
                    s.proxy.unwrap_or(f64::NAN).to_bits() as i64,
                    s.parameters as i64,
                    s.macs as i64,
                ]
            })
            .collect();
        let mut scores: Vec<Option<ArchScore>> = vec![None; genotypes.len()];
        for row in group
            .all_gather_varlen(&rows, "the gather of sub-network scores")?
            .iter()
            .flat_map(|r| r.chunks_exact(6))
        {
            let g = &genotypes[row[0] as usize];
            scores[row[0] as usize] = Some(ArchScore {
                genotype: g.clone(),
                text: g.to_text(),
                accuracy: f64::from_bits(row[1] as u64),
                loss: f64::from_bits(row[2] as u64),
                proxy: self.score.proxy().map(|_| f64::from_bits(row[3] as u64)),
                parameters: row[4] as u64,
                macs: row[5] as u64,
            });
        }
        scores
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                s.ok_or_else(|| {
                    Error::Other(format!("no rank returned the score of architecture {i}"))
                })
            })
            .collect()
    }

    /// Images one score is computed on (one training batch for a proxy, one image for
    /// synflow).
    pub fn val_images(&self) -> usize {
        match self.score.proxy() {
            Some(Proxy::Synflow) => return 1,
            Some(_) => return self.train.config().batch_size.min(self.train.len()),
            None => {}
        }
        let b = self.val.config().batch_size;
        self.max_batches
            .map_or(self.val.len(), |m| (m * b).min(self.val.len()))
    }

    /// Accuracy and loss of `g` with inherited weights, its parameters and multiply-adds.
    /// The supernet is left exactly as it was.
    pub fn score(&self, g: &Genotype) -> Result<ArchScore> {
        match self.score {
            ScoreKind::Proxy(p) => self.proxy_score(p, g),
            ScoreKind::Inherited => self.inherited(&self.st, &self.saved_bn, g),
            ScoreKind::FewShot => {
                let set = self.few_shot.as_ref().ok_or_else(|| {
                    Error::Other("--score few-shot without a few-shot set loaded".into())
                })?;
                let sub = set.sub_for(g, &self.space)?;
                self.inherited(&sub.st, &sub.saved_bn, g)
            }
        }
    }

    /// [`Self::score`] with the weights inherited from `st`, whose BN statistics `saved_bn`
    /// are restored afterwards.
    fn inherited(&self, st: &SearchState, saved_bn: &[Tensor], g: &Genotype) -> Result<ArchScore> {
        let w = ArchWeights::from_genotype(g, &self.space, self.device)?;
        let eval = |train: bool| {
            evaluate_batches(&st.net, &w, &self.val, self.device, train, self.max_batches)
        };
        let score = match self.bn {
            BnMode::Running => Ok(eval(false)),
            BnMode::Batch => Ok(eval(true)),
            BnMode::Recalibrate(k) => {
                let done = self.recalibrate(st, &w, k);
                let score = eval(false);
                done.map(|()| score)
            }
        };
        st.restore_bn_stats(saved_bn);
        let score = score?;
        let (parameters, macs) = self.cost(g)?;
        Ok(ArchScore {
            genotype: g.clone(),
            text: g.to_text(),
            accuracy: score.accuracy,
            loss: score.loss,
            proxy: None,
            parameters,
            macs,
        })
    }

    /// `proxy` of `g` on the first training batch (epoch 0's order) of the weight half, the
    /// stand-alone network initialised from the run's seed (the same for every genotype).
    fn proxy_score(&self, proxy: Proxy, g: &Genotype) -> Result<ArchScore> {
        let batch = self.train.batch(0, 0)?;
        let seed = crate::rng::hash_key(&[self.cfg.seed, crate::rng::PURPOSE_PROXY]) as i64;
        let spec = ModelSpec {
            style: OpStyle::Standalone,
            ..self.spec(g)
        };
        let value = proxy_score(proxy, spec, seed, self.device, &batch.images, &batch.labels)?;
        let (parameters, macs) = self.cost(g)?;
        Ok(ArchScore {
            genotype: g.clone(),
            text: g.to_text(),
            accuracy: f64::NAN,
            loss: f64::NAN,
            proxy: Some(value),
            parameters,
            macs,
        })
    }

    fn spec(&self, g: &Genotype) -> ModelSpec {
        ModelSpec {
            space_file: self.cfg.space.clone(),
            space: self.space.clone(),
            genotype: g.clone(),
            input: self.input,
            style: OpStyle::Inherited,
            auxiliary: false,
        }
    }

    /// Trainable parameters and multiply-adds per image of the sub-network of `g`.
    pub fn cost(&self, g: &Genotype) -> Result<(u64, u64)> {
        Model::cost(self.spec(g))
    }

    /// Running statistics := the plain average of the train-mode batch statistics over `k`
    /// training batches. libtorch's update is `r = (1 - m) r + m s`; starting each batch
    /// from `r = 0` leaves `m s`, which is summed and divided by `k m`.
    fn recalibrate(&self, st: &SearchState, w: &ArchWeights, k: usize) -> Result<()> {
        let m = nn::BatchNormConfig::default().momentum;
        let bufs = &st.buffers;
        let mut sums: Vec<Tensor> = bufs.iter().map(|b| b.zeros_like()).collect();
        let batches = self.train.batches_per_epoch().max(1);
        tch::no_grad(|| {
            for i in 0..k {
                for b in bufs {
                    let _ = b.shallow_clone().zero_();
                }
                // Epoch 0's batches in order, wrapping around a small weight half.
                let batch = self.train.batch(i / batches, i % batches)?;
                let _ = st
                    .net
                    .forward_t(&batch.images.to_device(self.device), w, true);
                for (s, b) in sums.iter_mut().zip(bufs) {
                    let _ = s.g_add_(b);
                }
            }
            for (b, s) in bufs.iter().zip(&sums) {
                b.shallow_clone().copy_(&(s / (k as f64 * m)));
            }
            Ok(())
        })
    }
}
