//! `supernet few-shot`: few-shot supernets (Zhao et al., ICML 2021). A trained supernet is
//! split on one edge of its normal cell into one sub-supernet per op an architecture can
//! have there (that edge fixed to the op, every other edge mixed as in the parent); each
//! starts from the parent's last checkpoint (weights, BN statistics, alphas and both
//! optimizers' state, bit for bit) and is fine-tuned for a few steps with the parent's
//! strategy: DARTS updates weights and alphas, SPOS the weights on uniform paths that hold
//! the fixed op. The learning rate is the parent's final one (`lr_min`), constant.
//!
//! Each sub-supernet is an ordinary search run in `RUN/few-shot/<name>/<op>` (its config
//! carries the split), so an interrupted split resumes where it stopped.
use super::checkpoint::SearchPosition;
use super::{resume, start, Outcome, RunOptions, SearchConfig, StrategyKind};
use crate::run::{checkpoint, RunDir, Stopped};
use crate::space::{split_ops, EdgeSplit, OpKind, SearchSpace};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Folder of a run's few-shot sets.
pub const FEW_SHOT_DIR: &str = "few-shot";

/// A sub-supernet's fine-tuning, as its config records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FineTune {
    pub split: EdgeSplit,
    /// Fine-tuning steps (one epoch of this many steps).
    pub steps: usize,
    /// The parent's steps when it was split: the fine-tuning's batches are the overall
    /// data steps from here on, continuing the parent's data order.
    pub parent_step: u64,
    /// The parent run directory.
    pub parent: PathBuf,
}

impl FineTune {
    pub fn validate(&self, cfg: &SearchConfig) -> Result<()> {
        crate::run::check::at_least_one("few_shot.steps", self.steps)?;
        check_strategy(cfg.strategy)?;
        if cfg.partial_channels != 1 {
            return Err(Error::invalid(
                "partial_channels",
                cfg.partial_channels,
                "1 in a few-shot sub-supernet (partial channels are not split)",
            ));
        }
        Ok(())
    }

    pub fn check_space(&self, space: &SearchSpace) -> Result<()> {
        let ops = split_ops(space, self.split.edge)?;
        if !ops.contains(&self.split.op) {
            return Err(Error::invalid(
                "few_shot.split.op",
                self.split.op,
                format!(
                    "an op architectures can have on edge {}: {}",
                    self.split.edge,
                    names(&ops)
                ),
            ));
        }
        Ok(())
    }
}

fn names(ops: &[OpKind]) -> String {
    ops.iter().map(|o| o.name()).collect::<Vec<_>>().join(", ")
}

/// The strategies a few-shot split fine-tunes with.
fn check_strategy(s: StrategyKind) -> Result<()> {
    match s {
        StrategyKind::FirstOrder | StrategyKind::SecondOrder | StrategyKind::Spos => Ok(()),
        _ => Err(Error::invalid(
            "strategy",
            s.name(),
            "first-order, second-order or spos for a few-shot split",
        )),
    }
}

/// What `supernet few-shot` does.
#[derive(Debug, Clone)]
pub struct FewShotConfig {
    /// Edge of the normal cell (alpha-row order).
    pub edge: usize,
    pub steps: usize,
    /// The set's name (checked by the caller): `RUN/few-shot/<name>`.
    pub name: String,
}

#[derive(Debug)]
pub enum FewShotOutcome {
    /// Every sub-supernet fine-tuned: (fixed op, its run directory), in alpha-column order.
    Finished(Vec<(OpKind, PathBuf)>),
    Interrupted(Stopped),
}

/// The run directory of the sub-supernet of `op` in few-shot set `name` of run `run`.
pub fn sub_dir(run: &Path, name: &str, op: OpKind) -> PathBuf {
    run.join(FEW_SHOT_DIR).join(name).join(op.name())
}

