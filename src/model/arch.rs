//! The architecture switches: which of GPT-2's choices a model keeps and which it replaces with
//! a later model's (Llama's, Qwen3's, the modded-nanoGPT speedrun's). GPT-2's choice is the
//! default of each, so a config written before the switches existed reads as the GPT-2 it was.

use serde::{Deserialize, Serialize};

use crate::kernels::{Act, NormKind};
use crate::{Error, Result};

use super::Gpt2Config;

/// How the model knows where a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Positions {
    /// A learned embedding per position (wpe), added to the token's (GPT-2).
    #[default]
    #[serde(rename = "learned")]
    Learned,
    /// Rotary embeddings: q and k rotated by position (Llama, Qwen3), HF's rotate-half layout.
    #[serde(rename = "rope")]
    Rope,
    /// None at all: the causal mask alone tells positions apart.
    #[serde(rename = "none")]
    Off,
}

/// The normalisation before each half-block and before the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Norm {
    /// (x - mean) / std · w + b (GPT-2).
    #[default]
    #[serde(rename = "layernorm")]
    LayerNorm,
    /// x / rms(x) · w, no mean and no bias (Llama, Qwen3).
    #[serde(rename = "rmsnorm")]
    RmsNorm,
}

/// The MLP's nonlinearity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Mlp {
    /// tanh-approximated GELU (GPT-2).
    #[default]
    #[serde(rename = "gelu")]
    Gelu,
    /// relu(x)² (the speedrun's).
    #[serde(rename = "relu2")]
    Relu2,
    /// silu(gate) · up, three matrices (Llama, Qwen3).
    #[serde(rename = "swiglu")]
    SwiGlu,
}

/// A switch's values by name, for flags and settings: one table per enum, checked against its
/// serde names by a test.
pub trait Named: Sized + Copy + 'static {
    /// The setting's key, for messages.
    const KEY: &'static str;
    const ALL: &'static [(Self, &'static str)];

    fn name(self) -> &'static str
    where
        Self: PartialEq,
    {
        Self::ALL.iter().find(|(v, _)| *v == self).map_or("?", |(_, n)| n)
    }

    /// The value called `name`; the error names the key and the choices.
    fn parse(name: &str) -> Result<Self> {
        Self::ALL.iter().find(|(_, n)| *n == name).map(|(v, _)| *v).ok_or_else(|| {
            let all: Vec<&str> = Self::ALL.iter().map(|(_, n)| *n).collect();
            Error::Input(format!("unknown {} {name:?}; choose one of {}", Self::KEY, all.join(", ")))
        })
    }
}

impl Named for Positions {
    const KEY: &'static str = "positions";
    const ALL: &'static [(Self, &'static str)] =
        &[(Positions::Learned, "learned"), (Positions::Rope, "rope"), (Positions::Off, "none")];
}

impl Named for Norm {
    const KEY: &'static str = "norm";
    const ALL: &'static [(Self, &'static str)] = &[(Norm::LayerNorm, "layernorm"), (Norm::RmsNorm, "rmsnorm")];
}

impl Named for Mlp {
    const KEY: &'static str = "mlp";
    const ALL: &'static [(Self, &'static str)] = &[(Mlp::Gelu, "gelu"), (Mlp::Relu2, "relu2"), (Mlp::SwiGlu, "swiglu")];
}

impl Named for ArchPreset {
    const KEY: &'static str = "arch";
    const ALL: &'static [(Self, &'static str)] = &[
        (ArchPreset::Gpt2, "gpt2"),
        (ArchPreset::Llama, "llama"),
        (ArchPreset::Qwen3, "qwen3"),
        (ArchPreset::Speedrun, "speedrun"),
    ];
}

macro_rules! from_str_by_name {
    ($($t:ty),*) => {$(
        impl std::str::FromStr for $t {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                <$t as Named>::parse(s)
            }
        }
    )*};
}
from_str_by_name!(Positions, Norm, Mlp, ArchPreset);

const ROPE_THETA: f32 = 10000.0;
const NORM_EPS: f32 = 1e-5;

fn rope_theta() -> f32 {
    ROPE_THETA
}
fn norm_eps() -> f32 {
    NORM_EPS
}
fn yes() -> bool {
    true
}
fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}
fn is_rope_theta(v: &f32) -> bool {
    *v == ROPE_THETA
}
fn is_norm_eps(v: &f32) -> bool {
    *v == NORM_EPS
}
fn is_true(v: &bool) -> bool {
    *v
}

