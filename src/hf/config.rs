//! config.json, read and written as transformers does for each class wgpt maps to:
//! GPT2LMHeadModel (`gpt2`), LlamaForCausalLM (`llama`), Qwen3ForCausalLM (`qwen3`), and wgpt's
//! own `wgpt` for any other combination of the switches. What a class can hold that wgpt cannot
//! run (rope scaling, sliding windows, another activation) is refused by name before anything
//! is allocated.

use serde_json::{json, Map, Value};

use crate::model::{Arch, Gpt2Config, HfClass, Mlp, Norm, Positions};
use crate::{Error, Result};

type Obj = Map<String, Value>;

fn bad<T>(msg: String) -> Result<T> {
    Err(Error::Format(format!("config.json: {msg}")))
}

/// A positive integer field, under the first of `names` present.
fn int(obj: &Obj, names: &[&str]) -> Result<usize> {
    for name in names {
        if let Some(x) = obj.get(*name) {
            return x.as_u64().map(|n| n as usize).ok_or_else(|| {
                Error::Format(format!("config.json: field \"{name}\" must be a positive integer, found {x}"))
            });
        }
    }
    bad(format!("missing field \"{}\"", names[0]))
}

/// An optional integer field (absent or null: None).
fn opt_int(obj: &Obj, name: &str) -> Result<Option<usize>> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => int(obj, &[name]).map(Some),
    }
}

fn float(obj: &Obj, name: &str, default: f64) -> Result<f64> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(default),
        Some(x) => {
            x.as_f64().ok_or_else(|| Error::Format(format!("config.json: \"{name}\" must be a number, found {x}")))
        }
    }
}

fn boolean(obj: &Obj, name: &str, default: bool) -> Result<bool> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(default),
        Some(x) => x
            .as_bool()
            .ok_or_else(|| Error::Format(format!("config.json: \"{name}\" must be true or false, found {x}"))),
    }
}

/// Reads any config.json wgpt maps (gpt2, llama, qwen3, wgpt), without asking whether this
/// build's kernels run every switch it sets ([`Gpt2Config::validate`] does that; see
/// [`parse_config`]). Optional sizes equal to their defaults read as unset, so a config reads
/// back equal to the one written.
pub fn read_config(text: &str) -> Result<Gpt2Config> {
    let v: Value =
        serde_json::from_str(text).map_err(|e| Error::Format(format!("config.json is not valid JSON: {e}")))?;
    let obj = v.as_object().ok_or_else(|| Error::Format("config.json must be a JSON object".into()))?;
    let cfg = match obj.get("model_type") {
        None | Some(Value::Null) => gpt2(obj)?,
        Some(Value::String(t)) => match t.as_str() {
            "gpt2" => gpt2(obj)?,
            "llama" => llama(obj, HfClass::Llama)?,
            "qwen3" => llama(obj, HfClass::Qwen3)?,
            "wgpt" => wgpt(obj)?,
            other => {
                return bad(format!(
                    "model_type is \"{other}\"; wgpt reads \"gpt2\", \"llama\", \"qwen3\" and \"wgpt\" models only"
                ))
            }
        },
        Some(x) => return bad(format!("model_type must be a string, found {x}")),
    };
    Ok(normalized(cfg))
}

/// Parses an HF config.json and checks this build can run it; unsupported settings are errors
/// naming the field.
pub fn parse_config(text: &str) -> Result<Gpt2Config> {
    let config = read_config(text)?;
    config.validate()?;
    Ok(config)
}

/// Optional sizes at their default left unset.
fn normalized(mut cfg: Gpt2Config) -> Gpt2Config {
    let mut plain = cfg;
    plain.arch.n_kv_head = None;
    plain.arch.head_dim = None;
    plain.arch.intermediate_size = None;
    if cfg.arch.n_kv_head == Some(cfg.n_head) {
        cfg.arch.n_kv_head = None;
    }
    if cfg.arch.head_dim.is_some_and(|hd| hd * cfg.n_head == cfg.n_embd) {
        cfg.arch.head_dim = None;
    }
    if cfg.arch.intermediate_size == Some(plain.intermediate_size()) {
        cfg.arch.intermediate_size = None;
    }
    cfg
}