/// Split the run in `dir` and fine-tune each sub-supernet, or continue an earlier call
/// (which must have had the same edge and steps, from the same parent step).
pub fn few_shot(dir: &Path, cfg: &FewShotConfig, opts: &RunOptions) -> Result<FewShotOutcome> {
    crate::run::check::at_least_one("--steps", cfg.steps)?;
    // Held throughout: the parent must not train on while it is split.
    let parent = RunDir::attach(dir)?;
    let parent_cfg: SearchConfig = parent.read_config()?;
    if parent_cfg.few_shot.is_some() {
        return Err(Error::invalid(
            "--run",
            dir.display(),
            "a search run (this is a few-shot sub-supernet; split its parent)",
        ));
    }
    check_strategy(parent_cfg.strategy)?;
    let space = parent_cfg.validate_with_space()?;
    let ops = split_ops(&space, cfg.edge)?;
    let mut map = checkpoint::open(dir)?;
    let pos: SearchPosition = checkpoint::decode_record(&mut map)?;
    let parent_step = pos.pos.global_step;
    let abs = std::path::absolute(dir).map_err(|e| Error::io(dir, e))?;
    let mut subs = Vec::new();
    for op in ops {
        let sub = sub_dir(dir, &cfg.name, op);
        let fine_tune = FineTune {
            split: EdgeSplit { edge: cfg.edge, op },
            steps: cfg.steps,
            parent_step,
            parent: abs.clone(),
        };
        let outcome = if sub.join(crate::run::CHECKPOINT_FILE).is_file() {
            let had: SearchConfig = crate::run::read_config(&sub)?;
            if had.few_shot.as_ref() != Some(&fine_tune) {
                let show = |f: &FineTune| {
                    format!(
                        "edge {}, {} steps, parent {} at step {}",
                        f.split.edge,
                        f.steps,
                        f.parent.display(),
                        f.parent_step
                    )
                };
                return Err(Error::bad_file(
                    sub.join(crate::run::CONFIG_FILE),
                    format!(
                        "few-shot set '{}' was made with {}, not {}: give another --name",
                        cfg.name,
                        had.few_shot.as_ref().map_or("no split".into(), show),
                        show(&fine_tune)
                    ),
                ));
            }
            if sub.join("genotype.txt").is_file() {
                subs.push((op, sub));
                continue;
            }
            resume(&sub, None, opts)?
        } else {
            let sub_cfg = sub_config(&parent_cfg, fine_tune);
            std::fs::create_dir_all(sub.parent().expect("a sub-directory"))
                .map_err(|e| Error::io(&sub, e))?;
            start(sub_cfg, &sub, opts)?
        };
        match outcome {
            Outcome::Finished { dir, .. } => subs.push((op, dir)),
            Outcome::Interrupted(s) => return Ok(FewShotOutcome::Interrupted(s)),
            // validate_with_space above admits cell spaces only.
            Outcome::FinishedChain { .. } => {
                return Err(Error::invalid(
                    "--run",
                    dir.display(),
                    "a cell-space search (chain spaces are not split)",
                ))
            }
        }
    }
    drop(parent);
    Ok(FewShotOutcome::Finished(subs))
}

/// The config of the sub-supernet `f` of a run with config `parent`: one epoch of
/// `f.steps` steps at the parent's final learning rate, no alpha warm-up.
pub fn sub_config(parent: &SearchConfig, f: FineTune) -> SearchConfig {
    SearchConfig {
        epochs: 1,
        lr: parent.lr_min,
        arch_warmup_epochs: 0,
        few_shot: Some(f),
        ..parent.clone()
    }
}

/// The parent's state handed to a fresh sub-supernet `st` (whose tensors are a subset of
/// the parent's, under the same names), refused when the parent has trained on since the
/// split was made.
pub fn inherit(st: &mut super::SearchState, f: &FineTune) -> Result<()> {
    let pos = super::checkpoint::load(st, Vec::new(), &f.parent)?;
    if pos.global_step != f.parent_step {
        return Err(Error::bad_file(
            f.parent.join(crate::run::CHECKPOINT_FILE),
            format!(
                "the parent is at step {}, the split was made at step {}",
                pos.global_step, f.parent_step
            ),
        ));
    }
    Ok(())
}
