//! The optimizers a run trains with (AdamW, SGD, Muon), their settings, and the rule each
//! parameter is updated by. Groups as nanoGPT's: decay on tensors of rank >= 2, never on 1-D
//! ones. Muon (torch.optim.Muon) takes the hidden matrices; in a Muon run the embeddings, the
//! head and every 1-D tensor take AdamW with `lr`.

use serde::{Deserialize, Serialize};

use crate::model::Gpt2Config;
use crate::params::{role, Role};
use crate::{Error, Result};

use super::TrainConfig;

/// Which optimizer updates the parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Optimizer {
    /// torch.optim.AdamW: decoupled weight decay, bias-corrected moments.
    #[default]
    #[serde(rename = "adamw")]
    AdamW,
    /// torch.optim.SGD with momentum (and Nesterov), weight decay added to the gradient.
    #[serde(rename = "sgd")]
    Sgd,
    /// torch.optim.Muon on the hidden matrices (Newton-Schulz orthogonalised momentum), AdamW on
    /// the rest.
    #[serde(rename = "muon")]
    Muon,
}

impl Optimizer {
    pub const ALL: [Optimizer; 3] = [Optimizer::AdamW, Optimizer::Muon, Optimizer::Sgd];

    /// Its name in settings and flags.
    pub fn name(self) -> &'static str {
        match self {
            Optimizer::AdamW => "adamw",
            Optimizer::Sgd => "sgd",
            Optimizer::Muon => "muon",
        }
    }

    pub fn parse(name: &str) -> Result<Optimizer> {
        Optimizer::ALL
            .into_iter()
            .find(|o| o.name() == name)
            .ok_or_else(|| Error::Input(format!("unknown optimizer {name:?}: choose adamw, muon or sgd")))
    }

    /// The momentum a run of this optimizer takes unless told otherwise: torch.optim.Muon's 0.95,
    /// and the usual 0.9 for SGD (AdamW's betas are its own).
    pub fn default_momentum(self) -> f32 {
        match self {
            Optimizer::Muon => 0.95,
            Optimizer::AdamW | Optimizer::Sgd => 0.9,
        }
    }
}

/// The optimizer and the settings AdamW's own (lr, betas, eps, weight decay in
/// [`TrainConfig`]) do not cover.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OptimizerConfig {
    pub kind: Optimizer,
    /// Muon's peak learning rate for the hidden matrices (the schedule scales it as `lr`).
    pub muon_lr: f32,
    /// Muon's or SGD's momentum factor.
    pub momentum: f32,
    /// Nesterov momentum (Muon, SGD).
    pub nesterov: bool,
}

/// Muon's learning rate unless told otherwise (torch.optim.Muon's example, Keller Jordan's).
pub const MUON_LR: f32 = 0.02;

impl OptimizerConfig {
    /// `kind` with its default momentum, Nesterov on and Muon's lr 0.02.
    pub fn of(kind: Optimizer) -> OptimizerConfig {
        OptimizerConfig { kind, muon_lr: MUON_LR, momentum: kind.default_momentum(), nesterov: true }
    }

    /// torch's rules: momentum in [0, 1), Muon's lr a positive number, Nesterov with SGD only
    /// where there is momentum.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Input(m));
        if !(0.0..1.0).contains(&self.momentum) {
            return bad(format!("momentum must be in [0, 1), got {}", self.momentum));
        }
        if !(self.muon_lr.is_finite() && self.muon_lr > 0.0) {
            return bad(format!("muon_lr must be a positive number, got {}", self.muon_lr));
        }
        if self.kind == Optimizer::Sgd && self.nesterov && self.momentum == 0.0 {
            return bad("SGD's Nesterov momentum needs a momentum above 0: set one, or turn Nesterov off".into());
        }
        Ok(())
    }
}

/// AdamW, as runs from before the choice trained.
impl Default for OptimizerConfig {
    fn default() -> OptimizerConfig {
        OptimizerConfig::of(Optimizer::AdamW)
    }
}

/// How one parameter is updated: by which optimizer, with which weight decay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rule {
    AdamW {
        decay: f32,
    },
    Sgd {
        decay: f32,
    },
    /// `scale`: torch's "original" lr adjustment sqrt(max(1, rows / cols)) of the stored shape;
    /// `transposed`: Newton-Schulz runs on the transpose (rows > cols), as torch's does.
    Muon {
        decay: f32,
        scale: f32,
        transposed: bool,
    },
}

/// The optimizer state a rule keeps per parameter, by the checkpoint's key prefixes (torch's
/// state names).
pub const ADAM_STATE: [&str; 2] = ["adam_m.", "adam_v."];
pub const MOMENTUM_STATE: [&str; 1] = ["momentum_buffer."];

