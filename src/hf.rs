//! Hugging Face model directories: config.json and model.safetensors as `transformers` writes
//! them (keys with or without `transformer.`, `attn.bias`/`attn.masked_bias` buffers, tied or
//! present `lm_head.weight`, f32/f16/bf16), read into [`Weights`] and written back so that
//! `GPT2LMHeadModel.from_pretrained` loads them as-is.

use std::collections::HashMap;

use safetensors::{tensor::TensorView, Dtype, SafeTensors};
use serde_json::{json, Value};

use crate::model::{hf_name, Arch, Gpt2Config, HfClass, Named, Weights, LM_HEAD};
use crate::{Error, Result};

/// Parses an HF config.json: a GPT-2 (`model_type` "gpt2", or none) or wgpt's own model type
/// ("wgpt": GPT-2's keys plus the architecture switches under their names). Unsupported
/// settings are errors naming the field.
pub fn parse_config(text: &str) -> Result<Gpt2Config> {
    let v: Value =
        serde_json::from_str(text).map_err(|e| Error::Format(format!("config.json is not valid JSON: {e}")))?;
    let obj = v.as_object().ok_or_else(|| Error::Format("config.json must be a JSON object".into()))?;
    let field = |names: &[&str]| -> Result<usize> {
        for name in names {
            if let Some(x) = obj.get(*name) {
                return x.as_u64().map(|n| n as usize).ok_or_else(|| {
                    Error::Format(format!("config.json: field \"{name}\" must be a positive integer, found {x}"))
                });
            }
        }
        Err(Error::Format(format!("config.json: missing field \"{}\"", names[0])))
    };
    let mut config = Gpt2Config {
        n_layer: field(&["n_layer"])?,
        n_head: field(&["n_head"])?,
        n_embd: field(&["n_embd"])?,
        block_size: field(&["n_positions", "n_ctx"])?,
        vocab_size: field(&["vocab_size"])?,
        arch: Arch::GPT2,
    };
    match obj.get("model_type").and_then(Value::as_str) {
        None | Some("gpt2") => config.arch = gpt2_arch(obj, config.n_embd)?,
        Some("wgpt") => {
            config.arch = serde_json::from_value(v.clone())
                .map_err(|e| Error::Format(format!("config.json: the architecture switches: {e}")))?;
        }
        Some(t) => {
            return Err(Error::Format(format!(
                "config.json: model_type is \"{t}\"; wgpt runs GPT-2 (\"gpt2\") models and its own (\"wgpt\") only"
            )));
        }
    }
    config.validate()?;
    Ok(config)
}

/// A GPT-2 config's architecture: GPT-2's, with its head tied or not, its n_inner and its
/// layer_norm_epsilon; other settings it cannot run are errors naming the field.
fn gpt2_arch(obj: &serde_json::Map<String, Value>, n_embd: usize) -> Result<Arch> {
    let expect_str = |name: &str, want: &str| -> Result<()> {
        match obj.get(name) {
            None | Some(Value::Null) => Ok(()),
            Some(Value::String(s)) if s == want => Ok(()),
            Some(x) => Err(Error::Format(format!("config.json: \"{name}\" is {x}; wgpt supports \"{want}\" only"))),
        }
    };
    expect_str("activation_function", "gelu_new")?;
    let mut arch = Arch::GPT2;
    if let Some(eps) = obj.get("layer_norm_epsilon").and_then(Value::as_f64) {
        arch.norm_eps = eps as f32;
    }
    if let Some(n_inner) = obj.get("n_inner").and_then(Value::as_u64) {
        arch.intermediate_size = (n_inner as usize != 4 * n_embd).then_some(n_inner as usize);
    }
    if let Some(tied) = obj.get("tie_word_embeddings").and_then(Value::as_bool) {
        arch.tied = tied;
    }
    for (name, want) in [("scale_attn_weights", true), ("scale_attn_by_inverse_layer_idx", false)] {
        if let Some(b) = obj.get(name).and_then(Value::as_bool) {
            if b != want {
                return Err(Error::Format(format!("config.json: \"{name}\" is {b}; wgpt supports {want} only")));
            }
        }
    }
    Ok(arch)
}

/// An f32 as the shortest decimal that reads back as it (1e-5, not 9.99999974e-6).
fn short(x: f32) -> f64 {
    x.to_string().parse().expect("an f32 prints as a number")
}

