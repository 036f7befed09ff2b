//! What a user chooses for a new run (the page's form, `wgpt train`'s flags) and the one set of
//! defaults for everything else, shared by the CLI and the page: the presets with the training
//! settings that go with each shape (as nanoGPT's config files), min_lr, warmup, the evaluation
//! batches and the sample shown at each evaluation.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::data::TaskSpec;
use crate::generate::SampleConfig;
use crate::kernels::AttentionKind;
use crate::model::lora::Targets;
use crate::model::{ArchChoice, Gpt2Config, LoraConfig};
use crate::precision::Precision;
use crate::run::link::FIELDS;
use crate::run::{DataSource, RunConfig};
use crate::train::{Optimizer, OptimizerConfig, Schedule, TrainConfig};
use crate::{Error, Result};

/// Batches per split in each evaluation (nanoGPT evaluates on 200; 20 keeps the page's
/// evaluations short on a software adapter and is still a stable mean for small models).
pub const EVAL_ITERS: usize = 20;

/// The seed of a new run unless one is chosen (nanoGPT's).
pub const DEFAULT_SEED: u64 = 1337;

/// Examples in a built-in task's training corpus.
pub const TASK_EXAMPLES: usize = 20_000;

/// The sample printed (CLI) or shown (page) at each evaluation: 120 tokens at temperature 0.8, as
/// nanoGPT's sample.py, seeded by the step so a resumed run samples the same text.
pub fn eval_sample(step: u64) -> SampleConfig {
    SampleConfig { max_new_tokens: 120, temperature: 0.8, top_k: 0, top_p: 1.0, seed: step }
}

/// The training settings of each preset; the shapes are [`crate::model::PRESETS`]': (name,
/// batch_size, max_iters, lr, eval_interval). `tiny` is the page's default, `baby` the CLI's
/// (nanoGPT's CPU run); `shakespeare-char` keeps nanoGPT's steps and lr at a batch a browser
/// holds.
const PRESET_TRAINING: [(&str, usize, usize, f32, usize); 4] = [
    ("tiny", 8, 500, 2e-3, 50),
    ("baby", 12, 2000, 1e-3, 250),
    ("shakespeare-char", 8, 5000, 1e-3, 250),
    ("gpt2", 8, 2000, 6e-4, 250),
];

