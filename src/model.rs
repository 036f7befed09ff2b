//! GPT-2: the config, parameters under Hugging Face's names, activations, and the forward pass
//! as a straight list of kernel calls (llm.c's `gpt2_forward`), recorded once per (B, T).

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::gpu::{Gpu, Tensor};
use crate::kernels::dropout::DropoutRate;
use crate::kernels::{
    AttentionImpl, AttentionKind, AttnShape, CrossEntropyFwd, Kernels, LayerNormFwd, Program, Selection, Site, IGNORE,
};
use crate::rng::Rng;
use crate::submit::{Piece, SubmitPlan, SubmitStats, DEFAULT_BUDGET_MS};
use crate::tune::RunShape;
use crate::weights16::MatmulWeights;
use crate::{Error, Result};

mod block;
mod specs;

pub(crate) use block::{Block, BlockActs, BlockAttn};
pub(crate) use specs::Allocated;
pub use specs::{total_bytes, TensorSpec};

/// The shape of a GPT-2 model. Layer norm eps is 1e-5, GELU is tanh-GELU, lm_head is tied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gpt2Config {
    pub n_layer: usize,
    pub n_head: usize,
    pub n_embd: usize,
    pub block_size: usize,
    pub vocab_size: usize,
}

/// Named configs: `gpt2` (124M), `shakespeare-char` (nanoGPT's) and `baby` (nanoGPT's CPU run).
pub const PRESETS: &[(&str, Gpt2Config)] = &[
    ("gpt2", Gpt2Config { n_layer: 12, n_head: 12, n_embd: 768, block_size: 1024, vocab_size: 50257 }),
    ("shakespeare-char", Gpt2Config { n_layer: 6, n_head: 6, n_embd: 384, block_size: 256, vocab_size: 65 }),
    ("baby", Gpt2Config { n_layer: 4, n_head: 4, n_embd: 128, block_size: 64, vocab_size: 65 }),
    // the page's default: trains at a useful pace even on a software WebGPU adapter
    ("tiny", Gpt2Config { n_layer: 2, n_head: 2, n_embd: 64, block_size: 32, vocab_size: 65 }),
];

/// Parameter names of one transformer block, after `h.N.`, in Hugging Face's order.
pub const BLOCK_PARAMS: [&str; 12] = [
    "ln_1.weight",
    "ln_1.bias",
    "attn.c_attn.weight",
    "attn.c_attn.bias",
    "attn.c_proj.weight",
    "attn.c_proj.bias",
    "ln_2.weight",
    "ln_2.bias",
    "mlp.c_fc.weight",
    "mlp.c_fc.bias",
    "mlp.c_proj.weight",
    "mlp.c_proj.bias",
];

impl Gpt2Config {
    pub fn preset(name: &str) -> Option<Gpt2Config> {
        PRESETS.iter().find(|(n, _)| *n == name).map(|(_, c)| *c)
    }

    /// Checks the config is usable; the error names the field.
    pub fn validate(&self) -> Result<()> {
        let fields = [
            ("n_layer", self.n_layer),
            ("n_head", self.n_head),
            ("n_embd", self.n_embd),
            ("block_size", self.block_size),
            ("vocab_size", self.vocab_size),
        ];
        for (name, v) in fields {
            if v == 0 {
                return Err(Error::Format(format!("config: {name} must be at least 1")));
            }
            if v > 1 << 24 {
                return Err(Error::Format(format!("config: {name} = {v} is implausibly large")));
            }
        }
        if !self.n_embd.is_multiple_of(self.n_head) {
            return Err(Error::Format(format!(
                "config: n_embd ({}) must be a multiple of n_head ({})",
                self.n_embd, self.n_head
            )));
        }
        if !(self.n_embd / self.n_head).is_multiple_of(4) {
            return Err(Error::Format(format!(
                "config: the head size n_embd / n_head = {} must be a multiple of 4 (the attention kernels read vec4s)",
                self.n_embd / self.n_head
            )));
        }
        Ok(())
    }