/// The config.json that `transformers` writes for a GPT2LMHeadModel of this shape; any other
/// combination of switches is wgpt's own model type, its switches under their names.
pub fn config_json(c: &Gpt2Config) -> String {
    if HfClass::of(c) != HfClass::Gpt2 {
        return wgpt_config_json(c);
    }
    let n_inner = c.arch.intermediate_size.filter(|&i| i != 4 * c.n_embd);
    let v = json!({
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
        "n_inner": n_inner,
        "n_layer": c.n_layer,
        "n_positions": c.block_size,
        "reorder_and_upcast_attn": false,
        "scale_attn_by_inverse_layer_idx": false,
        "scale_attn_weights": true,
        "tie_word_embeddings": c.arch.tied,
        "use_cache": true,
        "vocab_size": c.vocab_size,
    });
    serde_json::to_string_pretty(&v).expect("a JSON value serializes")
}

/// config.json for model_type "wgpt": GPT-2's size keys and every switch (null: the default
/// from the sizes), so that it reads back as the same config.
fn wgpt_config_json(c: &Gpt2Config) -> String {
    let a = &c.arch;
    let v = json!({
        "architectures": [HfClass::Wgpt.class_name()],
        "model_type": HfClass::Wgpt.model_type(),
        "bos_token_id": c.vocab_size - 1,
        "eos_token_id": c.vocab_size - 1,
        "n_layer": c.n_layer,
        "n_head": c.n_head,
        "n_embd": c.n_embd,
        "n_positions": c.block_size,
        "vocab_size": c.vocab_size,
        "positions": a.positions.name(),
        "rope_theta": short(a.rope_theta),
        "norm": a.norm.name(),
        "norm_eps": short(a.norm_eps),
        "mlp": a.mlp.name(),
        "intermediate_size": a.intermediate_size,
        "n_kv_head": a.n_kv_head,
        "head_dim": a.head_dim,
        "qk_norm": a.qk_norm,
        "bias": a.bias,
        "tied": a.tied,
        "tie_word_embeddings": a.tied,
        "logit_softcap": a.logit_softcap.map(short),
    });
    serde_json::to_string_pretty(&v).expect("a JSON value serializes")
}

/// A tensor's values as f32, from f32, f16 or bf16 storage.
pub fn to_f32(name: &str, view: &TensorView) -> Result<Vec<f32>> {
    let bytes = view.data();
    Ok(match view.dtype() {
        Dtype::F32 => bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        Dtype::F16 => bytes.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        Dtype::BF16 => bytes.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        other => {
            return Err(Error::Format(format!("tensor {name} has dtype {other:?}; expected F32, F16 or BF16")));
        }
    })
}

/// Parses a safetensors file, with the reason in the error.
pub fn parse_safetensors<'a>(what: &str, bytes: &'a [u8]) -> Result<SafeTensors<'a>> {
    SafeTensors::deserialize(bytes).map_err(|e| Error::Format(format!("{what} is not a valid safetensors file: {e}")))
}

/// Reads GPT-2 parameters for `config` from safetensors bytes laid out as HF writes them. Keys
/// may carry the `transformer.` prefix (GPT2LMHeadModel's files) or not (GPT2Model's); `attn.bias`/`attn.masked_bias` are
/// ignored; `lm_head.weight` is the untied head's tensor, and where the config ties it, if
/// present, must equal wte.
pub fn load_weights(what: &str, bytes: &[u8], config: Gpt2Config) -> Result<Weights> {
    let st = parse_safetensors(what, bytes)?;
    let mut by_name: HashMap<String, TensorView> = HashMap::new();
    let mut lm_head = None;
    for (name, view) in st.tensors() {
        let key = name.strip_prefix("transformer.").unwrap_or(&name).to_string();
        if key.ends_with(".attn.bias") || key.ends_with(".attn.masked_bias") {
            continue;
        }
        if name == LM_HEAD && config.arch.tied {
            lm_head = Some(view);
            continue;
        }
        by_name.insert(key, view);
    }
    // before anything is sized by the config: a hostile n_layer must not allocate a list of
    // millions of tensor names (each layer has 12 tensors)
    if config.n_layer > by_name.len() {
        return Err(Error::Format(format!(
            "{what} has {} GPT-2 tensors, far too few for config.json's n_layer {} (12 per layer)",
            by_name.len(),
            config.n_layer
        )));
    }
    let specs = config.param_specs();
    let mut tensors = Vec::with_capacity(specs.len());
    for (name, shape) in &specs {
        let view = by_name
            .remove(name)
            .ok_or_else(|| Error::Format(format!("{what}: missing tensor {name} (expected shape {shape:?})")))?;
        if view.shape() != shape.as_slice() {
            return Err(Error::Format(format!(
                "{what}: tensor {name} has shape {:?}, expected {shape:?}",
                view.shape()
            )));
        }
        tensors.push(to_f32(name, &view).map_err(|e| Error::Format(format!("{what}: {e}")))?);
    }
    let mut extra: Vec<String> = by_name
        .into_keys()
        .filter(|k| k.starts_with("wte") || k.starts_with("wpe") || k.starts_with("h.") || k.starts_with("ln_f"))
        .collect();
    extra.sort();
    if let Some(k) = extra.first() {
        return Err(Error::Format(format!(
            "{what}: unexpected tensor {k} (is config.json's n_layer {} right?)",
            config.n_layer
        )));
    }
    if let Some(view) = lm_head {
        let lm = to_f32("lm_head.weight", &view)?;
        if view.shape() != [config.vocab_size, config.n_embd] || lm != tensors[0] {
            return Err(Error::Format(format!(
                "{what}: lm_head.weight differs from wte.weight but config.json ties them (tie_word_embeddings); \
                 set it to false for an untied head"
            )));
        }
    }
    Ok(Weights { config, tensors })
}

