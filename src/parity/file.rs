//! A parity file read: its model, batch, optimizer and training metadata, and what the
//! reference computed (the format is in tests/fixtures/README.md).

use std::collections::HashMap;

use safetensors::{Dtype, SafeTensors};

use super::{AdamWConfig, OptimizerMeta, TrainMeta};
use crate::hf::{load_weights, names, parse_safetensors, read_config, to_f32};
use crate::model::{Gpt2Config, HfClass, Weights};
use crate::train::TrainConfig;
use crate::{Error, Result};

/// A parity file's contents, parsed and checked against its config.
pub struct ParityFile {
    pub weights: Weights,
    /// The optimizer that made the expected steps (metadata `optimizer`, or the older `adamw`).
    pub optimizer: Option<OptimizerMeta>,
    /// Its AdamW settings, where it trains with AdamW.
    pub adamw: Option<AdamWConfig>,
    pub b: usize,
    pub t: usize,
    pub x: Vec<u32>,      // (B, T)
    pub y: Vec<u32>,      // (B, T)
    pub logits: Vec<f32>, // (B, T, V)
    pub loss: f32,
    pub losses: Vec<f32>, // (N)
    /// Gradients of `loss` in parameter order, where the file has them.
    pub grads: Option<Vec<Vec<f32>>>,
    /// Parameters after one optimizer step, in parameter order, where the file has them.
    pub step1: Option<Vec<Vec<f32>>>,
    /// The nanoGPT training of `step_n` (metadata `train`), where the file has it.
    pub train: Option<TrainMeta>,
    /// Parameters after `train`'s steps (`expected.stepN.*`), in parameter order.
    pub step_n: Option<Vec<Vec<f32>>>,
}

impl ParityFile {
    pub fn parse(what: &str, bytes: &[u8]) -> Result<ParityFile> {
        let (_, meta) = safetensors::SafeTensors::read_metadata(bytes)
            .map_err(|e| Error::Format(format!("{what} is not a valid safetensors file: {e}")))?;
        let meta = meta.metadata().clone().unwrap_or_default();
        let config_text = meta
            .get("config")
            .ok_or_else(|| Error::Format(format!("{what}: metadata has no \"config\"; is this a parity file?")))?;
        let (config, hf_form) = parse_config(what, config_text)?;
        let optimizer = OptimizerMeta::parse(what, &meta)?;
        let adamw = optimizer.and_then(|o| o.adamw());
        let st = parse_safetensors(what, bytes)?;
        let weights = match hf_form {
            true => {
                let tensors = hf_params(what, &st, &config, "")?;
                Weights { config, tensors: tensors.ok_or_else(|| Error::Format(format!("{what} has no parameters")))? }
            }
            false => load_weights(what, bytes, config)?,
        };
        let get = |name: &str| st.tensor(name).map_err(|_| Error::Format(format!("{what}: missing tensor {name}")));
        let (shape, x) = ids(what, &st, "x")?;
        let (yshape, y) = ids(what, &st, "y")?;
        if yshape != shape {
            return Err(Error::Format(format!("{what}: y has shape {yshape:?} but x has {shape:?}")));
        }
        let (b, t) = (shape[0], shape[1]);
        let f32_of = |name: &str, want: &[usize]| -> Result<Vec<f32>> {
            let v = get(name)?;
            if v.shape() != want {
                return Err(Error::Format(format!("{what}: {name} has shape {:?}, expected {want:?}", v.shape())));
            }
            to_f32(name, &v)
        };
        let logits = f32_of("expected.logits", &[b, t, config.vocab_size])?;
        let loss = f32_of("expected.loss", &[1])?[0];
        let losses = match st.tensor("expected.losses") {
            Ok(v) if v.shape().len() == 1 => to_f32("expected.losses", &v)?,
            Ok(v) => return Err(Error::Format(format!("{what}: expected.losses must be 1-D, found {:?}", v.shape()))),
            Err(_) => vec![],
        };
        let per_param = |prefix: &str| -> Result<Option<Vec<Vec<f32>>>> {
            if hf_form {
                return hf_params(what, &st, &config, prefix);
            }
            let specs = config.param_specs();
            if st.tensor(&format!("{prefix}transformer.{}", specs[0].0)).is_err() {
                return Ok(None);
            }
            specs
                .iter()
                .map(|(name, shape)| f32_of(&format!("{prefix}transformer.{name}"), shape))
                .collect::<Result<Vec<_>>>()
                .map(Some)
        };
        let grads = per_param("expected.grad.")?;
        let step1 = per_param("expected.step1.")?;
        let train = TrainMeta::parse(what, &meta, b)?;
        let step_n = per_param("expected.stepN.")?;
        if train.is_some() != step_n.is_some() {
            return Err(Error::Format(format!(
                "{what}: metadata \"train\" and the expected.stepN.* tensors come together; this file has only {}",
                if train.is_some() { "the metadata" } else { "the tensors" }
            )));
        }
        if train.is_some() && optimizer.is_none() {
            return Err(Error::Format(format!("{what}: metadata \"train\" needs an \"optimizer\" (or \"adamw\")")));
        }
        Ok(ParityFile { weights, optimizer, adamw, b, t, x, y, logits, loss, losses, grads, step1, train, step_n })
    }

