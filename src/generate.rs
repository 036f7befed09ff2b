//! Generation with a KV cache on the GPU, and sampling: greedy, temperature, top-k and top-p
//! from a seeded RNG, and the distribution a pick is drawn from ([`sampling_distribution`]).
//!
//! [`Decoder`] keeps, per layer, the keys and values of every token of its context. A prefill
//! runs the whole prompt in one pass and fills the caches; each decode step then runs one token
//! whose attention reads the cache, so the prompt is never recomputed. Only the last position's
//! final layer norm and lm_head run, and greedy decoding reduces the logits to one id on the GPU.
//!
//! **The context** is the cache's rows: block_size, at most [`DEFAULT_CONTEXT`] unless asked
//! ([`Decoder::with_context`]); block_size below stands for it.
//!
//! **The window.** GPT-2's positions are absolute, so when the context already holds block_size
//! tokens the next token cannot simply be appended: the decoder slides the window by one, drops
//! the oldest token and prefills the last block_size tokens again at positions 0 .. block_size−1.
//! The logits are therefore always exactly those of a full forward over the last block_size
//! tokens (the same as recomputing without a cache), and every token past the window costs one
//! prefill of block_size tokens.
//!
//! **Precision.** In f16 ([`Decoder::with_precision`], where the adapter has shader-f16) the
//! matrix products read f16 copies of the weights ([`MatmulWeights::f16`]; activations and
//! accumulation stay f32), made from the model's f32 weights before the first pass and again
//! after [`Decoder::weights_changed`] (converting GPT-2's weights costs about as much as a prefill
//! on lavapipe, so not at every prefill).
//!
//! **LoRA.** A model with adapters ([`Gpt2::lora`]: a LoRA run's, or an adapter imported onto a
//! model) runs them after their products as the forward does, so a fine-tune generates as the
//! model it trained.

use crate::gpu::{Buffer, Gpu, Tensor};
use crate::kernels::{Decode, DecodeDims, DecodeEmbed, LayerNormFwd, Program};
use crate::model::lora::LoraActs;
use crate::model::{Block, BlockActs, BlockAttn, BlockRope, Gpt2, LoraConfig};
use crate::precision::{Precision, Purpose, Resolved};
use crate::rng::Rng;
use crate::submit::{Piece, SubmitPlan, SubmitStats};
use crate::tokenizer::Tokenizer;
use crate::weights16::MatmulWeights;
use crate::{Error, Result};

mod context;
pub use context::{check_decoder_memory, decode_context, DecoderBytes, DEFAULT_CONTEXT};
use serde::Serialize;
use std::sync::Arc;

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

    /// Whether every pick is the most likely token (temperature <= 0 or top_k = 1).
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0 || self.top_k == 1
    }
}

/// The index of the first maximum.
fn argmax(logits: &[f32]) -> u32 {
    logits.iter().enumerate().fold(0, |best, (i, &x)| if x > logits[best] { i } else { best }) as u32
}

/// The tokens a non-greedy pick chooses among: indices most likely first (ties by index), their
/// probabilities after temperature over the top-k, and how many of them top-p keeps.
struct Nucleus {
    order: Vec<usize>,
    probs: Vec<f64>,
    keep: usize,
}

impl Nucleus {
    fn new(logits: &[f32], cfg: &SampleConfig) -> Nucleus {
        let mut order: Vec<usize> = (0..logits.len()).collect();
        let by_logit = |a: &usize, b: &usize| logits[*b].total_cmp(&logits[*a]).then(a.cmp(b));
        if cfg.top_k > 0 && cfg.top_k < order.len() {
            order.select_nth_unstable_by(cfg.top_k - 1, by_logit);
            order.truncate(cfg.top_k);
        }
        order.sort_unstable_by(by_logit);
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
        Nucleus { order, probs, keep }
    }

    /// The probability mass top-p keeps, which a draw renormalises by.
    fn mass(&self) -> f64 {
        self.probs[..self.keep].iter().sum()
    }
}

