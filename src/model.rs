//! GPT-2 on the GPU: the forward pass as a straight list of kernel calls (llm.c's
//! `gpt2_forward`), recorded once per (B, T). The config (model/config.rs), the parameters
//! (model/weights.rs) and the activations (model/acts.rs) live beside it.

use std::sync::{Arc, Mutex};

use crate::gpu::Tensor;
use crate::kernels::dropout::DropoutRate;
use crate::kernels::{AttentionKind, CrossEntropyFwd, Kernels, LayerNormFwd, Program, Site, IGNORE};
use crate::submit::{Piece, SubmitPlan, SubmitStats, DEFAULT_BUDGET_MS};
use crate::weights16::MatmulWeights;
use crate::{Error, Result};

mod acts;
mod arch;
mod block;
mod config;
pub mod lora;
mod specs;
mod weights;

pub use acts::{ActivationTensors, RopeActs};
pub use arch::{Arch, ArchChoice, ArchPreset, HfClass, Mlp, Named, Norm, Positions};
pub(crate) use block::{Block, BlockActs, BlockAttn, BlockRope};
pub use config::{Gpt2Config, PRESETS};
pub use lora::{LoraConfig, LoraTensors};
pub(crate) use specs::Allocated;
pub use specs::{shape_bytes, total_bytes, TensorSpec};
pub use weights::{hf_name, layer, ParameterTensors, Weights, BLOCK_PARAMS, LM_HEAD};

/// A GPT-2 model on the GPU.
pub struct Gpt2 {
    pub config: Gpt2Config,
    pub kernels: Arc<Kernels>,
    pub params: ParameterTensors,
    /// The submit budget in milliseconds of the plans made for this model from now on (its
    /// forwards, trainer and decoder; those made already keep theirs).
    pub submit_budget_ms: f64,
    /// LoRA's adapters, where the model has them ([`Gpt2::attach_lora`]): its plans run them.
    pub lora: Option<LoraTensors>,
}

/// Activations and recorded programs for one (B, T).
pub struct Forward {
    pub b: usize,
    pub t: usize,
    pub acts: ActivationTensors,
    /// Token + position embedding of `acts.ids`.
    embed: Program,
    /// The transformer blocks, ln_f and the lm_head: `acts.encoded` to `acts.logits`, one
    /// program per block and one for the head (the submit plan's cut points).
    body: Vec<Program>,
    /// Cross-entropy against `acts.targets` and its mean.
    loss: Program,
    /// Where [`Gpt2::forward`]'s submits are cut (src/submit.rs).
    plan: Mutex<SubmitPlan>,
}

impl Forward {
    /// How the last forward (or evaluation batch) was submitted.
    pub fn submits(&self) -> SubmitStats {
        self.plan.lock().unwrap_or_else(|e| e.into_inner()).stats()
    }

    /// Sets the submit budget of this plan's forwards in milliseconds (0: one submit).
    pub fn set_submit_budget(&self, ms: f64) {
        self.plan.lock().unwrap_or_else(|e| e.into_inner()).set_budget_ms(ms);
    }
}

impl Gpt2 {
    /// Uploads `weights` after checking that the largest tensor fits the device's bindings; its
    /// plans split submits at [`DEFAULT_BUDGET_MS`] ([`Gpt2::with_submit_budget`] sets another).
    pub fn new(kernels: Arc<Kernels>, weights: &Weights) -> Result<Gpt2> {
        let config = weights.config;
        config.validate()?;
        let gpu = &kernels.gpu;
        let specs = config.param_specs();
        if weights.tensors.len() != specs.len() {
            return Err(Error::Format(format!(
                "expected {} parameter tensors, got {}",
                specs.len(),
                weights.tensors.len()
            )));
        }
        for ((name, shape), data) in specs.iter().zip(&weights.tensors) {
            let n: usize = shape.iter().product();
            if data.len() != n {
                return Err(Error::Format(format!("{name}: expected {n} values {shape:?}, got {}", data.len())));
            }
        }
        config.check_params(gpu)?;
        let tensors =
            specs.iter().zip(&weights.tensors).map(|((name, shape), data)| gpu.upload(name, shape, data)).collect();
        let params = ParameterTensors::from_ordered(&config, tensors);
        Ok(Gpt2 { config, kernels, params, submit_budget_ms: DEFAULT_BUDGET_MS, lora: None })
    }

