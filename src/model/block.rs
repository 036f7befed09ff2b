//! One transformer block, recorded: the only place the block is spelled out (the loop body of
//! llm.c's `gpt2_forward`, nanoGPT's `x = x + attn(ln_1(x)); x = x + mlp(ln_2(x))`). The forward
//! (model.rs) records it over a batch with causal attention that keeps what the backward needs;
//! the KV-cache decoder (generate.rs) over its new tokens with attention over the cache.

use crate::gpu::Tensor;
use crate::kernels::dropout::DropoutRate;
use crate::kernels::{AttentionImpl, AttnFwd, DecodeAttn, DecodeDims, LayerNormFwd, Program, RopeFwd, Site};
use crate::weights16::MatmulWeights;

use super::lora::{Linear, LoraBlock};
use super::{layer, ActivationTensors, Gpt2};

/// The tensors one block reads and writes, each (B,T,·) (the decoder's (T,·)); the decoder
/// reuses its scratch across layers, so several may be one tensor.
#[derive(Clone, Copy)]
pub(crate) struct BlockActs<'a> {
    /// The residual stream in (B,T,C).
    pub inp: &'a Tensor,
    pub ln1: &'a Tensor,      // (B,T,C)
    pub ln1_mean: &'a Tensor, // (B,T)
    pub ln1_rstd: &'a Tensor, // (B,T)
    pub qkv: &'a Tensor,      // (B,T,(NH+2KV)hs)
    pub atty: &'a Tensor,     // (B,T,NH·hs)
    pub attproj: &'a Tensor,  // (B,T,C)
    /// The residual stream after attention (B,T,C).
    pub residual2: &'a Tensor,
    pub ln2: &'a Tensor,      // (B,T,C)
    pub ln2_mean: &'a Tensor, // (B,T)
    pub ln2_rstd: &'a Tensor, // (B,T)
    pub fch: &'a Tensor,      // (B,T,I), swiglu (B,T,2I): gate | up
    pub fch_act: &'a Tensor,  // (B,T,I)
    pub fcproj: &'a Tensor,   // (B,T,C)
    /// The residual stream out (B,T,C).
    pub out: &'a Tensor,
    /// With rope or qk-norm: the product writes qkv_raw, and the pass qkv from it.
    pub rope: Option<BlockRope<'a>>,
}

/// The rope + qk-norm pass of one block: sequences of `t` tokens from position pos[0].
#[derive(Clone, Copy)]
pub(crate) struct BlockRope<'a> {
    pub t: usize,
    pub qkv_raw: &'a Tensor, // (B,T,(NH+2KV)hs)
    pub rstd: &'a Tensor,    // (B,T,NH+KV)
    pub table: Option<&'a Tensor>,
    pub pos: &'a Tensor,
}

impl<'a> BlockActs<'a> {
    /// Layer `l`'s activations of the forward.
    pub(crate) fn layer(a: &'a ActivationTensors, l: usize) -> BlockActs<'a> {
        BlockActs {
            inp: if l == 0 { &a.encoded } else { &a.residual3[l - 1] },
            ln1: &a.ln1[l],
            ln1_mean: &a.ln1_mean[l],
            ln1_rstd: &a.ln1_rstd[l],
            qkv: &a.qkv[l],
            atty: &a.atty[l],
            attproj: &a.attproj[l],
            residual2: &a.residual2[l],
            ln2: &a.ln2[l],
            ln2_mean: &a.ln2_mean[l],
            ln2_rstd: &a.ln2_rstd[l],
            fch: &a.fch[l],
            fch_act: &a.fch_act[l],
            fcproj: &a.fcproj[l],
            out: &a.residual3[l],
            rope: a.rope.as_ref().map(|r| BlockRope {
                t: r.t,
                qkv_raw: &r.qkv_raw[l],
                rstd: &r.qk_rstd[l],
                table: r.table.as_ref(),
                pos: &r.pos,
            }),
        }
    }
}

/// How a block's attention reads its keys and values: atty from qkv.
pub(crate) enum BlockAttn<'a> {
    /// The forward's: causal attention over the batch's own tokens by `imp`, keeping `saved`
    /// (the softmax or the logsumexp) for the backward.
    Causal { imp: AttentionImpl, saved: &'a Tensor },
    /// The decoder's: the new tokens' keys and values go into the layer's caches (S,kv·hs) at rows
    /// pos.., and the new queries attend over the cache; `scores` (T,NH,S) is scratch.
    Cached { dims: DecodeDims, scores: &'a Tensor, k_cache: &'a Tensor, v_cache: &'a Tensor, pos: &'a Tensor },
}

/// One block to record: layer `l` of the model's parameters, the products reading `w`.
pub(crate) struct Block<'a> {
    pub l: usize,
    pub x: BlockActs<'a>,
    pub attn: BlockAttn<'a>,
    /// The model's weights, or f16 copies of them.
    pub w: &'a MatmulWeights,
    /// Inverted dropout on both residual branches and the attention probabilities (training).
    pub dropout: Option<DropoutRate<'a>>,
    /// LoRA's adapters of this block, where the model has them (the forward's).
    pub lora: Option<LoraBlock<'a>>,
}

