//! Hugging Face model directories, both ways: config.json ([`config`]), the state dict's names
//! per class ([`names`]) and safetensors ([`tensors`]) as transformers writes them for
//! GPT2LMHeadModel, LlamaForCausalLM, Qwen3ForCausalLM and wgpt's own model type, read into
//! [`Weights`] and written back so that `from_pretrained` loads them as-is; peft's LoRA adapters
//! on them ([`peft`]).

pub mod config;
pub mod names;
pub mod peft;
pub mod tensors;

pub use config::{config_json, eos_tokens, parse_config, read_config};
pub use tensors::{load_files, load_weights, parse_safetensors, read_internal, save_weights, to_f32};

use crate::model::Weights;
use crate::Result;

/// A Hugging Face model directory's files for `weights` and `tokenizer`, by name: config.json,
/// model.safetensors and tokenizer.json (what `transformers` loads as-is).
pub fn files(weights: &Weights, tokenizer: &crate::tokenizer::Tokenizer) -> Result<Vec<(&'static str, Vec<u8>)>> {
    Ok(vec![
        ("config.json", config_json(&weights.config).into_bytes()),
        ("model.safetensors", save_weights(weights)?),
        ("tokenizer.json", tokenizer.to_json()?.into_bytes()),
    ])
}

/// An HF model directory on disk.
#[cfg(not(target_arch = "wasm32"))]
pub mod dir;