/// Picks a token from one row of logits.
pub fn sample(logits: &[f32], cfg: &SampleConfig, rng: &mut Rng) -> u32 {
    if cfg.is_greedy() {
        return argmax(logits);
    }
    let n = Nucleus::new(logits, cfg);
    let mut r = rng.next_f32() as f64 * n.mass();
    for (i, p) in n.probs[..n.keep].iter().enumerate() {
        r -= p;
        if r < 0.0 {
            return n.order[i] as u32;
        }
    }
    n.order[n.keep - 1] as u32
}

/// What sampling makes of one row of logits, for the page's next-token bars: the model's
/// distribution, the one [`sample`] draws from under `cfg`, and the tokens it can pick. Pure: the
/// logits are already there, so moving a slider needs no forward pass.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SamplingDistribution {
    /// softmax(logits): the model's own next-token distribution (temperature 1, nothing cut).
    pub before: Vec<f32>,
    /// What [`sample`] draws from: temperature, top-k and top-p applied and renormalised over the
    /// candidates, 0 elsewhere; greedy settings put all of it on the most likely token.
    pub after: Vec<f32>,
    /// The tokens [`sample`] can pick, most likely first.
    pub candidates: Vec<u32>,
}

/// The distributions before and after `cfg`'s temperature, top-k and top-p (see
/// [`SamplingDistribution`]); `cfg.max_new_tokens` and `cfg.seed` play no part.
pub fn sampling_distribution(logits: &[f32], cfg: &SampleConfig) -> Result<SamplingDistribution> {
    cfg.validate()?;
    if logits.is_empty() {
        return Err(Error::Input("no logits to sample from".into()));
    }
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f64> = logits.iter().map(|&x| ((x - max) as f64).exp()).collect();
    let sum: f64 = exp.iter().sum();
    let before = exp.iter().map(|&e| (e / sum) as f32).collect();
    let mut after = vec![0.0; logits.len()];
    let candidates = if cfg.is_greedy() {
        let best = argmax(logits);
        after[best as usize] = 1.0;
        vec![best]
    } else {
        let n = Nucleus::new(logits, cfg);
        let mass = n.mass();
        for (&i, &p) in n.order[..n.keep].iter().zip(&n.probs) {
            after[i] = (p / mass) as f32;
        }
        n.order[..n.keep].iter().map(|&i| i as u32).collect()
    };
    Ok(SamplingDistribution { before, after, candidates })
}

/// Text of a growing list of token ids, given piece by piece as it grows, holding back an
/// incomplete UTF-8 character (a byte-level token can end inside one).
pub struct TextStream {
    ids: Vec<u32>,
    shown: String,
}

impl TextStream {
    /// Starts after `context` (e.g. the prompt), whose text is not returned.
    pub fn new(tokenizer: &Tokenizer, context: &[u32]) -> Result<TextStream> {
        Ok(TextStream { ids: context.to_vec(), shown: tokenizer.decode(context)? })
    }

    /// Appends `id` and returns the text that became complete ("" while a character is split).
    pub fn push(&mut self, tokenizer: &Tokenizer, id: u32) -> Result<String> {
        self.ids.push(id);
        self.take(tokenizer, false)
    }

    /// The text still held back, if any.
    pub fn finish(&mut self, tokenizer: &Tokenizer) -> Result<String> {
        self.take(tokenizer, true)
    }

    fn take(&mut self, tokenizer: &Tokenizer, all: bool) -> Result<String> {
        let text = tokenizer.decode(&self.ids)?;
        if (!all && text.ends_with('\u{FFFD}')) || !text.starts_with(&self.shown) {
            return Ok(String::new());
        }
        let new = text[self.shown.len()..].to_string();
        self.shown = text;
        Ok(new)
    }
}

/// The recorded pass for feeding `t` tokens at once, with its scratch.
struct Step {
    t: usize,
    ids: Tensor,
    /// The embedding with the first block, each further block, and the last row: one program
    /// each (the cut points of split submits).
    prog: Vec<Program>,
    /// Where this length's submits are cut (src/submit.rs).
    plan: SubmitPlan,
    /// The activations the program writes (shared by all layers: inference keeps nothing).
    _scratch: Vec<Tensor>,
    /// A LoRA model's adapter products (per layer, as the recorder takes them).
    _lora: Option<LoraActs>,
}

