//! Safetensors in and out under a class's state-dict names ([`super::names`]): one file or a
//! sharded set, f32/f16/bf16 read as f32, written as f32 with metadata format "pt" as
//! transformers requires.

use std::collections::HashMap;

use safetensors::{tensor::TensorView, Dtype, SafeTensors};

use super::names::{self, NamedTensor};
use crate::model::{Gpt2Config, HfClass, Weights};
use crate::{Error, Result};

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

/// Buffers a model's files keep that are not parameters (GPT-2's masks, old Llama files'
/// rotary frequencies).
fn is_buffer(key: &str) -> bool {
    key.ends_with(".attn.bias") || key.ends_with(".attn.masked_bias") || key.ends_with("rotary_emb.inv_freq")
}

/// The internal tensors of `config` (in [`names::internal_specs`] order) from the HF tensors of
/// `files` (one file or a checkpoint's shards), named as `config`'s class names them, with or
/// without `transformer.`. Missing tensors, wrong shapes, leftovers and (when tied) an
/// `lm_head.weight` other than the embedding are errors naming the tensor.
pub fn read_internal(what: &str, files: &[SafeTensors], config: &Gpt2Config) -> Result<Vec<NamedTensor>> {
    let class = HfClass::of(config);
    let prefix = names::prefix(class);
    let mut by_name: HashMap<String, TensorView> = HashMap::new();
    for st in files {
        for (name, view) in st.tensors() {
            let key = name.strip_prefix(prefix).unwrap_or(&name).to_string();
            if !is_buffer(&key) {
                by_name.insert(key, view);
            }
        }
    }
    let lm_head = if config.arch.tied { by_name.remove("lm_head.weight") } else { None };
    enough_tensors(what, by_name.len(), config)?;
    let tensors = names::to_internal(what, config, |name| match by_name.remove(name) {
        None => Ok(None),
        Some(view) => Ok(Some((view.shape().to_vec(), to_f32(name, &view).map_err(|e| in_file(what, e))?))),
    })?;
    let mut extra: Vec<String> = match class {
        // GPT-2 files may carry heads of other classes (GPT2DoubleHeadsModel's); only the
        // model's own names must match
        HfClass::Gpt2 => by_name
            .into_keys()
            .filter(|k| k.starts_with("wte") || k.starts_with("wpe") || k.starts_with("h.") || k.starts_with("ln_f"))
            .collect(),
        _ => by_name.into_keys().collect(),
    };
    extra.sort();
    if let Some(k) = extra.first() {
        return Err(Error::Format(format!(
            "{what}: unexpected tensor {k} (is config.json's n_layer {} right?)",
            config.n_layer
        )));
    }
    if let Some(view) = lm_head {
        let lm = to_f32("lm_head.weight", &view).map_err(|e| in_file(what, e))?;
        if view.shape() != [config.vocab_size, config.n_embd] || lm != tensors[0].2 {
            return Err(Error::Format(format!(
                "{what}: lm_head.weight differs from the token embedding, but config.json ties them \
                 (tie_word_embeddings); set it to false for an untied head"
            )));
        }
    }
    Ok(tensors)
}

/// Checks, before anything is sized by the config, that the files could hold `config`'s
/// layers: a hostile n_layer must not allocate a table of millions of tensor names (each layer
/// has several tensors).
fn enough_tensors(what: &str, count: usize, config: &Gpt2Config) -> Result<()> {
    if config.n_layer > count {
        return Err(Error::Format(format!(
            "{what} has {count} tensors, far too few for config.json's n_layer {}",
            config.n_layer
        )));
    }
    Ok(())
}

fn in_file(what: &str, e: Error) -> Error {
    Error::Format(format!("{what}: {e}"))
}

/// The model's parameters (in [`Gpt2Config::param_specs`] order) from `files`; a switch whose
/// tensors this build's model does not have is refused by name before anything is read.
pub fn load_files(what: &str, files: &[SafeTensors], config: Gpt2Config) -> Result<Weights> {
    enough_tensors(what, files.iter().map(SafeTensors::len).sum(), &config)?;
    names::check_specs(&config)?;
    let mut by_name: HashMap<String, Vec<f32>> =
        read_internal(what, files, &config)?.into_iter().map(|(n, _, v)| (n, v)).collect();
    let tensors = config
        .param_specs()
        .iter()
        .map(|(name, _)| by_name.remove(name).expect("check_specs matched the tables"))
        .collect();
    Ok(Weights { config, tensors })
}

/// Reads parameters for `config` from one safetensors file laid out as its HF class writes it.
pub fn load_weights(what: &str, bytes: &[u8], config: Gpt2Config) -> Result<Weights> {
    let st = parse_safetensors(what, bytes)?;
    load_files(what, &[st], config)
}

/// Safetensors bytes of named tensors, f32, metadata format "pt".
pub fn serialize(tensors: &[NamedTensor]) -> Result<Vec<u8>> {
    let views: Vec<(&str, TensorView)> = tensors
        .iter()
        .map(|(name, shape, data)| {
            let view = TensorView::new(Dtype::F32, shape.clone(), bytemuck::cast_slice(data))
                .map_err(|e| Error::Format(format!("cannot serialize {name}: {e}")))?;
            Ok((name.as_str(), view))
        })
        .collect::<Result<_>>()?;
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize(views, Some(meta)).map_err(|e| Error::Format(format!("cannot write safetensors: {e}")))
}

/// model.safetensors bytes for `weights` under its class's names (GPT2LMHeadModel's
/// `transformer.<name>` Conv1D layout; Llama's and Qwen3's split, transposed projections;
/// wgpt's nanoGPT names), a tied head left out as transformers does.
pub fn save_weights(weights: &Weights) -> Result<Vec<u8>> {
    let cfg = &weights.config;
    let specs = cfg.param_specs();
    let by_name: HashMap<&str, &[f32]> =
        specs.iter().zip(&weights.tensors).map(|((n, _), t)| (n.as_str(), t.as_slice())).collect();
    let prefix = names::prefix(HfClass::of(cfg));
    let mut tensors = names::from_internal(cfg, |n| by_name.get(n).copied())?;
    for (name, _, _) in &mut tensors {
        if name != "lm_head.weight" {
            *name = format!("{prefix}{name}");
        }
    }
    serialize(&tensors)
}