    /// Every parameter's HF name (without the `transformer.` prefix) and shape, in HF's order.
    /// Conv1D weights are [in, out].
    pub fn param_specs(&self) -> Vec<(String, Vec<usize>)> {
        let (c, v, t) = (self.n_embd, self.vocab_size, self.block_size);
        let mut specs = vec![("wte.weight".to_string(), vec![v, c]), ("wpe.weight".to_string(), vec![t, c])];
        for l in 0..self.n_layer {
            let shapes = [
                vec![c],
                vec![c],
                vec![c, 3 * c],
                vec![3 * c],
                vec![c, c],
                vec![c],
                vec![c],
                vec![c],
                vec![c, 4 * c],
                vec![4 * c],
                vec![4 * c, c],
                vec![c],
            ];
            for (name, shape) in BLOCK_PARAMS.iter().zip(shapes) {
                specs.push((format!("h.{l}.{name}"), shape));
            }
        }
        specs.push(("ln_f.weight".to_string(), vec![c]));
        specs.push(("ln_f.bias".to_string(), vec![c]));
        specs
    }

    pub fn num_params(&self) -> usize {
        self.param_specs().iter().map(|(_, s)| s.iter().product::<usize>()).sum()
    }

    /// Checks that every parameter fits `gpu` before anything is allocated: wte in one buffer
    /// (it is bound in row chunks where it exceeds one binding, Gpu::row_chunks), every other
    /// tensor in one storage binding.
    pub fn check_params(&self, gpu: &Gpu) -> Result<()> {
        for (name, shape) in self.param_specs() {
            let bytes = 4 * shape.iter().product::<usize>() as u64;
            if name == "wte.weight" {
                gpu.check_buffer(&name, bytes)?;
            } else {
                gpu.check_binding(&name, bytes)?;
            }
        }
        Ok(())
    }

    /// Checks that the activations of a (B, T) forward (and so of its backward) with attention of
    /// `kind` fit `gpu`'s storage bindings.
    pub fn check_activations(&self, gpu: &Gpu, b: usize, t: usize, kind: AttentionKind) -> Result<()> {
        for s in ActivationTensors::specs(self, b, t, kind) {
            gpu.check_binding(&format!("the {} at B={b}, T={t}", s.what), s.tensor_bytes())?;
        }
        Ok(())
    }

    /// The attention problem of a (B, T) batch.
    pub fn attn_shape(&self, b: usize, t: usize) -> AttnShape {
        AttnShape { b, nh: self.n_head, t, hs: self.n_embd / self.n_head }
    }

    /// The attention numerics a new training run at (B, T) gets from `selection`.
    pub fn attention_kind(&self, selection: &Selection, b: usize, t: usize) -> AttentionKind {
        selection.attention(None, self.attn_shape(b, t)).kind()
    }

    /// The sizes the tuner chooses a training run's kernels by.
    pub fn run_shape(&self, b: usize, t: usize) -> RunShape {
        RunShape { n_embd: self.n_embd, n_head: self.n_head, vocab: self.vocab_size, b, t }
    }
}

/// Parameters on the host, in [`Gpt2Config::param_specs`] order.
#[derive(Clone)]
pub struct Weights {
    pub config: Gpt2Config,
    pub tensors: Vec<Vec<f32>>,
}

impl std::fmt::Debug for Weights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Weights({:?}, {} tensors)", self.config, self.tensors.len())
    }
}

impl Weights {
    /// GPT-2's initialisation (as HF's `_init_weights` and nanoGPT): weights N(0, 0.02), the
    /// residual projections (attn.c_proj, mlp.c_proj) N(0, 0.02/√(2·n_layer)), biases 0,
    /// layer norm weights 1.
    pub fn random(config: Gpt2Config, seed: u64) -> Weights {
        let mut rng = Rng::new(seed);
        let proj_std = 0.02 / (2.0 * config.n_layer as f32).sqrt();
        let tensors = config
            .param_specs()
            .iter()
            .map(|(name, shape)| {
                let n: usize = shape.iter().product();
                if name.contains("ln_") && name.ends_with(".weight") {
                    vec![1.0; n]
                } else if name.ends_with(".bias") {
                    vec![0.0; n]
                } else {
                    let std = if name.ends_with("c_proj.weight") { proj_std } else { 0.02 };
                    (0..n).map(|_| std * rng.normal()).collect()
                }
            })
            .collect();
        Weights { config, tensors }
    }
}