/// KV-cache decoding for one model (see the module docs for the window). Made for one [`Gpt2`]
/// and used with it only; its weights may change between calls (training), its shapes not.
pub struct Decoder {
    dims: DecodeDims,
    /// The model this decoder was made for (its wte buffer).
    model: Arc<Buffer>,
    k_cache: Vec<Tensor>, // (L) x (S, kv·hs)
    v_cache: Vec<Tensor>, // (L) x (S, kv·hs)
    /// With rope: cos | sin of positions 0..S (S, hs); the cache holds rotated keys.
    rope_table: Option<Tensor>,
    /// (1) u32: the position of the first token of the current call.
    pos: Tensor,
    /// The last position's residual stream (1, C).
    last: Tensor,
    logits: Tensor, // (1, V)
    argmax: Tensor, // (1) u32
    /// Read back through these every token, rather than a new buffer per read.
    staging_logits: Buffer,
    staging_argmax: Buffer,
    /// ln_f, lm_head and argmax on `last`.
    head: Program,
    _head_scratch: Vec<Tensor>,
    /// What the products read (the model's weights, or their f16 copies), and in f16 the
    /// program that refreshes the copies.
    weights: MatmulWeights,
    refresh: Option<Program>,
    /// Whether the f16 copies must be made again before the next pass.
    stale: bool,
    /// The precision asked for (f32, f16 or auto) and what runs.
    asked: Precision,
    precision: Resolved,
    steps: Vec<Step>,
    context: Vec<u32>,
    /// The submit budget of new steps' plans in milliseconds.
    budget_ms: f64,
    /// How the last call was submitted.
    last_submits: SubmitStats,
}

impl Decoder {
    /// Allocates the caches (2 · n_layer · context · n_kv_head · head size floats, the context
    /// [`decode_context`]'s default: block_size, at most [`DEFAULT_CONTEXT`]) after checking them
    /// against the device; f32 throughout.
    pub fn new(model: &Gpt2) -> Result<Decoder> {
        Decoder::with_precision(model, Precision::F32)
    }

    /// [`Decoder::new`] in `precision`: f16 (and auto) runs the products on f16 copies of the
    /// weights where the adapter has shader-f16, and f32 elsewhere, saying so in
    /// [`Decoder::precision`]'s note.
    pub fn with_precision(model: &Gpt2, precision: Precision) -> Result<Decoder> {
        Decoder::with_context(model, precision, None)
    }

