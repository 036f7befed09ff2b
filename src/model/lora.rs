//! LoRA fine-tuning's settings (peft's LoRA, `LoraConfig`): the rank, alpha, target modules and
//! dropout of the adapters on the blocks' matrix products, checked against a model, and the
//! adapters' names and shapes. For a target weight W stored [in, out] (Conv1D), A is [r, in] and
//! B [out, r] (peft keeps nn.Linear's layout for the adapters), and the product becomes
//! y = x·W + b + (alpha/r)·dropout(x)·Aᵀ·Bᵀ. The tensors and their recorders are in lora/.

mod targets;
mod tensors;

use serde::{Deserialize, Serialize};

use super::Gpt2Config;
use crate::{Error, Result};

pub use targets::{Family, Linear, Target, Targets, TARGETS};
pub use tensors::{
    lora_backward, lora_backward_at, lora_forward, lora_forward_at, Adapter, Adapters, Grads, LoraActs, LoraBlock,
    LoraBwd, LoraFwd, LoraTensors,
};

/// The largest rank a run takes (the issue's limit; peft has none).
pub const MAX_RANK: usize = 256;

/// A LoRA run's adapters: rank r, alpha (the update is scaled by alpha/r), the products that
/// carry them, the dropout on their input and the seed their A matrices are drawn from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    pub rank: usize,
    pub alpha: f32,
    pub targets: Targets,
    pub dropout: f32,
    pub seed: u64,
}

impl LoraConfig {
    /// Rank `rank` with peft's usual alpha 2r on every product of GPT-2, no dropout.
    pub fn new(rank: usize, seed: u64) -> LoraConfig {
        LoraConfig { rank, alpha: 2.0 * rank as f32, targets: Targets::ALL, dropout: 0.0, seed }
    }

    /// [`LoraConfig::new`] on every module of `cfg`'s family (GPT-2's four products, or
    /// Llama's and Qwen3's seven layers; GPT-2's where the model has no family, which
    /// [`LoraConfig::validate`] then refuses).
    pub fn for_model(cfg: &Gpt2Config, rank: usize, seed: u64) -> LoraConfig {
        let targets = Family::of(cfg).map_or(Targets::ALL, Targets::every);
        LoraConfig { targets, ..LoraConfig::new(rank, seed) }
    }

    /// alpha / r, the factor on the adapters' product (peft's `scaling`).
    pub fn scale(&self) -> f32 {
        self.alpha / self.rank as f32
    }

    /// Checks the settings against `cfg`: a rank in 1..=256 and at most min(in, out) of every
    /// target, a positive alpha, a dropout in [0, 1), and targets named as `cfg`'s family names
    /// its modules.
    pub fn validate(&self, cfg: &Gpt2Config) -> Result<()> {
        let bad = |m: String| Err(Error::Input(m));
        if !(1..=MAX_RANK).contains(&self.rank) {
            return bad(format!("LoRA rank must be in 1..={MAX_RANK}, got {}", self.rank));
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return bad(format!("LoRA alpha must be a positive number, got {}", self.alpha));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("LoRA dropout must be in [0, 1), got {}", self.dropout));
        }
        self.targets.check(cfg)?;
        for t in self.targets.list() {
            let (i, o) = t.dims(cfg);
            if self.rank > i.min(o) {
                return bad(format!(
                    "LoRA rank {} is larger than {}'s smaller side ({i} x {o}): use a rank of at most {}",
                    self.rank,
                    t.module(),
                    i.min(o)
                ));
            }
        }
        Ok(())
    }

    /// Every adapter tensor's name and shape, by layer and target (A then B):
    /// `lora.h.{l}.{module}.lora_A` [r, in] and `.lora_B` [out, r]; the optimizer's state keys
    /// put its prefix before these (`adam_m.lora.h.0.attn.c_attn.lora_A`).
    pub fn specs(&self, cfg: &Gpt2Config) -> Vec<(String, Vec<usize>)> {
        let r = self.rank;
        let mut specs = vec![];
        for l in 0..cfg.n_layer {
            for t in self.targets.list() {
                let (i, o) = t.dims(cfg);
                specs.push((format!("lora.h.{l}.{}.lora_A", t.module()), vec![r, i]));
                specs.push((format!("lora.h.{l}.{}.lora_B", t.module()), vec![o, r]));
            }
        }
        specs
    }

    /// The bytes of the adapters (as many again for their gradients).
    pub fn bytes(&self, cfg: &Gpt2Config) -> u64 {
        self.specs(cfg).iter().map(|(_, s)| 4 * s.iter().product::<usize>() as u64).sum()
    }
}

