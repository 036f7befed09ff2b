//! Training checkpoints: an HF model directory (config.json, model.safetensors, tokenizer.json)
//! that `transformers` loads as-is, plus training_state.safetensors with AdamW's moments and, in
//! its metadata, the step, the data RNG and the run's settings, so that a resumed run continues
//! exactly where it stopped. A model-only checkpoint (saved without the optimizer state, where
//! storage is short) has the metadata and no moments: a third of the size; resumed, it goes on
//! at its step with AdamW's moments starting from zero.

use std::collections::HashMap;

use safetensors::tensor::TensorView;
use safetensors::Dtype;
use serde::{de::DeserializeOwned, Serialize};

use crate::hf::{parse_safetensors, to_f32};
use crate::model::Gpt2Config;
use crate::{Error, Result};

pub const STATE_FILE: &str = "training_state.safetensors";
const META_KEY: &str = "wgpt_state";

/// AdamW's first and second moments, each in parameter order.
pub type Moments = (Vec<Vec<f32>>, Vec<Vec<f32>>);

/// training_state.safetensors bytes: `adam_m.<name>`, `adam_v.<name>` (none for a model-only
/// checkpoint) and `meta` as JSON.
pub fn state_bytes<M: Serialize>(config: &Gpt2Config, moments: Option<&Moments>, meta: &M) -> Result<Vec<u8>> {
    let specs = config.param_specs();
    let mut views = vec![];
    let (m, v): (&[Vec<f32>], &[Vec<f32>]) = moments.map_or((&[], &[]), |(m, v)| (m, v));
    for (prefix, moments) in [("adam_m.", m), ("adam_v.", v)] {
        for ((name, shape), data) in specs.iter().zip(moments) {
            let view = TensorView::new(Dtype::F32, shape.clone(), bytemuck::cast_slice(data))
                .map_err(|e| Error::Format(format!("cannot serialize {prefix}{name}: {e}")))?;
            views.push((format!("{prefix}{name}"), view));
        }
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

/// Parses training_state.safetensors: the moments (None in a model-only checkpoint, which has
/// no `adam_` tensor at all) and the metadata.
pub fn parse_state<M: DeserializeOwned>(what: &str, bytes: &[u8], config: &Gpt2Config) -> Result<(Option<Moments>, M)> {
    let meta = parse_meta(what, bytes)?;
    let st = parse_safetensors(what, bytes)?;
    if !st.names().iter().any(|n| n.starts_with("adam_")) {
        return Ok((None, meta));
    }
    let specs = config.param_specs();
    let read = |prefix: &str| -> Result<Vec<Vec<f32>>> {
        specs
            .iter()
            .map(|(name, shape)| {
                let key = format!("{prefix}{name}");
                let view = st.tensor(&key).map_err(|_| Error::Format(format!("{what}: missing tensor {key}")))?;
                if view.shape() != shape.as_slice() {
                    return Err(Error::Format(format!(
                        "{what}: {key} has shape {:?}, expected {shape:?}",
                        view.shape()
                    )));
                }
                to_f32(&key, &view)
            })
            .collect()
    };
    let m = read("adam_m.")?;
    let v = read("adam_v.")?;
    Ok((Some((m, v)), meta))
}