    /// [`Decoder::with_precision`] with a context of `context` tokens (None: the default), checked
    /// by [`decode_context`] before anything is allocated (a front end checks the memory with
    /// [`check_decoder_memory`] before it loads the model).
    pub fn with_context(model: &Gpt2, precision: Precision, context: Option<usize>) -> Result<Decoder> {
        let cfg = &model.config;
        let (k, gpu) = (&*model.kernels, &model.kernels.gpu);
        let a = cfg.attn_dims();
        let (s, v) = (decode_context(cfg, context)?, cfg.vocab_size);
        let dims = DecodeDims { t: 1, c: cfg.n_embd, nh: a.nh, kv: a.kv, hd: a.hs, s, v };
        gpu.check_binding(
            &format!("the KV cache of one layer ({s} positions x n_kv_head x head size)"),
            4 * (s * a.kv_width()) as u64,
        )?;
        let asked = precision;
        let precision = precision.resolve(Purpose::Inference, gpu.shader_f16());
        let per_layer =
            |name: &str| (0..cfg.n_layer).map(|l| gpu.tensor(&format!("{name}.{l}"), &[s, a.kv_width()])).collect();
        let last = gpu.tensor("decode.last", &[1, dims.c]);
        let lnf = gpu.tensor("decode.lnf", &[1, dims.c]);
        let (mean, rstd) = (gpu.tensor("decode.lnf_mean", &[1]), gpu.tensor("decode.lnf_rstd", &[1]));
        let logits = gpu.tensor("decode.logits", &[1, dims.v]);
        let argmax = gpu.tensor("decode.argmax", &[1]);
        let part = Decode::argmax_scratch(gpu, dims.v);
        let p = &model.params;
        let (weights, refresh) = match precision.f16() {
            true => MatmulWeights::f16(k, p).map(|(w, r)| (w, Some(r)))?,
            false => (MatmulWeights::f32(p), None),
        };
        let mut head = Program::default();
        let ((kind, eps), bias) = (model.config.norm(), p.ln_f_b.as_ref());
        let ln = LayerNormFwd { out: &lnf, mean: &mean, rstd: &rstd, inp: &last, weight: &p.ln_f_w, bias, kind, eps };
        k.layernorm.forward(&mut head, ln);
        k.matmul.lm_head(&mut head, &logits, &lnf, &weights.head);
        if let Some(cap) = model.config.arch.logit_softcap {
            k.softcap.forward(&mut head, &logits, cap);
        }
        k.decode.argmax(&mut head, &argmax, &part, &logits);
        Ok(Decoder {
            dims,
            model: p.wte.buffer.clone(),
            k_cache: per_layer("k_cache"),
            v_cache: per_layer("v_cache"),
            rope_table: cfg.rope_table(s).map(|v| gpu.upload("decode.rope_table", &[s, a.hs], &v)),
            pos: gpu.tensor("decode.pos", &[1]),
            last,
            staging_logits: gpu.staging(4 * dims.v as u64),
            staging_argmax: gpu.staging(4),
            logits,
            argmax,
            head,
            _head_scratch: vec![lnf, mean, rstd, part],
            weights,
            refresh,
            stale: true,
            asked,
            precision,
            steps: Vec::new(),
            context: Vec::new(),
            budget_ms: model.submit_budget_ms,
            last_submits: SubmitStats::default(),
        })
    }

    /// The precision asked for when the decoder was made (f32, f16 or auto).
    pub fn asked(&self) -> Precision {
        self.asked
    }

    /// The precision that runs (f32 or f16) and, where it is not the one asked for, why.
    pub fn precision(&self) -> &Resolved {
        &self.precision
    }

    /// Says that the model's weights changed (a training step, a load): in f16 the next pass
    /// makes their f16 copies again first. Nothing to do in f32.
    pub fn weights_changed(&mut self) {
        self.stale = true;
    }

    /// The tokens whose keys and values are cached, oldest first (at most [`Decoder::context_size`]).
    pub fn context(&self) -> &[u32] {
        &self.context
    }

    /// The most tokens the cache holds (the context asked for, or the default).
    pub fn context_size(&self) -> usize {
        self.dims.s
    }

