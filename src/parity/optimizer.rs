//! A parity file's `optimizer` metadata: the torch.optim optimizer that made its expected steps
//! and its settings, `{"name": "adamw", "lr", "beta1", "beta2", "eps", "weight_decay"}` or
//! `{"name": "sgd", "lr", "momentum", "nesterov", "weight_decay"}` or Muon's ([`MuonConfig`]). A
//! file with only the older
//! `adamw` key trained with AdamW.

use std::collections::HashMap;

use serde::Deserialize;

use super::MuonConfig;
use crate::train::{Optimizer, OptimizerConfig, TrainConfig};
use crate::{Error, Result};

/// AdamW settings of a parity file (constant lr, no clipping, decay on rank >= 2 only).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct AdamWConfig {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
}

/// torch.optim.SGD's settings of a parity file (dampening 0; weight decay on rank >= 2 only).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct SgdConfig {
    pub lr: f32,
    pub momentum: f32,
    pub nesterov: bool,
    pub weight_decay: f32,
}

/// The optimizer of a parity file, tagged by `name`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(tag = "name")]
pub enum OptimizerMeta {
    #[serde(rename = "adamw")]
    AdamW(AdamWConfig),
    #[serde(rename = "sgd")]
    Sgd(SgdConfig),
    #[serde(rename = "muon")]
    Muon(MuonConfig),
}

impl OptimizerMeta {
    /// The file's optimizer from its metadata: `optimizer`, else `adamw`, else none (a
    /// forward-only file).
    pub fn parse(what: &str, meta: &HashMap<String, String>) -> Result<Option<OptimizerMeta>> {
        let malformed =
            |key: &str, e: serde_json::Error| Error::Format(format!("{what}: metadata \"{key}\" is malformed: {e}"));
        if let Some(text) = meta.get("optimizer") {
            let parsed: OptimizerMeta = serde_json::from_str(text).map_err(|e| malformed("optimizer", e))?;
            if let OptimizerMeta::Muon(m) = &parsed {
                m.check(what)?;
            }
            return Ok(Some(parsed));
        }
        match meta.get("adamw") {
            Some(text) => {
                serde_json::from_str(text).map(|a| Some(OptimizerMeta::AdamW(a))).map_err(|e| malformed("adamw", e))
            }
            None => Ok(None),
        }
    }

    pub fn name(&self) -> &'static str {
        self.kind().name()
    }

    /// Its name in messages.
    pub fn title(&self) -> &'static str {
        match self {
            OptimizerMeta::AdamW(_) => "AdamW",
            OptimizerMeta::Sgd(_) => "SGD",
            OptimizerMeta::Muon(_) => "Muon",
        }
    }

    fn kind(&self) -> Optimizer {
        match self {
            OptimizerMeta::AdamW(_) => Optimizer::AdamW,
            OptimizerMeta::Sgd(_) => Optimizer::Sgd,
            OptimizerMeta::Muon(_) => Optimizer::Muon,
        }
    }

    /// The AdamW settings the file's AdamW tensors train with, where it has any.
    pub fn adamw(&self) -> Option<AdamWConfig> {
        match *self {
            OptimizerMeta::AdamW(a) | OptimizerMeta::Muon(MuonConfig { adamw: a, .. }) => Some(a),
            OptimizerMeta::Sgd(_) => None,
        }
    }

    /// `cfg` with this optimizer and its lr and weight decay (AdamW's betas and eps where it is
    /// AdamW).
    pub fn apply(&self, cfg: TrainConfig) -> TrainConfig {
        let optimizer = OptimizerConfig::of(self.kind());
        match *self {
            OptimizerMeta::AdamW(a) => TrainConfig {
                lr: a.lr,
                weight_decay: a.weight_decay,
                beta1: a.beta1,
                beta2: a.beta2,
                eps: a.eps,
                optimizer,
                ..cfg
            },
            OptimizerMeta::Sgd(s) => TrainConfig {
                lr: s.lr,
                weight_decay: s.weight_decay,
                optimizer: OptimizerConfig { momentum: s.momentum, nesterov: s.nesterov, ..optimizer },
                ..cfg
            },
            OptimizerMeta::Muon(m) => m.apply(cfg),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn optimizer_metadata_parses_and_the_old_adamw_key_stays_valid() {
        let adamw = r#"{"lr": 0.001, "beta1": 0.9, "beta2": 0.95, "eps": 1e-8, "weight_decay": 0.1}"#;
        let old = OptimizerMeta::parse("f", &meta(&[("adamw", adamw)])).unwrap().unwrap();
        assert_eq!(old.adamw().unwrap().beta2, 0.95);
        let tagged = adamw.replace('{', r#"{"name": "adamw", "#);
        assert_eq!(OptimizerMeta::parse("f", &meta(&[("optimizer", &tagged)])).unwrap(), Some(old));
        let sgd = r#"{"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": true, "weight_decay": 0.1}"#;
        let sgd = OptimizerMeta::parse("f", &meta(&[("optimizer", sgd)])).unwrap().unwrap();
        let cfg = sgd.apply(TrainConfig::default());
        assert_eq!(
            (cfg.lr, cfg.optimizer.kind, cfg.optimizer.momentum, cfg.optimizer.nesterov),
            (0.05, Optimizer::Sgd, 0.9, true)
        );
        assert_eq!((sgd.name(), sgd.adamw()), ("sgd", None));
        assert_eq!(OptimizerMeta::parse("f", &meta(&[])).unwrap(), None);
        let err = OptimizerMeta::parse("f", &meta(&[("optimizer", r#"{"name": "lion", "lr": 1}"#)])).unwrap_err();
        assert!(
            err.to_string().contains("metadata \"optimizer\" is malformed") && err.to_string().contains("lion"),
            "{err}"
        );
    }
}