    /// How the file's maker trained on its batch (its optimizer at constant lr, no clipping, no
    /// dropout), where it has optimizer settings.
    pub fn train_config(&self) -> Option<TrainConfig> {
        let cfg = TrainConfig {
            batch_size: self.b,
            seq_len: self.t,
            grad_accum: 1,
            warmup_iters: 0,
            grad_clip: 0.0,
            dropout: 0.0,
            attention: None,
            precision: crate::precision::Precision::F32,
            loss_scaling: None,
            lr_schedule: crate::train::Schedule::Constant,
            ..TrainConfig::default()
        };
        let cfg = self.optimizer?.apply(cfg);
        Some(TrainConfig { min_lr: cfg.lr, lr_decay_iters: 0, ..cfg })
    }

    /// How the file's maker trained for `expected.stepN.*` (its optimizer under the `train`
    /// metadata: schedule, clipping, accumulation), where it has that training.
    pub fn train_n_config(&self) -> Option<TrainConfig> {
        let train = self.train?;
        let cfg = self.train_config()?;
        Some(train.apply(cfg))
    }

    /// The `grad_accum` micro-batches of `train_n_config`: x's and y's rows cut into equal
    /// parts, in order.
    pub fn micro_batches(&self, grad_accum: usize) -> Vec<(Vec<u32>, Vec<u32>)> {
        let rows = self.b / grad_accum * self.t;
        self.x.chunks(rows).zip(self.y.chunks(rows)).map(|(x, y)| (x.to_vec(), y.to_vec())).collect()
    }
}

/// The file's `config` metadata: an HF config.json where it has a `model_type` (true: the
/// tensors are under that class's state-dict names), else wgpt's GPT-2 form (sizes; tensors
/// under `transformer.`).
fn parse_config(what: &str, text: &str) -> Result<(Gpt2Config, bool)> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| Error::Format(format!("{what}: metadata \"config\" is not JSON: {e}")))?;
    let hf_form = value.get("model_type").is_some();
    let config = match hf_form {
        true => read_config(text).map_err(|e| Error::Format(format!("{what}: metadata \"config\": {e}")))?,
        false => serde_json::from_value(value)
            .map_err(|e| Error::Format(format!("{what}: metadata \"config\" is not a GPT-2 config: {e}")))?,
    };
    config.validate()?;
    Ok((config, hf_form))
}

/// The model's tensors in `param_specs` order from the file's tensors named `prefix` + the
/// class's state-dict name (`prefix` "" for the parameters, `expected.grad.` for their
/// gradients...), mapped into the internal layout as a checkpoint's are; None where the file has
/// none of them.
fn hf_params(what: &str, st: &SafeTensors, config: &Gpt2Config, prefix: &str) -> Result<Option<Vec<Vec<f32>>>> {
    names::check_specs(config)?;
    let class = names::prefix(HfClass::of(config));
    let full = |name: &str| match name {
        "lm_head.weight" => format!("{prefix}{name}"),
        _ => format!("{prefix}{class}{name}"),
    };
    let table = names::table(config);
    if table.first().is_none_or(|t| st.tensor(&full(&t.name)).is_err()) {
        return Ok(None);
    }
    let internal = names::to_internal(what, config, |name| match st.tensor(&full(name)) {
        Ok(v) => Ok(Some((v.shape().to_vec(), to_f32(&full(name), &v)?))),
        Err(_) => Ok(None),
    })?;
    let mut by_name: HashMap<String, Vec<f32>> = internal.into_iter().map(|(n, _, v)| (n, v)).collect();
    let specs = config.param_specs();
    Ok(Some(specs.iter().map(|(n, _)| by_name.remove(n).expect("check_specs matched the tables")).collect()))
}

/// The file's int32 [B, T] token ids `name`: shape and ids (a negative id becomes u32::MAX, which
/// the model's checks refuse).
fn ids(what: &str, st: &SafeTensors, name: &str) -> Result<(Vec<usize>, Vec<u32>)> {
    let v = st.tensor(name).map_err(|_| Error::Format(format!("{what}: missing tensor {name}")))?;
    if v.dtype() != Dtype::I32 || v.shape().len() != 2 {
        return Err(Error::Format(format!(
            "{what}: {name} must be int32 [B, T], found {:?} {:?}",
            v.dtype(),
            v.shape()
        )));
    }
    let data: Vec<u32> = v
        .data()
        .chunks_exact(4)
        .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .map(|i| u32::try_from(i).unwrap_or(u32::MAX))
        .collect();
    Ok((v.shape().to_vec(), data))
}
