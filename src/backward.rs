//! GPT-2's backward pass: llm.c's `gpt2_backward`, the forward's kernel list reversed. Gradients
//! of activations live in [`GradActs`]; parameter gradients accumulate into a
//! [`ParameterTensors`] of the parameters' shapes.

use crate::gpu::{Gpu, Tensor};
use crate::kernels::dropout::DropoutRate;
use crate::kernels::{
    AttentionKind, AttnBwd, CrossEntropyBwd, EncoderBuckets, LayerNormBwd, LinearBwd, LmHeadBwd, NormKind, Program,
    RopeBwd, Site,
};
use crate::model::lora::{Grads, Linear, LoraBlock};
use crate::model::{layer, ActivationTensors, Allocated, Gpt2, Gpt2Config, LoraTensors, ParameterTensors, TensorSpec};
use crate::weights16::MatmulWeights;

/// Gradients of the activations for one (B, T); every one is zeroed before each backward.
pub struct GradActs {
    pub dlogits: Tensor,         // (B, T, V)
    pub dlnf: Tensor,            // (B, T, C)
    pub dencoded: Tensor,        // (B, T, C)
    pub dresidual3: Vec<Tensor>, // (L) x (B, T, C)
    pub dresidual2: Vec<Tensor>, // (L) x (B, T, C)
    pub dfcproj: Vec<Tensor>,    // (L) x (B, T, C)
    pub dfch_act: Vec<Tensor>,   // (L) x (B, T, I)
    pub dfch: Vec<Tensor>,       // (L) x (B, T, I), swiglu (B, T, 2I): dgate | dup
    pub dln2: Vec<Tensor>,       // (L) x (B, T, C)
    pub dattproj: Vec<Tensor>,   // (L) x (B, T, C)
    pub datty: Vec<Tensor>,      // (L) x (B, T, NH·hs)
    pub dqkv: Vec<Tensor>,       // (L) x (B, T, (NH + 2·KV)·hs)
    pub dln1: Vec<Tensor>,       // (L) x (B, T, C)
    pub dpreatt: Tensor, // attention's scratch, shared by the layers: (B, NH, T, T) score gradients (classic) or (B, NH, T) dout·out (flash)
    /// With rope or qk-norm: the gradient of the product's qkv, before that pass.
    pub dqkv_raw: Option<Vec<Tensor>>, // (L) x (B, T, (NH + 2·KV)·hs)
}

impl GradActs {
    /// Every gradient's name and shape for (B, T) with attention of `kind`, in field order:
    /// what [`GradActs::new`] allocates and [`crate::train::training_bytes`] sums.
    pub fn specs(cfg: &Gpt2Config, b: usize, t: usize, kind: AttentionKind) -> Vec<TensorSpec> {
        let (c, nh, v, l) = (cfg.n_embd, cfg.n_head, cfg.vocab_size, cfg.n_layer);
        let (qkv, q) = (cfg.attn_dims().qkv_width(), cfg.attn_dims().out_width());
        let act = "activation gradient (B,T,C)";
        let (i, fc) = (cfg.intermediate_size(), cfg.mlp_width());
        let layer = |name, what, shape| TensorSpec::per_layer(l, name, what, shape);
        let mut specs = vec![
            TensorSpec::one("dlogits", "logits gradient (B,T,V)", vec![b, t, v]),
            TensorSpec::one("dlnf", act, vec![b, t, c]),
            TensorSpec::one("dencoded", act, vec![b, t, c]),
            layer("dresidual3", act, vec![b, t, c]),
            layer("dresidual2", act, vec![b, t, c]),
            layer("dfcproj", act, vec![b, t, c]),
            layer("dfch_act", "MLP activation gradient (B,T,I)", vec![b, t, i]),
            layer("dfch", "MLP product gradient (B,T,I; swiglu 2I)", vec![b, t, fc]),
            layer("dln2", act, vec![b, t, c]),
            layer("dattproj", act, vec![b, t, c]),
            layer("datty", "attention output gradient (B,T,NH·hs)", vec![b, t, q]),
            layer("dqkv", "qkv gradient (B,T,(NH+2KV)hs)", vec![b, t, qkv]),
            layer("dln1", act, vec![b, t, c]),
            TensorSpec::one("dpreatt", "attention scratch", kind.saved_shape(b, nh, t)),
        ];
        if cfg.rope_dims(t).is_some() {
            specs.push(layer("dqkv_raw", "qkv gradient before rope (B,T,(NH+2KV)hs)", vec![b, t, qkv]));
        }
        specs
    }

