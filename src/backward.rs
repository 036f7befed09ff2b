//! GPT-2's backward pass: llm.c's `gpt2_backward`, the forward's kernel list reversed. Gradients
//! of activations live in [`GradActs`]; parameter gradients accumulate into a
//! [`ParameterTensors`] of the parameters' shapes.

use crate::gpu::{Gpu, Tensor};
use crate::kernels::dropout::DropoutRate;
use crate::kernels::{
    AttentionKind, AttnBwd, CrossEntropyBwd, EncoderBuckets, LayerNormBwd, LinearBwd, LmHeadBwd, Program, Site,
};
use crate::model::{ActivationTensors, Gpt2, Gpt2Config, ParameterTensors};
use crate::weights16::MatmulWeights;

/// Gradients of the activations for one (B, T); every one is zeroed before each backward.
pub struct GradActs {
    pub dlogits: Tensor,         // (B, T, V)
    pub dlnf: Tensor,            // (B, T, C)
    pub dencoded: Tensor,        // (B, T, C)
    pub dresidual3: Vec<Tensor>, // (L) x (B, T, C)
    pub dresidual2: Vec<Tensor>, // (L) x (B, T, C)
    pub dfcproj: Vec<Tensor>,    // (L) x (B, T, C)
    pub dfch_gelu: Vec<Tensor>,  // (L) x (B, T, 4C)
    pub dfch: Vec<Tensor>,       // (L) x (B, T, 4C)
    pub dln2: Vec<Tensor>,       // (L) x (B, T, C)
    pub dattproj: Vec<Tensor>,   // (L) x (B, T, C)
    pub datty: Vec<Tensor>,      // (L) x (B, T, C)
    pub dqkv: Vec<Tensor>,       // (L) x (B, T, 3C)
    pub dln1: Vec<Tensor>,       // (L) x (B, T, C)
    pub dpreatt: Tensor, // attention's scratch, shared by the layers: (B, NH, T, T) score gradients (classic) or (B, NH, T) dout·out (flash)
}

impl GradActs {
    pub fn new(gpu: &Gpu, cfg: &Gpt2Config, b: usize, t: usize, attention: AttentionKind) -> GradActs {
        let (c, nh, v, l) = (cfg.n_embd, cfg.n_head, cfg.vocab_size, cfg.n_layer);
        let per_layer = |name: &str, shape: &[usize]| -> Vec<Tensor> {
            (0..l).map(|i| gpu.tensor(&format!("{name}.{i}"), shape)).collect()
        };
        GradActs {
            dlogits: gpu.tensor("dlogits", &[b, t, v]),
            dlnf: gpu.tensor("dlnf", &[b, t, c]),
            dencoded: gpu.tensor("dencoded", &[b, t, c]),
            dresidual3: per_layer("dresidual3", &[b, t, c]),
            dresidual2: per_layer("dresidual2", &[b, t, c]),
            dfcproj: per_layer("dfcproj", &[b, t, c]),
            dfch_gelu: per_layer("dfch_gelu", &[b, t, 4 * c]),
            dfch: per_layer("dfch", &[b, t, 4 * c]),
            dln2: per_layer("dln2", &[b, t, c]),
            dattproj: per_layer("dattproj", &[b, t, c]),
            datty: per_layer("datty", &[b, t, c]),
            dqkv: per_layer("dqkv", &[b, t, 3 * c]),
            dln1: per_layer("dln1", &[b, t, c]),
            dpreatt: gpu.tensor("dpreatt", &attention.saved_shape(b, nh, t)),
        }
    }

