//! The modules a LoRA adapter can sit on, by the names of the model's family: GPT-2's Conv1D
//! products (c_attn, c_proj (both), c_fc) and Llama's and Qwen3's nn.Linear layers (q_proj,
//! k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj). wgpt fuses q|k|v into one product and
//! gate|up into another, so an adapter on q_proj adds to a column range of the fused product.

use serde::{Deserialize, Serialize};

use crate::model::{Gpt2Config, HfClass, Mlp};
use crate::{Error, Result};

/// A matrix product of a block as wgpt computes it (the fused products of Llama's layers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Linear {
    /// ln_1's output to q|k|v (B,T,(NH+2KV)hs).
    CAttn,
    /// Attention's output projection (B,T,C).
    AttnProj,
    /// ln_2's output to the MLP's hidden layer (B,T,I), swiglu's gate|up (B,T,2I).
    CFc,
    /// The MLP's output projection (B,T,C).
    MlpProj,
}

impl Linear {
    /// Its internal weight's module path inside a block (`h.{l}.<module>.weight`).
    pub fn module(self) -> &'static str {
        ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"][self as usize]
    }

    /// Its weight's stored [in, out] in `cfg`.
    pub fn dims(self, cfg: &Gpt2Config) -> (usize, usize) {
        let name = format!("h.0.{}.weight", self.module());
        let (_, shape) = cfg.param_specs().into_iter().find(|(n, _)| *n == name).expect("every block has its products");
        (shape[0], shape[1])
    }
}

/// Which names a model's modules go by: GPT-2's (its class, and wgpt's own type without a
/// gated MLP) or Llama's (LlamaForCausalLM and Qwen3ForCausalLM).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Gpt2,
    Llama,
}

impl Family {
    /// The family of `cfg`'s modules; a gated MLP outside Llama's and Qwen3's classes has no
    /// module names to target (an error saying so).
    pub fn of(cfg: &Gpt2Config) -> Result<Family> {
        match HfClass::of(cfg) {
            HfClass::Llama | HfClass::Qwen3 => Ok(Family::Llama),
            _ if cfg.arch.mlp == Mlp::SwiGlu => Err(Error::Input(
                "LoRA on a gated MLP needs a Llama or Qwen3 model (whose q_proj .. down_proj it targets); this is \
                 wgpt's own model type"
                    .into(),
            )),
            _ => Ok(Family::Gpt2),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Family::Gpt2 => "GPT-2",
            Family::Llama => "Llama/Qwen3",
        }
    }

    /// Its targets by their short names, for messages.
    fn short_names(self) -> &'static str {
        match self {
            Family::Gpt2 => "c_attn, c_proj, c_fc",
            Family::Llama => "q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj",
        }
    }
}

/// A module of a block that can carry an adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// GPT-2's attn.c_attn: ln_1's output to q|k|v.
    CAttn,
    /// GPT-2's attn.c_proj: attention's output projection.
    AttnProj,
    /// GPT-2's mlp.c_fc: ln_2's output to the MLP's hidden layer.
    CFc,
    /// GPT-2's mlp.c_proj: the MLP's output projection.
    MlpProj,
    /// Llama's self_attn.q_proj: the q columns of the fused q|k|v.
    QProj,
    /// Llama's self_attn.k_proj: the k columns of q|k|v.
    KProj,
    /// Llama's self_attn.v_proj: the v columns of q|k|v.
    VProj,
    /// Llama's self_attn.o_proj: attention's output projection.
    OProj,
    /// Llama's mlp.gate_proj: the gate half of the fused gate|up.
    GateProj,
    /// Llama's mlp.up_proj: the up half of gate|up.
    UpProj,
    /// Llama's mlp.down_proj: the MLP's output projection.
    DownProj,
}

/// How many targets there are (of both families).
pub const TARGETS: usize = 11;

impl Target {
    /// GPT-2's, in the block's order.
    pub const ALL: [Target; 4] = [Target::CAttn, Target::AttnProj, Target::CFc, Target::MlpProj];
    /// Llama's and Qwen3's, in the block's order.
    pub const LLAMA: [Target; 7] = [
        Target::QProj,
        Target::KProj,
        Target::VProj,
        Target::OProj,
        Target::GateProj,
        Target::UpProj,
        Target::DownProj,
    ];
    /// Every target of both families: GPT-2's, then Llama's.
    pub const EVERY: [Target; TARGETS] = {
        let (gpt2, llama) = (Target::ALL, Target::LLAMA);
        assert!(gpt2.len() + llama.len() == TARGETS);
        let mut every = [Target::CAttn; TARGETS];
        let mut i = 0;
        while i < TARGETS {
            every[i] = if i < gpt2.len() { gpt2[i] } else { llama[i - gpt2.len()] };
            i += 1;
        }
        every
    };

