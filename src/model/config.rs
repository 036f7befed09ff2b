//! The shape of a model: `Gpt2Config`, the named size presets, and the checks that a config is
//! usable and fits a device before anything is allocated.

use serde::{Deserialize, Serialize};

use crate::gpu::Gpu;
use crate::kernels::{rope_table, AttentionKind, AttnDims, AttnShape, RopeDims, Selection};
use crate::tune::RunShape;
use crate::{Error, Result};

use super::{shape_bytes, ActivationTensors, Arch, Positions};

/// The most parameters a model may have: their f32 bytes fit one allocation (isize::MAX bytes)
/// on this target, so element counts multiplied out in usize never wrap: 2^29 parameters on
/// wasm32 (the page), 2^61 on 64-bit targets.
pub const MAX_PARAMS: u64 = isize::MAX as u64 / 4;

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
        self.arch.validate(self)?;
        self.check_size(MAX_PARAMS)
    }

    /// Checks that the per-token widths and the parameter count of a config whose fields are
    /// each within bounds stay within bounds too, multiplied in u64: a hostile config (10^6
    /// layers of n_embd 16384) is refused by name instead of wrapping in usize (32 bits on
    /// wasm32). After it, every width fits 2^26 and every tensor's element count, and so
    /// [`Gpt2Config::num_params`], fits `max_params` (usize on every target).
    fn check_size(&self, max_params: u64) -> Result<()> {
        let (nh, kv, hs) = (self.n_head as u64, self.n_kv_head() as u64, self.head_dim() as u64);
        let widths = [
            ("the attention's width (n_head + 2 x n_kv_head) x head_dim", (nh + 2 * kv).saturating_mul(hs)),
            ("the attention's output width n_head x head_dim", nh.saturating_mul(hs)),
            ("the MLP's width", self.mlp_width() as u64),
        ];
        for (name, v) in widths {
            if v > 1 << 26 {
                return Err(Error::Format(format!("config: {name} = {v} is implausibly large")));
            }
        }
        // the blocks are alike: count the tensors outside them and one block's, not n_layer's
        let count = |n_layer| {
            let specs = Gpt2Config { n_layer, ..*self }.param_specs();
            specs.iter().map(|(_, shape)| shape_bytes(shape) / 4).fold(0, u64::saturating_add)
        };
        let (outside, block) = (count(0), count(1) - count(0));
        let params = block.saturating_mul(self.n_layer as u64).saturating_add(outside);
        if params > max_params {
            return Err(Error::Format(format!(
                "config: {params} parameters is too large a model for this build (at most {max_params}: their f32 \
                 weights must fit its memory); lower n_layer, n_embd or vocab_size"
            )));
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// wasm32's bound (isize::MAX bytes there, so 2^29 parameters), checked natively: the same
    /// u64 arithmetic runs on both targets and only the bound differs.
    const WASM32_MAX_PARAMS: u64 = i32::MAX as u64 / 4;

    /// Sizes whose products pass u32 and u64 are refused by name, on 64 and 32 bits, and GPT-2
    /// 124M (and a model just past wasm32's bound, natively) passes.
    #[test]
    fn hostile_sizes_are_refused_not_wrapped() {
        let gpt2 = Gpt2Config::preset("gpt2").unwrap();
        gpt2.validate().unwrap();
        gpt2.check_size(WASM32_MAX_PARAMS).unwrap();
        let refused = |cfg: Gpt2Config, max: u64, want: &str| {
            let e = cfg.validate().and_then(|_| cfg.check_size(max)).unwrap_err().to_string();
            println!("{e}");
            assert!(e.contains(want), "{e}");
        };
        let at = |n_layer, n_embd, vocab_size| Gpt2Config { n_layer, n_embd, vocab_size, n_head: 16, ..gpt2 };
        // 16384 x 10^6 = 1.6e10 in wte alone: past u32, refused on wasm32, fine natively
        let wide = at(12, 16384, 1_000_000);
        refused(wide, WASM32_MAX_PARAMS, "too large a model");
        wide.validate().unwrap();
        // 2^24 layers of n_embd 2^24 (a vocabulary of 2^23, within the kernels' bound): about 2^76
        // parameters, past u64 in bytes; the count saturates and is refused on both targets
        let huge = at(1 << 24, 1 << 24, 1 << 23);
        refused(huge, MAX_PARAMS, "too large a model");
        refused(huge, WASM32_MAX_PARAMS, "too large a model");
        // a head_dim of 2^16 over 2^24 heads: widths past 2^26
        let heads = Gpt2Config { n_head: 1 << 24, arch: Arch { head_dim: Some(1 << 16), ..gpt2.arch }, ..gpt2 };
        refused(heads, MAX_PARAMS, "the attention's width");
        refused(Gpt2Config { n_layer: (1 << 24) + 1, ..gpt2 }, MAX_PARAMS, "n_layer = 16777217 is implausibly large");
    }
}
