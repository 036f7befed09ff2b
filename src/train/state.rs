//! The optimizer's state on the GPU: per parameter what its rule keeps (AdamW's two moments,
//! SGD's or Muon's momentum buffer), allocated from one list of specs that the memory estimate
//! ([`super::optimizer_bytes`]) sums too, and its round trip through checkpoints under torch's
//! state names (src/checkpoint.rs).

use crate::checkpoint::{Moments, OptimizerTensors};
use crate::gpu::{Gpu, Tensor};
use crate::model::{shape_bytes, Gpt2Config};
use crate::{Error, Result};

use super::{rules, TrainConfig, Trainer};

/// The state tensors of every parameter, by checkpoint key, in parameter order.
pub struct OptimizerState {
    tensors: Vec<(String, Tensor)>,
}

impl OptimizerState {
    /// What a trainer of `model` under `cfg` keeps: each state tensor's key (`adam_m.<name>`,
    /// `adam_v.<name>`, `momentum_buffer.<name>`) and shape, in parameter order.
    pub fn specs(model: &Gpt2Config, cfg: &TrainConfig) -> Vec<(String, Vec<usize>)> {
        rules(model, cfg)
            .into_iter()
            .flat_map(|(name, shape, rule)| rule.state().iter().map(move |p| (format!("{p}{name}"), shape.clone())))
            .collect()
    }

    /// The bytes [`OptimizerState::zeros`] allocates.
    pub fn bytes(model: &Gpt2Config, cfg: &TrainConfig) -> u64 {
        OptimizerState::specs(model, cfg).iter().map(|(_, shape)| shape_bytes(shape)).fold(0, u64::saturating_add)
    }

    /// Zero-filled state: the optimizer before its first step.
    pub fn zeros(gpu: &Gpu, model: &Gpt2Config, cfg: &TrainConfig) -> OptimizerState {
        let tensors = OptimizerState::specs(model, cfg)
            .into_iter()
            .map(|(key, shape)| (key.clone(), gpu.tensor(&key, &shape)))
            .collect();
        OptimizerState { tensors }
    }

    /// The state tensor under `key`, where the rules keep one.
    pub fn get(&self, key: &str) -> Option<&Tensor> {
        self.tensors.iter().find(|(k, _)| k == key).map(|(_, t)| t)
    }

    /// Reads every state tensor back (for checkpoints), one kind of state (`adam_m.`, `adam_v.`,
    /// `momentum_buffer.`) at a time, so the staging buffer is never larger than one copy of the
    /// parameters (the memory plan allows for that much).
    pub async fn read(&self, gpu: &Gpu) -> Result<OptimizerTensors> {
        let kind = |key: &str| key.split_once('.').map_or(String::new(), |(k, _)| k.to_string());
        let groups: std::collections::BTreeSet<String> = self.tensors.iter().map(|(k, _)| kind(k)).collect();
        let mut out: OptimizerTensors = Vec::with_capacity(self.tensors.len());
        for group in groups {
            let of: Vec<&(String, Tensor)> = self.tensors.iter().filter(|(k, _)| kind(k) == group).collect();
            let data = gpu.read_many(&of.iter().map(|(_, t)| t).collect::<Vec<_>>()).await?;
            out.extend(of.iter().map(|(k, _)| k.clone()).zip(data));
        }
        // back in parameter order
        let order = |key: &str| self.tensors.iter().position(|(k, _)| k == key);
        out.sort_by_key(|(k, _)| order(k));
        Ok(out)
    }

    /// Writes a checkpoint's state: every tensor the rules keep must be there with its size, and
    /// nothing else (a checkpoint of another optimizer is refused, naming what differs).
    pub fn write(&self, gpu: &Gpu, saved: &OptimizerTensors) -> Result<()> {
        if let Some((key, _)) = saved.iter().find(|(k, _)| self.get(k).is_none()) {
            return Err(Error::Format(format!(
                "the optimizer state holds {key}, which this run's optimizer does not keep: was it saved by another \
                 optimizer?"
            )));
        }
        for (key, t) in &self.tensors {
            let Some((_, data)) = saved.iter().find(|(k, _)| k == key) else {
                return Err(Error::Format(format!("the optimizer state has no {key}: the run is damaged")));
            };
            if data.len() != t.numel() {
                return Err(Error::Format(format!(
                    "optimizer state {key}: {} values, expected {}",
                    data.len(),
                    t.numel()
                )));
            }
            gpu.write(t, data);
        }
        Ok(())
    }
}

impl Trainer {
    /// AdamW's first and second moments in parameter order; an error where some parameter keeps
    /// none (an SGD or Muon run: [`Trainer::optimizer_state`] has its state).
    pub async fn moments(&self) -> Result<Moments> {
        let gpu = &self.model.kernels.gpu;
        let mut all = [vec![], vec![]];
        for (prefix, out) in ["adam_m.", "adam_v."].iter().zip(&mut all) {
            let tensors = self
                .model
                .config
                .param_specs()
                .iter()
                .map(|(name, _)| {
                    self.state.get(&format!("{prefix}{name}")).ok_or_else(|| {
                        Error::Input(format!(
                            "{name} keeps no AdamW moments under the {} optimizer",
                            self.cfg.optimizer.kind.name()
                        ))
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            *out = gpu.read_many(&tensors).await?;
        }
        let [m, v] = all;
        Ok((m, v))
    }

    /// The optimizer's whole state (for checkpoints), and a LoRA run's adapters after it.
    pub async fn optimizer_state(&self) -> Result<OptimizerTensors> {
        let mut state = self.state.read(&self.model.kernels.gpu).await?;
        state.extend(self.adapters().await?);
        Ok(state)
    }

    /// Restores the optimizer from a checkpoint: its state, the step count and a LoRA run's
    /// adapters.
    pub fn restore(&mut self, state: &OptimizerTensors, step: u64) -> Result<()> {
        let state = self.restore_adapters(state)?;
        self.state.write(&self.model.kernels.gpu, &state)?;
        self.step = step;
        Ok(())
    }
}
