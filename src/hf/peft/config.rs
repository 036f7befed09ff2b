//! peft's `adapter_config.json` for a LoRA adapter, both ways: the fields wgpt uses typed, every
//! other key kept as read (so a config round-trips), and the options wgpt does not implement
//! refused by name. Written as peft 0.21's `save_pretrained` writes it: every key, sorted,
//! indented by two.

use serde_json::{Map, Value};

use crate::model::{Gpt2Config, HfClass};
use crate::{Error, Result};

/// The largest rank wgpt trains or loads.
pub const MAX_RANK: usize = 256;

/// A LoRA adapter's settings (peft's `LoraConfig` as saved).
#[derive(Debug, Clone, PartialEq)]
pub struct PeftConfig {
    /// The rank `r` of every adapter.
    pub r: usize,
    /// `lora_alpha`: the update is scaled by alpha / r.
    pub lora_alpha: f64,
    /// Dropout on the adapters' input while training (not used at inference).
    pub lora_dropout: f64,
    /// Module names the adapters go on; a module matches a name it equals or ends with after a
    /// dot (peft's rule: `c_proj` matches both `attn.c_proj` and `mlp.c_proj`).
    pub target_modules: Vec<String>,
    /// The base model as the adapter names it: a local directory or a hub id.
    pub base_model_name_or_path: Option<String>,
    /// True when the base's weights are stored [in, out] (GPT-2's Conv1D); the adapters' own
    /// tensors are nn.Linear-shaped either way.
    pub fan_in_fan_out: bool,
    /// Every other key, as read (or as peft writes it by default), so the file round-trips.
    pub rest: Map<String, Value>,
}

/// The keys peft 0.21 writes for a plain LoRA adapter beside the typed ones, with its defaults
/// (`peft_version` is left out: peft fills in its own when it loads the file).
fn defaults() -> Map<String, Value> {
    let json = r#"{
        "alora_invocation_tokens": null, "alpha_pattern": {}, "arrow_config": null, "auto_mapping": null,
        "bias": "none", "corda_config": null, "ensure_weight_tying": false, "eva_config": null,
        "exclude_modules": null, "inference_mode": true, "init_lora_weights": true, "kasa_config": null,
        "layer_replication": null, "layers_pattern": null, "layers_to_transform": null, "loftq_config": {},
        "lora_bias": false, "lora_ga_config": null, "megatron_config": null, "megatron_core": "megatron.core",
        "modules_to_save": null, "monteclora_config": null, "peft_type": "LORA", "qalora_group_size": 16,
        "rank_pattern": {}, "revision": null, "target_parameters": null, "task_type": "CAUSAL_LM",
        "trainable_token_indices": null, "use_bdlora": null, "use_dora": false, "use_qalora": false,
        "use_rslora": false, "velora_config": null
    }"#;
    match serde_json::from_str(json) {
        Ok(Value::Object(map)) => map,
        _ => unreachable!("the defaults are a JSON object"),
    }
}

/// Options that change what the adapter computes, which wgpt does not implement: (key, what it
/// does). Each must be absent, null, false or empty.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("use_rslora", "rank-stabilised scaling alpha/sqrt(r)"),
    ("use_dora", "DoRA's magnitude vectors"),
    ("rank_pattern", "a rank per module"),
    ("alpha_pattern", "an alpha per module"),
    ("modules_to_save", "whole modules trained beside the adapters"),
    ("lora_bias", "a bias on lora_B"),
    ("use_qalora", "QA-LoRA's pooled inputs"),
    ("layers_to_transform", "adapters on some layers only"),
    ("layer_replication", "replicated layers"),
    ("exclude_modules", "excluded modules"),
    ("target_parameters", "adapters on parameters rather than modules"),
    ("trainable_token_indices", "trained token embeddings"),
    ("alora_invocation_tokens", "activated LoRA (adapters active after invocation tokens)"),
    ("arrow_config", "Arrow routing between adapters"),
    ("use_bdlora", "block-diagonal LoRA factors"),
    ("kasa_config", "KaSA's singular-value diagonal"),
    ("monteclora_config", "Monte Carlo sampling of the adapters"),
];

/// `init_lora_weights` values that leave the base weights as they are (the others, PiSSA, OLoRA,
/// CorDA, LoftQ and LoRA-GA, rewrite them, so the adapter needs that rewritten base).
const PLAIN_INITS: &[&str] = &["gaussian", "eva", "orthogonal"];

fn bad<T>(msg: String) -> Result<T> {
    Err(Error::Format(format!("adapter_config.json: {msg}")))
}

/// True for a value that switches nothing on: absent, null, false, an empty list or object.
fn is_off(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) | Some(Value::Bool(false)) => true,
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(o)) => o.is_empty(),
        Some(_) => false,
    }
}

fn number(obj: &Map<String, Value>, key: &str) -> Result<f64> {
    match obj.get(key) {
        Some(v) => {
            v.as_f64().filter(|x| x.is_finite()).map_or_else(|| bad(format!("{key} must be a number, got {v}")), Ok)
        }
        None => bad(format!("missing the field {key}")),
    }
}

/// A number as peft writes it: an integer where it is one.
fn json_number(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        Value::from(x as i64)
    } else {
        Value::from(x)
    }
}