    /// Its module path inside a block (HF's: GPT-2's `attn.c_attn`, Llama's `self_attn.q_proj`).
    pub fn module(self) -> &'static str {
        [
            "attn.c_attn",
            "attn.c_proj",
            "mlp.c_fc",
            "mlp.c_proj",
            "self_attn.q_proj",
            "self_attn.k_proj",
            "self_attn.v_proj",
            "self_attn.o_proj",
            "mlp.gate_proj",
            "mlp.up_proj",
            "mlp.down_proj",
        ][self as usize]
    }

    pub fn family(self) -> Family {
        if (self as usize) < Target::ALL.len() {
            Family::Gpt2
        } else {
            Family::Llama
        }
    }

    /// The product whose output columns it adds to.
    pub fn linear(self) -> Linear {
        match self {
            Target::CAttn | Target::QProj | Target::KProj | Target::VProj => Linear::CAttn,
            Target::AttnProj | Target::OProj => Linear::AttnProj,
            Target::CFc | Target::GateProj | Target::UpProj => Linear::CFc,
            Target::MlpProj | Target::DownProj => Linear::MlpProj,
        }
    }

    pub(super) fn bit(self) -> u16 {
        1 << (self as u16)
    }

    /// Its columns of its product's output in `cfg`: (first, count) (the whole product but for
    /// q/k/v_proj and gate/up_proj).
    pub fn cols(self, cfg: &Gpt2Config) -> (usize, usize) {
        let (q, kv, i) = (cfg.n_head * cfg.head_dim(), cfg.n_kv_head() * cfg.head_dim(), cfg.intermediate_size());
        match self {
            Target::QProj => (0, q),
            Target::KProj => (q, kv),
            Target::VProj => (q + kv, kv),
            Target::GateProj => (0, i),
            Target::UpProj => (i, i),
            _ => (0, self.linear().dims(cfg).1),
        }
    }

    /// Its (in, out) in `cfg`: its product's input width and its own columns.
    pub fn dims(self, cfg: &Gpt2Config) -> (usize, usize) {
        (self.linear().dims(cfg).0, self.cols(cfg).1)
    }
}

/// The target names a user may give, as peft matches them (a module whose path ends in the
/// name): GPT-2's `c_proj` is both attention's and the MLP's.
const NAMES: [(&str, &[Target]); 21] = [
    ("c_attn", &[Target::CAttn]),
    ("c_proj", &[Target::AttnProj, Target::MlpProj]),
    ("c_fc", &[Target::CFc]),
    ("attn.c_attn", &[Target::CAttn]),
    ("attn.c_proj", &[Target::AttnProj]),
    ("mlp.c_fc", &[Target::CFc]),
    ("mlp.c_proj", &[Target::MlpProj]),
    ("q_proj", &[Target::QProj]),
    ("k_proj", &[Target::KProj]),
    ("v_proj", &[Target::VProj]),
    ("o_proj", &[Target::OProj]),
    ("gate_proj", &[Target::GateProj]),
    ("up_proj", &[Target::UpProj]),
    ("down_proj", &[Target::DownProj]),
    ("self_attn.q_proj", &[Target::QProj]),
    ("self_attn.k_proj", &[Target::KProj]),
    ("self_attn.v_proj", &[Target::VProj]),
    ("self_attn.o_proj", &[Target::OProj]),
    ("mlp.gate_proj", &[Target::GateProj]),
    ("mlp.up_proj", &[Target::UpProj]),
    ("mlp.down_proj", &[Target::DownProj]),
];

/// Which of a block's modules carry adapters (a set of [`Target`]s of one family), written in
/// settings as the list of their module paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "Vec<String>", try_from = "Vec<String>")]
pub struct Targets(u16);

impl Targets {
    /// GPT-2's default: every product (c_attn, c_proj (both) and c_fc).
    pub const ALL: Targets = Targets(0b1111);
    /// Llama's and Qwen3's default: all seven layers.
    pub const LLAMA: Targets = Targets(0b111_1111_0000);

    /// Every target of `family` (peft's usual choice for it).
    pub fn every(family: Family) -> Targets {
        match family {
            Family::Gpt2 => Targets::ALL,
            Family::Llama => Targets::LLAMA,
        }
    }

    pub fn contains(self, t: Target) -> bool {
        self.0 & t.bit() != 0
    }

    /// The targets in the block's order.
    pub fn list(self) -> Vec<Target> {
        Target::EVERY.into_iter().filter(|&t| self.contains(t)).collect()
    }

    /// The family whose names these are.
    pub fn family(self) -> Family {
        if self.0 & Targets::LLAMA.0 != 0 {
            Family::Llama
        } else {
            Family::Gpt2
        }
    }

    /// A clear error unless these are the module names of `cfg`'s family.
    pub fn check(self, cfg: &Gpt2Config) -> Result<()> {
        let family = Family::of(cfg)?;
        if self.family() == family {
            return Ok(());
        }
        let names: Vec<&str> = self.list().into_iter().map(Target::module).collect();
        Err(Error::Input(format!(
            "LoRA targets {} are {} module names; this {} model's are {}",
            names.join(", "),
            self.family().name(),
            family.name(),
            family.short_names()
        )))
    }

    /// Comma-separated names (`c_attn,c_proj,c_fc`, `q_proj,v_proj`, or module paths such as
    /// `attn.c_proj`), all of one family.
    pub fn parse(names: &str) -> Result<Targets> {
        Targets::from_names(names.split(',').map(str::trim).filter(|n| !n.is_empty()))
    }

    fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Targets> {
        let mut bits = 0;
        let mut first: Option<(&str, Family)> = None;
        for name in names {
            let Some((_, ts)) = NAMES.iter().find(|(n, _)| *n == name) else {
                return Err(Error::Input(format!(
                    "unknown LoRA target {name:?}: GPT-2's are {} (c_proj is both attention's and the MLP's), Llama's \
                     and Qwen3's {}",
                    Family::Gpt2.short_names(),
                    Family::Llama.short_names()
                )));
            };
            let family = ts[0].family();
            match first {
                Some((other, f)) if f != family => {
                    return Err(Error::Input(format!(
                        "LoRA targets {other:?} and {name:?} are of different models' modules ({} and {}): name \
                         one model's",
                        f.name(),
                        family.name()
                    )))
                }
                None => first = Some((name, family)),
                _ => {}
            }
            bits |= ts.iter().fold(0, |b, t| b | t.bit());
        }
        if bits == 0 {
            return Err(Error::Input(format!(
                "LoRA needs at least one target module ({}; or {})",
                Family::Gpt2.short_names(),
                Family::Llama.short_names()
            )));
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