    /// Records the pass for `t` new tokens: embedding at pos0.., the blocks with the cache, and
    /// the last row into `self.last`.
    fn record(&self, model: &Gpt2, t: usize) -> Result<Step> {
        let (k, g, p, w) = (&*model.kernels, &model.kernels.gpu, &model.params, &self.weights);
        let d = DecodeDims { t, ..self.dims };
        let c = d.c;
        let (fc, i) = (model.config.mlp_width(), model.config.intermediate_size());
        check_step_bindings(g, d, fc)?;
        let ids = g.tensor("decode.ids", &[t]);
        let x = g.tensor("decode.x", &[t, c]);
        let x2 = g.tensor("decode.x2", &[t, c]);
        let ln = g.tensor("decode.ln", &[t, c]);
        let (mean, rstd) = (g.tensor("decode.mean", &[t]), g.tensor("decode.rstd", &[t]));
        let a = model.config.attn_dims();
        let qkv = g.tensor("decode.qkv", &[t, a.qkv_width()]);
        let atty = g.tensor("decode.atty", &[t, a.out_width()]);
        let proj = g.tensor("decode.proj", &[t, c]);
        let qkv_raw = g.tensor("decode.qkv_raw", &[t, a.qkv_width()]);
        let qk_rstd = g.tensor("decode.qk_rstd", &[t, a.nh + a.kv]);
        let fch = g.tensor("decode.fch", &[t, fc]);
        let fch_act = g.tensor("decode.fch_act", &[t, i]);
        let scores = g.tensor("decode.scores", &[t, d.nh, d.s]);
        let mut pieces = Vec::with_capacity(model.config.n_layer + 1);
        let mut program = Program::default();
        k.decode.embed(
            &mut program,
            d,
            DecodeEmbed { x: &x, ids: &ids, wte: &p.wte, wpe: p.wpe.as_ref(), pos: &self.pos },
        );
        let acts = BlockActs {
            inp: &x,
            ln1: &ln,
            ln1_mean: &mean,
            ln1_rstd: &rstd,
            qkv: &qkv,
            atty: &atty,
            attproj: &proj,
            residual2: &x2,
            ln2: &ln,
            ln2_mean: &mean,
            ln2_rstd: &rstd,
            fch: &fch,
            fch_act: &fch_act,
            fcproj: &proj,
            out: &x,
            rope: model.config.rope_dims(t).map(|_| BlockRope {
                t,
                qkv_raw: &qkv_raw,
                rstd: &qk_rstd,
                table: self.rope_table.as_ref(),
                pos: &self.pos,
            }),
        };
        // a LoRA model's adapters run after their products here as in training (no dropout)
        let lora_acts = model.lora.as_ref().map(|lt| {
            let lc = LoraConfig { dropout: 0.0, ..lt.config };
            LoraActs::new(g, &model.config, &lc, 1, t)
        });
        for l in 0..model.config.n_layer {
            if l > 0 {
                pieces.push(std::mem::take(&mut program));
            }
            // x = x + attn(ln_1(x)), with this layer's cache, then x = x + mlp(ln_2(x))
            let (k_cache, v_cache, pos) = (&self.k_cache[l], &self.v_cache[l], &self.pos);
            let attn = BlockAttn::Cached { dims: d, scores: &scores, k_cache, v_cache, pos };
            let lora = lora_acts.as_ref().and_then(|la| model.lora_over(la, l, None, None));
            model.record_block(&mut program, Block { l, x: acts, attn, w, dropout: None, lora });
        }
        pieces.push(std::mem::take(&mut program));
        k.decode.last_row(&mut program, d, &self.last, &x);
        pieces.push(program);
        let plan = SubmitPlan::new(self.budget_ms);
        Ok(Step {
            t,
            ids,
            prog: pieces,
            plan,
            _scratch: vec![x, x2, ln, mean, rstd, qkv, atty, proj, fch, fch_act, scores, qkv_raw, qk_rstd],
            _lora: lora_acts,
        })
    }

