//! An HF model directory on disk: config.json, model.safetensors or a sharded checkpoint
//! (model.safetensors.index.json and its shards), an optional tokenizer.json and an optional
//! generation_config.json; a model of wgpt's own type is written with its code
//! (configuration_wgpt.py, modeling_wgpt.py) beside the weights.

use std::path::Path;

use serde_json::Value;

use super::{code_files, config_json, eos_tokens, load_files, parse_config, parse_safetensors, save_weights};
use crate::model::{Gpt2Config, Weights};
use crate::read_file;
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

fn read_text(path: &Path) -> Result<String> {
    String::from_utf8(read_file(path)?).map_err(|_| Error::Format(format!("{} is not UTF-8 text", path.display())))
}

/// The model's shape from the directory's config.json, without reading the weights.
pub fn load_config(dir: &Path) -> Result<Gpt2Config> {
    if !dir.is_dir() {
        return Err(Error::Io(format!(
            "{} is not a directory; expected an HF model directory with config.json and model.safetensors",
            dir.display()
        )));
    }
    let config_path = dir.join("config.json");
    parse_config(&read_text(&config_path)?).map_err(|e| Error::Format(format!("{}: {e}", config_path.display())))
}

/// The bytes of the directory's safetensors files, each with its path for messages:
/// model.safetensors, or else the shards that model.safetensors.index.json's weight_map names.
pub fn read_safetensors(dir: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let single = dir.join("model.safetensors");
    let index = dir.join("model.safetensors.index.json");
    if single.exists() || !index.exists() {
        return Ok(vec![(single.display().to_string(), read_file(&single)?)]);
    }
    let v: Value = serde_json::from_str(&read_text(&index)?)
        .map_err(|e| Error::Format(format!("{} is not valid JSON: {e}", index.display())))?;
    let map = v.get("weight_map").and_then(Value::as_object).ok_or_else(|| {
        Error::Format(format!("{}: missing the object \"weight_map\" (tensor name -> shard file)", index.display()))
    })?;
    let mut shards: Vec<&str> = Vec::new();
    for file in map.values() {
        let name =
            file.as_str().filter(|n| !n.is_empty() && !n.contains(['/', '\\']) && *n != "..").ok_or_else(|| {
                Error::Format(format!("{}: weight_map names {file}, not a file in the directory", index.display()))
            })?;
        if !shards.contains(&name) {
            shards.push(name);
        }
    }
    shards.sort_unstable();
    shards
        .into_iter()
        .map(|name| {
            let p = dir.join(name);
            Ok((p.display().to_string(), read_file(&p)?))
        })
        .collect()
}

/// Loads the weights (one file or shards), and the tokenizer if the directory has one.
pub fn load(dir: &Path) -> Result<(Weights, Option<Tokenizer>)> {
    let config = load_config(dir)?;
    let files = read_safetensors(dir)?;
    let parsed = files.iter().map(|(what, bytes)| parse_safetensors(what, bytes)).collect::<Result<Vec<_>>>()?;
    let what = match files.len() {
        1 => files[0].0.clone(),
        n => format!("{} ({n} shards)", dir.join("model.safetensors.index.json").display()),
    };
    let weights = load_files(&what, &parsed, config)?;
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

/// The tokens generation stops at: generation_config.json's eos_token_id (an int or a list);
/// none without that file.
pub fn stop_tokens(dir: &Path) -> Result<Vec<u32>> {
    let p = dir.join("generation_config.json");
    if !p.exists() {
        return Ok(vec![]);
    }
    eos_tokens(&read_text(&p)?).map_err(|e| Error::Format(format!("{}: {e}", p.display())))
}

/// Writes config.json, model.safetensors, (if given) tokenizer.json and (for wgpt's own model
/// type) its code files into `dir`.
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
    for (name, text) in code_files(&weights.config) {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(|e| io(&p, e))?;
    }
    Ok(())
}