/// Parameters on the GPU, llm.c's `ParameterTensors` under HF's names; per-layer fields are
/// indexed by layer.
pub struct ParameterTensors {
    pub wte: Tensor,         // (V, C)
    pub wpe: Tensor,         // (maxT, C)
    pub ln_1_w: Vec<Tensor>, // (L) x (C)
    pub ln_1_b: Vec<Tensor>,
    pub c_attn_w: Vec<Tensor>, // (L) x (C, 3C)
    pub c_attn_b: Vec<Tensor>, // (L) x (3C)
    pub c_proj_w: Vec<Tensor>, // (L) x (C, C)
    pub c_proj_b: Vec<Tensor>,
    pub ln_2_w: Vec<Tensor>,
    pub ln_2_b: Vec<Tensor>,
    pub c_fc_w: Vec<Tensor>,     // (L) x (C, 4C)
    pub c_fc_b: Vec<Tensor>,     // (L) x (4C)
    pub mlp_proj_w: Vec<Tensor>, // (L) x (4C, C)
    pub mlp_proj_b: Vec<Tensor>, // (L) x (C)
    pub ln_f_w: Tensor,          // (C)
    pub ln_f_b: Tensor,
}

impl ParameterTensors {
    /// Builds from tensors in [`Gpt2Config::param_specs`] order.
    fn from_ordered(n_layer: usize, tensors: Vec<Tensor>) -> ParameterTensors {
        let mut it = tensors.into_iter();
        let mut next = || it.next().expect("one tensor per parameter spec");
        let (wte, wpe) = (next(), next());
        let mut blocks: [Vec<Tensor>; 12] = Default::default();
        for _ in 0..n_layer {
            for field in blocks.iter_mut() {
                field.push(next());
            }
        }
        let [ln_1_w, ln_1_b, c_attn_w, c_attn_b, c_proj_w, c_proj_b, ln_2_w, ln_2_b, c_fc_w, c_fc_b, mlp_proj_w, mlp_proj_b] =
            blocks;
        let (ln_f_w, ln_f_b) = (next(), next());
        ParameterTensors {
            wte,
            wpe,
            ln_1_w,
            ln_1_b,
            c_attn_w,
            c_attn_b,
            c_proj_w,
            c_proj_b,
            ln_2_w,
            ln_2_b,
            c_fc_w,
            c_fc_b,
            mlp_proj_w,
            mlp_proj_b,
            ln_f_w,
            ln_f_b,
        }
    }

    /// Zero-filled tensors of the parameters' shapes: gradients and optimizer moments.
    pub fn zeros(gpu: &Gpu, config: &Gpt2Config, prefix: &str) -> ParameterTensors {
        let tensors =
            config.param_specs().iter().map(|(name, shape)| gpu.tensor(&format!("{prefix}{name}"), shape)).collect();
        ParameterTensors::from_ordered(config.n_layer, tensors)
    }

    /// Every tensor in [`Gpt2Config::param_specs`] order.
    pub fn ordered(&self) -> Vec<&Tensor> {
        let mut v = vec![&self.wte, &self.wpe];
        for l in 0..self.ln_1_w.len() {
            v.extend([
                &self.ln_1_w[l],
                &self.ln_1_b[l],
                &self.c_attn_w[l],
                &self.c_attn_b[l],
                &self.c_proj_w[l],
                &self.c_proj_b[l],
                &self.ln_2_w[l],
                &self.ln_2_b[l],
                &self.c_fc_w[l],
                &self.c_fc_b[l],
                &self.mlp_proj_w[l],
                &self.mlp_proj_b[l],
            ]);
        }
        v.extend([&self.ln_f_w, &self.ln_f_b]);
        v
    }
}

