//! Activations for one (B, T): what the forward writes and the backward reads, allocated from
//! one spec list.

use crate::gpu::{Gpu, Tensor};
use crate::kernels::{AttentionImpl, AttentionKind};

use super::lora::LoraActs;
use super::{Allocated, Gpt2Config, TensorSpec};

/// Activations for one (B, T), llm.c's `ActivationTensors`: what forward writes and backward
/// reads. Per-layer fields are indexed by layer.
pub struct ActivationTensors {
    pub ids: Tensor,            // (B, T) u32
    pub targets: Tensor,        // (B, T) u32
    pub encoded: Tensor,        // (B, T, C)
    pub ln1: Vec<Tensor>,       // (L) x (B, T, C)
    pub ln1_mean: Vec<Tensor>,  // (L) x (B, T)
    pub ln1_rstd: Vec<Tensor>,  // (L) x (B, T)
    pub qkv: Vec<Tensor>,       // (L) x (B, T, (NH + 2·KV)·hs)
    pub atty: Vec<Tensor>,      // (L) x (B, T, NH·hs)
    pub att: Vec<Tensor>,       // (L) x what attention keeps: softmax (B, NH, T, T) or lse (B, NH, T)
    pub attproj: Vec<Tensor>,   // (L) x (B, T, C)
    pub residual2: Vec<Tensor>, // (L) x (B, T, C)
    pub ln2: Vec<Tensor>,       // (L) x (B, T, C)
    pub ln2_mean: Vec<Tensor>,  // (L) x (B, T)
    pub ln2_rstd: Vec<Tensor>,  // (L) x (B, T)
    pub fch: Vec<Tensor>,       // (L) x (B, T, I), swiglu (B, T, 2I): gate | up
    pub fch_act: Vec<Tensor>,   // (L) x (B, T, I)
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
    /// With rope or qk-norm: what that pass reads and keeps (None for GPT-2).
    pub rope: Option<RopeActs>,
    /// With LoRA adapters: what their forward keeps (set by the plan, after the rest).
    pub lora: Option<LoraActs>,
}

/// The rope + qk-norm pass's tensors for one (B, T): qkv is written from `qkv_raw`.
pub struct RopeActs {
    pub t: usize,
    pub qkv_raw: Vec<Tensor>,  // (L) x (B, T, (NH + 2·KV)·hs): the product's, before the pass
    pub qk_rstd: Vec<Tensor>,  // (L) x (B, T, NH + KV): the qk-norm's row statistics
    pub pos: Tensor,           // (1) u32: the first token's position, 0
    pub table: Option<Tensor>, // (T, hs): cos | sin of every position (rope only)
}

impl ActivationTensors {
    /// Every activation's name and shape for (B, T) with attention of `kind`, in field order:
    /// what [`ActivationTensors`] allocates, what [`Gpt2Config::check_activations`] checks
    /// against the device's bindings and what [`crate::train::training_bytes`] sums.
    pub fn specs(cfg: &Gpt2Config, b: usize, t: usize, kind: AttentionKind) -> Vec<TensorSpec> {
        let (c, nh, v, l) = (cfg.n_embd, cfg.n_head, cfg.vocab_size, cfg.n_layer);
        let (qkv, q) = (cfg.attn_dims().qkv_width(), cfg.attn_dims().out_width());
        let saved = match kind {
            AttentionKind::Classic => "attention matrix (B,NH,T,T)",
            AttentionKind::Flash => "attention logsumexp (B,NH,T)",
        };
        let (ids, stats, act) = ("token ids (B,T)", "row statistics (B,T)", "activation (B,T,C)");
        let layer = |name, what, shape| TensorSpec::per_layer(l, name, what, shape);
        let mut specs = vec![
            TensorSpec::one("ids", ids, vec![b, t]),
            TensorSpec::one("targets", ids, vec![b, t]),
            TensorSpec::one("encoded", act, vec![b, t, c]),
            layer("ln1", act, vec![b, t, c]),
            layer("ln1_mean", stats, vec![b, t]),
            layer("ln1_rstd", stats, vec![b, t]),
            layer("qkv", "qkv (B,T,(NH+2KV)hs)", vec![b, t, qkv]),
            layer("atty", "attention output (B,T,NH·hs)", vec![b, t, q]),
            layer("att", saved, kind.saved_shape(b, nh, t)),
            layer("attproj", act, vec![b, t, c]),
            layer("residual2", act, vec![b, t, c]),
            layer("ln2", act, vec![b, t, c]),
            layer("ln2_mean", stats, vec![b, t]),
            layer("ln2_rstd", stats, vec![b, t]),
            layer("fch", "MLP product (B,T,I; swiglu 2I)", vec![b, t, cfg.mlp_width()]),
            layer("fch_act", "MLP activation (B,T,I)", vec![b, t, cfg.intermediate_size()]),
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
        ];
        if cfg.rope_dims(t).is_some() {
            specs.extend([
                layer("qkv_raw", "qkv before rope (B,T,(NH+2KV)hs)", vec![b, t, qkv]),
                layer("qk_rstd", "q and k heads' row statistics (B,T,NH+KV)", vec![b, t, nh + cfg.n_kv_head()]),
                TensorSpec::one("rope_pos", "first position (1)", vec![1]),
            ]);
        }
        if cfg.rope_table(0).is_some() {
            specs.push(TensorSpec::one("rope_table", "rotary cos|sin table (T,hs)", vec![t, cfg.head_dim()]));
        }
        specs
    }

    pub(super) fn new(gpu: &Gpu, cfg: &Gpt2Config, b: usize, t: usize, attention: AttentionImpl) -> ActivationTensors {
        let mut a = Allocated::new(gpu, ActivationTensors::specs(cfg, b, t, attention.kind()));
        let mut acts = ActivationTensors {
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
            fch_act: a.layers("fch_act"),
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
            rope: None,
            lora: None,
        };
        let qkv_raw = a.layers_if(cfg.rope_dims(t).is_some(), "qkv_raw");
        if let Some(qkv_raw) = qkv_raw {
            let (qk_rstd, pos) = (a.layers("qk_rstd"), a.one("rope_pos"));
            let table = cfg.rope_table(t).map(|values| {
                let table = a.one("rope_table");
                gpu.write(&table, &values);
                table
            });
            acts.rope = Some(RopeActs { t, qkv_raw, qk_rstd, pos, table });
        }
        a.done();
        acts
    }
}