/// GPT2LMHeadModel's config (model_type gpt2, or none: older files).
fn gpt2(obj: &Obj) -> Result<Gpt2Config> {
    let (n_layer, n_embd) = (int(obj, &["n_layer"])?, int(obj, &["n_embd"])?);
    let config = Gpt2Config {
        n_layer,
        n_head: int(obj, &["n_head"])?,
        n_embd,
        block_size: int(obj, &["n_positions", "n_ctx"])?,
        vocab_size: int(obj, &["vocab_size"])?,
        arch: Arch { tied: boolean(obj, "tie_word_embeddings", true)?, ..Arch::GPT2 },
    };
    match obj.get("activation_function") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s == "gelu_new" => {}
        Some(x) => return bad(format!("\"activation_function\" is {x}; wgpt supports \"gelu_new\" only")),
    }
    let mut config = config;
    config.arch.norm_eps = float(obj, "layer_norm_epsilon", 1e-5)? as f32;
    config.arch.intermediate_size = opt_int(obj, "n_inner")?.filter(|&i| i != 4 * n_embd);
    for (name, want) in [("scale_attn_weights", true), ("scale_attn_by_inverse_layer_idx", false)] {
        if boolean(obj, name, want)? != want {
            return bad(format!("\"{name}\" is {}; wgpt supports {want} only", !want));
        }
    }
    Ok(config)
}

/// The rope base, from transformers 5's `rope_parameters {rope_type, rope_theta}` or the older
/// top-level `rope_theta` + `rope_scaling`; any scaling is refused by name.
fn rope_theta(obj: &Obj) -> Result<f64> {
    match obj.get("rope_scaling") {
        None | Some(Value::Null) => {}
        Some(x) => return bad(format!("rope_scaling is {x}; wgpt supports plain rope only (rope_scaling: null)")),
    }
    match obj.get("rope_parameters") {
        None | Some(Value::Null) => float(obj, "rope_theta", 10000.0),
        Some(Value::Object(p)) => {
            match p.get("rope_type").and_then(Value::as_str) {
                None | Some("default") => {}
                Some(t) => return bad(format!("rope_parameters.rope_type is \"{t}\"; wgpt supports \"default\" only")),
            }
            float(p, "rope_theta", float(obj, "rope_theta", 10000.0)?)
        }
        Some(x) => bad(format!("rope_parameters must be an object, found {x}")),
    }
}

/// Refuses sliding-window attention (Qwen3's `use_sliding_window`, `layer_types`).
fn no_sliding_window(obj: &Obj) -> Result<()> {
    if boolean(obj, "use_sliding_window", false)? {
        return bad("use_sliding_window is true; wgpt supports full attention only".into());
    }
    if let Some(types) = obj.get("layer_types").and_then(Value::as_array) {
        if let Some(t) = types.iter().find(|t| t.as_str() != Some("full_attention")) {
            return bad(format!("layer_types has {t}; wgpt supports \"full_attention\" layers only"));
        }
    }
    Ok(())
}

