//! LoRA runs in the trainer: the adapters a model gets for a run's settings, and their place in
//! checkpoints, beside the optimizer's state under their own names (`lora.h.{l}.{module}.lora_A`,
//! `.lora_B`; their moments `adam_m.lora.…`), so that resume and recovery restore them with it.

use crate::checkpoint::OptimizerTensors;
use crate::model::Gpt2;
use crate::{Error, Result};

use super::{TrainConfig, Trainer};

/// Gives `model` the adapters `cfg` asks for (peft's initialisation), where it has none yet.
pub(super) fn attach_lora(model: &mut Gpt2, cfg: &TrainConfig) -> Result<()> {
    match (cfg.lora, &model.lora) {
        (None, None) => Ok(()),
        (Some(lc), None) => model.attach_lora(lc),
        (Some(lc), Some(have)) if have.config == lc => Ok(()),
        (Some(_), Some(_)) => Err(Error::Input("the model's LoRA adapters differ from the run's LoRA settings".into())),
        (None, Some(_)) => Err(Error::Input(
            "the model carries LoRA adapters but the run's settings have no lora: give the run its LoRA settings"
                .into(),
        )),
    }
}

impl Trainer {
    /// The adapters' values by name, in [`crate::model::LoraConfig::specs`] order (empty for a
    /// full run).
    pub async fn adapters(&self) -> Result<OptimizerTensors> {
        let Some(lora) = &self.model.lora else { return Ok(vec![]) };
        let names = lora.config.specs(&self.model.config).into_iter().map(|(name, _)| name);
        let data = self.model.kernels.gpu.read_many(&lora.ordered()).await?;
        Ok(names.zip(data).collect())
    }

    /// Splits a checkpoint's state into the adapters (written to the model's, every one of them
    /// required in a LoRA run) and the optimizer's state, which it returns.
    pub(super) fn restore_adapters(&self, saved: &OptimizerTensors) -> Result<OptimizerTensors> {
        let (adapters, state): (OptimizerTensors, OptimizerTensors) =
            saved.iter().cloned().partition(|(key, _)| key.starts_with("lora."));
        let Some(lora) = &self.model.lora else {
            if let Some((key, _)) = adapters.first() {
                return Err(Error::Format(format!(
                    "the checkpoint holds LoRA adapter {key}, but this run's settings have no lora"
                )));
            }
            return Ok(state);
        };
        let specs = lora.config.specs(&self.model.config);
        for ((name, shape), t) in specs.iter().zip(lora.ordered()) {
            let Some((_, data)) = adapters.iter().find(|(k, _)| k == name) else {
                return Err(Error::Format(format!("the checkpoint has no LoRA adapter {name}: the run is damaged")));
            };
            if data.len() != t.numel() {
                return Err(Error::Format(format!(
                    "LoRA adapter {name}: {} values, expected {} {shape:?} (was it saved at another rank?)",
                    data.len(),
                    t.numel()
                )));
            }
            self.model.kernels.gpu.write(t, data);
        }
        if let Some((key, _)) = adapters.iter().find(|(k, _)| !specs.iter().any(|(n, _)| n == k)) {
            return Err(Error::Format(format!("the checkpoint holds {key}, which this run's LoRA settings lack")));
        }
        Ok(state)
    }
}