/// A new run's settings. The optional fields default to the shared defaults (see
/// [`RunSettings::run_config`]); the page leaves them out, the CLI's flags fill them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSettings {
    /// "char" (a token per character) or "bpe:N" (a byte-level BPE of N tokens trained on the
    /// corpus); the CLI also takes a directory holding a tokenizer.json.
    pub tokenizer: String,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_embd: usize,
    /// The context, and the training sequence length (at most the model's context when
    /// fine-tuning).
    pub block_size: usize,
    pub batch_size: usize,
    /// Micro-batches per optimizer step (a bigger effective batch in the same memory).
    #[serde(default = "one")]
    pub grad_accum: usize,
    pub max_iters: usize,
    /// The peak learning rate.
    pub lr: f32,
    /// Evaluate, sample and save a checkpoint every this many steps (and at step 0 and the end).
    pub eval_interval: usize,
    /// Read the loss back and report it every this many steps (and at step 1 and the end).
    pub log_interval: usize,
    pub seed: u64,
    /// The learning rate at the end of the cosine decay [default: lr / 10, nanoGPT's advice].
    #[serde(default)]
    pub min_lr: Option<f32>,
    /// Linear warmup steps [default: max_iters / 20, at most 100].
    #[serde(default)]
    pub warmup_iters: Option<usize>,
    /// Batches per split in each evaluation [default: EVAL_ITERS].
    #[serde(default)]
    pub eval_iters: Option<usize>,
    /// AdamW's weight decay on matrices and embeddings [default: TrainConfig::default()'s, as
    /// the next four].
    #[serde(default)]
    pub weight_decay: Option<f32>,
    #[serde(default)]
    pub beta1: Option<f32>,
    #[serde(default)]
    pub beta2: Option<f32>,
    /// Clip the global gradient norm to this (0 = off).
    #[serde(default)]
    pub grad_clip: Option<f32>,
    /// Dropout on the embeddings, residual branches and attention probabilities (0 = off).
    #[serde(default)]
    pub dropout: Option<f32>,
    /// f32, f16 (mixed precision where the adapter has shader-f16, f32 with a note elsewhere)
    /// or auto (f32 for training) [default: f32].
    #[serde(default)]
    pub precision: Precision,
    // architecture (issue 25): `arch` (a preset) and the switches over it, under their own keys
    /// The architecture: a preset (`arch`) and explicit switches over it [default: GPT-2's].
    #[serde(flatten)]
    pub architecture: ArchChoice,
    // optimizers and schedules (issue 26)
    /// adamw, muon or sgd [default: adamw].
    #[serde(default)]
    pub optimizer: Option<Optimizer>,
    /// Muon's peak learning rate for the hidden matrices [default: MUON_LR].
    #[serde(default)]
    pub muon_lr: Option<f32>,
    /// Muon's or SGD's momentum [default: 0.95 for Muon, 0.9 for SGD].
    #[serde(default)]
    pub momentum: Option<f32>,
    /// Nesterov momentum for Muon and SGD [default: on].
    #[serde(default)]
    pub nesterov: Option<bool>,
    /// cosine, wsd or constant [default: cosine].
    #[serde(default)]
    pub lr_schedule: Option<Schedule>,
    // issue 27 (links): what a link must pin to reproduce a run on the same adapter
    /// The attention numerics, classic or flash (they round differently) [default: the device's
    /// tuning picks, and the run records it].
    #[serde(default)]
    pub attention: Option<AttentionKind>,
    // issue 27, tasks
    /// On a task, count only the answers' tokens in the loss (grokking) [default: false].
    #[serde(default)]
    pub answer_loss: bool,
    // issue 26, LoRA (boxed: the page's events carry settings, and clippy weighs their size)
    /// A fine-tune of LoRA adapters only: the `lora_*` keys.
    #[serde(flatten)]
    pub lora: Box<LoraSettings>,
}

/// The LoRA keys of [`RunSettings`], each left out where unset.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoraSettings {
    /// Train rank-r LoRA adapters and freeze the base [default: off, every parameter trains].
    #[serde(rename = "lora_rank", default, skip_serializing_if = "Option::is_none")]
    pub rank: Option<usize>,
    /// LoRA's alpha: the adapters' product is scaled by alpha/r [default: 2r].
    #[serde(rename = "lora_alpha", default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f32>,
    /// The products that carry adapters [default: c_attn, c_proj (both), c_fc].
    #[serde(rename = "lora_targets", default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<Targets>,
    /// Dropout on the adapters' input [default: 0].
    #[serde(rename = "lora_dropout", default, skip_serializing_if = "Option::is_none")]
    pub dropout: Option<f32>,
}

fn one() -> usize {
    1
}

impl RunSettings {
    /// A preset's shape and training settings, with a character tokenizer and the default seed.
    pub fn preset(name: &str) -> Option<RunSettings> {
        let shape = Gpt2Config::preset(name)?;
        let &(_, batch_size, max_iters, lr, eval_interval) = PRESET_TRAINING.iter().find(|p| p.0 == name)?;
        Some(RunSettings {
            tokenizer: "char".into(),
            n_layer: shape.n_layer,
            n_head: shape.n_head,
            n_embd: shape.n_embd,
            block_size: shape.block_size,
            batch_size,
            grad_accum: 1,
            max_iters,
            lr,
            eval_interval,
            log_interval: 10,
            seed: DEFAULT_SEED,
            min_lr: None,
            warmup_iters: None,
            eval_iters: None,
            weight_decay: None,
            beta1: None,
            beta2: None,
            grad_clip: None,
            dropout: None,
            precision: Precision::F32,
            architecture: ArchChoice::default(),
            optimizer: None,
            muon_lr: None,
            momentum: None,
            nesterov: None,
            lr_schedule: None,
            attention: None,
            answer_loss: false,
            lora: Box::default(),
        })
    }

