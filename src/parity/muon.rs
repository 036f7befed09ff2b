//! A Muon parity file's `optimizer` metadata (tests/fixtures/parity_muon.py): torch.optim.Muon's
//! settings for the hidden matrices and the AdamW settings of the other tensors, `{"name":
//! "muon", "lr", "momentum", "nesterov", "ns_steps", "ns_coefficients", "eps", "weight_decay",
//! "adjust_lr": "original", "adamw": {...}}`.

use serde::Deserialize;

use super::AdamWConfig;
use crate::kernels::NsConsts;
use crate::train::{Optimizer, OptimizerConfig, TrainConfig};
use crate::{Error, Result};

/// torch.optim.Muon's lr adjustment; wgpt runs "original" (√max(1, rows/cols)) only.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub enum AdjustLr {
    #[serde(rename = "original")]
    Original,
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct MuonConfig {
    pub lr: f32,
    pub momentum: f32,
    pub nesterov: bool,
    pub ns_steps: usize,
    pub ns_coefficients: [f32; 3],
    pub eps: f32,
    pub weight_decay: f32,
    pub adjust_lr: AdjustLr,
    /// The settings of the tensors Muon does not take.
    pub adamw: AdamWConfig,
}

impl MuonConfig {
    /// Refuses settings wgpt does not run, naming them: Newton-Schulz other than torch's
    /// defaults, or a decay for Muon's matrices other than AdamW's.
    pub fn check(&self, what: &str) -> Result<()> {
        let bad = |m: String| Err(Error::Format(format!("{what}: metadata \"optimizer\" {m}")));
        let ns = NsConsts::default();
        if (self.ns_coefficients, self.ns_steps, self.eps) != (ns.coefficients, ns.steps, ns.eps) {
            return bad(format!(
                "asks for Newton-Schulz with coefficients {:?}, {} steps, eps {}; wgpt runs torch's defaults {:?}, \
                 {} steps, eps {}",
                self.ns_coefficients, self.ns_steps, self.eps, ns.coefficients, ns.steps, ns.eps
            ));
        }
        if self.weight_decay != self.adamw.weight_decay {
            return bad(format!(
                "decays Muon's matrices by {} and AdamW's tensors by {}; wgpt has one weight decay for every \
                 decayed tensor",
                self.weight_decay, self.adamw.weight_decay
            ));
        }
        Ok(())
    }

    /// `cfg` training with Muon on the hidden matrices and AdamW (its lr, betas, eps) on the rest.
    pub fn apply(&self, cfg: TrainConfig) -> TrainConfig {
        let a = self.adamw;
        let optimizer = OptimizerConfig {
            muon_lr: self.lr,
            momentum: self.momentum,
            nesterov: self.nesterov,
            kind: Optimizer::Muon,
        };
        TrainConfig {
            lr: a.lr,
            weight_decay: a.weight_decay,
            beta1: a.beta1,
            beta2: a.beta2,
            eps: a.eps,
            optimizer,
            ..cfg
        }
    }
}
