//! A training run's settings (nanoGPT's train.py names: batch, lr schedule, AdamW, clipping,
//! dropout, attention, precision) and dynamic loss scaling's settings and state.

use serde::{Deserialize, Serialize};

use crate::kernels::AttentionKind;
use crate::model::LoraConfig;
use crate::precision::Precision;
use crate::{Error, Result};

use super::{OptimizerConfig, Schedule};

/// Optimisation settings, named as nanoGPT's train.py.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub batch_size: usize,
    /// Tokens per sequence (T ≤ block_size).
    pub seq_len: usize,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    pub lr: f32,
    pub min_lr: f32,
    pub warmup_iters: usize,
    /// Cosine decay from lr to min_lr ends here (nanoGPT's lr_decay_iters; usually max_iters).
    pub lr_decay_iters: usize,
    pub weight_decay: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// Clip the global gradient norm to this; 0 turns clipping off.
    pub grad_clip: f32,
    /// Dropout probability on the embeddings, residual branches and attention probabilities
    /// (0 = off, and then bit-identical to no dropout).
    #[serde(default)]
    pub dropout: f32,
    /// The attention numerics (classic or flash), fixed for the run's whole life so that resume
    /// and recovery stay bit-exact; None: chosen when the trainer is made (crate::tune), which
    /// then records it here. A checkpoint from before this field trained with classic.
    #[serde(default = "classic_attention")]
    pub attention: Option<AttentionKind>,
    /// Dynamic loss scaling (for mixed-precision training); None: off, the loss gradient as is.
    /// f32, or mixed precision (f16): the forward's matrix products and the backward's
    /// dinp = dout · Wᵀ products read f16 copies of the weights, accumulating in f32; master
    /// weights, activations, gradients (the weight gradients' products too) and AdamW stay f32.
    /// f16 needs shader-f16 ([`Trainer::new`](super::Trainer::new) falls back to f32 with a
    /// note) and turns loss scaling on ([`LossScaling::default`]) where `loss_scaling` is None.
    /// Auto trains in f32.
    #[serde(default)]
    pub precision: Precision,
    #[serde(default)]
    pub loss_scaling: Option<LossScaling>,
    // optimizers and schedules (issue 26); a checkpoint from before them trained AdamW on cosine
    /// The optimizer and its settings beyond AdamW's (lr, betas, eps and weight decay above).
    #[serde(default)]
    pub optimizer: OptimizerConfig,
    /// The learning rate's schedule after warmup.
    #[serde(default)]
    pub lr_schedule: Schedule,
    // issue 27, tasks: answer-only loss
    /// On a task, count only the answers' tokens in the loss (the run's batches mark the others
    /// with crossentropy's IGNORE, and windows start at a line): what grokking needs.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub answer_loss: bool,
    // issue 26, LoRA
    /// LoRA fine-tuning: only these adapters train, the base is frozen (None: every parameter
    /// trains, as runs from before LoRA did).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora: Option<LoraConfig>,
}

/// Dynamic loss scaling as torch.cuda.amp.GradScaler: the loss gradient is multiplied by a
/// scale S and the gradients divided by it before the norm, clipping and AdamW; a step whose
/// gradients overflow (a gradient norm that is not finite) is skipped (parameters and moments
/// untouched; AdamW's bias correction counts applied steps only) and halves S; `growth_interval`
/// clean steps in a row double it. All on the GPU, no readback
/// ([`Trainer::loss_scale`](super::Trainer::loss_scale) reads it on demand). With a power-of-two
/// scale and no overflow, f32 training is bit-identical to training without scaling.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossScaling {
    /// The first scale (GradScaler's init_scale, 65536); a power of two keeps f32 exact.
    pub init_scale: f32,
    /// Clean steps in a row after which the scale doubles (GradScaler's growth_interval, 2000).
    pub growth_interval: u32,
}

impl Default for LossScaling {
    fn default() -> LossScaling {
        LossScaling { init_scale: 65536.0, growth_interval: 2000 }
    }
}

/// The loss scaler's state on the GPU, read back by
/// [`Trainer::loss_scale`](super::Trainer::loss_scale) (and saved in checkpoints so that a
/// resumed run goes on with it).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossScale {
    pub scale: f32,
    /// Clean steps since the scale last changed.
    pub good: u32,
    /// Steps skipped for overflow so far.
    pub skipped: u32,
}

fn classic_attention() -> Option<AttentionKind> {
    Some(AttentionKind::Classic)
}