/// The switches, flattened into [`Gpt2Config`] (and so into config files under these keys).
/// Each defaults to GPT-2's choice and is left out of the JSON at it, so a GPT-2 config reads
/// and writes as it did before the switches.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Arch {
    #[serde(default, skip_serializing_if = "is_default")]
    pub positions: Positions,
    /// The rotary base (rope only).
    #[serde(default = "rope_theta", skip_serializing_if = "is_rope_theta")]
    pub rope_theta: f32,
    #[serde(default, skip_serializing_if = "is_default")]
    pub norm: Norm,
    /// Every norm's eps (GPT-2's and Llama's 1e-5, Qwen3's 1e-6).
    #[serde(default = "norm_eps", skip_serializing_if = "is_norm_eps")]
    pub norm_eps: f32,
    #[serde(default, skip_serializing_if = "is_default")]
    pub mlp: Mlp,
    /// The MLP's hidden width [default: see [`Gpt2Config::intermediate_size`]].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intermediate_size: Option<usize>,
    /// Key/value heads, dividing n_head (fewer: grouped-query attention) [default: n_head].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_kv_head: Option<usize>,
    /// The width of a head [default: n_embd / n_head].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<usize>,
    /// An RMSNorm over each head's q and k (Qwen3).
    #[serde(default, skip_serializing_if = "is_default")]
    pub qk_norm: bool,
    /// The linear layers' biases (and the layer norms').
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub bias: bool,
    /// The head shares the token embedding (wte) instead of a matrix of its own (lm_head).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub tied: bool,
    /// logits = c · tanh(logits / c) (Gemma-2, the speedruns); None: off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logit_softcap: Option<f32>,
}

impl Default for Arch {
    /// GPT-2's.
    fn default() -> Arch {
        Arch::GPT2
    }
}

impl Arch {
    /// GPT-2's choices.
    pub const GPT2: Arch = Arch {
        positions: Positions::Learned,
        rope_theta: ROPE_THETA,
        norm: Norm::LayerNorm,
        norm_eps: NORM_EPS,
        mlp: Mlp::Gelu,
        intermediate_size: None,
        n_kv_head: None,
        head_dim: None,
        qk_norm: false,
        bias: true,
        tied: true,
        logit_softcap: None,
    };
}

/// Switches set together: a model family's choices, at any size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArchPreset {
    Gpt2,
    Llama,
    Qwen3,
    Speedrun,
}

impl ArchPreset {
    /// Sets every switch of `arch` to this family's, for a model of `n_head` heads.
    pub fn apply(self, arch: &mut Arch, n_head: usize) {
        let half = if n_head.is_multiple_of(2) { n_head / 2 } else { n_head };
        let llama = Arch {
            positions: Positions::Rope,
            norm: Norm::RmsNorm,
            mlp: Mlp::SwiGlu,
            n_kv_head: Some(half),
            bias: false,
            ..Arch::default()
        };
        *arch = match self {
            ArchPreset::Gpt2 => Arch::default(),
            ArchPreset::Llama => llama,
            ArchPreset::Qwen3 => Arch { qk_norm: true, norm_eps: 1e-6, ..llama },
            ArchPreset::Speedrun => Arch {
                positions: Positions::Rope,
                norm: Norm::RmsNorm,
                mlp: Mlp::Relu2,
                qk_norm: true,
                bias: false,
                tied: false,
                logit_softcap: Some(15.0),
                ..Arch::default()
            },
        };
    }

    /// One line on what the family changed and why.
    pub fn about(self) -> &'static str {
        match self {
            ArchPreset::Gpt2 => {
                "GPT-2 (2019): learned positions, LayerNorm, GELU, biases, the head tied to the embedding"
            }
            ArchPreset::Llama => {
                "Llama (2023): rotary positions (extrapolate, cost no parameters), RMSNorm (cheaper), SwiGLU \
                 (better per parameter), half as many KV heads (a smaller cache), no biases"
            }
            ArchPreset::Qwen3 => {
                "Qwen3 (2025): Llama plus an RMSNorm on each head's q and k, which keeps attention logits tame"
            }
            ArchPreset::Speedrun => {
                "speedrun (modded-nanoGPT): rope, RMSNorm, ReLU², qk-norm, an untied head and logits softcapped \
                 at 15, for the fastest loss per step"
            }
        }
    }
}

/// The transformers class a config saves as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HfClass {
    Gpt2,
    Llama,
    Qwen3,
    /// Any other combination: wgpt's own model type.
    Wgpt,
}

