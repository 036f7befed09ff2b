//! A look inside the model for one prompt, as the page's "look inside" view shows it: the
//! next-token distribution (its most likely tokens) and one head's attention probabilities,
//! tokens on both axes. One forward pass of the prompt; only the last row of logits and the one
//! T x T attention matrix come back from the GPU.

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
    plan: Option<Forward>,
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
        if self.plan.as_ref().is_none_or(|f| f.t != t) {
            self.plan = None; // free the old plan's activations before allocating the new one
            self.plan = Some(model.forward_plan(1, t)?);
        }
        let f = self.plan.as_ref().expect("planned above");
        model.forward(f, ids, None)?;
        let gpu = &model.kernels.gpu;
        let v = c.vocab_size;
        let logits = gpu.read_range(&f.acts.logits, (t - 1) * v, v).await?;
        let mut attention = gpu.read_range(&f.acts.att[layer], head * t * t, t * t).await?;
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