/// model.safetensors bytes for `weights`, keys `transformer.<name>` (GPT2LMHeadModel's own
/// layout; lm_head absent where tied, `lm_head.weight` where not), metadata format "pt" as
/// transformers requires.
pub fn save_weights(weights: &Weights) -> Result<Vec<u8>> {
    let specs = weights.config.param_specs();
    let views: Vec<(String, TensorView)> = specs
        .iter()
        .zip(&weights.tensors)
        .map(|((name, shape), data)| {
            let view = TensorView::new(Dtype::F32, shape.clone(), bytemuck::cast_slice(data))
                .map_err(|e| Error::Format(format!("cannot serialize {name}: {e}")))?;
            Ok((hf_name(name), view))
        })
        .collect::<Result<_>>()?;
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize(views, Some(meta)).map_err(|e| Error::Format(format!("cannot write safetensors: {e}")))
}

/// A Hugging Face model directory's files for `weights` and `tokenizer`, by name: config.json,
/// model.safetensors and tokenizer.json (what `transformers` loads as-is).
pub fn files(weights: &Weights, tokenizer: &crate::tokenizer::Tokenizer) -> Result<Vec<(&'static str, Vec<u8>)>> {
    Ok(vec![
        ("config.json", config_json(&weights.config).into_bytes()),
        ("model.safetensors", save_weights(weights)?),
        ("tokenizer.json", tokenizer.to_json()?.into_bytes()),
    ])
}

/// An HF model directory on disk: config.json, model.safetensors and optional tokenizer.json.
#[cfg(not(target_arch = "wasm32"))]
pub mod dir {
    use std::path::Path;

    use super::*;
    use crate::read_file;
    use crate::tokenizer::Tokenizer;

    /// The model's shape from the directory's config.json, without reading the weights.
    pub fn load_config(dir: &Path) -> Result<Gpt2Config> {
        if !dir.is_dir() {
            return Err(Error::Io(format!(
                "{} is not a directory; expected an HF model directory with config.json and model.safetensors",
                dir.display()
            )));
        }
        let config_path = dir.join("config.json");
        let text = String::from_utf8(read_file(&config_path)?)
            .map_err(|_| Error::Format(format!("{} is not UTF-8 text", config_path.display())))?;
        parse_config(&text).map_err(|e| Error::Format(format!("{}: {e}", config_path.display())))
    }

    /// Loads the weights, and the tokenizer if the directory has one.
    pub fn load(dir: &Path) -> Result<(Weights, Option<Tokenizer>)> {
        let config = load_config(dir)?;
        let st_path = dir.join("model.safetensors");
        let bytes = read_file(&st_path)?;
        let weights = load_weights(&st_path.display().to_string(), &bytes, config)?;
        let tok_path = dir.join("tokenizer.json");
        let tokenizer = if tok_path.exists() { Some(Tokenizer::from_file(&tok_path)?) } else { None };
        if let Some(t) = &tokenizer {
            if t.vocab_size() > config.vocab_size {
                return Err(Error::Format(format!(
                    "{}: the tokenizer has {} tokens but the model's vocab_size is {}",
                    tok_path.display(),
                    t.vocab_size(),
                    config.vocab_size
                )));
            }
        }
        Ok((weights, tokenizer))
    }

    /// Writes config.json, model.safetensors and (if given) tokenizer.json into `dir`.
    pub fn save(dir: &Path, weights: &Weights, tokenizer: Option<&Tokenizer>) -> Result<()> {
        let io = |p: &Path, e: std::io::Error| Error::Io(format!("cannot write {}: {e}", p.display()));
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let p = dir.join("config.json");
        std::fs::write(&p, config_json(&weights.config)).map_err(|e| io(&p, e))?;
        let p = dir.join("model.safetensors");
        std::fs::write(&p, save_weights(weights)?).map_err(|e| io(&p, e))?;
        if let Some(t) = tokenizer {
            let p = dir.join("tokenizer.json");
            std::fs::write(&p, t.to_json()?).map_err(|e| io(&p, e))?;
        }
        Ok(())
    }
}