/// The shape of adapter tensor `name` (`lora.h.{l}.{module}.lora_A|B`) of `len` values in a model
/// of `cfg`, where the name is one and `len` a whole rank of it (for checkpoints, which store the
/// adapters beside the optimizer's state).
pub fn adapter_shape(cfg: &Gpt2Config, name: &str, len: usize) -> Option<Vec<usize>> {
    let rest = name.strip_prefix("lora.h.")?;
    let (l, rest) = rest.split_once('.')?;
    let l: usize = l.parse().ok()?;
    let (module, ab) = rest.rsplit_once('.')?;
    let t = Target::EVERY.into_iter().find(|t| t.module() == module)?;
    if Family::of(cfg).ok()? != t.family() {
        return None;
    }
    let (i, o) = t.dims(cfg);
    let side = if ab == "lora_A" {
        i
    } else if ab == "lora_B" {
        o
    } else {
        return None;
    };
    let r = len / side;
    let ok = l < cfg.n_layer && (1..=MAX_RANK).contains(&r) && r * side == len;
    ok.then(|| if ab == "lora_A" { vec![r, i] } else { vec![o, r] })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_as_peft_matches_them() {
        assert_eq!(Targets::parse("c_attn,c_proj,c_fc").unwrap(), Targets::ALL);
        let proj = Targets::parse("c_proj").unwrap();
        assert_eq!(proj.list(), vec![Target::AttnProj, Target::MlpProj]);
        assert_eq!(Targets::parse("attn.c_proj").unwrap().list(), vec![Target::AttnProj]);
        let e = Targets::parse("qproj").unwrap_err().to_string();
        assert!(e.contains("qproj") && e.contains("c_attn, c_proj, c_fc") && e.contains("q_proj, k_proj"), "{e}");
        assert_eq!(Targets::parse("q_proj,self_attn.v_proj").unwrap().list(), vec![Target::QProj, Target::VProj]);
        assert!(Targets::parse("q_proj,c_attn").unwrap_err().to_string().contains("different"));
        assert!(Targets::parse(" , ").unwrap_err().to_string().contains("at least one"));
        let json = serde_json::to_string(&proj).unwrap();
        assert_eq!(json, r#"["attn.c_proj","mlp.c_proj"]"#);
        assert_eq!(serde_json::from_str::<Targets>(&json).unwrap(), proj);
        assert!(serde_json::from_str::<Targets>(r#"["wte"]"#).is_err());
    }

    #[test]
    fn settings_are_checked_against_the_model() {
        let cfg = Gpt2Config::preset("tiny").unwrap();
        let c = cfg.n_embd;
        assert!(LoraConfig::new(8, 1).validate(&cfg).is_ok());
        let check = |lc: LoraConfig| lc.validate(&cfg).unwrap_err().to_string();
        assert!(check(LoraConfig::new(0, 1)).contains("1..=256"));
        assert!(check(LoraConfig::new(257, 1)).contains("1..=256"));
        let too_big = check(LoraConfig::new(c + 1, 1));
        assert!(too_big.contains(&format!("at most {c}")), "{too_big}");
        assert!(check(LoraConfig { alpha: 0.0, ..LoraConfig::new(4, 1) }).contains("alpha"));
        assert!(check(LoraConfig { dropout: 1.0, ..LoraConfig::new(4, 1) }).contains("dropout"));
        assert_eq!(LoraConfig::new(4, 1).scale(), 2.0);
    }

    #[test]
    fn adapter_names_and_shapes() {
        let cfg = Gpt2Config::preset("tiny").unwrap();
        let lc = LoraConfig { targets: Targets::parse("c_attn,c_fc").unwrap(), ..LoraConfig::new(3, 1) };
        let specs = lc.specs(&cfg);
        assert_eq!(specs.len(), 4 * cfg.n_layer);
        let c = cfg.n_embd;
        assert_eq!(specs[0], ("lora.h.0.attn.c_attn.lora_A".to_string(), vec![3, c]));
        assert_eq!(specs[1], ("lora.h.0.attn.c_attn.lora_B".to_string(), vec![3 * c, 3]));
        for (name, shape) in &specs {
            assert_eq!(adapter_shape(&cfg, name, shape.iter().product()).as_ref(), Some(shape), "{name}");
        }
        assert_eq!(adapter_shape(&cfg, "lora.h.0.attn.c_attn.lora_A", 3 * c + 1), None);
        assert_eq!(adapter_shape(&cfg, "lora.h.99.attn.c_attn.lora_A", 3 * c), None);
        assert_eq!(adapter_shape(&cfg, "h.0.attn.c_attn.weight", 3 * c), None);
    }
}
