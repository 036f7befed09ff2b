//! A Muon parity file's `optimizer` metadata (tests/fixtures/parity_muon.py): torch.optim.Muon's
//! settings for the hidden matrices and the AdamW settings of the other tensors, turned into the
//! [`TrainConfig`] that trains as the file's maker did.

use serde::Deserialize;

use super::AdamWConfig;
use crate::kernels::NsConsts;
use crate::train::{Optimizer, OptimizerConfig, Schedule, TrainConfig};
use crate::{Error, Result};

/// `{"name": "muon", lr, momentum, nesterov, ns_steps, ns_coefficients, eps, weight_decay,
/// "adjust_lr": "original", "adamw": {...}}`.
#[derive(Debug, Clone, Deserialize)]
pub struct MuonMeta {
    pub lr: f32,
    pub momentum: f32,
    pub nesterov: bool,
    pub ns_steps: usize,
    pub ns_coefficients: [f32; 3],
    pub eps: f32,
    pub weight_decay: f32,
    pub adjust_lr: String,
    pub adamw: AdamWConfig,
}

/// The file's Muon settings where its `optimizer` metadata names Muon (None where it has no
/// `optimizer` or names another); settings wgpt does not run are refused, naming them.
pub fn parse(what: &str, optimizer: Option<&String>) -> Result<Option<MuonMeta>> {
    let Some(text) = optimizer else { return Ok(None) };
    let bad = |m: String| Error::Format(format!("{what}: metadata \"optimizer\" {m}"));
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| bad(format!("is not JSON: {e}")))?;
    if value.get("name").and_then(|n| n.as_str()) != Some("muon") {
        return Ok(None);
    }
    let m: MuonMeta = serde_json::from_value(value).map_err(|e| bad(format!("is not Muon's settings: {e}")))?;
    let ns = NsConsts::default();
    if (m.ns_coefficients, m.ns_steps, m.eps) != (ns.coefficients, ns.steps, ns.eps) {
        return Err(bad(format!(
            "asks for Newton-Schulz with coefficients {:?}, {} steps, eps {}; wgpt runs torch's defaults {:?}, {} \
             steps, eps {}",
            m.ns_coefficients, m.ns_steps, m.eps, ns.coefficients, ns.steps, ns.eps
        )));
    }
    if m.adjust_lr != "original" {
        return Err(bad(format!("asks for adjust_lr {:?}; wgpt runs \"original\"", m.adjust_lr)));
    }
    if m.weight_decay != m.adamw.weight_decay {
        return Err(bad(format!(
            "decays Muon's matrices by {} and AdamW's by {}; wgpt has one weight decay for every decayed tensor",
            m.weight_decay, m.adamw.weight_decay
        )));
    }
    Ok(Some(m))
}

impl MuonMeta {
    /// Muon on the hidden matrices, AdamW at constant lr on the rest, no clipping, on (b, t).
    pub fn train_config(&self, b: usize, t: usize) -> TrainConfig {
        let a = self.adamw;
        TrainConfig {
            batch_size: b,
            seq_len: t,
            grad_accum: 1,
            lr: a.lr,
            min_lr: a.lr,
            warmup_iters: 0,
            lr_decay_iters: 0,
            weight_decay: a.weight_decay,
            beta1: a.beta1,
            beta2: a.beta2,
            eps: a.eps,
            grad_clip: 0.0,
            dropout: 0.0,
            optimizer: OptimizerConfig {
                kind: Optimizer::Muon,
                muon_lr: self.lr,
                momentum: self.momentum,
                nesterov: self.nesterov,
            },
            lr_schedule: Schedule::Constant,
            ..TrainConfig::default()
        }
    }
}