    pub fn new(gpu: &Gpu, cfg: &Gpt2Config, b: usize, t: usize, attention: AttentionKind) -> GradActs {
        let mut a = Allocated::new(gpu, GradActs::specs(cfg, b, t, attention));
        let grads = GradActs {
            dlogits: a.one("dlogits"),
            dlnf: a.one("dlnf"),
            dencoded: a.one("dencoded"),
            dresidual3: a.layers("dresidual3"),
            dresidual2: a.layers("dresidual2"),
            dfcproj: a.layers("dfcproj"),
            dfch_act: a.layers("dfch_act"),
            dfch: a.layers("dfch"),
            dln2: a.layers("dln2"),
            dattproj: a.layers("dattproj"),
            datty: a.layers("datty"),
            dqkv: a.layers("dqkv"),
            dln1: a.layers("dln1"),
            dpreatt: a.one("dpreatt"),
            dqkv_raw: a.layers_if(cfg.rope_dims(t).is_some(), "dqkv_raw"),
        };
        a.done();
        grads
    }

    /// Every tensor, for zeroing.
    pub fn all(&self) -> Vec<&Tensor> {
        let mut v = vec![&self.dlogits, &self.dlnf, &self.dencoded, &self.dpreatt];
        for group in [
            &self.dresidual3,
            &self.dresidual2,
            &self.dfcproj,
            &self.dfch_act,
            &self.dfch,
            &self.dln2,
            &self.dattproj,
            &self.datty,
            &self.dqkv,
            &self.dln1,
        ] {
            v.extend(group.iter());
        }
        v.extend(self.dqkv_raw.iter().flatten());
        v
    }
}

/// What the backward of every block reads and writes: the forward's activations, their
/// gradients, the parameter gradients (None where the base is frozen: a LoRA run), the adapters'
/// gradients (a LoRA run's), the weights the dinp products read and the forward's dropout.
#[derive(Clone, Copy)]
struct BlockBackward<'a> {
    a: &'a ActivationTensors,
    d: &'a GradActs,
    dp: Option<&'a ParameterTensors>,
    dl: Option<&'a LoraTensors>,
    w: &'a MatmulWeights,
    dropout: Option<DropoutRate<'a>>,
    lora_dropout: Option<DropoutRate<'a>>,
}

/// A weight's gradient and its bias's, where the weight trains.
type Dw<'a> = Option<(&'a Tensor, Option<&'a Tensor>)>;

impl Gpt2 {
    /// dlogits (B,T,V) = (softmax(logits) − onehot(targets))·dloss: the loss's backward; times
    /// the loss scale in `scaler` where given (dynamic loss scaling, src/train.rs).
    pub(crate) fn record_loss_backward(
        &self,
        a: &ActivationTensors,
        d: &GradActs,
        targets: &Tensor,
        dloss: f32,
        scaler: Option<&Tensor>,
    ) -> Program {
        let k = &*self.kernels;
        let mut prog = Program::default();
        let (logits, lse, counted) = (&a.logits, &a.lse, &a.counted);
        let softcap = self.config.arch.logit_softcap;
        let t = CrossEntropyBwd { dlogits: &d.dlogits, logits, lse, targets, counted, scale: scaler, softcap };
        k.crossentropy.backward(&mut prog, t, dloss);
        prog
    }

    /// From dlogits back to dencoded, accumulating parameter gradients into `dp` (all but the
    /// embeddings' share from the encoder, see [`Gpt2::record_embed_backward`]; in a LoRA run
    /// only the adapters' gradients, the base's products giving only their inputs' gradients).
    /// `dropout` must be what the forward used ([`Gpt2::record_body`]): the same masks are
    /// applied to the gradients. One program for the head (lm_head and ln_f), then one per
    /// block from the last (the first block's with the embedding's dropout): the cut points of
    /// split submits. The products of dinp = dout · weightᵀ read `w` (the forward's weights, or
    /// f16 copies of them); the weight gradients' products read only f32 activations.
    /// `lora_dropout` must be the forward's too.
    pub(crate) fn record_backward(
        &self,
        a: &ActivationTensors,
        d: &GradActs,
        dp: &Grads,
        w: &MatmulWeights,
        (dropout, lora_dropout): (Option<DropoutRate>, Option<DropoutRate>),
    ) -> Vec<Program> {
        let bw = BlockBackward { a, d, dp: dp.full(), dl: dp.lora(), w, dropout, lora_dropout };
        let nl = self.config.n_layer;
        let mut pieces = Vec::with_capacity(nl + 1);
        let mut program = Program::default();
        self.record_head_backward(&mut program, &bw);
        for l in (0..nl).rev() {
            pieces.push(std::mem::take(&mut program));
            self.record_block_backward(&mut program, &bw, l);
        }
        self.kernels.dropout.at(&mut program, &d.dencoded, dropout, Site::Embedding);
        pieces.push(program);
        pieces
    }