impl HfClass {
    /// The class whose architecture `cfg` is exactly.
    pub fn of(cfg: &Gpt2Config) -> HfClass {
        let a = &cfg.arch;
        let plain_attention = cfg.n_kv_head() == cfg.n_head && cfg.head_dim() * cfg.n_head == cfg.n_embd;
        let gpt2 = a.positions == Positions::Learned && a.norm == Norm::LayerNorm && a.mlp == Mlp::Gelu;
        let llama = a.positions == Positions::Rope && a.norm == Norm::RmsNorm && a.mlp == Mlp::SwiGlu;
        match (gpt2, llama, a.qk_norm, a.logit_softcap) {
            (true, _, false, None) if plain_attention && a.bias => HfClass::Gpt2,
            (_, true, false, None) => HfClass::Llama,
            (_, true, true, None) if !a.bias => HfClass::Qwen3,
            _ => HfClass::Wgpt,
        }
    }

    /// The class's name in config.json's `architectures`.
    pub fn class_name(self) -> &'static str {
        match self {
            HfClass::Gpt2 => "GPT2LMHeadModel",
            HfClass::Llama => "LlamaForCausalLM",
            HfClass::Qwen3 => "Qwen3ForCausalLM",
            HfClass::Wgpt => "WgptForCausalLM",
        }
    }

    /// config.json's `model_type`.
    pub fn model_type(self) -> &'static str {
        match self {
            HfClass::Gpt2 => "gpt2",
            HfClass::Llama => "llama",
            HfClass::Qwen3 => "qwen3",
            HfClass::Wgpt => "wgpt",
        }
    }
}

impl Gpt2Config {
    /// Key/value heads (n_head unless grouped-query attention).
    pub fn n_kv_head(&self) -> usize {
        self.arch.n_kv_head.unwrap_or(self.n_head)
    }

    /// The width of a head (n_embd / n_head unless set).
    pub fn head_dim(&self) -> usize {
        self.arch.head_dim.unwrap_or(self.n_embd / self.n_head.max(1))
    }

    /// The MLP's hidden width I: as set, else 4·C for gelu and relu2, and for swiglu the
    /// multiple of 4 nearest 8·C/3 (its three matrices then hold about GPT-2's two's parameters).
    pub fn intermediate_size(&self) -> usize {
        let c = self.n_embd;
        self.arch.intermediate_size.unwrap_or(match self.arch.mlp {
            Mlp::SwiGlu => 4 * ((2 * c + 1) / 3),
            Mlp::Gelu | Mlp::Relu2 => 4 * c,
        })
    }

    /// The norm kernels' kind and eps.
    pub fn norm(&self) -> (NormKind, f32) {
        let kind = match self.arch.norm {
            Norm::LayerNorm => NormKind::Layer,
            Norm::RmsNorm => NormKind::Rms,
        };
        (kind, self.arch.norm_eps)
    }

    /// The MLP's nonlinearity, as the kernels name it.
    pub fn act(&self) -> Act {
        match self.arch.mlp {
            Mlp::Gelu => Act::Gelu,
            Mlp::Relu2 => Act::Relu2,
            Mlp::SwiGlu => Act::SwiGlu,
        }
    }

    /// The width of the MLP's first product: I, or gate|up (2·I) for swiglu.
    pub fn mlp_width(&self) -> usize {
        match self.arch.mlp {
            Mlp::SwiGlu => 2 * self.intermediate_size(),
            Mlp::Gelu | Mlp::Relu2 => self.intermediate_size(),
        }
    }
}

impl Arch {
    /// Checks the switches of `cfg` (whose sizes are already checked): one error per bad key,
    /// naming it.
    pub(super) fn validate(&self, cfg: &Gpt2Config) -> Result<()> {
        let bad = |msg: String| Err(Error::Format(format!("config: {msg}")));
        if !(self.norm_eps > 0.0 && self.norm_eps.is_finite()) {
            return bad(format!(
                "norm_eps = {} must be a positive number (1e-5 as GPT-2, 1e-6 as Qwen3)",
                self.norm_eps
            ));
        }
        if !(self.rope_theta > 0.0 && self.rope_theta.is_finite()) {
            return bad(format!("rope_theta = {} must be a positive number (10000 as Llama)", self.rope_theta));
        }
        if let Some(c) = self.logit_softcap.filter(|c| !(*c > 0.0 && c.is_finite())) {
            return bad(format!(
                "logit_softcap = {c} must be a positive number (15 as the speedrun), or unset for none"
            ));
        }
        if self.intermediate_size.is_some_and(|i| i == 0 || i > 1 << 24) {
            return bad(format!("intermediate_size = {} must be between 1 and 2^24", cfg.intermediate_size()));
        }
        if let Some(kv) = self.n_kv_head {
            if kv == 0 || !cfg.n_head.is_multiple_of(kv) {
                return bad(format!(
                    "n_kv_head ({kv}) must divide n_head ({}) (1 is multi-query attention)",
                    cfg.n_head
                ));
            }
        }
        if let Some(hd) = self.head_dim {
            if hd == 0 || !hd.is_multiple_of(4) || hd > 1 << 16 {
                return bad(format!(
                    "head_dim = {hd} must be a positive multiple of 4 (the attention kernels read vec4s)"
                ));
            }
        }
        Ok(())
    }
}