    /// Runs `ids` at positions pos0.. (first making the f16 weights where they are stale, in a
    /// submit of its own) in one submit, or several cut at block boundaries where one would take
    /// longer than the budget; the last one's logits (and argmax) follow.
    fn run(&mut self, model: &Gpt2, ids: &[u32], pos0: usize) -> Result<()> {
        assert!(Arc::ptr_eq(&self.model, &model.params.wte.buffer), "a Decoder is used with the model it was made for");
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= self.dims.v) {
            return Err(Error::Input(format!("token id {id} is outside the vocabulary (vocab_size {})", self.dims.v)));
        }
        let t = ids.len();
        if !self.steps.iter().any(|s| s.t == t) {
            let step = self.record(model, t)?;
            // keep the one-token step, the full-window step and the latest prompt's
            let keep = |n: usize| n == 1 || n == self.dims.s;
            if !keep(t) {
                self.steps.retain(|s| keep(s.t));
            }
            self.steps.push(step);
        }
        let step = self.steps.iter_mut().find(|s| s.t == t).expect("recorded above");
        let gpu = &model.kernels.gpu;
        gpu.write(&step.ids, ids);
        gpu.write(&self.pos, &[pos0 as u32]);
        if let Some(r) = self.refresh.as_ref().filter(|_| self.stale) {
            gpu.run(|pass| r.encode(pass));
        }
        self.stale = false;
        let mut pieces: Vec<_> = step.prog.iter().map(|p| Piece::pass(vec![p])).collect();
        pieces.push(Piece::pass(vec![&self.head]));
        step.plan.run(gpu, &pieces);
        self.last_submits = step.plan.stats();
        Ok(())
    }

    /// How the last prefill or decode step was submitted (src/submit.rs).
    pub fn submits(&self) -> SubmitStats {
        self.last_submits
    }

    /// Sets the submit budget of this decoder's prefills and steps in milliseconds (0: one
    /// submit each).
    pub fn set_submit_budget(&mut self, ms: f64) {
        self.budget_ms = ms;
        for s in &mut self.steps {
            s.plan.set_budget_ms(ms);
        }
    }

    /// Replaces the context with `tokens` (1 to block_size of them) in one pass.
    pub fn prefill(&mut self, model: &Gpt2, tokens: &[u32]) -> Result<()> {
        let s = self.dims.s;
        if tokens.is_empty() {
            return Err(Error::Input("the prompt is empty; give at least one token".into()));
        }
        if tokens.len() > s {
            return Err(Error::Input(format!(
                "{} tokens do not fit the decoder's context ({s} tokens); keep at most the last {s}",
                tokens.len()
            )));
        }
        self.context.clear();
        self.run(model, tokens, 0)?;
        self.context.extend_from_slice(tokens);
        Ok(())
    }

    /// Appends one token: a decode step over the cache, or, with the context full, a slide of the
    /// window (a prefill of the last block_size tokens, see the module docs).
    pub fn push(&mut self, model: &Gpt2, token: u32) -> Result<()> {
        if self.context.is_empty() {
            return self.prefill(model, &[token]);
        }
        if self.context.len() < self.dims.s {
            self.run(model, &[token], self.context.len())?;
            self.context.push(token);
            Ok(())
        } else {
            let mut window = self.context[1..].to_vec();
            window.push(token);
            self.prefill(model, &window)
        }
    }

    /// The logits (V) after the last token of the context.
    pub async fn logits(&mut self, model: &Gpt2) -> Result<Vec<f32>> {
        model.kernels.gpu.read_via(&self.staging_logits, &self.logits, 0, self.dims.v).await
    }

    /// The most likely next token (the first maximum of the logits), reduced on the GPU.
    pub async fn argmax(&mut self, model: &Gpt2) -> Result<u32> {
        let v = model.kernels.gpu.read_via(&self.staging_argmax, &self.argmax, 0, 1).await?;
        Ok(v[0].to_bits())
    }

    /// Continues `prompt` (ids; when longer than block_size only its last block_size tokens are
    /// used), calling `on_token` with each new id as soon as it is picked; stops after
    /// max_new_tokens, at `stop` (included in the result, not passed to `on_token`), or when
    /// `on_token` returns false (cancel). Greedy decoding reads back one id per token; sampling
    /// reads back the V logits of the last position.
    pub async fn generate(
        &mut self,
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
        let mut out = vec![];
        if cfg.max_new_tokens == 0 {
            return Ok(out);
        }
        self.prefill(model, &prompt[prompt.len().saturating_sub(self.dims.s)..])?;
        let mut rng = Rng::new(cfg.seed);
        loop {
            let next = if cfg.is_greedy() {
                self.argmax(model).await?
            } else {
                sample(&self.logits(model).await?, cfg, &mut rng)
            };
            out.push(next);
            if Some(next) == stop || !on_token(next) || out.len() >= cfg.max_new_tokens {
                return Ok(out);
            }
            self.push(model, next)?;
        }
    }
}

/// A decode step of `d.t` tokens fits the device's bindings: its attention scores (T x n_head x
/// block_size) and its MLP product (T x `fc`).
fn check_step_bindings(g: &Gpu, d: DecodeDims, fc: usize) -> Result<()> {
    let t = d.t;
    g.check_binding(
        &format!("the attention scores of {t} tokens (T x n_head x block_size)"),
        4 * (t * d.nh * d.s) as u64,
    )?;
    g.check_binding(&format!("the MLP product of {t} tokens (T x {fc})"), 4 * (t * fc) as u64)
}
