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

use crate::model::{Gpt2Config, HfClass, Weights};
use crate::Result;

/// The code transformers runs a model of wgpt's own type with (its config.json's `auto_map`,
/// loaded with `trust_remote_code=True`): (file name, text), written beside the weights.
pub const CODE_FILES: [(&str, &str); 2] = [
    ("configuration_wgpt.py", include_str!("configuration_wgpt.py")),
    ("modeling_wgpt.py", include_str!("modeling_wgpt.py")),
];

/// The code files a model of `config` travels with: [`CODE_FILES`] for wgpt's own model type,
/// none for a transformers class (GPT2LMHeadModel, LlamaForCausalLM, Qwen3ForCausalLM).
pub fn code_files(config: &Gpt2Config) -> &'static [(&'static str, &'static str)] {
    match HfClass::of(config) {
        HfClass::Wgpt => &CODE_FILES,
        HfClass::Gpt2 | HfClass::Llama | HfClass::Qwen3 => &[],
    }
}

/// A Hugging Face model directory's files for `weights` and `tokenizer`, by name: config.json,
/// model.safetensors, tokenizer.json and, for wgpt's own model type, its [`code_files`] (what
/// `transformers` loads as-is).
pub fn files(weights: &Weights, tokenizer: &crate::tokenizer::Tokenizer) -> Result<Vec<(&'static str, Vec<u8>)>> {
    let mut files = vec![
        ("config.json", config_json(&weights.config).into_bytes()),
        ("model.safetensors", save_weights(weights)?),
        ("tokenizer.json", tokenizer.to_json()?.into_bytes()),
    ];
    files.extend(code_files(&weights.config).iter().map(|(name, text)| (*name, text.as_bytes().to_vec())));
    Ok(files)
}

/// An HF model directory on disk.
#[cfg(not(target_arch = "wasm32"))]
pub mod dir;