    /// The model with plans that split submits at `ms` milliseconds (0: one submit each).
    pub fn with_submit_budget(mut self, ms: f64) -> Gpt2 {
        self.submit_budget_ms = ms;
        self
    }

    /// Reads every parameter back to the host.
    pub async fn weights(&self) -> Result<Weights> {
        let tensors = self.kernels.gpu.read_many(&self.params.ordered()).await?;
        Ok(Weights { config: self.config, tensors })
    }

    /// Checks (B, T) against the context and the device, allocates activations and records the
    /// forward pass, with the attention kernels the device's tuning picks.
    pub fn forward_plan(&self, b: usize, t: usize) -> Result<Forward> {
        self.forward_plan_with(b, t, None)
    }

    /// [`Gpt2::forward_plan`] with attention of `kind` where given (a training run's).
    pub fn forward_plan_with(&self, b: usize, t: usize, kind: Option<AttentionKind>) -> Result<Forward> {
        let cfg = &self.config;
        if b == 0 || t == 0 {
            return Err(Error::Input(format!("batch {b} x sequence {t}: both must be at least 1")));
        }
        if t > cfg.block_size {
            return Err(Error::Input(format!(
                "sequence length {t} is longer than the model's context (block_size {}); use at most {} tokens",
                cfg.block_size, cfg.block_size
            )));
        }
        let gpu = &self.kernels.gpu;
        let attention = self.kernels.selection().attention(kind, cfg.attn_shape(b, t));
        cfg.check_activations(gpu, b, t, attention.kind())?;
        let mut acts = ActivationTensors::new(gpu, cfg, b, t, attention);
        acts.lora = self.lora.as_ref().map(|lt| lora::LoraActs::new(gpu, cfg, &lt.config, b, t));
        let embed = self.record_embed(&acts, &acts.ids);
        let body = self.record_body(&acts, &MatmulWeights::f32(&self.params), None, None);
        let loss = self.record_loss(&acts, &acts.targets);
        let plan = Mutex::new(SubmitPlan::new(self.submit_budget_ms));
        Ok(Forward { b, t, acts, embed, body, loss, plan })
    }

    /// encoded (B,T,C) = wte[ids] + wpe.
    pub(crate) fn record_embed(&self, a: &ActivationTensors, ids: &Tensor) -> Program {
        let (k, p) = (&*self.kernels, &self.params);
        let mut prog = Program::default();
        k.encoder.forward(&mut prog, &a.encoded, ids, &p.wte, p.wpe.as_ref());
        prog
    }

    /// losses (B,T), loss (1) and counted (1) of the logits against `targets` (IGNORE not counted).
    pub(crate) fn record_loss(&self, a: &ActivationTensors, targets: &Tensor) -> Program {
        let (k, mut prog) = (&*self.kernels, Program::default());
        let (loss, counted, losses, lse, logits) = (&a.loss, &a.counted, &a.losses, &a.lse, &a.logits);
        k.crossentropy.forward(&mut prog, CrossEntropyFwd { loss, counted, losses, lse, logits, targets });
        prog
    }