/// LlamaForCausalLM's and Qwen3ForCausalLM's config.
fn llama(obj: &Obj, class: HfClass) -> Result<Gpt2Config> {
    let (n_head, n_embd) = (int(obj, &["num_attention_heads"])?, int(obj, &["hidden_size"])?);
    let n_kv_head = opt_int(obj, "num_key_value_heads")?.unwrap_or(n_head);
    if n_kv_head == 0 || n_head == 0 || !n_head.is_multiple_of(n_kv_head) {
        return bad(format!("num_key_value_heads ({n_kv_head}) must divide num_attention_heads ({n_head})"));
    }
    match obj.get("hidden_act").and_then(Value::as_str) {
        None | Some("silu") => {}
        Some(a) => return bad(format!("hidden_act is \"{a}\"; wgpt supports \"silu\" only")),
    }
    if opt_int(obj, "pretraining_tp")?.is_some_and(|tp| tp != 1) {
        return bad("pretraining_tp must be 1 (wgpt does not split the projections)".into());
    }
    no_sliding_window(obj)?;
    let attention_bias = boolean(obj, "attention_bias", false)?;
    let mlp_bias = match class {
        HfClass::Llama => boolean(obj, "mlp_bias", false)?,
        _ => false,
    };
    if attention_bias != mlp_bias {
        let with = if class == HfClass::Qwen3 { " (Qwen3's MLP has none)" } else { "" };
        return bad(format!(
            "attention_bias ({attention_bias}) differs from mlp_bias ({mlp_bias}){with}; wgpt's one bias switch \
             covers both"
        ));
    }
    let arch = Arch {
        positions: Positions::Rope,
        rope_theta: rope_theta(obj)? as f32,
        norm: Norm::RmsNorm,
        norm_eps: float(obj, "rms_norm_eps", 1e-6)? as f32,
        mlp: Mlp::SwiGlu,
        intermediate_size: Some(int(obj, &["intermediate_size"])?),
        n_kv_head: Some(n_kv_head),
        head_dim: Some(opt_int(obj, "head_dim")?.unwrap_or(n_embd / n_head)),
        qk_norm: class == HfClass::Qwen3,
        bias: attention_bias,
        tied: boolean(obj, "tie_word_embeddings", false)?,
        logit_softcap: None,
    };
    Ok(Gpt2Config {
        n_layer: int(obj, &["num_hidden_layers"])?,
        n_head,
        n_embd,
        block_size: int(obj, &["max_position_embeddings"])?,
        vocab_size: int(obj, &["vocab_size"])?,
        arch,
    })
}

/// wgpt's own config: GPT-2's size keys and the switches under their setting keys.
fn wgpt(obj: &Obj) -> Result<Gpt2Config> {
    let arch = serde_json::from_value(Value::Object(obj.clone()))
        .map_err(|e| Error::Format(format!("config.json: the architecture switches: {e}")))?;
    Ok(Gpt2Config {
        n_layer: int(obj, &["n_layer"])?,
        n_head: int(obj, &["n_head"])?,
        n_embd: int(obj, &["n_embd"])?,
        block_size: int(obj, &["n_positions", "n_ctx", "block_size"])?,
        vocab_size: int(obj, &["vocab_size"])?,
        arch,
    })
}

/// The config.json transformers writes for `c`'s class ([`HfClass::of`]).
pub fn config_json(c: &Gpt2Config) -> String {
    let v = match HfClass::of(c) {
        HfClass::Gpt2 => gpt2_json(c),
        class @ (HfClass::Llama | HfClass::Qwen3) => llama_json(c, class),
        HfClass::Wgpt => wgpt_json(c),
    };
    serde_json::to_string_pretty(&v).expect("a JSON value serializes")
}

fn gpt2_json(c: &Gpt2Config) -> Value {
    json!({
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "activation_function": "gelu_new",
        "attn_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "resid_pdrop": 0.0,
        "bos_token_id": c.vocab_size - 1,
        "eos_token_id": c.vocab_size - 1,
        "initializer_range": 0.02,
        "layer_norm_epsilon": short(c.arch.norm_eps),
        "n_ctx": c.block_size,
        "n_embd": c.n_embd,
        "n_head": c.n_head,
        "n_inner": c.arch.intermediate_size.filter(|&i| i != 4 * c.n_embd),
        "n_layer": c.n_layer,
        "n_positions": c.block_size,
        "reorder_and_upcast_attn": false,
        "scale_attn_by_inverse_layer_idx": false,
        "scale_attn_weights": true,
        "tie_word_embeddings": c.arch.tied,
        "use_cache": true,
        "vocab_size": c.vocab_size,
    })
}