    /// The head's backward: the tied lm_head, then ln_f into the last block's dresidual3.
    fn record_head_backward(&self, prog: &mut Program, bw: &BlockBackward) {
        let (k, p, nl) = (&*self.kernels, &self.params, self.config.n_layer);
        let BlockBackward { a, d, dp, w, .. } = *bw;
        // lm_head: logits = lnf · headᵀ, so dlnf += dlogits · head and dhead += dlogitsᵀ · lnf
        // (head: wte where tied, so dwte gets the head's gradient too)
        let wte16 = Some(&w.head).filter(|t| t.half);
        let (dx, dlogits, x, wte) = (&d.dlnf, &d.dlogits, &a.lnf, p.head());
        match dp {
            Some(dp) => k.matmul.lm_head_backward(prog, LmHeadBwd { dx, dwte: dp.head(), dlogits, x, wte, wte16 }),
            None => k.matmul.lm_head_backward_dx(prog, dx, dlogits, wte, wte16),
        }
        let (last, dlast, kind) = (&a.residual3[nl - 1], &d.dresidual3[nl - 1], self.config.norm().0);
        let dw = dp.map(|g| (&g.ln_f_w, g.ln_f_b.as_ref()));
        self.norm_backward(prog, kind, dw, [dlast, &d.dlnf, last, &p.ln_f_w, &a.lnf_mean, &a.lnf_rstd]);
    }

    /// A Conv1D's backward, `io` = [dinp, dout, inp, weight]: its weight's and bias's gradients
    /// into `dw` where it trains, else only dinp's product.
    fn linear_backward(&self, prog: &mut Program, dw: Dw, io: [&Tensor; 4]) {
        let [dinp, dout, inp, weight] = io;
        match dw {
            Some((dweight, dbias)) => {
                self.kernels.matmul.backward(prog, LinearBwd { dinp, dweight, dbias, dout, inp, weight })
            }
            None => self.kernels.matmul.backward_dinp(prog, dinp, dout, weight),
        }
    }

    /// A norm's backward, `io` = [dinp, dout, inp, weight, mean, rstd]: its gains' (and biases')
    /// gradients into `dw` where they train, else only dinp.
    fn norm_backward(&self, prog: &mut Program, kind: NormKind, dw: Dw, io: [&Tensor; 6]) {
        let [dinp, dout, inp, weight, mean, rstd] = io;
        match dw {
            Some((dweight, dbias)) => self
                .kernels
                .layernorm
                .backward(prog, LayerNormBwd { dinp, dweight, dbias, dout, inp, weight, mean, rstd, kind }),
            None => self.kernels.layernorm.backward_dinp(prog, kind, io),
        }
    }