impl Gpt2 {
    /// Records transformer block `b.l`: residual stream `x.inp` to `x.out`.
    pub(crate) fn record_block(&self, prog: &mut Program, b: Block) {
        let (k, p, dims) = (&*self.kernels, &self.params, self.config.attn_dims());
        let (kind, eps) = self.config.norm();
        let Block { l, x, attn, w, dropout, lora } = b;
        let lora = lora.as_ref();
        // x = x + attn(ln_1(x))
        let (out, mean, rstd, weight, bias) = (x.ln1, x.ln1_mean, x.ln1_rstd, &p.ln_1_w[l], layer(&p.ln_1_b, l));
        k.layernorm.forward(prog, LayerNormFwd { out, mean, rstd, inp: x.inp, weight, bias, kind, eps });
        // with rope or qk-norm: qkv = rope(qk_norm(qkv_raw)) (B,T,(NH+2KV)hs)
        let qkv = x.rope.map_or(x.qkv, |r| r.qkv_raw);
        k.matmul.forward(prog, qkv, x.ln1, &w.c_attn_w[l], layer(&p.c_attn_b, l));
        LoraBlock::forward(lora, k, prog, Linear::CAttn, x.ln1, qkv);
        if let Some(r) = x.rope {
            let d = self.config.rope_dims(r.t).expect("rope activations only where the model rotates");
            let (qkv, rstd, qkv_raw, table, pos) = (x.qkv, r.rstd, r.qkv_raw, r.table, r.pos);
            k.rope.forward(prog, d, RopeFwd { qkv, rstd, qkv_raw, norm: p.qk_norm(l), table, pos });
        }
        match attn {
            BlockAttn::Causal { imp, saved } => {
                let attn_drop = dropout.map(|d| (d.p, d.seed, Site::AttnProbs(l).id(d.n_layer)));
                k.attention.forward(prog, imp, AttnFwd { out: x.atty, saved, qkv: x.qkv }, dims, attn_drop);
            }
            BlockAttn::Cached { dims, scores, k_cache, v_cache, pos } => {
                let cached = DecodeAttn { out: x.atty, scores, qkv: x.qkv, k_cache, v_cache, pos };
                k.decode.attention(prog, dims, cached);
            }
        }
        k.matmul.forward(prog, x.attproj, x.atty, &w.c_proj_w[l], layer(&p.c_proj_b, l));
        LoraBlock::forward(lora, k, prog, Linear::AttnProj, x.atty, x.attproj);
        k.dropout.at(prog, x.attproj, dropout, Site::AttnResidual(l));
        k.residual.forward(prog, x.residual2, x.inp, x.attproj);
        // x = x + mlp(ln_2(x))
        let (out, mean, rstd, weight, bias) = (x.ln2, x.ln2_mean, x.ln2_rstd, &p.ln_2_w[l], layer(&p.ln_2_b, l));
        k.layernorm.forward(prog, LayerNormFwd { out, mean, rstd, inp: x.residual2, weight, bias, kind, eps });
        // fch = ln2 · c_fc (B,T,I), for swiglu gate | up in one product (B,T,2I); fch_act (B,T,I)
        k.matmul.forward(prog, x.fch, x.ln2, &w.c_fc_w[l], layer(&p.c_fc_b, l));
        LoraBlock::forward(lora, k, prog, Linear::CFc, x.ln2, x.fch);
        k.activation(self.config.act()).forward(prog, x.fch_act, x.fch);
        k.matmul.forward(prog, x.fcproj, x.fch_act, &w.mlp_proj_w[l], layer(&p.mlp_proj_b, l));
        LoraBlock::forward(lora, k, prog, Linear::MlpProj, x.fch_act, x.fcproj);
        k.dropout.at(prog, x.fcproj, dropout, Site::MlpResidual(l));
        k.residual.forward(prog, x.out, x.residual2, x.fcproj);
    }
}