/// An architecture as a user chooses it: a preset, then explicit switches over it (the run
/// settings' keys, `wgpt train`'s flags), whatever order they came in. Every key is optional:
/// unset keys keep the preset's choice (GPT-2's without a preset).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ArchChoice {
    /// gpt2, llama, qwen3 or speedrun.
    #[serde(default)]
    pub arch: Option<String>,
    #[serde(default)]
    pub positions: Option<Positions>,
    #[serde(default)]
    pub rope_theta: Option<f32>,
    #[serde(default)]
    pub norm: Option<Norm>,
    #[serde(default)]
    pub norm_eps: Option<f32>,
    #[serde(default)]
    pub mlp: Option<Mlp>,
    #[serde(default)]
    pub intermediate_size: Option<usize>,
    #[serde(default)]
    pub n_kv_head: Option<usize>,
    #[serde(default)]
    pub head_dim: Option<usize>,
    #[serde(default)]
    pub qk_norm: Option<bool>,
    #[serde(default)]
    pub bias: Option<bool>,
    #[serde(default)]
    pub tied: Option<bool>,
    /// The softcap; 0 turns a preset's off.
    #[serde(default)]
    pub logit_softcap: Option<f32>,
}

impl ArchChoice {
    /// Every switch of `arch`, explicitly.
    pub fn of(arch: &Arch) -> ArchChoice {
        ArchChoice {
            arch: None,
            positions: Some(arch.positions),
            rope_theta: Some(arch.rope_theta),
            norm: Some(arch.norm),
            norm_eps: Some(arch.norm_eps),
            mlp: Some(arch.mlp),
            intermediate_size: arch.intermediate_size,
            n_kv_head: arch.n_kv_head,
            head_dim: arch.head_dim,
            qk_norm: Some(arch.qk_norm),
            bias: Some(arch.bias),
            tied: Some(arch.tied),
            logit_softcap: Some(arch.logit_softcap.unwrap_or(0.0)),
        }
    }

    /// These keys over `base`'s: each key set here wins, the others are `base`'s.
    pub fn over(&self, base: &ArchChoice) -> ArchChoice {
        ArchChoice {
            arch: self.arch.clone().or_else(|| base.arch.clone()),
            positions: self.positions.or(base.positions),
            rope_theta: self.rope_theta.or(base.rope_theta),
            norm: self.norm.or(base.norm),
            norm_eps: self.norm_eps.or(base.norm_eps),
            mlp: self.mlp.or(base.mlp),
            intermediate_size: self.intermediate_size.or(base.intermediate_size),
            n_kv_head: self.n_kv_head.or(base.n_kv_head),
            head_dim: self.head_dim.or(base.head_dim),
            qk_norm: self.qk_norm.or(base.qk_norm),
            bias: self.bias.or(base.bias),
            tied: self.tied.or(base.tied),
            logit_softcap: self.logit_softcap.or(base.logit_softcap),
        }
    }

    /// Whether any key is set.
    pub fn is_set(&self) -> bool {
        *self != ArchChoice::default()
    }

    /// The architecture of a model with `n_head` heads: the preset's, then the explicit keys.
    pub fn arch(&self, n_head: usize) -> Result<Arch> {
        let mut a = Arch::default();
        if let Some(name) = &self.arch {
            ArchPreset::parse(name)?.apply(&mut a, n_head);
        }
        a.positions = self.positions.unwrap_or(a.positions);
        a.rope_theta = self.rope_theta.unwrap_or(a.rope_theta);
        a.norm = self.norm.unwrap_or(a.norm);
        a.norm_eps = self.norm_eps.unwrap_or(a.norm_eps);
        a.mlp = self.mlp.unwrap_or(a.mlp);
        a.intermediate_size = self.intermediate_size.or(a.intermediate_size);
        a.n_kv_head = self.n_kv_head.or(a.n_kv_head);
        a.head_dim = self.head_dim.or(a.head_dim);
        a.qk_norm = self.qk_norm.unwrap_or(a.qk_norm);
        a.bias = self.bias.unwrap_or(a.bias);
        a.tied = self.tied.unwrap_or(a.tied);
        a.logit_softcap = match self.logit_softcap {
            Some(0.0) => None,
            Some(c) => Some(c),
            None => a.logit_softcap,
        };
        Ok(a)
    }
}
