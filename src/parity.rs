//! Parity files: a model, a batch and what Hugging Face's GPT2LMHeadModel (or, where the file's
//! `config` is a config.json with a `model_type`, that class: LlamaForCausalLM,
//! Qwen3ForCausalLM) computed for it (logits, loss, and for training the gradients, the
//! parameters after one optimizer step and N losses, by torch.optim's AdamW, SGD or Muon with
//! AdamW). The format is in tests/fixtures/README.md; `wgpt parity FILE` and the tests run it.

mod muon;
mod optimizer;

use std::collections::HashMap;
use std::sync::Arc;

use safetensors::{Dtype, SafeTensors};
use serde::Deserialize;

use crate::cpu::{closeness, Closeness};
use crate::hf::{load_weights, names, parse_safetensors, read_config, to_f32};
use crate::kernels::Kernels;
use crate::model::{Gpt2, Gpt2Config, HfClass, Weights};
use crate::train::{TrainConfig, Trainer};
use crate::{Error, Result};

pub use muon::{AdjustLr, MuonConfig};
pub use optimizer::{OptimizerMeta, SgdConfig};

/// AdamW settings of a parity file (constant lr, no clipping, decay on rank >= 2 only).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct AdamWConfig {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
}

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
        let ids = |name: &str| -> Result<(Vec<usize>, Vec<u32>)> {
            let v = get(name)?;
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
        };
        let (shape, x) = ids("x")?;
        let (yshape, y) = ids("y")?;
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
        Ok(ParityFile { weights, optimizer, adamw, b, t, x, y, logits, loss, losses, grads, step1 })
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

/// One compared quantity.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    pub closeness: Closeness,
    pub atol: f32,
    pub rtol: f32,
}

impl Check {
    pub fn passed(&self) -> bool {
        self.closeness.excess <= 0.0
    }

    fn new(name: &str, got: &[f32], want: &[f32], atol: f32, rtol: f32) -> Check {
        Check { name: name.to_string(), closeness: closeness(got, want, atol, rtol), atol, rtol }
    }
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.closeness;
        write!(
            f,
            "{:<8} {:<26} max abs err {:.3e}  max rel err {:.3e}  (tolerance {:.0e} + {:.0e}·|want|, worst at [{}])",
            if self.passed() { "ok" } else { "FAIL" },
            self.name,
            c.max_abs,
            c.max_rel,
            self.atol,
            self.rtol,
            c.worst
        )
    }
}

/// Tolerances: logits 1e-4 and loss 1e-5 (absolute + relative).
pub const LOGITS_TOL: f32 = 1e-4;
pub const LOSS_TOL: f32 = 1e-5;

/// Runs the forward pass of a parity file on the GPU (submits split at `submit_budget_ms`) and
/// compares logits and loss.
pub async fn check_forward(kernels: Arc<Kernels>, p: &ParityFile, submit_budget_ms: f64) -> Result<Vec<Check>> {
    let model = Gpt2::new(kernels, &p.weights)?.with_submit_budget(submit_budget_ms);
    let f = model.forward_plan(p.b, p.t)?;
    model.forward(&f, &p.x, Some(&p.y))?;
    let out = model.kernels.gpu.read_many(&[&f.acts.logits, &f.acts.loss]).await?;
    Ok(vec![
        Check::new("logits", &out[0], &p.logits, LOGITS_TOL, LOGITS_TOL),
        Check::new("loss", &out[1], &[p.loss], LOSS_TOL, LOSS_TOL),
    ])
}

/// Every check the file has data for: the forward pass, and training where it has gradients.
pub async fn check(kernels: Arc<Kernels>, p: &ParityFile, submit_budget_ms: f64) -> Result<Vec<Check>> {
    let mut checks = check_forward(kernels.clone(), p, submit_budget_ms).await?;
    if p.grads.is_some() {
        checks.extend(check_training(kernels, p, submit_budget_ms).await?);
    }
    Ok(checks)
}

/// Tolerances of the training checks: gradients 1e-5 + 1e-3·|want|, parameters after one AdamW
/// step 1e-4, the N-step losses 1e-3.
pub const GRAD_ATOL: f32 = 1e-5;
pub const GRAD_RTOL: f32 = 1e-3;
pub const STEP1_TOL: f32 = 1e-4;
pub const LOSSES_TOL: f32 = 1e-3;

/// Trains on the parity file's batch as its maker did (AdamW at constant lr, no clipping) and
/// compares every gradient, the parameters after one step and the N losses.
pub async fn check_training(kernels: Arc<Kernels>, p: &ParityFile, submit_budget_ms: f64) -> Result<Vec<Check>> {
    let (Some(cfg), Some(grads), Some(step1)) = (p.train_config(), &p.grads, &p.step1) else {
        return Err(Error::Format(
            "this parity file has no training data (optimizer or adamw, expected.grad.*, expected.step1.*)".into(),
        ));
    };
    let model = Gpt2::new(kernels, &p.weights)?.with_submit_budget(submit_budget_ms);
    let mut trainer = Trainer::new(model, cfg)?;
    let batch = [(p.x.clone(), p.y.clone())];
    trainer.step(&batch)?;
    let gpu = trainer.model.kernels.gpu.clone();
    let got_grads = gpu.read_many(&trainer.grads.ordered()).await?;
    let got_step1 = gpu.read_many(&trainer.model.params.ordered()).await?;
    let mut losses = vec![trainer.last_loss().await?];
    for _ in 1..p.losses.len() {
        trainer.step(&batch)?;
        losses.push(trainer.last_loss().await?);
    }
    let mut checks = vec![];
    let specs = p.weights.config.param_specs();
    let flat = |v: &[Vec<f32>]| v.concat();
    checks.push(Check::new("grads (all)", &flat(&got_grads), &flat(grads), GRAD_ATOL, GRAD_RTOL));
    let name = p.optimizer.map_or("AdamW", |o| o.title());
    checks.push(Check::new(&format!("params after 1 {name} step"), &flat(&got_step1), &flat(step1), STEP1_TOL, 0.0));
    checks.push(Check::new(&format!("losses of {} steps", p.losses.len()), &losses, &p.losses, LOSSES_TOL, 0.0));
    for (((name, _), got), want) in specs.iter().zip(&got_grads).zip(grads) {
        let c = Check::new(&format!("grad {name}"), got, want, GRAD_ATOL, GRAD_RTOL);
        if !c.passed() {
            checks.push(c);
        }
    }
    Ok(checks)
}