impl PeftConfig {
    /// A new LoRA config as peft would save it for a causal LM on a base of config `base`, named
    /// `base_name` (base_model_name_or_path); fan_in_fan_out is true for GPT-2 (Conv1D weights).
    pub fn lora(
        base_name: &str,
        base: &Gpt2Config,
        r: usize,
        lora_alpha: f64,
        target_modules: Vec<String>,
        lora_dropout: f64,
    ) -> PeftConfig {
        PeftConfig {
            r,
            lora_alpha,
            lora_dropout,
            target_modules,
            base_model_name_or_path: Some(base_name.to_string()),
            fan_in_fan_out: HfClass::of(base) == HfClass::Gpt2,
            rest: defaults(),
        }
    }

    /// alpha / r, the factor of every update B·A.
    pub fn scale(&self) -> f64 {
        self.lora_alpha / self.r as f64
    }

    /// Parses adapter_config.json, refusing (by the field's name) what is not a plain LoRA
    /// adapter for a causal LM: another peft type or task, the options in [`UNSUPPORTED`], an
    /// init that rewrites the base, a rank outside 1..=256, target modules that are not a list.
    pub fn parse(text: &str) -> Result<PeftConfig> {
        let mut obj = match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(obj)) => obj,
            Ok(_) => return bad("not a JSON object".into()),
            Err(e) => return bad(format!("not valid JSON: {e}")),
        };
        Self::check_kind(&obj)?;
        for (key, what) in UNSUPPORTED {
            if !is_off(obj.get(*key)) {
                return bad(format!(
                    "{key} is {} ({what}); wgpt implements plain LoRA only: save the adapter without it",
                    obj[*key]
                ));
            }
        }
        Self::check_init(&obj)?;
        let r = number(&obj, "r")?;
        if r.fract() != 0.0 || !(1.0..=MAX_RANK as f64).contains(&r) {
            return bad(format!("r = {r}: the rank must be a whole number from 1 to {MAX_RANK}"));
        }
        let lora_alpha = number(&obj, "lora_alpha")?;
        let lora_dropout = if obj.contains_key("lora_dropout") { number(&obj, "lora_dropout")? } else { 0.0 };
        let target_modules = match obj.get("target_modules") {
            Some(Value::Array(a)) if !a.is_empty() => a
                .iter()
                .map(|v| v.as_str().map(str::to_string).ok_or(()))
                .collect::<std::result::Result<Vec<_>, ()>>()
                .or_else(|_| {
                    bad(format!("target_modules must be a list of module names, got {}", obj["target_modules"]))
                })?,
            Some(Value::String(s)) => {
                return bad(format!(
                "target_modules is the pattern {s:?}; wgpt takes a list of module names (e.g. [\"c_attn\", \"c_fc\"])"
            ))
            }
            other => return bad(format!("target_modules must be a non-empty list of module names, got {other:?}")),
        };
        let base_model_name_or_path = match obj.get("base_model_name_or_path") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(v) => return bad(format!("base_model_name_or_path must be a string, got {v}")),
        };
        let fan_in_fan_out = obj.get("fan_in_fan_out").and_then(Value::as_bool).unwrap_or(false);
        for key in ["r", "lora_alpha", "lora_dropout", "target_modules", "base_model_name_or_path", "fan_in_fan_out"] {
            obj.remove(key);
        }
        Ok(PeftConfig {
            r: r as usize,
            lora_alpha,
            lora_dropout,
            target_modules,
            base_model_name_or_path,
            fan_in_fan_out,
            rest: obj,
        })
    }

    /// peft_type LORA, task CAUSAL_LM (or none), bias none.
    fn check_kind(obj: &Map<String, Value>) -> Result<()> {
        match obj.get("peft_type").and_then(Value::as_str) {
            Some("LORA") => {}
            Some(other) => {
                return bad(format!("peft_type is {other:?}; wgpt loads LoRA adapters (peft_type \"LORA\") only"))
            }
            None => return bad("missing the field peft_type (\"LORA\")".into()),
        }
        match obj.get("task_type") {
            None | Some(Value::Null) => {}
            Some(Value::String(t)) if t == "CAUSAL_LM" => {}
            Some(t) => return bad(format!("task_type is {t}; wgpt runs causal language models (\"CAUSAL_LM\")")),
        }
        match obj.get("bias") {
            None | Some(Value::Null) => Ok(()),
            Some(Value::String(b)) if b == "none" => Ok(()),
            Some(b) => {
                bad(format!("bias is {b}: the adapter trained the base's biases too; wgpt takes bias \"none\" only"))
            }
        }
    }

    /// init_lora_weights: true, false or an init that leaves the base as it is.
    fn check_init(obj: &Map<String, Value>) -> Result<()> {
        match obj.get("init_lora_weights") {
            None | Some(Value::Null) | Some(Value::Bool(_)) => Ok(()),
            Some(Value::String(s)) if PLAIN_INITS.contains(&s.as_str()) => Ok(()),
            Some(v) => bad(format!(
                "init_lora_weights is {v}, an init that rewrites the base model's weights; wgpt needs the base as \
                 published (true, false, \"gaussian\", \"eva\" or \"orthogonal\")"
            )),
        }
    }

    /// The adapter_config.json text: every key, sorted, indented by two, as peft writes it.
    pub fn to_json(&self) -> String {
        let mut obj = self.rest.clone();
        obj.insert("r".into(), Value::from(self.r));
        obj.insert("lora_alpha".into(), json_number(self.lora_alpha));
        obj.insert("lora_dropout".into(), Value::from(self.lora_dropout));
        obj.insert("target_modules".into(), Value::from(self.target_modules.clone()));
        obj.insert("base_model_name_or_path".into(), self.base_model_name_or_path.clone().into());
        obj.insert("fan_in_fan_out".into(), Value::from(self.fan_in_fan_out));
        serde_json::to_string_pretty(&Value::Object(obj)).expect("a JSON value serializes")
    }
}