    /// Block `l`'s backward: the forward's block ([`Gpt2::record_block`]) reversed, from
    /// dresidual3 to the gradient of its residual stream in. LoRA's adapters (where the model
    /// has them) add their gradients beside each product's.
    fn record_block_backward(&self, prog: &mut Program, bw: &BlockBackward, l: usize) {
        let (k, p, dims, kind) = (&*self.kernels, &self.params, self.config.attn_dims(), self.config.norm().0);
        let BlockBackward { a, d, dp, dl, w, dropout, lora_dropout } = *bw;
        let lora = self.lora_block(a, l, dl, lora_dropout);
        let lora = lora.as_ref();
        let residual = if l == 0 { &a.encoded } else { &a.residual3[l - 1] };
        let dresidual = if l == 0 { &d.dencoded } else { &d.dresidual3[l - 1] };
        // residual3 = residual2 + fcproj
        k.residual.backward(prog, &d.dresidual2[l], &d.dfcproj[l], &d.dresidual3[l]);
        k.dropout.at(prog, &d.dfcproj[l], dropout, Site::MlpResidual(l));
        let (dinp, dout, inp) = (&d.dfch_act[l], &d.dfcproj[l], &a.fch_act[l]);
        let dw = dp.map(|g| (&g.mlp_proj_w[l], layer(&g.mlp_proj_b, l)));
        self.linear_backward(prog, dw, [dinp, dout, inp, &w.mlp_proj_w[l]]);
        LoraBlock::backward(lora, k, prog, Linear::MlpProj, [dinp, dout, inp]);
        k.activation(self.config.act()).backward(prog, &d.dfch[l], &a.fch[l], &d.dfch_act[l]);
        let (dinp, dout, inp) = (&d.dln2[l], &d.dfch[l], &a.ln2[l]);
        let dw = dp.map(|g| (&g.c_fc_w[l], layer(&g.c_fc_b, l)));
        self.linear_backward(prog, dw, [dinp, dout, inp, &w.c_fc_w[l]]);
        LoraBlock::backward(lora, k, prog, Linear::CFc, [dinp, dout, inp]);
        let dw = dp.map(|g| (&g.ln_2_w[l], layer(&g.ln_2_b, l)));
        let io = [&d.dresidual2[l], &d.dln2[l], &a.residual2[l], &p.ln_2_w[l], &a.ln2_mean[l], &a.ln2_rstd[l]];
        self.norm_backward(prog, kind, dw, io);
        // residual2 = residual + attproj
        k.residual.backward(prog, dresidual, &d.dattproj[l], &d.dresidual2[l]);
        k.dropout.at(prog, &d.dattproj[l], dropout, Site::AttnResidual(l));
        let (dinp, dout, inp) = (&d.datty[l], &d.dattproj[l], &a.atty[l]);
        let dw = dp.map(|g| (&g.c_proj_w[l], layer(&g.c_proj_b, l)));
        self.linear_backward(prog, dw, [dinp, dout, inp, &w.c_proj_w[l]]);
        LoraBlock::backward(lora, k, prog, Linear::AttnProj, [dinp, dout, inp]);
        let attn_drop = dropout.map(|r| (r.p, r.seed, Site::AttnProbs(l).id(r.n_layer)));
        let (dqkv, scratch, dout, qkv, out, saved) =
            (&d.dqkv[l], &d.dpreatt, &d.datty[l], &a.qkv[l], &a.atty[l], &a.att[l]);
        k.attention.backward(prog, a.attention, AttnBwd { dqkv, scratch, dout, qkv, out, saved }, dims, attn_drop);
        let dout = self.record_rope_backward(prog, bw, l).unwrap_or(&d.dqkv[l]);
        let (dinp, inp) = (&d.dln1[l], &a.ln1[l]);
        let dw = dp.map(|g| (&g.c_attn_w[l], layer(&g.c_attn_b, l)));
        self.linear_backward(prog, dw, [dinp, dout, inp, &w.c_attn_w[l]]);
        LoraBlock::backward(lora, k, prog, Linear::CAttn, [dinp, dout, inp]);
        let dw = dp.map(|g| (&g.ln_1_w[l], layer(&g.ln_1_b, l)));
        let io = [dresidual, &d.dln1[l], residual, &p.ln_1_w[l], &a.ln1_mean[l], &a.ln1_rstd[l]];
        self.norm_backward(prog, kind, dw, io);
    }

    /// With rope or qk-norm, block `l`'s pass backward: dqkv_raw from dqkv, the gradient the
    /// qkv product's backward then reads (None without the pass).
    fn record_rope_backward<'a>(&self, prog: &mut Program, bw: &BlockBackward<'a>, l: usize) -> Option<&'a Tensor> {
        let (a, d) = (bw.a, bw.d);
        let (r, draw) = (a.rope.as_ref()?, d.dqkv_raw.as_ref()?);
        let dims = self.config.rope_dims(r.t).expect("rope activations only where the model rotates");
        let (dqkv_raw, dqkv, qkv_raw, rstd) = (&draw[l], &d.dqkv[l], &r.qkv_raw[l], &r.qk_rstd[l]);
        let (table, pos) = (r.table.as_ref(), &r.pos);
        let (dnorm, norm) = (bw.dp.and_then(|g| g.qk_norm(l)), self.params.qk_norm(l));
        let bwd = RopeBwd { dqkv_raw, dnorm, dqkv, qkv_raw, rstd, norm, table, pos };
        self.kernels.rope.backward(prog, dims, bwd);
        Some(dqkv_raw)
    }

    /// dwte and dwpe from dencoded, deterministic through the batch's token buckets.
    pub(crate) fn record_embed_backward(
        &self,
        d: &GradActs,
        dp: &ParameterTensors,
        buckets: &EncoderBuckets,
    ) -> Program {
        let k = &*self.kernels;
        let mut prog = Program::default();
        k.encoder.backward(&mut prog, &dp.wte, dp.wpe.as_ref(), &d.dencoded, buckets);
        prog
    }
}
