//! Few-shot scoring (`--score few-shot`): an architecture inherits its weights from the
//! sub-supernet of `supernet few-shot` whose fixed op is the op the architecture has on
//! the split edge (`none` when a top-k architecture does not keep that edge).
use crate::search::{load_sub_supernet, SearchState, FEW_SHOT_DIR};
use crate::space::{op_on_edge, Genotype, OpKind, SearchSpace};
use crate::supernet::InputShape;
use crate::{Error, Result};
use std::path::Path;
use tch::{Device, Tensor};

/// One fine-tuned sub-supernet.
pub struct SubSupernet {
    pub op: OpKind,
    pub st: SearchState,
    /// Its BN running statistics as fine-tuned (restored after every score).
    pub saved_bn: Vec<Tensor>,
}

/// The sub-supernets of one split (`RUN/few-shot/<name>`).
pub struct FewShotSet {
    pub name: String,
    pub edge: usize,
    pub subs: Vec<SubSupernet>,
}

/// The run's few-shot set names, sorted.
fn set_names(run: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(run.join(FEW_SHOT_DIR))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .collect();
    names.sort();
    names
}

impl FewShotSet {
    /// Set `name` (the run's only one when `None`) of the run in `run`, split from its
    /// checkpoint at `parent_step` (the parent must not have trained on since).
    pub fn open(
        run: &Path,
        name: Option<&str>,
        space: &SearchSpace,
        (input, device): (InputShape, Device),
        parent_step: u64,
    ) -> Result<Self> {
        let names = set_names(run);
        let dir = run.join(FEW_SHOT_DIR);
        let name = match name {
            Some(n) if names.iter().any(|m| m == n) => n.to_string(),
            None if names.len() == 1 => names[0].clone(),
            _ => {
                let what = match (name, names.is_empty()) {
                    (_, true) => {
                        "no few-shot set: run `supernet few-shot --run DIR --steps N` first"
                            .to_string()
                    }
                    (Some(n), _) => format!("no few-shot set '{n}' (it has: {})", names.join(", ")),
                    (None, _) => format!(
                        "several few-shot sets, choose one with --few-shot ({})",
                        names.join(", ")
                    ),
                };
                return Err(Error::bad_file(dir, what));
            }
        };
        let mut subs = Vec::new();
        let mut edge = None;
        for op in &space.ops {
            let sub = crate::search::few_shot::sub_dir(run, &name, *op);
            if !sub.is_dir() {
                continue;
            }
            let (cfg, st) = load_sub_supernet(&sub, input, device)?;
            let f = cfg.few_shot.expect("checked by load_sub_supernet");
            let bad = |what: String| Err(Error::bad_file(sub.join(crate::run::CONFIG_FILE), what));
            if st.space.fingerprint() != space.fingerprint() {
                return bad("a sub-supernet of another space than its run's".into());
            }
            if f.split.op != *op || edge.is_some_and(|e| e != f.split.edge) {
                return bad(format!(
                    "split {:?} does not belong in few-shot set '{name}' at {}",
                    f.split,
                    op.name()
                ));
            }
            if f.parent_step != parent_step {
                return bad(format!(
                    "split from the run at step {}, but the run is now at step {parent_step}: \
                     split it again (`supernet few-shot` with another --name)",
                    f.parent_step
                ));
            }
            edge = Some(f.split.edge);
            let saved_bn = st.save_bn_stats();
            subs.push(SubSupernet {
                op: *op,
                st,
                saved_bn,
            });
        }
        let Some(edge) = edge else {
            return Err(Error::bad_file(
                dir.join(&name),
                "no sub-supernet in this few-shot set",
            ));
        };
        let expected = crate::space::split_ops(space, edge)?;
        if subs.len() != expected.len() {
            let have: Vec<&str> = subs.iter().map(|s| s.op.name()).collect();
            return Err(Error::bad_file(
                dir.join(&name),
                format!(
                    "incomplete: sub-supernets for {} of the {} ops of edge {edge}; run `supernet few-shot` again to finish it",
                    have.join(", "),
                    expected.len()
                ),
            ));
        }
        Ok(FewShotSet { name, edge, subs })
    }

    /// The sub-supernet `g` inherits its weights from.
    pub fn sub_for(&self, g: &Genotype, space: &SearchSpace) -> Result<&SubSupernet> {
        let op = op_on_edge(g, space, self.edge)?;
        self.subs.iter().find(|s| s.op == op).ok_or_else(|| {
            let ops: Vec<&str> = self.subs.iter().map(|s| s.op.name()).collect();
            Error::invalid(
                "architecture",
                g.to_text(),
                format!(
                    "an op of few-shot set '{}' on edge {} ({}), not {op}",
                    self.name,
                    self.edge,
                    ops.join(", ")
                ),
            )
        })
    }
}
