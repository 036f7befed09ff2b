//! LoRA fine-tuning's settings (peft's LoRA, `LoraConfig`): the rank, alpha, target modules and
//! dropout of the adapters on the blocks' matrix products, checked against a model, and the
//! adapters' names and shapes. For a target weight W stored [in, out] (Conv1D), A is [r, in] and
//! B [out, r] (peft keeps nn.Linear's layout for the adapters), and the product becomes
//! y = x·W + b + (alpha/r)·dropout(x)·Aᵀ·Bᵀ. The tensors and their recorders are in lora/.

mod tensors;

use serde::{Deserialize, Serialize};

use super::{Gpt2Config, Mlp};
use crate::{Error, Result};

pub use tensors::{lora_backward, lora_forward, Adapter, Grads, LoraActs, LoraBlock, LoraBwd, LoraFwd, LoraTensors};

/// The largest rank a run takes (the issue's limit; peft has none).
pub const MAX_RANK: usize = 256;

/// A matrix product of a block that can carry an adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// attn.c_attn: ln_1's output to q|k|v.
    CAttn,
    /// attn.c_proj: attention's output projection.
    AttnProj,
    /// mlp.c_fc: ln_2's output to the MLP's hidden layer.
    CFc,
    /// mlp.c_proj: the MLP's output projection.
    MlpProj,
}

impl Target {
    /// In the block's order.
    pub const ALL: [Target; 4] = [Target::CAttn, Target::AttnProj, Target::CFc, Target::MlpProj];

    /// Its module path inside a block (HF GPT-2's).
    pub fn module(self) -> &'static str {
        match self {
            Target::CAttn => "attn.c_attn",
            Target::AttnProj => "attn.c_proj",
            Target::CFc => "mlp.c_fc",
            Target::MlpProj => "mlp.c_proj",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }

    /// Its weight's (in, out) in `cfg` (the stored [in, out] shape).
    pub fn dims(self, cfg: &Gpt2Config) -> (usize, usize) {
        let name = format!("h.0.{}.weight", self.module());
        let (_, shape) = cfg.param_specs().into_iter().find(|(n, _)| *n == name).expect("every block has its products");
        (shape[0], shape[1])
    }
}

/// The target names a user may give, as peft matches them (a module whose path ends in the
/// name): `c_proj` is both attention's and the MLP's.
const NAMES: [(&str, &[Target]); 7] = [
    ("c_attn", &[Target::CAttn]),
    ("c_proj", &[Target::AttnProj, Target::MlpProj]),
    ("c_fc", &[Target::CFc]),
    ("attn.c_attn", &[Target::CAttn]),
    ("attn.c_proj", &[Target::AttnProj]),
    ("mlp.c_fc", &[Target::CFc]),
    ("mlp.c_proj", &[Target::MlpProj]),
];

/// Which of a block's products carry adapters (a set of [`Target`]s), written in settings as
/// the list of their module paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "Vec<String>", try_from = "Vec<String>")]
pub struct Targets(u8);

impl Targets {
    /// GPT-2's default: every product (c_attn, c_proj (both) and c_fc).
    pub const ALL: Targets = Targets(0b1111);

    pub fn contains(self, t: Target) -> bool {
        self.0 & t.bit() != 0
    }

    /// The targets in the block's order.
    pub fn list(self) -> Vec<Target> {
        Target::ALL.into_iter().filter(|&t| self.contains(t)).collect()
    }

    /// Comma-separated names (`c_attn,c_proj,c_fc`, or module paths such as `attn.c_proj`).
    pub fn parse(names: &str) -> Result<Targets> {
        Targets::from_names(names.split(',').map(str::trim).filter(|n| !n.is_empty()))
    }

    fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Targets> {
        let mut bits = 0;
        for name in names {
            let Some((_, ts)) = NAMES.iter().find(|(n, _)| *n == name) else {
                let valid: Vec<&str> = NAMES.iter().map(|(n, _)| *n).collect();
                return Err(Error::Input(format!(
                    "unknown LoRA target {name:?}: GPT-2's are {} (c_proj is both attention's and the MLP's)",
                    valid.join(", ")
                )));
            };
            bits |= ts.iter().fold(0, |b, t| b | t.bit());
        }
        if bits == 0 {
            return Err(Error::Input("LoRA needs at least one target module (c_attn, c_proj, c_fc)".into()));
        }
        Ok(Targets(bits))
    }
}

impl From<Targets> for Vec<String> {
    fn from(t: Targets) -> Vec<String> {
        t.list().into_iter().map(|t| t.module().to_string()).collect()
    }
}

impl TryFrom<Vec<String>> for Targets {
    type Error = Error;
    fn try_from(names: Vec<String>) -> Result<Targets> {
        Targets::from_names(names.iter().map(String::as_str))
    }
}

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
    /// Rank `rank` with peft's usual alpha 2r on every product, no dropout.
    pub fn new(rank: usize, seed: u64) -> LoraConfig {
        LoraConfig { rank, alpha: 2.0 * rank as f32, targets: Targets::ALL, dropout: 0.0, seed }
    }

    /// alpha / r, the factor on the adapters' product (peft's `scaling`).
    pub fn scale(&self) -> f32 {
        self.alpha / self.rank as f32
    }

    /// Checks the settings against `cfg`: a rank in 1..=256 and at most min(in, out) of every
    /// target, a positive alpha, a dropout in [0, 1), and a model whose products are GPT-2's.
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
        if cfg.arch.mlp == Mlp::SwiGlu {
            return bad("LoRA covers GPT-2's products (c_attn, c_proj, c_fc) so far, not a gated MLP's".into());
        }
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
    let t = Target::ALL.into_iter().find(|t| t.module() == module)?;
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
        let e = Targets::parse("q_proj").unwrap_err().to_string();
        assert!(e.contains("q_proj") && e.contains("c_attn, c_proj, c_fc"), "{e}");
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