    /// llm.c's `gpt2_forward` after the embedding, recorded: residual stream (B,T,C).
    /// With `dropout`, inverted dropout on the embedding output, on both residual branches of
    /// every block and on the attention probabilities ([`Site`]), as GPT-2's embd_pdrop,
    /// resid_pdrop and attn_pdrop. One program per block (the first with the embedding's
    /// dropout), then one for ln_f and the lm_head: the cut points of split submits. The
    /// matrix products read `w` (the model's weights, or f16 copies of them). `lora_dropout`:
    /// a training LoRA run's dropout on its adapters' input.
    pub(crate) fn record_body(
        &self,
        a: &ActivationTensors,
        w: &MatmulWeights,
        dropout: Option<DropoutRate>,
        lora_dropout: Option<DropoutRate>,
    ) -> Vec<Program> {
        let (k, p) = (&*self.kernels, &self.params);
        let mut pieces = Vec::with_capacity(self.config.n_layer + 1);
        let mut program = Program::default();
        k.dropout.at(&mut program, &a.encoded, dropout, Site::Embedding);
        for l in 0..self.config.n_layer {
            let (x, attn) = (BlockActs::layer(a, l), BlockAttn::Causal { imp: a.attention, saved: &a.att[l] });
            let lora = self.lora_block(a, l, None, lora_dropout);
            self.record_block(&mut program, Block { l, x, attn, w, dropout, lora });
            pieces.push(std::mem::take(&mut program));
        }
        let prog = &mut program;
        let last = &a.residual3[self.config.n_layer - 1]; // n_layer >= 1 (Gpt2Config::validate)
        let (out, mean, rstd) = (&a.lnf, &a.lnf_mean, &a.lnf_rstd);
        let ((kind, eps), bias) = (self.config.norm(), p.ln_f_b.as_ref());
        k.layernorm.forward(prog, LayerNormFwd { out, mean, rstd, inp: last, weight: &p.ln_f_w, bias, kind, eps });
        // lm_head: logits (B,T,V) = lnf (B,T,C) · headᵀ (head: wte where tied)
        k.matmul.lm_head(prog, &a.logits, &a.lnf, &w.head);
        if let Some(cap) = self.config.arch.logit_softcap {
            k.softcap.forward(prog, &a.logits, cap);
        }
        pieces.push(program);
        pieces
    }

    /// Checks token ids (or "targets", which may also be [`IGNORE`]: not counted in the loss)
    /// against the plan's shape and the vocabulary.
    pub(crate) fn check_ids(&self, what: &str, ids: &[u32], f: &Forward) -> Result<()> {
        if ids.len() != f.b * f.t {
            return Err(Error::Input(format!("{what}: {} ids, expected B*T = {}x{}", ids.len(), f.b, f.t)));
        }
        let v = self.config.vocab_size;
        let bad = |id: u32| id as usize >= v && !(what == "targets" && id == IGNORE);
        if let Some((i, &id)) = ids.iter().enumerate().find(|(_, &id)| bad(id)) {
            return Err(Error::Input(format!("{what}[{i}] = {id} is outside the vocabulary (vocab_size {v})")));
        }
        Ok(())
    }

    /// Runs the forward pass on `ids` (B·T); with `targets`, also the loss. Read results from
    /// `f.acts`. One submit, or several cut at block boundaries where one would take longer
    /// than the plan's budget (src/submit.rs; [`Forward::submits`] says how it went).
    pub fn forward(&self, f: &Forward, ids: &[u32], targets: Option<&[u32]>) -> Result<()> {
        let gpu = &self.kernels.gpu;
        self.check_ids("ids", ids, f)?;
        gpu.write(&f.acts.ids, ids);
        if let Some(y) = targets {
            self.check_ids("targets", y, f)?;
            gpu.write(&f.acts.targets, y);
        }
        let mut pieces = vec![Piece::pass(vec![&f.embed])];
        pieces.extend(f.body.iter().map(|p| Piece::pass(vec![p])));
        if targets.is_some() {
            pieces.push(Piece::pass(vec![&f.loss]));
        }
        f.plan.lock().unwrap_or_else(|e| e.into_inner()).run(gpu, &pieces);
        Ok(())
    }
}