/// Activations for one (B, T), llm.c's `ActivationTensors`: what forward writes and backward
/// reads. Per-layer fields are indexed by layer.
pub struct ActivationTensors {
    pub ids: Tensor,            // (B, T) u32
    pub targets: Tensor,        // (B, T) u32
    pub encoded: Tensor,        // (B, T, C)
    pub ln1: Vec<Tensor>,       // (L) x (B, T, C)
    pub ln1_mean: Vec<Tensor>,  // (L) x (B, T)
    pub ln1_rstd: Vec<Tensor>,  // (L) x (B, T)
    pub qkv: Vec<Tensor>,       // (L) x (B, T, 3C)
    pub atty: Vec<Tensor>,      // (L) x (B, T, C)
    pub att: Vec<Tensor>,       // (L) x what attention keeps: softmax (B, NH, T, T) or lse (B, NH, T)
    pub attproj: Vec<Tensor>,   // (L) x (B, T, C)
    pub residual2: Vec<Tensor>, // (L) x (B, T, C)
    pub ln2: Vec<Tensor>,       // (L) x (B, T, C)
    pub ln2_mean: Vec<Tensor>,  // (L) x (B, T)
    pub ln2_rstd: Vec<Tensor>,  // (L) x (B, T)
    pub fch: Vec<Tensor>,       // (L) x (B, T, 4C)
    pub fch_gelu: Vec<Tensor>,  // (L) x (B, T, 4C)
    pub fcproj: Vec<Tensor>,    // (L) x (B, T, C)
    pub residual3: Vec<Tensor>, // (L) x (B, T, C)
    pub lnf: Tensor,            // (B, T, C)
    pub lnf_mean: Tensor,       // (B, T)
    pub lnf_rstd: Tensor,       // (B, T)
    pub logits: Tensor,         // (B, T, V)
    pub losses: Tensor,         // (B, T)
    pub lse: Tensor,            // (B, T) logsumexp of each row of logits
    pub loss: Tensor,           // (1)
    pub counted: Tensor,        // (1) targets the loss counts (not crossentropy's IGNORE)
    /// The attention kernels these activations were made for (what `att` holds).
    pub attention: AttentionImpl,
}

impl ActivationTensors {
    /// Every activation's name and shape for (B, T) with attention of `kind`, in field order:
    /// what [`ActivationTensors`] allocates, what [`Gpt2Config::check_activations`] checks
    /// against the device's bindings and what [`crate::train::training_bytes`] sums.
    pub fn specs(cfg: &Gpt2Config, b: usize, t: usize, kind: AttentionKind) -> Vec<TensorSpec> {
        let (c, nh, v, l) = (cfg.n_embd, cfg.n_head, cfg.vocab_size, cfg.n_layer);
        let saved = match kind {
            AttentionKind::Classic => "attention matrix (B,NH,T,T)",
            AttentionKind::Flash => "attention logsumexp (B,NH,T)",
        };
        let (ids, stats, act) = ("token ids (B,T)", "row statistics (B,T)", "activation (B,T,C)");
        let layer = |name, what, shape| TensorSpec::per_layer(l, name, what, shape);
        vec![
            TensorSpec::one("ids", ids, vec![b, t]),
            TensorSpec::one("targets", ids, vec![b, t]),
            TensorSpec::one("encoded", act, vec![b, t, c]),
            layer("ln1", act, vec![b, t, c]),
            layer("ln1_mean", stats, vec![b, t]),
            layer("ln1_rstd", stats, vec![b, t]),
            layer("qkv", "qkv (B,T,3C)", vec![b, t, 3 * c]),
            layer("atty", act, vec![b, t, c]),
            layer("att", saved, kind.saved_shape(b, nh, t)),
            layer("attproj", act, vec![b, t, c]),
            layer("residual2", act, vec![b, t, c]),
            layer("ln2", act, vec![b, t, c]),
            layer("ln2_mean", stats, vec![b, t]),
            layer("ln2_rstd", stats, vec![b, t]),
            layer("fch", "MLP activation (B,T,4C)", vec![b, t, 4 * c]),
            layer("fch_gelu", "MLP activation (B,T,4C)", vec![b, t, 4 * c]),
            layer("fcproj", act, vec![b, t, c]),
            layer("residual3", act, vec![b, t, c]),
            TensorSpec::one("lnf", act, vec![b, t, c]),
            TensorSpec::one("lnf_mean", stats, vec![b, t]),
            TensorSpec::one("lnf_rstd", stats, vec![b, t]),
            TensorSpec::one("logits", "logits (B,T,V)", vec![b, t, v]),
            TensorSpec::one("losses", stats, vec![b, t]),
            TensorSpec::one("lse", stats, vec![b, t]),
            TensorSpec::one("loss", "loss (1)", vec![1]),
            TensorSpec::one("counted", "loss (1)", vec![1]),
        ]
    }

