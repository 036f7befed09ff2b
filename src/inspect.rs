//! A look inside the model for one prompt, as the page's "look inside" view shows it: the
//! next-token distribution (its most likely tokens) and one head's attention probabilities,
//! tokens on both axes. One forward pass of the prompt; only the last row of logits and the one
//! T x T attention matrix come back from the GPU. Where the forward keeps no matrix (flash
//! attention), the chosen layer's matrices are recomputed from its qkv by the classic kernel.

use crate::gpu::Tensor;
use crate::kernels::{AttentionImpl, AttentionKind, AttnFwd, Program};
use crate::model::{Forward, Gpt2};
use crate::{Error, Result};

/// What one prompt shows.
#[derive(Debug, Clone)]
pub struct Inspection {
    /// The tokens looked at: the prompt's last block_size.
    pub ids: Vec<u32>,
    /// The `k` most likely next tokens and their probabilities, most likely first.
    pub top: Vec<(u32, f32)>,
    /// Attention probabilities of the chosen layer and head, (T, T) row-major: row i is how
    /// token i attends to tokens 0..=i (zero beyond i, the causal mask).
    pub attention: Vec<f32>,
}

/// Keeps the forward plan of the last prompt length, so typing does not reallocate.
#[derive(Default)]
pub struct Inspector {
    plan: Option<Plan>,
}

/// A forward plan and, where its attention keeps no matrix, the classic attention's outputs
/// (out (1,T,C) and att (1,NH,T,T)) to recompute one layer's matrices into.
struct Plan {
    forward: Forward,
    recompute: Option<(Tensor, Tensor)>,
}

impl Inspector {
    /// Runs `ids` (at least one; longer than the context keeps the last block_size) through
    /// `model` and reads back the next-token top `k` and the attention of `layer`/`head`.
    pub async fn inspect(
        &mut self,
        model: &Gpt2,
        ids: &[u32],
        layer: usize,
        head: usize,
        k: usize,
    ) -> Result<Inspection> {
        let c = &model.config;
        if ids.is_empty() {
            return Err(Error::Input("the prompt has no tokens; type something to look inside".into()));
        }
        if layer >= c.n_layer || head >= c.n_head {
            return Err(Error::Input(format!(
                "layer {layer}, head {head} do not exist: the model has {} layers of {} heads (counting from 0)",
                c.n_layer, c.n_head
            )));
        }
        let ids = &ids[ids.len().saturating_sub(c.block_size)..];
        let t = ids.len();
        let gpu = &model.kernels.gpu;
        if self.plan.as_ref().is_none_or(|p| p.forward.t != t) {
            self.plan = None; // free the old plan's activations before allocating the new one
            let forward = model.forward_plan(1, t)?;
            let recompute = (forward.acts.attention.kind() == AttentionKind::Flash).then(|| {
                let matrices = AttentionKind::Classic.saved_shape(1, c.n_head, t);
                (gpu.tensor("inspect.out", &[1, t, c.n_embd]), gpu.tensor("inspect.att", &matrices))
            });
            self.plan = Some(Plan { forward, recompute });
        }
        let plan = self.plan.as_ref().expect("planned above");
        let f = &plan.forward;
        model.forward(f, ids, None)?;
        let v = c.vocab_size;
        let logits = gpu.read_range(&f.acts.logits, (t - 1) * v, v).await?;
        let att = match &plan.recompute {
            None => &f.acts.att[layer],
            Some((out, att)) => {
                let mut prog = Program::default();
                let fwd = AttnFwd { out, saved: att, qkv: &f.acts.qkv[layer] };
                model.kernels.attention.forward(&mut prog, AttentionImpl::Classic, fwd, c.n_head, None);
                gpu.run(|pass| prog.encode(pass));
                att
            }
        };
        let mut attention = gpu.read_range(att, head * t * t, t * t).await?;
        for (i, row) in attention.chunks_mut(t).enumerate() {
            row[i + 1..].fill(0.0);
        }
        Ok(Inspection { ids: ids.to_vec(), top: top_k(&logits, k), attention })
    }
}

/// The `k` largest probabilities of softmax(`logits`), with their indices, largest first.
pub fn top_k(logits: &[f32], k: usize) -> Vec<(u32, f32)> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&x| ((x - max) as f64).exp()).sum();
    let mut order: Vec<u32> = (0..logits.len() as u32).collect();
    let k = k.min(order.len());
    if k == 0 {
        return vec![];
    }
    let by_logit = |a: &u32, b: &u32| logits[*b as usize].total_cmp(&logits[*a as usize]);
    order.select_nth_unstable_by(k - 1, by_logit);
    order.truncate(k);
    order.sort_by(by_logit);
    order.into_iter().map(|i| (i, (((logits[i as usize] - max) as f64).exp() / sum) as f32)).collect()
}