    /// The settings as a JSON object, each f32 written as its shortest decimal ("0.0015", not the
    /// f64 "0.001500000013038516" that `serde_json::to_value` makes of it), as the page sends them.
    pub fn to_map(&self) -> serde_json::Map<String, Value> {
        let json = serde_json::to_string(self).expect("RunSettings serialises");
        match serde_json::from_str(&json) {
            Ok(Value::Object(map)) => map,
            _ => unreachable!("RunSettings serialises as an object"),
        }
    }

    /// These settings with the run-settings keys of the JSON object `over` put over them (an
    /// experiment's runs, a task's recipe); each key must be one a link carries. `what` names
    /// `over` in the error.
    pub fn with_keys(&self, over: &str, what: &str) -> Result<RunSettings> {
        let over: Value = serde_json::from_str(over).map_err(|e| Error::Input(format!("{what}: not JSON ({e})")))?;
        let Value::Object(over) = over else {
            return Err(Error::Input(format!("{what}: not a JSON object of run settings")));
        };
        let mut map = self.to_map();
        for (key, value) in over {
            if !FIELDS.iter().any(|f| f.key == key) {
                return Err(Error::Input(format!("{what}: {key} is not a run setting")));
            }
            map.insert(key, value);
        }
        serde_json::from_value(Value::Object(map)).map_err(|e| Error::Input(format!("{what}: not run settings ({e})")))
    }

    /// The settings of `task`'s recipe: its preset's with the recipe's keys over them.
    pub fn recipe(task: &TaskSpec) -> Result<RunSettings> {
        let what = format!("task {}'s recipe", task.name);
        let recipe = task.recipe.as_ref().ok_or_else(|| {
            Error::Input(format!(
                "task {} has no recipe yet (no settings measured to reach 95% exact match): choose a preset and \
                 flags yourself",
                task.name
            ))
        })?;
        let preset = RunSettings::preset(recipe.preset)
            .ok_or_else(|| Error::Input(format!("{what}: no preset {:?}", recipe.preset)))?;
        preset.with_keys(recipe.settings, &what)
    }

    /// Every preset by name, smallest first (the page's preset menu).
    pub fn presets() -> Vec<(String, RunSettings)> {
        let mut all: Vec<(String, RunSettings)> =
            PRESET_TRAINING.iter().filter_map(|p| Some((p.0.to_string(), RunSettings::preset(p.0)?))).collect();
        all.sort_by_key(|(_, s)| s.n_layer * s.n_embd * s.n_embd);
        all
    }

    /// The model of these settings' shape for a tokenizer of `vocab_size` tokens, checked.
    pub fn model(&self, vocab_size: usize) -> Result<Gpt2Config> {
        let model = Gpt2Config {
            n_layer: self.n_layer,
            n_head: self.n_head,
            n_embd: self.n_embd,
            block_size: self.block_size,
            vocab_size,
            arch: self.architecture.arch(self.n_head)?,
        };
        model.validate()?;
        Ok(model)
    }

    /// The optimizer these settings choose, its unset settings at the chosen one's defaults.
    pub fn optimizer_config(&self) -> OptimizerConfig {
        let d = OptimizerConfig::of(self.optimizer.unwrap_or_default());
        OptimizerConfig {
            muon_lr: self.muon_lr.unwrap_or(d.muon_lr),
            momentum: self.momentum.unwrap_or(d.momentum),
            nesterov: self.nesterov.unwrap_or(d.nesterov),
            ..d
        }
    }

