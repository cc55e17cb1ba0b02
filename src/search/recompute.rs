//! Activation recomputation: a training loss and its gradients with the memory of one
//! block (cell) of the network instead of the whole autograd graph.
//!
//! The forward pass runs without a graph, keeping only the block outputs. The backward pass
//! then walks the blocks from last to first: it recomputes one block with a graph, from its
//! (detached) inputs, and backpropagates the gradient of its output into the weights and
//! into its inputs, which carry it to the blocks before. The mixing weights are a leaf per
//! block pass; their gradient, summed over the blocks, goes to the alphas at the end. Each
//! block runs twice, so BN running statistics are restored after the second run: they are
//! updated exactly once, as without recomputation. Values equal those of the plain forward
//! pass (the same kernels on the same inputs); gradients equal those of one backward pass
//! up to the order of floating-point summation.
use super::state::{Batch, SearchState};
use crate::evaluate::accuracy;
use crate::supernet::{ArchWeights, Pass};
use tch::{Kind, Tensor};

/// Which gradients a backward pass computes.
pub enum Wrt<'a> {
    /// Into the `.grad` of every leaf the loss depends on, as `loss.backward()`.
    AllLeaves,
    /// Only of these tensors, returned in this order (undefined where unused), as
    /// `torch.autograd.grad`.
    These(&'a [Tensor]),
}

/// Cross-entropy of `net` on `batch` under `mix` (train-mode BN), the batch accuracy and,
/// for [`Wrt::These`], the gradients.
pub fn loss_and_grads(
    st: &SearchState,
    batch: &Batch,
    mix: &ArchWeights,
    wrt: Wrt,
) -> (Tensor, f64, Vec<Tensor>) {
    let net = &st.net;
    let pass = Pass::new(true);
    let (stem, mut outs) = tch::no_grad(|| {
        let stem = net.stem_forward(&batch.images, true);
        let mut outs: Vec<Option<Tensor>> = Vec::with_capacity(net.num_blocks());
        for i in 0..net.num_blocks() {
            let out = net.block_forward_after(i, &stem, &outs, mix, pass);
            outs.push(Some(out));
        }
        (stem, outs)
    });
    let leaf_mix = mix.leaves();
    let mut backward = Backward::new(wrt, net.num_blocks(), &leaf_mix);

    // Head: the loss from the last block output, the only part run once, with a graph.
    let last = outs
        .last()
        .and_then(|o| o.as_ref())
        .unwrap_or(&stem)
        .shallow_clone();
    let features = last.detach().set_requires_grad(true);
    let logits = net.head_forward(&features, true);
    let loss = logits.cross_entropy_for_logits(&batch.labels);
    let acc = accuracy(&logits, &batch.labels);
    let bn_stats = st.save_bn_stats();
    let g = backward.segment(&loss, [&features]).remove(0);
    backward.add_to_output(net.num_blocks().checked_sub(1), g);

    for i in (0..net.num_blocks()).rev() {
        let sources: Vec<Option<usize>> = net.block_inputs(i).collect();
        let inputs: Vec<Tensor> = sources
            .iter()
            .map(|j| {
                let x = j.map_or(&stem, |j| outs[j].as_ref().expect("kept"));
                x.detach().set_requires_grad(true)
            })
            .collect();
        let out = net.block_forward(i, &inputs.iter().collect::<Vec<_>>(), &leaf_mix, pass);
        let g_out = backward.take_output_grad(Some(i));
        let grads = backward.segment(&(out * g_out).sum(Kind::Float), inputs.iter());
        for (j, g) in sources.into_iter().zip(grads) {
            backward.add_to_output(j, g);
        }
        outs[i] = None;
    }
    let stem_out = net.stem_forward(&batch.images, true);
    let g_stem = backward.take_output_grad(None);
    backward.segment(
        &(stem_out * g_stem).sum(Kind::Float),
        std::iter::empty::<&Tensor>(),
    );

    // The mixing weights' gradient, summed over the blocks, into the alphas.
    let mix_grads = backward.take_mix_grads();
    if let Some(root) = mix
        .tensors()
        .zip(mix_grads)
        .filter_map(|(w, g)| g.map(|g| (w * g).sum(Kind::Float)))
        .reduce(|a, b| a + b)
    {
        backward.segment(&root, std::iter::empty::<&Tensor>());
    }
    st.restore_bn_stats(&bn_stats);
    (loss.detach(), acc, backward.finish())
}

