//! Where LoRA adapters go: the linear layers of a base model under peft's module paths, each with
//! the internal weight it modifies ([`super::super::names`]' table: GPT-2's Conv1D matrices
//! whole, Llama's and Qwen3's q/k/v_proj column ranges of the fused c_attn and gate/up_proj of
//! the fused c_fc), and the choice of them by `target_modules`.

use super::config::{PeftConfig, MAX_RANK};
use crate::hf::names::{self, Part};
use crate::model::{Gpt2Config, HfClass};
use crate::{Error, Result};

/// One linear layer an adapter can modify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// peft's module path, e.g. `transformer.h.0.attn.c_attn` or
    /// `model.layers.0.self_attn.q_proj` (its tensors are `base_model.model.<module>.lora_A.weight`).
    pub module: String,
    /// The internal weight it modifies (a `param_specs` name), [in, out].
    pub internal: String,
    /// The columns of the internal weight that are this layer's outputs.
    pub part: Part,
    pub in_features: usize,
    pub out_features: usize,
}

impl Site {
    /// The name of its lora_A (`"A"`) or lora_B (`"B"`) tensor in adapter_model.safetensors.
    pub fn tensor_name(&self, which: &str) -> String {
        format!("base_model.model.{}.lora_{which}.weight", self.module)
    }

    /// True when `target` (an entry of target_modules) names this layer: the module path equals it
    /// or ends with it after a dot, as peft matches a list of names.
    pub fn matches(&self, target: &str) -> bool {
        self.module == target || self.module.strip_suffix(target).is_some_and(|head| head.ends_with('.'))
    }
}

/// Every linear layer of the blocks of `cfg`'s class, in the parameter table's order. Adapters
/// exist for the transformers classes only: wgpt's own model type has no peft counterpart.
pub fn all_sites(cfg: &Gpt2Config) -> Result<Vec<Site>> {
    let class = HfClass::of(cfg);
    if class == HfClass::Wgpt {
        return Err(Error::Format(
            "peft adapters are for GPT2LMHeadModel, LlamaForCausalLM and Qwen3ForCausalLM bases; this base is \
             wgpt's own model type, which transformers cannot build"
                .into(),
        ));
    }
    let prefix = names::prefix(class);
    Ok(names::table(cfg)
        .into_iter()
        .filter(|t| t.internal.starts_with("h.") && t.shape.len() == 2)
        .filter_map(|t| {
            let module = format!("{prefix}{}", t.name.strip_suffix(".weight")?);
            // nn.Linear stores [out, in] (transposed into the internal [in, out]); Conv1D [in, out]
            let (in_features, out_features) =
                if t.transpose { (t.shape[1], t.shape[0]) } else { (t.shape[0], t.shape[1]) };
            Some(Site { module, internal: t.internal, part: t.part, in_features, out_features })
        })
        .collect())
}

/// The layers `config`'s target_modules name on a base of `cfg`; a target that names no linear
/// layer of the base, or a rank outside 1..=256 or over a layer's min(in, out), is an error
/// naming it.
pub fn select(cfg: &Gpt2Config, config: &PeftConfig) -> Result<Vec<Site>> {
    if !(1..=MAX_RANK).contains(&config.r) {
        return Err(Error::Input(format!("LoRA rank {}: the rank must be from 1 to {MAX_RANK}", config.r)));
    }
    let all = all_sites(cfg)?;
    for target in &config.target_modules {
        if !all.iter().any(|s| s.matches(target)) {
            let mut known: Vec<&str> = all.iter().filter_map(|s| s.module.rsplit('.').next()).collect();
            known.sort_unstable();
            known.dedup();
            return Err(Error::Format(format!(
                "adapter_config.json: target_modules names {target:?}, which is no linear layer of this {} base \
                 (its layers: {})",
                HfClass::of(cfg).class_name(),
                known.join(", ")
            )));
        }
    }
    let chosen: Vec<Site> = all.into_iter().filter(|s| config.target_modules.iter().any(|t| s.matches(t))).collect();
    if let Some(s) = chosen.iter().find(|s| config.r > s.in_features.min(s.out_features)) {
        return Err(Error::Format(format!(
            "adapter_config.json: r = {} is over {}'s min(in, out) = min({}, {}); a rank that large adds nothing",
            config.r, s.module, s.in_features, s.out_features
        )));
    }
    Ok(chosen)
}
