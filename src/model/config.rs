//! The shape of a model: `Gpt2Config`, the named size presets, and the checks that a config is
//! usable and fits a device before anything is allocated.

use serde::{Deserialize, Serialize};

use crate::gpu::Gpu;
use crate::kernels::{rope_table, AttentionKind, AttnDims, AttnShape, RopeDims, Selection};
use crate::tune::RunShape;
use crate::{Error, Result};

use super::{ActivationTensors, Arch, Positions};

/// The shape of a model and its architecture switches ([`Arch`]; GPT-2's unless set).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Gpt2Config {
    pub n_layer: usize,
    pub n_head: usize,
    pub n_embd: usize,
    pub block_size: usize,
    pub vocab_size: usize,
    /// The architecture switches (GPT-2's by default), under their own keys.
    #[serde(flatten)]
    pub arch: Arch,
}

/// Named configs: `gpt2` (124M), `shakespeare-char` (nanoGPT's) and `baby` (nanoGPT's CPU run).
pub const PRESETS: &[(&str, Gpt2Config)] = &[
    (
        "gpt2",
        Gpt2Config { n_layer: 12, n_head: 12, n_embd: 768, block_size: 1024, vocab_size: 50257, arch: Arch::GPT2 },
    ),
    (
        "shakespeare-char",
        Gpt2Config { n_layer: 6, n_head: 6, n_embd: 384, block_size: 256, vocab_size: 65, arch: Arch::GPT2 },
    ),
    ("baby", Gpt2Config { n_layer: 4, n_head: 4, n_embd: 128, block_size: 64, vocab_size: 65, arch: Arch::GPT2 }),
    // the page's default: trains at a useful pace even on a software WebGPU adapter
    ("tiny", Gpt2Config { n_layer: 2, n_head: 2, n_embd: 64, block_size: 32, vocab_size: 65, arch: Arch::GPT2 }),
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
        if self.vocab_size > crate::kernels::MAX_WIDE_VOCAB {
            return Err(Error::Format(format!(
                "config: vocab_size = {} is past the {} classes the cross-entropy and lens kernels take",
                self.vocab_size,
                crate::kernels::MAX_WIDE_VOCAB
            )));
        }
        if self.arch.head_dim.is_none() && !self.n_embd.is_multiple_of(self.n_head) {
            return Err(Error::Format(format!(
                "config: n_embd ({}) must be a multiple of n_head ({})",
                self.n_embd, self.n_head
            )));
        }
        if self.arch.head_dim.is_none() && !(self.n_embd / self.n_head).is_multiple_of(4) {
            return Err(Error::Format(format!(
                "config: the head size n_embd / n_head = {} must be a multiple of 4 (the attention kernels read vec4s)",
                self.n_embd / self.n_head
            )));
        }
        self.arch.validate(self)
    }

    /// Checks that every parameter fits `gpu` before anything is allocated: wte in one buffer
    /// (it is bound in row chunks where it exceeds one binding, Gpu::row_chunks), every other
    /// tensor in one storage binding.
    pub fn check_params(&self, gpu: &Gpu) -> Result<()> {
        for (name, shape) in self.param_specs() {
            let bytes = 4 * shape.iter().product::<usize>() as u64;
            if name == "wte.weight" || name == super::LM_HEAD {
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

    /// The attention's heads: n_head query heads over n_kv_head key and value heads, of head_dim.
    pub fn attn_dims(&self) -> AttnDims {
        AttnDims { nh: self.n_head, kv: self.n_kv_head(), hs: self.head_dim() }
    }

    /// The rope + qk-norm pass of sequences of `t` tokens, where the model rotates or normalizes
    /// q and k (None: the product's qkv goes to the attention as it is, as GPT-2's).
    pub fn rope_dims(&self, t: usize) -> Option<RopeDims> {
        let a = self.attn_dims();
        let on = self.arch.positions == Positions::Rope || self.arch.qk_norm;
        on.then_some(RopeDims { nh: a.nh, kv: a.kv, hd: a.hs, t, eps: self.arch.norm_eps })
    }

    /// The rotary cos/sin table of positions 0..`positions` (None without rope).
    pub fn rope_table(&self, positions: usize) -> Option<Vec<f32>> {
        let on = self.arch.positions == Positions::Rope;
        on.then(|| rope_table(self.arch.rope_theta, self.head_dim(), positions))
    }

    /// The attention problem of a (B, T) batch.
    pub fn attn_shape(&self, b: usize, t: usize) -> AttnShape {
        AttnShape::new(b, t, self.attn_dims())
    }

    /// The attention numerics a new training run at (B, T) gets from `selection`.
    pub fn attention_kind(&self, selection: &Selection, b: usize, t: usize) -> AttentionKind {
        selection.attention(None, self.attn_shape(b, t)).kind()
    }

    /// The sizes the tuner chooses a training run's kernels by.
    pub fn run_shape(&self, b: usize, t: usize) -> RunShape {
        let mlp = (self.mlp_width(), self.intermediate_size());
        RunShape { n_embd: self.n_embd, attn: self.attn_dims(), vocab: self.vocab_size, b, t, mlp }
    }
}
