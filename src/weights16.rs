//! The weights the matrix products read: the model's own f32 tensors, or f16 copies of them
//! made on the GPU for f16 inference and mixed-precision training ([`crate::precision`] says
//! which runs).

use crate::gpu::Tensor;
use crate::kernels::{Kernels, Program};
use crate::model::{shape_bytes, Gpt2Config, ParameterTensors};
use crate::Result;

/// The weights the matrix products read (the Conv1D weights of every block and the head's
/// matrix: wte where tied, lm_head where not): the model's own f32 tensors, or f16 copies of them. The copies come beside
/// the f32 weights, which stay the model's (AdamW's master weights, the weight gradients'
/// products, checkpoints, the lens and the embedding gather read them): 2 bytes more per
/// matmul weight, 247 MB for GPT-2 124M's 123.5 M, so that a decode step reads 247 MB of
/// weights instead of 494 MB.
pub struct MatmulWeights {
    pub c_attn_w: Vec<Tensor>,   // (L) x (C, 3C)
    pub c_proj_w: Vec<Tensor>,   // (L) x (C, C)
    pub c_fc_w: Vec<Tensor>,     // (L) x (C, 4C)
    pub mlp_proj_w: Vec<Tensor>, // (L) x (4C, C)
    pub head: Tensor,            // (V, C)
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
    /// every Conv1D weight and the head's matrix (each buffer rounded up to 4 bytes, as [`crate::Gpu::buffer`]
    /// rounds it), 247 MB for GPT-2 124M.
    pub fn f16_bytes(cfg: &Gpt2Config) -> u64 {
        let specs = cfg.param_specs();
        // the matrices of the products: every 2-D parameter but wpe and, where untied, wte (which
        // only the gathers read)
        let gathered = |name: &str| name == "wpe.weight" || (name == "wte.weight" && !cfg.arch.tied);
        let products = specs.iter().filter(|(name, shape)| shape.len() == 2 && !gathered(name));
        products.map(|(_, shape)| (shape_bytes(shape) / 2).div_ceil(4).saturating_mul(4)).fold(0, u64::saturating_add)
    }

    /// f16 copies of `p`'s weights and the program that fills them from the f32 ones (run it
    /// whenever those may have changed). Needs shader-f16.
    pub fn f16(k: &Kernels, p: &ParameterTensors) -> Result<(MatmulWeights, Program)> {
        let mut refresh = Program::default();
        let mut copy = |t: &Tensor, name: &str| -> Result<Tensor> {
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
}