impl Rule {
    /// The rule of a parameter of `role` and `shape` under `optim`, with decay `decay`: Muon
    /// takes the 2-D hidden matrices of a Muon run, everything else AdamW; SGD takes all.
    pub fn of(optim: &OptimizerConfig, decay: f32, role: Role, shape: &[usize]) -> Rule {
        match optim.kind {
            Optimizer::AdamW => Rule::AdamW { decay },
            Optimizer::Sgd => Rule::Sgd { decay },
            Optimizer::Muon if role == Role::Matrix && shape.len() == 2 => {
                let (rows, cols) = (shape[0], shape[1]);
                let scale = (rows as f64 / cols as f64).max(1.0).sqrt() as f32;
                Rule::Muon { decay, scale, transposed: rows > cols }
            }
            Optimizer::Muon => Rule::AdamW { decay },
        }
    }

    pub fn decay(&self) -> f32 {
        match *self {
            Rule::AdamW { decay } | Rule::Sgd { decay } | Rule::Muon { decay, .. } => decay,
        }
    }

    /// The state tensors this rule keeps, each of the parameter's shape, by key prefix: Adam's
    /// two moments, or one momentum buffer (SGD keeps it at momentum 0 too, where it holds the
    /// last gradient).
    pub fn state(&self) -> &'static [&'static str] {
        match self {
            Rule::AdamW { .. } => &ADAM_STATE,
            Rule::Sgd { .. } | Rule::Muon { .. } => &MOMENTUM_STATE,
        }
    }
}

/// Every parameter of `model` (name, shape) with its rule under `cfg`, in
/// [`Gpt2Config::param_specs`] order; in a LoRA run the adapters instead, in
/// [`crate::model::LoraConfig::specs`] order (matrices: decayed, and Muon's in a Muon run).
pub fn rules(model: &Gpt2Config, cfg: &TrainConfig) -> Vec<(String, Vec<usize>, Rule)> {
    let specs = cfg.lora.map_or_else(|| model.param_specs(), |lc| lc.specs(model));
    specs
        .into_iter()
        .map(|(name, shape)| {
            let rule = Rule::of(&cfg.optimizer, cfg.weight_decay_of(&shape), role(&name, &shape), &shape);
            (name, shape, rule)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn muon_takes_the_hidden_matrices_and_adamw_the_rest() {
        let model = Gpt2Config::preset("tiny").unwrap();
        let cfg = TrainConfig { optimizer: OptimizerConfig::of(Optimizer::Muon), ..TrainConfig::default() };
        let rules = rules(&model, &cfg);
        let rule = |n: &str| rules.iter().find(|r| r.0 == n).unwrap().2;
        assert_eq!(rule("wte.weight"), Rule::AdamW { decay: cfg.weight_decay });
        assert_eq!(rule("wpe.weight"), Rule::AdamW { decay: cfg.weight_decay });
        assert_eq!(rule("h.0.ln_1.weight"), Rule::AdamW { decay: 0.0 });
        assert_eq!(
            rule("h.0.attn.c_attn.weight"),
            Rule::Muon { decay: cfg.weight_decay, scale: 1.0, transposed: false }
        );
        // (4C, C): scaled by sqrt(4) and orthogonalised transposed
        assert_eq!(rule("h.0.mlp.c_proj.weight"), Rule::Muon { decay: cfg.weight_decay, scale: 2.0, transposed: true });
        let sgd = TrainConfig { optimizer: OptimizerConfig::of(Optimizer::Sgd), ..cfg };
        assert!(super::rules(&model, &sgd).iter().all(|r| matches!(r.2, Rule::Sgd { .. })));
    }

    #[test]
    fn optimizer_settings_are_checked() {
        assert_eq!(Optimizer::parse("sgd").unwrap(), Optimizer::Sgd);
        assert!(Optimizer::parse("adam").unwrap_err().to_string().contains("adamw, muon or sgd"));
        assert!(OptimizerConfig::of(Optimizer::Sgd).validate().is_ok());
        assert!(OptimizerConfig::of(Optimizer::Muon).validate().is_ok());
        let bad = OptimizerConfig { momentum: 1.0, ..OptimizerConfig::of(Optimizer::Sgd) };
        assert!(bad.validate().unwrap_err().to_string().contains("momentum"));
        let bad = OptimizerConfig { momentum: 0.0, ..OptimizerConfig::of(Optimizer::Sgd) };
        assert!(bad.validate().unwrap_err().to_string().contains("Nesterov"));
        let bad = OptimizerConfig { muon_lr: f32::NAN, ..OptimizerConfig::default() };
        assert!(bad.validate().unwrap_err().to_string().contains("muon_lr"));
        assert_eq!(serde_json::to_value(Optimizer::AdamW).unwrap(), "adamw");
    }
}