/// An f32 as the shortest decimal that reads back as it (1e-6, not 9.999999974752427e-7).
fn short(x: f32) -> Value {
    let v: f64 = x.to_string().parse().expect("an f32 prints as a number");
    json!(v)
}

fn llama_json(c: &Gpt2Config, class: HfClass) -> Value {
    let a = &c.arch;
    let mut v = json!({
        "architectures": [class.class_name()],
        "model_type": class.model_type(),
        "attention_bias": a.bias,
        "attention_dropout": 0.0,
        "head_dim": c.head_dim(),
        "hidden_act": "silu",
        "hidden_size": c.n_embd,
        "initializer_range": 0.02,
        "intermediate_size": c.intermediate_size(),
        "max_position_embeddings": c.block_size,
        "num_attention_heads": c.n_head,
        "num_hidden_layers": c.n_layer,
        "num_key_value_heads": c.n_kv_head(),
        "rms_norm_eps": short(a.norm_eps),
        "rope_parameters": {"rope_theta": short(a.rope_theta), "rope_type": "default"},
        "rope_theta": short(a.rope_theta),
        "rope_scaling": null,
        "tie_word_embeddings": a.tied,
        "use_cache": true,
        "vocab_size": c.vocab_size,
    });
    let o = v.as_object_mut().expect("an object");
    match class {
        HfClass::Qwen3 => {
            o.insert("layer_types".into(), json!(vec!["full_attention"; c.n_layer]));
            o.insert("max_window_layers".into(), json!(c.n_layer));
            o.insert("use_sliding_window".into(), json!(false));
            o.insert("sliding_window".into(), Value::Null);
        }
        _ => {
            o.insert("mlp_bias".into(), json!(a.bias));
            o.insert("pretraining_tp".into(), json!(1));
        }
    }
    v
}

fn wgpt_json(c: &Gpt2Config) -> Value {
    let a = &c.arch;
    json!({
        "architectures": ["WgptForCausalLM"],
        "model_type": "wgpt",
        "auto_map": {
            "AutoConfig": "configuration_wgpt.WgptConfig",
            "AutoModelForCausalLM": "modeling_wgpt.WgptForCausalLM",
        },
        "bos_token_id": c.vocab_size - 1,
        "eos_token_id": c.vocab_size - 1,
        "n_layer": c.n_layer,
        "n_head": c.n_head,
        "n_embd": c.n_embd,
        "n_positions": c.block_size,
        "vocab_size": c.vocab_size,
        "positions": a.positions,
        "rope_theta": short(a.rope_theta),
        "norm": a.norm,
        "norm_eps": short(a.norm_eps),
        "mlp": a.mlp,
        "intermediate_size": c.intermediate_size(),
        "n_kv_head": c.n_kv_head(),
        "head_dim": c.head_dim(),
        "qk_norm": a.qk_norm,
        "bias": a.bias,
        "tied": a.tied,
        "tie_word_embeddings": a.tied,
        "logit_softcap": a.logit_softcap.map(short),
    })
}

/// generation_config.json's (or config.json's) `eos_token_id`: an int, a list of ints, or
/// absent/null (no stop tokens).
pub fn eos_tokens(text: &str) -> Result<Vec<u32>> {
    let v: Value = serde_json::from_str(text)
        .map_err(|e| Error::Format(format!("generation_config.json is not valid JSON: {e}")))?;
    let id = |x: &Value| {
        x.as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| Error::Format(format!("generation_config.json: eos_token_id must be token ids, found {x}")))
    };
    match v.get("eos_token_id") {
        None | Some(Value::Null) => Ok(vec![]),
        Some(Value::Array(xs)) => xs.iter().map(id).collect(),
        Some(x) => Ok(vec![id(x)?]),
    }
}