    fn new(gpu: &Gpu, cfg: &Gpt2Config, b: usize, t: usize, attention: AttentionImpl) -> ActivationTensors {
        let mut a = Allocated::new(gpu, ActivationTensors::specs(cfg, b, t, attention.kind()));
        let acts = ActivationTensors {
            ids: a.one("ids"),
            targets: a.one("targets"),
            encoded: a.one("encoded"),
            ln1: a.layers("ln1"),
            ln1_mean: a.layers("ln1_mean"),
            ln1_rstd: a.layers("ln1_rstd"),
            qkv: a.layers("qkv"),
            atty: a.layers("atty"),
            att: a.layers("att"),
            attproj: a.layers("attproj"),
            residual2: a.layers("residual2"),
            ln2: a.layers("ln2"),
            ln2_mean: a.layers("ln2_mean"),
            ln2_rstd: a.layers("ln2_rstd"),
            fch: a.layers("fch"),
            fch_gelu: a.layers("fch_gelu"),
            fcproj: a.layers("fcproj"),
            residual3: a.layers("residual3"),
            lnf: a.one("lnf"),
            lnf_mean: a.one("lnf_mean"),
            lnf_rstd: a.one("lnf_rstd"),
            logits: a.one("logits"),
            losses: a.one("losses"),
            lse: a.one("lse"),
            loss: a.one("loss"),
            counted: a.one("counted"),
            attention,
        };
        a.done();
        acts
    }
}

/// A GPT-2 model on the GPU.
pub struct Gpt2 {
    pub config: Gpt2Config,
    pub kernels: Arc<Kernels>,
    pub params: ParameterTensors,
    /// The submit budget in milliseconds of the plans made for this model from now on (its
    /// forwards, trainer and decoder; those made already keep theirs).
    pub submit_budget_ms: f64,
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
        let params = ParameterTensors::from_ordered(config.n_layer, tensors);
        Ok(Gpt2 { config, kernels, params, submit_budget_ms: DEFAULT_BUDGET_MS })
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

    /// The attention problem of a (B, T) batch.
    pub fn attn_shape(&self, b: usize, t: usize) -> AttnShape {
        self.config.attn_shape(b, t)
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
        let attention = self.kernels.selection().attention(kind, self.attn_shape(b, t));
        cfg.check_activations(gpu, b, t, attention.kind())?;
        let acts = ActivationTensors::new(gpu, cfg, b, t, attention);
        let embed = self.record_embed(&acts, &acts.ids);
        let body = self.record_body(&acts, &MatmulWeights::f32(&self.params), None);
        let loss = self.record_loss(&acts, &acts.targets);
        let plan = Mutex::new(SubmitPlan::new(self.submit_budget_ms));
        Ok(Forward { b, t, acts, embed, body, loss, plan })
    }

    /// encoded (B,T,C) = wte[ids] + wpe.
    pub(crate) fn record_embed(&self, a: &ActivationTensors, ids: &Tensor) -> Program {
        let (k, p) = (&*self.kernels, &self.params);
        let mut prog = Program::default();
        k.encoder.forward(&mut prog, &a.encoded, ids, &p.wte, &p.wpe);
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
    /// matrix products read `w` (the model's weights, or f16 copies of them).
    pub(crate) fn record_body(
        &self,
        a: &ActivationTensors,
        w: &MatmulWeights,
        dropout: Option<DropoutRate>,
    ) -> Vec<Program> {
        let (k, p) = (&*self.kernels, &self.params);
        let mut pieces = Vec::with_capacity(self.config.n_layer + 1);
        let mut program = Program::default();
        k.dropout.at(&mut program, &a.encoded, dropout, Site::Embedding);
        for l in 0..self.config.n_layer {
            let (x, attn) = (BlockActs::layer(a, l), BlockAttn::Causal { imp: a.attention, saved: &a.att[l] });
            self.record_block(&mut program, Block { l, x, attn, w, dropout });
            pieces.push(std::mem::take(&mut program));
        }
        let prog = &mut program;
        let last = &a.residual3[self.config.n_layer - 1]; // n_layer >= 1 (Gpt2Config::validate)
        let (out, mean, rstd) = (&a.lnf, &a.lnf_mean, &a.lnf_rstd);
        k.layernorm.forward(prog, LayerNormFwd { out, mean, rstd, inp: last, weight: &p.ln_f_w, bias: &p.ln_f_b });
        // tied lm_head: logits (B,T,V) = lnf (B,T,C) · wteᵀ
        k.matmul.lm_head(prog, &a.logits, &a.lnf, &w.wte);
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