    /// The LoRA adapters these settings ask for on `model`, their unset settings at peft's
    /// defaults, checked (None: a full run; the other lora keys need a rank).
    pub fn lora_config(&self, model: &Gpt2Config) -> Result<Option<LoraConfig>> {
        let s = &self.lora;
        let Some(rank) = s.rank else {
            let set = s.alpha.is_some() || s.targets.is_some() || s.dropout.is_some();
            if set {
                return Err(Error::Input(
                    "lora_alpha, lora_targets and lora_dropout need lora_rank (--lora R) to be set".into(),
                ));
            }
            return Ok(None);
        };
        let d = LoraConfig::for_model(model, rank, self.seed);
        let lc = LoraConfig {
            alpha: s.alpha.unwrap_or(d.alpha),
            targets: s.targets.unwrap_or(d.targets),
            dropout: s.dropout.unwrap_or(d.dropout),
            ..d
        };
        lc.validate(model)?;
        Ok(Some(lc))
    }

    /// Everything a run needs: these settings on `model` (a new one of their shape, or a
    /// pretrained one to fine-tune), with the defaults filled in, checked.
    pub fn run_config(&self, model: Gpt2Config, data: DataSource, tokenizer: String) -> Result<RunConfig> {
        if self.max_iters == 0 {
            return Err(Error::Input("the number of steps (max_iters) must be at least 1".into()));
        }
        let d = TrainConfig::default();
        let train = TrainConfig {
            batch_size: self.batch_size,
            seq_len: self.block_size.min(model.block_size),
            grad_accum: self.grad_accum.max(1),
            lr: self.lr,
            min_lr: self.min_lr.unwrap_or(self.lr / 10.0),
            warmup_iters: self.warmup_iters.unwrap_or((self.max_iters / 20).min(100)),
            lr_decay_iters: self.max_iters,
            weight_decay: self.weight_decay.unwrap_or(d.weight_decay),
            beta1: self.beta1.unwrap_or(d.beta1),
            beta2: self.beta2.unwrap_or(d.beta2),
            eps: d.eps,
            grad_clip: self.grad_clip.unwrap_or(d.grad_clip),
            dropout: self.dropout.unwrap_or(d.dropout),
            attention: self.attention,
            precision: self.precision,
            loss_scaling: None,
            optimizer: self.optimizer_config(),
            lr_schedule: self.lr_schedule.unwrap_or_default(),
            answer_loss: self.answer_loss,
            lora: self.lora_config(&model)?,
        };
        train.validate(model.block_size)?;
        Ok(RunConfig {
            model,
            train,
            max_iters: self.max_iters,
            eval_interval: self.eval_interval.max(1),
            eval_iters: self.eval_iters.unwrap_or(EVAL_ITERS).max(1),
            log_interval: self.log_interval.max(1),
            seed: self.seed,
            data,
            tokenizer,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_carry_their_shapes_and_the_shared_defaults() {
        let baby = RunSettings::preset("baby").unwrap();
        let cfg = baby.run_config(baby.model(65).unwrap(), DataSource::Task("addition".into()), "char".into()).unwrap();
        // nanoGPT's baby run: batch 12, block 64, lr 1e-3 -> 1e-4 over 2000 steps after 100 of warmup
        assert_eq!(cfg.model, Gpt2Config::preset("baby").unwrap());
        assert_eq!((cfg.train.batch_size, cfg.train.seq_len, cfg.max_iters), (12, 64, 2000));
        assert_eq!((cfg.train.lr, cfg.train.min_lr, cfg.train.warmup_iters), (1e-3, 1e-3 / 10.0, 100));
        assert_eq!((cfg.eval_interval, cfg.eval_iters), (250, EVAL_ITERS));
        let tiny = RunSettings::preset("tiny").unwrap();
        let cfg = tiny.run_config(tiny.model(24).unwrap(), DataSource::Text("x".into()), "char".into()).unwrap();
        assert_eq!(cfg.train.warmup_iters, 25, "a short run warms up for a twentieth of its steps");
        let names: Vec<String> = RunSettings::presets().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["tiny", "baby", "shakespeare-char", "gpt2"]);
    }

    #[test]
    fn the_page_may_leave_the_optional_settings_out() {
        let json = r#"{"tokenizer":"char","n_layer":2,"n_head":2,"n_embd":64,"block_size":32,"batch_size":8,
            "max_iters":60,"lr":0.002,"eval_interval":30,"log_interval":1,"seed":1337}"#;
        let s: RunSettings = serde_json::from_str(json).unwrap();
        assert_eq!(s.grad_accum, 1);
        let cfg = s.run_config(s.model(24).unwrap(), DataSource::Text("x".into()), "char".into()).unwrap();
        assert_eq!(cfg.train.beta2, TrainConfig::default().beta2);
        assert_eq!(cfg.train.min_lr, 0.002 / 10.0);
        assert_eq!(cfg.train.precision, Precision::F32, "settings from before the page's precision train in f32");
        assert_eq!((cfg.train.optimizer, cfg.train.lr_schedule), (OptimizerConfig::default(), Schedule::Cosine));
        let f16: RunSettings = serde_json::from_str(&json.replace("}", r#","precision":"f16"}"#)).unwrap();
        let cfg16 = f16.run_config(f16.model(24).unwrap(), DataSource::Text("x".into()), "char".into()).unwrap();
        assert_eq!(cfg16.train.precision, Precision::F16);
        assert_eq!(cfg.train.attention, None, "without a choice the device's tuning picks the attention");
        let flash: RunSettings = serde_json::from_str(&json.replace("}", r#","attention":"flash"}"#)).unwrap();
        let cfg = flash.run_config(flash.model(24).unwrap(), DataSource::Text("x".into()), "char".into()).unwrap();
        assert_eq!(cfg.train.attention, Some(AttentionKind::Flash), "a chosen attention numerics reaches the trainer");
        let mut bad = s.clone();
        bad.block_size = 0;
        assert!(bad.model(24).is_err());
        bad = s;
        bad.max_iters = 0;
        assert!(bad.run_config(bad.model(24).unwrap(), DataSource::Text("x".into()), "char".into()).is_err());
    }

    #[test]
    fn optimizer_keys_fill_the_chosen_optimizers_defaults() {
        let mut s = RunSettings::preset("tiny").unwrap();
        let json = serde_json::to_value(&s).unwrap();
        for key in ["optimizer", "muon_lr", "momentum", "nesterov", "lr_schedule"] {
            assert!(json.get(key).is_some(), "settings carry {key}");
        }
        s.optimizer = Some(Optimizer::Muon);
        let muon = s.optimizer_config();
        assert_eq!((muon.momentum, muon.muon_lr, muon.nesterov), (0.95, 0.02, true));
        s.optimizer = Some(Optimizer::Sgd);
        assert_eq!(s.optimizer_config().momentum, 0.9);
        s.momentum = Some(0.5);
        s.nesterov = Some(false);
        s.lr_schedule = Some(Schedule::Wsd);
        let parsed: RunSettings = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(parsed, s);
        assert_eq!(serde_json::to_value(&s).unwrap()["lr_schedule"], "wsd");
        assert_eq!(serde_json::to_value(&s).unwrap()["optimizer"], "sgd");
        let (cfg, bad) = (s.optimizer_config(), RunSettings { momentum: Some(1.5), ..s.clone() });
        assert_eq!((cfg.momentum, cfg.nesterov), (0.5, false));
        let err = bad.run_config(bad.model(24).unwrap(), DataSource::Text("x".into()), "char".into()).unwrap_err();
        assert!(err.to_string().contains("momentum must be in [0, 1)"), "{err}");
    }
}
