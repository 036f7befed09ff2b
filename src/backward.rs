//! GPT-2's backward pass: llm.c's `gpt2_backward`, the forward's kernel list reversed. Gradients
//! of activations live in [`GradActs`]; parameter gradients accumulate into a
//! [`ParameterTensors`] of the parameters' shapes.

use crate::gpu::{Gpu, Tensor};
use crate::kernels::{EncoderBuckets, Program};
use crate::model::{attn_site, ActivationTensors, Gpt2, Gpt2Config, ParameterTensors};

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
    pub dpreatt: Tensor,         // (B, NH, T, T) scratch, shared by the layers
}

impl GradActs {
    pub fn new(gpu: &Gpu, cfg: &Gpt2Config, b: usize, t: usize) -> GradActs {
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
            dpreatt: gpu.tensor("dpreatt", &[b, nh, t, t]),
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
    /// dlogits (B,T,V) = (softmax(logits) − onehot(targets))·dloss: the loss's backward.
    pub(crate) fn record_loss_backward(
        &self,
        a: &ActivationTensors,
        d: &GradActs,
        targets: &Tensor,
        dloss: f32,
    ) -> Program {
        let k = &*self.kernels;
        let mut prog = Program::default();
        k.crossentropy.backward(&k.gpu, &mut prog, &d.dlogits, &a.logits, &a.lse, targets, dloss);
        prog
    }

    /// From dlogits back to dencoded, accumulating parameter gradients into `dp` (all but the
    /// embeddings' share from the encoder, see [`Gpt2::record_embed_backward`]).
    /// `dropout` must be what the forward used ([`Gpt2::record_body`]): the same masks are
    /// applied to the gradients.
    pub(crate) fn record_backward(
        &self,
        a: &ActivationTensors,
        d: &GradActs,
        dp: &ParameterTensors,
        dropout: Option<(f32, &Tensor)>,
    ) -> Program {
        let (k, p, g) = (&*self.kernels, &self.params, &self.kernels.gpu);
        let (nl, nh) = (self.config.n_layer, self.config.n_head);
        let mut prog = Program::default();
        let drop = |prog: &mut Program, x: &Tensor, site: usize| {
            if let Some((pd, seed)) = dropout {
                k.dropout.apply(g, prog, x, seed, site as u32, pd);
            }
        };
        // tied lm_head: logits = lnf · wteᵀ, so dlnf += dlogits · wte and dwte += dlogitsᵀ · lnf
        k.matmul.lm_head_backward(g, &mut prog, &d.dlnf, &dp.wte, &d.dlogits, &a.lnf, &p.wte);
        let last = &a.residual3[nl - 1];
        let dlast = &d.dresidual3[nl - 1];
        k.layernorm.backward(
            g,
            &mut prog,
            dlast,
            &dp.ln_f_w,
            &dp.ln_f_b,
            &d.dlnf,
            last,
            &p.ln_f_w,
            &a.lnf_mean,
            &a.lnf_rstd,
        );
        for l in (0..nl).rev() {
            let residual = if l == 0 { &a.encoded } else { &a.residual3[l - 1] };
            let dresidual = if l == 0 { &d.dencoded } else { &d.dresidual3[l - 1] };
            // residual3 = residual2 + fcproj
            k.residual.backward(g, &mut prog, &d.dresidual2[l], &d.dfcproj[l], &d.dresidual3[l]);
            drop(&mut prog, &d.dfcproj[l], 2 + 2 * l);
            k.matmul.backward(
                g,
                &mut prog,
                &d.dfch_gelu[l],
                &dp.mlp_proj_w[l],
                Some(&dp.mlp_proj_b[l]),
                &d.dfcproj[l],
                &a.fch_gelu[l],
                &p.mlp_proj_w[l],
            );
            k.gelu.backward(g, &mut prog, &d.dfch[l], &a.fch[l], &d.dfch_gelu[l]);
            k.matmul.backward(
                g,
                &mut prog,
                &d.dln2[l],
                &dp.c_fc_w[l],
                Some(&dp.c_fc_b[l]),
                &d.dfch[l],
                &a.ln2[l],
                &p.c_fc_w[l],
            );
            k.layernorm.backward(
                g,
                &mut prog,
                &d.dresidual2[l],
                &dp.ln_2_w[l],
                &dp.ln_2_b[l],
                &d.dln2[l],
                &a.residual2[l],
                &p.ln_2_w[l],
                &a.ln2_mean[l],
                &a.ln2_rstd[l],
            );
            // residual2 = residual + attproj
            k.residual.backward(g, &mut prog, dresidual, &d.dattproj[l], &d.dresidual2[l]);
            drop(&mut prog, &d.dattproj[l], 1 + 2 * l);
            k.matmul.backward(
                g,
                &mut prog,
                &d.datty[l],
                &dp.c_proj_w[l],
                Some(&dp.c_proj_b[l]),
                &d.dattproj[l],
                &a.atty[l],
                &p.c_proj_w[l],
            );
            let attn_drop = dropout.map(|(pd, seed)| (pd, seed, attn_site(nl, l)));
            k.attention.backward(
                g,
                &mut prog,
                &d.dqkv[l],
                &d.dpreatt,
                &d.datty[l],
                &a.qkv[l],
                &a.att[l],
                nh,
                attn_drop,
            );
            k.matmul.backward(
                g,
                &mut prog,
                &d.dln1[l],
                &dp.c_attn_w[l],
                Some(&dp.c_attn_b[l]),
                &d.dqkv[l],
                &a.ln1[l],
                &p.c_attn_w[l],
            );
            k.layernorm.backward(
                g,
                &mut prog,
                dresidual,
                &dp.ln_1_w[l],
                &dp.ln_1_b[l],
                &d.dln1[l],
                residual,
                &p.ln_1_w[l],
                &a.ln1_mean[l],
                &a.ln1_rstd[l],
            );
        }
        drop(&mut prog, &d.dencoded, 0);
        prog
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
        k.encoder.backward(&k.gpu, &mut prog, &dp.wte, &dp.wpe, &d.dencoded, buckets);
        prog
    }
}