    /// Every tensor, for zeroing.
    pub fn all(&self) -> Vec<&Tensor> {
        let mut v = vec![&self.dlogits, &self.dlnf, &self.dencoded, &self.dpreatt];
        for group in [
            &self.dresidual3,
            &self.dresidual2,
            &self.dfcproj,
            &self.dfch_gelu,
            &self.dfch,
            &self.dln2,
            &self.dattproj,
            &self.datty,
            &self.dqkv,
            &self.dln1,
        ] {
            v.extend(group.iter());
        }
        v
    }
}

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
        let t = CrossEntropyBwd { dlogits: &d.dlogits, logits: &a.logits, lse: &a.lse, targets, scale: scaler };
        k.crossentropy.backward(&mut prog, t, dloss);
        prog
    }

    /// From dlogits back to dencoded, accumulating parameter gradients into `dp` (all but the
    /// embeddings' share from the encoder, see [`Gpt2::record_embed_backward`]).
    /// `dropout` must be what the forward used ([`Gpt2::record_body`]): the same masks are
    /// applied to the gradients. One program for the head (lm_head and ln_f), then one per
    /// block from the last (the first block's with the embedding's dropout): the cut points of
    /// split submits. The products of dinp = dout · weightᵀ read `w` (the forward's weights, or
    /// f16 copies of them); the weight gradients' products read only f32 activations.
    pub(crate) fn record_backward(
        &self,
        a: &ActivationTensors,
        d: &GradActs,
        dp: &ParameterTensors,
        w: &MatmulWeights,
        dropout: Option<DropoutRate>,
    ) -> Vec<Program> {
        let (k, p) = (&*self.kernels, &self.params);
        let (nl, nh) = (self.config.n_layer, self.config.n_head);
        let mut pieces = Vec::with_capacity(nl + 1);
        let mut program = Program::default();
        let prog = &mut program;
        // tied lm_head: logits = lnf · wteᵀ, so dlnf += dlogits · wte and dwte += dlogitsᵀ · lnf
        let wte16 = Some(&w.wte).filter(|t| t.half);
        let (dx, dwte, dlogits, x, wte) = (&d.dlnf, &dp.wte, &d.dlogits, &a.lnf, &p.wte);
        k.matmul.lm_head_backward(prog, LmHeadBwd { dx, dwte, dlogits, x, wte, wte16 });
        let (last, dlast) = (&a.residual3[nl - 1], &d.dresidual3[nl - 1]);
        let (mean, rstd) = (&a.lnf_mean, &a.lnf_rstd);
        let (dweight, dbias, weight) = (&dp.ln_f_w, &dp.ln_f_b, &p.ln_f_w);
        k.layernorm
            .backward(prog, LayerNormBwd { dinp: dlast, dweight, dbias, dout: &d.dlnf, inp: last, weight, mean, rstd });
        for l in (0..nl).rev() {
            pieces.push(std::mem::take(&mut program));
            let prog = &mut program;
            let residual = if l == 0 { &a.encoded } else { &a.residual3[l - 1] };
            let dresidual = if l == 0 { &d.dencoded } else { &d.dresidual3[l - 1] };
            // residual3 = residual2 + fcproj
            k.residual.backward(prog, &d.dresidual2[l], &d.dfcproj[l], &d.dresidual3[l]);
            k.dropout.at(prog, &d.dfcproj[l], dropout, Site::MlpResidual(l));
            k.matmul.backward(
                prog,
                LinearBwd {
                    dinp: &d.dfch_gelu[l],
                    dweight: &dp.mlp_proj_w[l],
                    dbias: Some(&dp.mlp_proj_b[l]),
                    dout: &d.dfcproj[l],
                    inp: &a.fch_gelu[l],
                    weight: &w.mlp_proj_w[l],
                },
            );
            k.gelu.backward(prog, &d.dfch[l], &a.fch[l], &d.dfch_gelu[l]);
            k.matmul.backward(
                prog,
                LinearBwd {
                    dinp: &d.dln2[l],
                    dweight: &dp.c_fc_w[l],
                    dbias: Some(&dp.c_fc_b[l]),
                    dout: &d.dfch[l],
                    inp: &a.ln2[l],
                    weight: &w.c_fc_w[l],
                },
            );
            k.layernorm.backward(
                prog,
                LayerNormBwd {
                    dinp: &d.dresidual2[l],
                    dweight: &dp.ln_2_w[l],
                    dbias: &dp.ln_2_b[l],
                    dout: &d.dln2[l],
                    inp: &a.residual2[l],
                    weight: &p.ln_2_w[l],
                    mean: &a.ln2_mean[l],
                    rstd: &a.ln2_rstd[l],
                },
            );
            // residual2 = residual + attproj
            k.residual.backward(prog, dresidual, &d.dattproj[l], &d.dresidual2[l]);
            k.dropout.at(prog, &d.dattproj[l], dropout, Site::AttnResidual(l));
            k.matmul.backward(
                prog,
                LinearBwd {
                    dinp: &d.datty[l],
                    dweight: &dp.c_proj_w[l],
                    dbias: Some(&dp.c_proj_b[l]),
                    dout: &d.dattproj[l],
                    inp: &a.atty[l],
                    weight: &w.c_proj_w[l],
                },
            );
            let attn_drop = dropout.map(|r| (r.p, r.seed, Site::AttnProbs(l).id(r.n_layer)));
            let (dqkv, scratch, dout, qkv, out, saved) =
                (&d.dqkv[l], &d.dpreatt, &d.datty[l], &a.qkv[l], &a.atty[l], &a.att[l]);
            k.attention.backward(prog, a.attention, AttnBwd { dqkv, scratch, dout, qkv, out, saved }, nh, attn_drop);
            k.matmul.backward(
                prog,
                LinearBwd {
                    dinp: &d.dln1[l],
                    dweight: &dp.c_attn_w[l],
                    dbias: Some(&dp.c_attn_b[l]),
                    dout: &d.dqkv[l],
                    inp: &a.ln1[l],
                    weight: &w.c_attn_w[l],
                },
            );
            k.layernorm.backward(
                prog,
                LayerNormBwd {
                    dinp: dresidual,
                    dweight: &dp.ln_1_w[l],
                    dbias: &dp.ln_1_b[l],
                    dout: &d.dln1[l],
                    inp: residual,
                    weight: &p.ln_1_w[l],
                    mean: &a.ln1_mean[l],
                    rstd: &a.ln1_rstd[l],
                },
            );
        }
        k.dropout.at(&mut program, &d.dencoded, dropout, Site::Embedding);
        pieces.push(program);
        pieces
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
        k.encoder.backward(&mut prog, &dp.wte, &dp.wpe, &d.dencoded, buckets);
        prog
    }
}
