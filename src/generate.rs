//! Sampling: greedy, temperature, top-k and top-p from a seeded RNG, one token at a time. This
//! version recomputes the whole window for each token (no KV cache): simple and exact, used by
//! training's samples and task accuracy.

use crate::model::{Forward, Gpt2};
use crate::rng::Rng;
use crate::{Error, Result};

/// How to pick each next token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleConfig {
    pub max_new_tokens: usize,
    /// 0 (or less) means greedy.
    pub temperature: f32,
    /// Keep only the k most likely tokens (0 = all).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches top_p, in (0, 1].
    pub top_p: f32,
    pub seed: u64,
}

impl SampleConfig {
    pub fn greedy(max_new_tokens: usize) -> SampleConfig {
        SampleConfig { max_new_tokens, temperature: 0.0, top_k: 0, top_p: 1.0, seed: 0 }
    }

    pub fn validate(&self) -> Result<()> {
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(Error::Input(format!("top_p must be in (0, 1], got {}", self.top_p)));
        }
        if !self.temperature.is_finite() {
            return Err(Error::Input(format!("temperature must be a finite number, got {}", self.temperature)));
        }
        Ok(())
    }
}

/// Picks a token from one row of logits.
pub fn sample(logits: &[f32], cfg: &SampleConfig, rng: &mut Rng) -> u32 {
    let argmax = || logits.iter().enumerate().fold(0, |best, (i, &x)| if x > logits[best] { i } else { best }) as u32;
    if cfg.temperature <= 0.0 || cfg.top_k == 1 {
        return argmax();
    }
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    if cfg.top_k > 0 {
        order.truncate(cfg.top_k);
    }
    let max = logits[order[0]];
    let mut probs: Vec<f64> = order.iter().map(|&i| (((logits[i] - max) / cfg.temperature) as f64).exp()).collect();
    let total: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= total);
    // nucleus: the smallest prefix whose probability reaches top_p
    let mut cum = 0.0;
    let mut keep = probs.len();
    for (i, p) in probs.iter().enumerate() {
        cum += p;
        if cum >= cfg.top_p as f64 {
            keep = i + 1;
            break;
        }
    }
    let mass: f64 = probs[..keep].iter().sum();
    let mut r = rng.next_f32() as f64 * mass;
    for (i, p) in probs[..keep].iter().enumerate() {
        r -= p;
        if r < 0.0 {
            return order[i] as u32;
        }
    }
    order[keep - 1] as u32
}

/// Generates from a model with a (1, block_size) forward plan reused for every token.
pub struct Generator {
    plan: Forward,
}

impl Generator {
    pub fn new(model: &Gpt2) -> Result<Generator> {
        Ok(Generator { plan: model.forward_plan(1, model.config.block_size)? })
    }

    /// Continues `prompt` (ids), calling `on_token` with each new id; stops after
    /// max_new_tokens, at `stop`, or when `on_token` returns false. Only the last position's
    /// logits are read back. Past block_size the window slides (the oldest tokens drop out).
    pub async fn generate(
        &self,
        model: &Gpt2,
        prompt: &[u32],
        cfg: &SampleConfig,
        stop: Option<u32>,
        mut on_token: impl FnMut(u32) -> bool,
    ) -> Result<Vec<u32>> {
        cfg.validate()?;
        if prompt.is_empty() {
            return Err(Error::Input("the prompt is empty; give at least one token".into()));
        }
        let (block, v) = (model.config.block_size, model.config.vocab_size);
        let mut rng = Rng::new(cfg.seed);
        let mut tokens = prompt.to_vec();
        let mut out = vec![];
        let mut window = vec![0u32; block];
        for _ in 0..cfg.max_new_tokens {
            let ctx = &tokens[tokens.len().saturating_sub(block)..];
            window[..ctx.len()].copy_from_slice(ctx);
            window[ctx.len()..].fill(0);
            model.forward(&self.plan, &window, None)?;
            let logits = model.kernels.gpu.read_range(&self.plan.acts.logits, (ctx.len() - 1) * v, v).await?;
            let next = sample(&logits, cfg, &mut rng);
            tokens.push(next);
            out.push(next);
            if Some(next) == stop || !on_token(next) {
                break;
            }
        }
        Ok(out)
    }
}
