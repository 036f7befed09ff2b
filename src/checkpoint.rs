//! Training checkpoints: an HF model directory (config.json, model.safetensors, tokenizer.json)
//! that `transformers` loads as-is, plus training_state.safetensors with the optimizer's state
//! (AdamW's moments `adam_m.*`, `adam_v.*`; SGD's and Muon's `momentum_buffer.*`) and, in
//! its metadata, the step, the data RNG and the run's settings, so that a resumed run continues
//! exactly where it stopped. A model-only checkpoint (saved without the optimizer state, where
//! storage is short) has the metadata and no moments: a third of the size; resumed, it goes on
//! at its step with AdamW's moments starting from zero.

use std::collections::HashMap;

use safetensors::tensor::TensorView;
use safetensors::Dtype;
use serde::{de::DeserializeOwned, Serialize};

use crate::hf::{parse_safetensors, to_f32};
use crate::model::lora::adapter_shape;
use crate::model::Gpt2Config;
use crate::{Error, Result};

pub const STATE_FILE: &str = "training_state.safetensors";
const META_KEY: &str = "wgpt_state";

/// AdamW's first and second moments, each in parameter order.
pub type Moments = (Vec<Vec<f32>>, Vec<Vec<f32>>);

/// An optimizer's state by key: `adam_m.<name>`, `adam_v.<name>` or `momentum_buffer.<name>`
/// (torch's state names), each of the shape of its parameter `<name>` of
/// [`Gpt2Config::param_specs`].
pub type OptimizerTensors = Vec<(String, Vec<f32>)>;

/// The prefixes of the optimizer's state tensors in training_state.safetensors, and of a LoRA
/// run's adapters (`lora.h.{l}.{module}.lora_A|B`), kept beside their state.
pub const STATE_PREFIXES: [&str; 4] = ["adam_m.", "adam_v.", "momentum_buffer.", "lora."];

/// The shape of the parameter (or adapter) an optimizer state key of `len` values belongs to,
/// where it is one; an adapter's rank is the run's, so `len` gives it.
fn state_shape(config: &Gpt2Config, key: &str, len: usize) -> Option<Vec<usize>> {
    if key.starts_with("lora.") {
        return adapter_shape(config, key, len);
    }
    let name = STATE_PREFIXES.iter().find_map(|p| key.strip_prefix(p))?;
    if name.starts_with("lora.") {
        return adapter_shape(config, name, len);
    }
    config.param_specs().into_iter().find(|(n, _)| n == name).map(|(_, shape)| shape)
}

/// training_state.safetensors bytes: the optimizer's state tensors (none for a model-only
/// checkpoint) and `meta` as JSON.
pub fn state_bytes<M: Serialize>(config: &Gpt2Config, state: Option<&OptimizerTensors>, meta: &M) -> Result<Vec<u8>> {
    let mut views = vec![];
    for (key, data) in state.map_or(&[][..], |s| &s[..]) {
        let shape = state_shape(config, key, data.len())
            .ok_or_else(|| Error::Format(format!("cannot serialize {key}: not an optimizer state of this model")))?;
        let view = TensorView::new(Dtype::F32, shape, bytemuck::cast_slice(data))
            .map_err(|e| Error::Format(format!("cannot serialize {key}: {e}")))?;
        views.push((key.clone(), view));
    }
    let meta =
        serde_json::to_string(meta).map_err(|e| Error::Format(format!("cannot serialize the training state: {e}")))?;
    safetensors::serialize(views, Some(HashMap::from([(META_KEY.to_string(), meta)])))
        .map_err(|e| Error::Format(format!("cannot write the training state: {e}")))
}

/// Reads training_state.safetensors' metadata.
fn parse_meta<M: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<M> {
    let (_, header) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| Error::Format(format!("{what} is not a valid safetensors file: {e}")))?;
    let meta_text =
        header.metadata().as_ref().and_then(|m| m.get(META_KEY)).ok_or_else(|| {
            Error::Format(format!("{what} has no \"{META_KEY}\" metadata; is it a wgpt training state?"))
        })?;
    serde_json::from_str(meta_text).map_err(|e| Error::Format(format!("{what}: malformed training state: {e}")))
}

/// Parses training_state.safetensors: the optimizer's state (None in a model-only checkpoint,
/// which has none at all), each tensor checked against its parameter's shape, and the metadata.
/// Which tensors a run needs is the optimizer's to check (crate::train::OptimizerState).
pub fn parse_state<M: DeserializeOwned>(
    what: &str,
    bytes: &[u8],
    config: &Gpt2Config,
) -> Result<(Option<OptimizerTensors>, M)> {
    let meta = parse_meta(what, bytes)?;
    let st = parse_safetensors(what, bytes)?;
    let mut keys: Vec<String> =
        st.names().into_iter().filter(|n| STATE_PREFIXES.iter().any(|p| n.starts_with(p))).map(String::from).collect();
    if keys.is_empty() {
        return Ok((None, meta));
    }
    keys.sort();
    let state = keys
        .into_iter()
        .map(|key| {
            let view = st.tensor(&key).map_err(|_| Error::Format(format!("{what}: missing tensor {key}")))?;
            let len = view.shape().iter().product();
            let shape = state_shape(config, &key, len)
                .ok_or_else(|| Error::Format(format!("{what}: {key} names no parameter of this model")))?;
            if view.shape() != shape.as_slice() {
                return Err(Error::Format(format!("{what}: {key} has shape {:?}, expected {shape:?}", view.shape())));
            }
            let data = to_f32(&key, &view)?;
            Ok((key, data))
        })
        .collect::<Result<OptimizerTensors>>()?;
    Ok((Some(state), meta))
}
