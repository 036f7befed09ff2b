//! The numeric precision a command runs in (`--precision f32|f16|auto`, the page's choice):
//! f32 everywhere (HF's numbers), or f16 weights with f32 accumulation where the adapter has
//! shader-f16: for inference, and for mixed-precision training (the matrix products read f16
//! copies of the f32 master weights; activations, gradients and AdamW stay f32). Without
//! shader-f16, f16 falls back to f32 with a message, never an error.

use serde::{Deserialize, Serialize};

use crate::gpu::Tensor;
use crate::kernels::{Kernels, Program};
use crate::model::{Gpt2Config, ParameterTensors};
use crate::{Error, Result};

/// What the user asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f32 weights and activations: results equal to HF's (the CLI's default).
    #[default]
    F32,
    /// f16 weights of the matrix products, f32 activations and accumulation.
    F16,
    /// f16 for inference where the adapter has shader-f16, f32 for training (the page's
    /// default for generation).
    Auto,
}

/// What a precision is for: auto means f16 for inference and f32 for training.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    Inference,
    Training,
}

/// The precision that runs ([`Precision::F32`] or [`Precision::F16`]) and, where it is not the
/// one asked for, why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub runs: Precision,
    pub note: Option<String>,
}

impl Resolved {
    pub fn f16(&self) -> bool {
        self.runs == Precision::F16
    }
}

impl Precision {
    pub const NAMES: &'static str = "f32, f16 or auto";

    pub fn parse(name: &str) -> Result<Precision> {
        match name {
            "f32" => Ok(Precision::F32),
            "f16" => Ok(Precision::F16),
            "auto" => Ok(Precision::Auto),
            _ => Err(Error::Input(format!("unknown precision {name:?}; use {}", Precision::NAMES))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Auto => "auto",
        }
    }

    /// What runs for `purpose` on an adapter with (or without) shader-f16. An f16 that cannot
    /// run gives f32 and a note saying why; auto picks quietly (f32 for training).
    pub fn resolve(self, purpose: Purpose, shader_f16: bool) -> Resolved {
        let f32 = |note: Option<String>| Resolved { runs: Precision::F32, note };
        match (self, purpose) {
            (Precision::F32, _) | (Precision::Auto, Purpose::Training) => f32(None),
            (Precision::F16, _) | (Precision::Auto, Purpose::Inference) if shader_f16 => {
                Resolved { runs: Precision::F16, note: None }
            }
            (Precision::Auto, Purpose::Inference) => f32(None),
            (Precision::F16, _) => {
                f32(Some("f16 asked, but this GPU adapter has no shader-f16 (WGSL f16); running in f32 instead".into()))
            }
        }
    }
}

/// The weights the matrix products read (the Conv1D weights of every block and the tied
/// lm_head's wte): the model's own f32 tensors, or f16 copies of them. The copies come beside
/// the f32 weights, which stay the model's (AdamW's master weights, the weight gradients'
/// products, checkpoints, the lens and the embedding gather read them): 2 bytes more per
/// matmul weight, 247 MB for GPT-2 124M's 123.5 M, so that a decode step reads 247 MB of
/// weights instead of 494 MB.
pub struct MatmulWeights {
    pub c_attn_w: Vec<Tensor>,   // (L) x (C, 3C)
    pub c_proj_w: Vec<Tensor>,   // (L) x (C, C)
    pub c_fc_w: Vec<Tensor>,     // (L) x (C, 4C)
    pub mlp_proj_w: Vec<Tensor>, // (L) x (4C, C)
    pub wte: Tensor,             // (V, C)
}

impl MatmulWeights {
    /// The model's f32 weights themselves (no copies).
    pub fn f32(p: &ParameterTensors) -> MatmulWeights {
        MatmulWeights {
            c_attn_w: p.c_attn_w.clone(),
            c_proj_w: p.c_proj_w.clone(),
            c_fc_w: p.c_fc_w.clone(),
            mlp_proj_w: p.mlp_proj_w.clone(),
            wte: p.wte.clone(),
        }
    }

    /// The bytes of the f16 copies [`MatmulWeights::f16`] makes for `cfg`: 2 per element of
    /// every Conv1D weight and wte (each buffer rounded up to 4 bytes, as [`crate::Gpu::buffer`]
    /// rounds it), 247 MB for GPT-2 124M.
    pub fn f16_bytes(cfg: &Gpt2Config) -> u64 {
        let specs = cfg.param_specs();
        // the matrices of the products: every 2-D parameter but wpe (which only the gather reads)
        let products = specs.iter().filter(|(name, shape)| shape.len() == 2 && name != "wpe.weight");
        products.map(|(_, shape)| (2 * shape.iter().product::<usize>() as u64).div_ceil(4) * 4).sum()
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
        let wte = copy(&p.wte, "wte")?;
        Ok((MatmulWeights { c_attn_w, c_proj_w, c_fc_w, mlp_proj_w, wte }, refresh))
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

    #[test]
    fn f16_falls_back_with_a_note_and_auto_quietly() {
        let inf = Purpose::Inference;
        assert_eq!(Precision::F16.resolve(inf, true), Resolved { runs: Precision::F16, note: None });
        let r = Precision::F16.resolve(inf, false);
        assert_eq!(r.runs, Precision::F32);
        assert!(r.note.unwrap().contains("no shader-f16"));
        assert_eq!(Precision::Auto.resolve(inf, true).runs, Precision::F16);
        assert_eq!(Precision::Auto.resolve(inf, false), Resolved { runs: Precision::F32, note: None });
        let train = Purpose::Training;
        assert_eq!(Precision::Auto.resolve(train, true), Resolved { runs: Precision::F32, note: None });
        assert_eq!(Precision::F16.resolve(train, true), Resolved { runs: Precision::F16, note: None });
        assert!(Precision::F16.resolve(train, false).note.unwrap().contains("no shader-f16"));
        assert_eq!(serde_json::to_string(&Precision::F16).unwrap(), "\"f16\"");
        assert_eq!(Precision::F32.resolve(inf, true), Resolved { runs: Precision::F32, note: None });
        for p in [Precision::F32, Precision::F16, Precision::Auto] {
            assert_eq!(Precision::parse(p.name()).unwrap(), p);
        }
        assert!(Precision::parse("bf16").unwrap_err().to_string().contains("f32, f16 or auto"));
    }
}