/// nanoGPT's settings for its small CPU models ("baby": batch 12, block 64, lr 1e-3 decaying to
/// 1e-4 over 2000 iterations after 100 of warmup, beta2 0.99, weight decay 0.1, clip 1.0, no
/// dropout): what `wgpt train` starts from and what other settings override.
impl Default for TrainConfig {
    fn default() -> TrainConfig {
        TrainConfig {
            batch_size: 12,
            seq_len: 64,
            grad_accum: 1,
            lr: 1e-3,
            min_lr: 1e-4,
            warmup_iters: 100,
            lr_decay_iters: 2000,
            weight_decay: 0.1,
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            grad_clip: 1.0,
            dropout: 0.0,
            attention: None,
            precision: Precision::F32,
            loss_scaling: None,
            optimizer: OptimizerConfig::default(),
            lr_schedule: Schedule::Cosine,
            answer_loss: false,
            lora: None,
        }
    }
}

impl TrainConfig {
    /// Replaces the peak learning rate (to go on with a lower one after a run diverged); min_lr
    /// and Muon's lr keep their ratios to it.
    pub fn set_lr(&mut self, lr: f32) -> Result<()> {
        if !(lr.is_finite() && lr > 0.0) {
            return Err(Error::Input(format!("the learning rate must be a positive number, got {lr}")));
        }
        self.min_lr *= lr / self.lr;
        self.optimizer.muon_lr *= lr / self.lr;
        self.lr = lr;
        Ok(())
    }

    /// nanoGPT's grouping: decay matrices and embeddings (rank >= 2), not biases and layer norms.
    pub fn weight_decay_of(&self, shape: &[usize]) -> f32 {
        if shape.len() >= 2 {
            self.weight_decay
        } else {
            0.0
        }
    }

    pub fn validate(&self, block_size: usize) -> Result<()> {
        let bad = |m: String| Err(Error::Input(m));
        if self.batch_size == 0 || self.grad_accum == 0 || self.seq_len == 0 {
            return bad("batch_size, grad_accum and the sequence length must be at least 1".into());
        }
        // each factor of the tokens per step within 2^24, as the model's sizes: their products,
        // multiplied out in u64 or f64, can then never wrap (usize is 32 bits on wasm32)
        for (name, v) in [("batch_size", self.batch_size), ("grad_accum", self.grad_accum)] {
            if v > 1 << 24 {
                return bad(format!("{name} = {v} is too large (at most 16777216)"));
            }
        }
        if self.seq_len > block_size {
            return bad(format!("sequence length {} is longer than the model's block_size {block_size}", self.seq_len));
        }
        for (name, v) in [
            ("lr", self.lr),
            ("min_lr", self.min_lr),
            ("weight_decay", self.weight_decay),
            ("grad_clip", self.grad_clip),
        ] {
            if !v.is_finite() || v < 0.0 {
                return bad(format!("{name} must be a finite number >= 0, got {v}"));
            }
        }
        for (name, v) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&v) {
                return bad(format!("{name} must be in [0, 1), got {v}"));
            }
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("dropout must be in [0, 1), got {}", self.dropout));
        }
        if self.eps.is_nan() || self.eps <= 0.0 {
            return bad(format!("eps must be > 0, got {}", self.eps));
        }
        self.optimizer.validate()?;
        if let Some(ls) = self.loss_scaling {
            // 1/S must stay a normal f32 (the scaler keeps S within these bounds too)
            if !(ls.init_scale >= f32::MIN_POSITIVE && ls.init_scale <= 2f32.powi(126)) {
                return bad(format!("the initial loss scale must be in [2^-126, 2^126], got {}", ls.init_scale));
            }
            if ls.growth_interval == 0 {
                return bad("the loss scale's growth interval must be at least 1 step".into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Settings saved before mixed precision (no `precision` field) load as f32; f16 is saved
    /// by name.
    #[test]
    fn precision_defaults_to_f32_in_old_settings() {
        let mut old = serde_json::to_value(TrainConfig::default()).unwrap();
        old.as_object_mut().unwrap().remove("precision");
        let cfg: TrainConfig = serde_json::from_value(old).unwrap();
        assert_eq!(cfg.precision, Precision::F32);
        let f16 = TrainConfig { precision: Precision::F16, ..TrainConfig::default() };
        assert_eq!(serde_json::to_value(f16).unwrap()["precision"], "f16");
    }

    /// Settings saved before the choice of optimizer and schedule load as AdamW on cosine.
    #[test]
    fn old_settings_train_adamw_on_cosine() {
        let mut old = serde_json::to_value(TrainConfig::default()).unwrap();
        old.as_object_mut().unwrap().remove("optimizer");
        old.as_object_mut().unwrap().remove("lr_schedule");
        let cfg: TrainConfig = serde_json::from_value(old).unwrap();
        assert_eq!((cfg.optimizer, cfg.lr_schedule), (OptimizerConfig::default(), Schedule::Cosine));
        assert_eq!(cfg.optimizer.kind, crate::train::Optimizer::AdamW);
    }
}