/// The gradients collected so far: of the requested tensors, of the mixing-weight leaves,
/// and of the block outputs (index `None` is the stem) not yet propagated.
struct Backward<'a> {
    wrt: Wrt<'a>,
    grads: Vec<Option<Tensor>>,
    /// The leaves that need a gradient, by position in [`ArchWeights::tensors`].
    mix: Vec<(usize, Tensor)>,
    mix_grads: Vec<Option<Tensor>>,
    outputs: Vec<Option<Tensor>>,
    stem: Option<Tensor>,
}

impl<'a> Backward<'a> {
    fn new(wrt: Wrt<'a>, blocks: usize, leaf_mix: &ArchWeights) -> Self {
        let n = match wrt {
            Wrt::AllLeaves => 0,
            Wrt::These(ts) => ts.len(),
        };
        let mix: Vec<(usize, Tensor)> = leaf_mix
            .tensors()
            .enumerate()
            .filter(|(_, t)| t.requires_grad())
            .map(|(i, t)| (i, t.shallow_clone()))
            .collect();
        Backward {
            wrt,
            grads: nones(n),
            mix_grads: nones(leaf_mix.tensors().count()),
            mix,
            outputs: nones(blocks),
            stem: None,
        }
    }

    /// Backpropagate the scalar `root`, adding to the requested gradients and to those of
    /// the mixing-weight leaves; returns the gradients of `extra` (leaves of this segment;
    /// undefined where unused).
    fn segment<'t>(
        &mut self,
        root: &Tensor,
        extra: impl IntoIterator<Item = &'t Tensor>,
    ) -> Vec<Tensor> {
        let extra: Vec<&Tensor> = extra.into_iter().collect();
        match self.wrt {
            Wrt::AllLeaves => {
                // The mixing-weight leaves collect their gradient in `.grad`.
                root.backward();
                extra.iter().map(|t| t.grad()).collect()
            }
            Wrt::These(ts) => {
                let mut inputs: Vec<&Tensor> = ts.iter().collect();
                inputs.extend(self.mix.iter().map(|(_, t)| t));
                inputs.extend(extra.iter().copied());
                let mut all = Tensor::run_backward(&[root], &inputs, false, false);
                let rest = all.split_off(ts.len() + self.mix.len());
                let mix = all.split_off(ts.len());
                for (acc, g) in self.grads.iter_mut().zip(all) {
                    accumulate(acc, g);
                }
                for ((i, _), g) in self.mix.iter().zip(mix) {
                    accumulate(&mut self.mix_grads[*i], g);
                }
                rest
            }
        }
    }

    /// The mixing weights' gradients (by position in [`ArchWeights::tensors`]).
    fn take_mix_grads(&mut self) -> Vec<Option<Tensor>> {
        if let Wrt::AllLeaves = self.wrt {
            for (i, t) in &self.mix {
                let g = t.grad();
                if g.defined() {
                    self.mix_grads[*i] = Some(g);
                }
            }
        }
        self.mix.clear();
        std::mem::take(&mut self.mix_grads)
    }

    fn add_to_output(&mut self, block: Option<usize>, g: Tensor) {
        match block {
            Some(i) => accumulate(&mut self.outputs[i], g),
            None => accumulate(&mut self.stem, g),
        }
    }

    fn take_output_grad(&mut self, block: Option<usize>) -> Tensor {
        match block {
            Some(i) => self.outputs[i].take(),
            None => self.stem.take(),
        }
        .expect("every block output reaches the loss")
    }

    fn finish(self) -> Vec<Tensor> {
        self.grads
            .into_iter()
            .map(|g| g.unwrap_or_else(Tensor::new))
            .collect()
    }
}

fn nones(n: usize) -> Vec<Option<Tensor>> {
    (0..n).map(|_| None).collect()
}

fn accumulate(acc: &mut Option<Tensor>, g: Tensor) {
    if !g.defined() {
        return;
    }
    *acc = Some(match acc.take() {
        None => g,
        Some(a) => a + g,
    });
}
