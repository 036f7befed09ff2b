//! The weights the matrix products read: the model's own f32 tensors, or f16 copies of them
//! made on the GPU for f16 inference and mixed-precision training ([`crate::precision`] says
//! which runs).

use crate::gpu::Tensor;
use crate::kernels::{Kernels, Program};
use crate::model::{shape_bytes, Gpt2Config, ParameterTensors, LM_HEAD};
use crate::Result;

/// The weights the matrix products read (the Conv1D weights of every block and the head's
/// matrix: wte where tied, lm_head where not): the model's own f32 tensors, or f16 copies of them
/// (of those whose products have f16 kernels, see [`halves`]; the others stay f32). The copies come beside
/// the f32 weights, which stay the model's (AdamW's master weights, the weight gradients'
/// products, checkpoints, the lens and the embedding gather read them): 2 bytes more per
/// matmul weight, 247 MB for GPT-2 124M's 123.5 M, so that a decode step reads 247 MB of
/// weights instead of 494 MB.
pub struct MatmulWeights {
    pub c_attn_w: Vec<Tensor>,   // (L) x (C, (NH+2KV)hs)
    pub c_proj_w: Vec<Tensor>,   // (L) x (NH·hs, C)
    pub c_fc_w: Vec<Tensor>,     // (L) x (C, I), swiglu (C, 2I)
    pub mlp_proj_w: Vec<Tensor>, // (L) x (I, C)
    pub head: Tensor,            // (V, C)
}

/// Whether the products read an f16 copy of a weight of `shape` (the head's (V, C) where `head`):
/// their f16 kernels (NN, NT and the single-row ones) take a block weight's K and N, and the
/// head's C, in multiples of 4. A weight of another shape (an odd intermediate_size's) is read
/// in f32 by the kernels that take any shape.
pub fn halves(shape: &[usize], head: bool) -> bool {
    match head {
        true => shape[1].is_multiple_of(4),
        false => shape.iter().all(|d| d.is_multiple_of(4)),
    }
}

impl MatmulWeights {
    /// The model's f32 weights themselves (no copies).
    pub fn f32(p: &ParameterTensors) -> MatmulWeights {
        MatmulWeights {
            c_attn_w: p.c_attn_w.clone(),
            c_proj_w: p.c_proj_w.clone(),
            c_fc_w: p.c_fc_w.clone(),
            mlp_proj_w: p.mlp_proj_w.clone(),
            head: p.head().clone(),
        }
    }

    /// The bytes of the f16 copies [`MatmulWeights::f16`] makes for `cfg`: 2 per element of
    /// every Conv1D weight and the head's matrix that [`halves`] (each buffer rounded up to 4
    /// bytes, as [`crate::Gpu::buffer`] rounds it), 247 MB for GPT-2 124M.
    pub fn f16_bytes(cfg: &Gpt2Config) -> u64 {
        let specs = cfg.param_specs();
        // the matrices of the products: every 2-D parameter but wpe and, where untied, wte (which
        // only the gathers read)
        let gathered = |name: &str| name == "wpe.weight" || (name == "wte.weight" && !cfg.arch.tied);
        let head = |name: &str| name == "wte.weight" || name == LM_HEAD;
        let products =
            specs.iter().filter(|(name, shape)| shape.len() == 2 && !gathered(name) && halves(shape, head(name)));
        products.map(|(_, shape)| (shape_bytes(shape) / 2).div_ceil(4).saturating_mul(4)).fold(0, u64::saturating_add)
    }

    /// f16 copies of `p`'s weights and the program that fills them from the f32 ones (run it
    /// whenever those may have changed). Needs shader-f16.
    pub fn f16(k: &Kernels, p: &ParameterTensors) -> Result<(MatmulWeights, Program)> {
        let mut refresh = Program::default();
        let mut copy = |t: &Tensor, name: &str| -> Result<Tensor> {
            if !halves(&t.shape, name == "wte" || name == "lm_head") {
                return Ok(t.clone());
            }
            let bytes = 2 * t.numel() as u64;
            k.gpu.check_buffer(&format!("the f16 copy of {name}"), bytes)?;
            let h = k.gpu.tensor_f16(&format!("{name}.f16"), &t.shape);
            k.matmul.to_f16(&mut refresh, &h, t);
            Ok(h)
        };
        let mut layers = |ts: &[Tensor], name: &str| -> Result<Vec<Tensor>> {
            ts.iter().enumerate().map(|(l, t)| copy(t, &format!("h.{l}.{name}"))).collect()
        };
        let c_attn_w = layers(&p.c_attn_w, "attn.c_attn.weight")?;
        let c_proj_w = layers(&p.c_proj_w, "attn.c_proj.weight")?;
        let c_fc_w = layers(&p.c_fc_w, "mlp.c_fc.weight")?;
        let mlp_proj_w = layers(&p.mlp_proj_w, "mlp.c_proj.weight")?;
        let head = copy(p.head(), if p.lm_head.is_some() { "lm_head" } else { "wte" })?;
        Ok((MatmulWeights { c_attn_w, c_proj_w, c_fc_w, mlp_proj_w, head }, refresh))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What mixed precision adds to a run (training_bytes): 2 bytes per element of every Conv1D
    /// weight and wte, 12·L·C² + V·C elements.
    #[test]
    fn the_f16_copies_are_2_bytes_per_matmul_weight() {
        for (name, v, want) in
            [("baby", 65, 1_589_504), ("shakespeare-char", 65, 21_283_584), ("gpt2", 50257, 247_064_064)]
        {
            let cfg = Gpt2Config { vocab_size: v, ..Gpt2Config::preset(name).unwrap() };
            let (l, c) = (cfg.n_layer as u64, cfg.n_embd as u64);
            assert_eq!(2 * (12 * l * c * c + v as u64 * c), want, "{name}");
            println!("{name} (vocab {v}): {want} bytes of f16 copies");
            assert_eq!(MatmulWeights::f16_bytes(&cfg), want, "{name}");
        }
    }

    /// SwiGLU at I = 64 copies its (C, 2I) and (I, C) matrices; at an odd I they have no f16
    /// kernels and stay f32: only attention's and the head's copies are made.
    #[test]
    fn only_weights_with_f16_kernels_are_copied() {
        let arch = crate::model::Arch::GPT2;
        let mut cfg = Gpt2Config { n_layer: 2, n_head: 3, n_embd: 24, block_size: 9, vocab_size: 37, arch };
        cfg.arch.mlp = crate::model::Mlp::SwiGlu;
        let (l, c, v) = (2, 24, 37);
        let attention = l * (c * 3 * c + c * c);
        assert_eq!(MatmulWeights::f16_bytes(&cfg), 2 * (attention + l * 3 * c * 64 + (v * c)) as u64);
        cfg.arch.intermediate_size = Some(13);
        assert_eq!(MatmulWeights::f16_bytes(&cfg), 2 * (attention + v * c) as u64);
        assert!(halves(&[24, 128], false) && !halves(&[24, 26], false) && !halves(&[13, 24], false));
        assert!(halves(&[37, 24], true) && !halves(&[37, 22], true));
    }
}
