//! A training run: its settings, data, tokenizer, trainer and RNGs, with evaluation, samples,
//! task accuracy and checkpoints. The CLI and the page drive the same type through the same
//! [`driver::Driver`], from the same [`settings`], and save it in the same [`format`].

pub mod archive;
pub mod builder;
pub mod driver;
pub mod experiments;
pub mod fits;
pub mod format;
pub mod link;
pub mod score;
pub mod settings;

use serde::{Deserialize, Serialize};

use crate::checkpoint;
use crate::data::tasks::HELD_OUT_EXAMPLES;
use crate::data::{Dataset, Split, Task};
use crate::generate::{Decoder, SampleConfig};
use crate::hf;
use crate::kernels::Kernels;
use crate::model::{Gpt2, Gpt2Config, Weights};
use crate::rng::Rng;
use crate::tokenizer::Tokenizer;
use crate::train::{TrainConfig, Trainer};
use crate::{Error, Gpu, Result};

pub use driver::{dynamics_interval, Driver, Progress, RunEvent, Status};
pub use settings::RunSettings;

/// Where the training text comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DataSource {
    /// A UTF-8 text file (its path, as given).
    File(String),
    /// A built-in synthetic task: its name and parameters as [`Task::spec`] writes them
    /// (`reverse:max=12`; read by [`Task::recorded`]).
    Task(String),
    /// Text handed over directly (the page's corpus), with a name for display.
    Text(String),
}

impl DataSource {
    /// What to call the corpus: the file's or the page's name, or the task's.
    pub fn name(&self) -> String {
        match self {
            DataSource::File(path) => {
                std::path::Path::new(path).file_name().map_or(path.clone(), |n| n.to_string_lossy().into_owned())
            }
            DataSource::Text(name) => name.clone(),
            DataSource::Task(task) => format!("{task} task"),
        }
    }

    /// A built-in task's training text (regenerated from the run's seed); None for a file or
    /// the page's text, which the run keeps as corpus.txt.
    pub fn task_text(&self, seed: u64) -> Option<Result<String>> {
        match self {
            DataSource::Task(spec) => Some(Task::recorded(spec).map(|t| t.corpus(settings::TASK_EXAMPLES, seed))),
            _ => None,
        }
    }
}

/// Everything that defines a run; saved with every checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    pub model: Gpt2Config,
    pub train: TrainConfig,
    pub max_iters: usize,
    pub eval_interval: usize,
    pub eval_iters: usize,
    pub log_interval: usize,
    pub seed: u64,
    pub data: DataSource,
    /// "char", "bpe:N" or "dir" (the model directory's own tokenizer).
    pub tokenizer: String,
}

/// What a checkpoint's training state records besides the moments.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunState {
    pub step: u64,
    pub data_rng: u64,
    pub run: RunConfig,
    /// Saved without AdamW's moments ("model only", where storage is short): resumed, the run
    /// goes on at `step` with the moments starting from zero.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub model_only: bool,
    /// The step AdamW's moments started from: 0, or the step a run resumed from a model-only
    /// checkpoint at (bias correction counts from there).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub moments_since: u64,
    /// The loss scaler's state where the run scales its loss (absent in older checkpoints).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scale: Option<crate::train::LossScale>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A checkpoint as files: config.json, model.safetensors, tokenizer.json and the training state.
pub struct CheckpointFiles {
    pub config_json: String,
    pub model: Vec<u8>,
    pub tokenizer_json: String,
    pub state: Vec<u8>,
}

impl CheckpointFiles {
    /// The saved settings, step and data position (training_state.safetensors' metadata).
    pub fn state(&self) -> Result<RunState> {
        saved_run(&self.state, &hf::parse_config(&self.config_json)?)
    }
}

/// Losses (and, for tasks, exact-match accuracy) at one evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Eval {
    pub iter: u64,
    pub train_loss: f32,
    pub val_loss: f32,
    pub accuracy: Option<f32>,
}

pub struct Run {
    pub cfg: RunConfig,
    pub trainer: Trainer,
    pub data: Dataset,
    pub tokenizer: Tokenizer,
    pub task: Option<Task>,
    /// The held-out examples of the last evaluation, scored (tasks only).
    pub task_score: Option<score::TaskScore>,
    /// Draws the training batches; saved in checkpoints.
    pub data_rng: Rng,
    /// Restored from a model-only checkpoint: AdamW's moments started from zero at its step.
    pub fresh_moments: bool,
    decoder: Decoder,
}

impl Run {
    /// Starts a run from `weights` (random or pretrained) on `text` tokenized by `tokenizer`.
    pub fn new(
        kernels: std::sync::Arc<Kernels>,
        cfg: RunConfig,
        weights: &Weights,
        tokenizer: Tokenizer,
        text: &str,
    ) -> Result<Run> {
        if tokenizer.vocab_size() > cfg.model.vocab_size {
            return Err(Error::Input(format!(
                "the tokenizer has {} tokens but the model's vocab_size is {}",
                tokenizer.vocab_size(),
                cfg.model.vocab_size
            )));
        }
        let task = match &cfg.data {
            DataSource::Task(spec) => Some(Task::recorded(spec)?),
            _ => None,
        };
        let data = match (&task, cfg.train.answer_loss) {
            (_, false) => Dataset::from_text(text, &tokenizer, cfg.train.seq_len)?,
            // the run's text is this corpus: the task's training examples from the run's seed
            (Some(task), true) => {
                let examples = task.train_examples(settings::TASK_EXAMPLES, cfg.seed);
                Dataset::from_examples(&examples, &tokenizer, cfg.train.seq_len)?
            }
            (None, true) => {
                return Err(Error::Input(format!(
                    "an answer-only loss needs a task (--task), whose lines have answers to count; {} has none",
                    cfg.data.name()
                )))
            }
        };
        let model = Gpt2::new(kernels, weights)?;
        let decoder = Decoder::new(&model)?;
        let mut trainer = Trainer::new(model, cfg.train)?;
        trainer.track_dynamics(dynamics_interval(cfg.log_interval));
        // the trainer has fixed the attention numerics (TrainConfig::attention): saved with the run
        let cfg = RunConfig { train: trainer.cfg, ..cfg };
        let data_rng = Rng::new(cfg.seed);
        Ok(Run { cfg, trainer, data, tokenizer, task, task_score: None, data_rng, fresh_moments: false, decoder })
    }

    /// Rebuilds a run from its checkpoint on `kernels`' device, training on `text` (its corpus),
    /// continuing exactly where it was saved (after a page reload, an import or `--resume`).
    /// `adjust` gets the saved settings and may change them (a new lr, more steps).
    pub fn from_checkpoint(
        kernels: std::sync::Arc<Kernels>,
        files: &CheckpointFiles,
        text: &str,
        adjust: impl FnOnce(&mut RunConfig) -> Result<()>,
    ) -> Result<Run> {
        let config = hf::parse_config(&files.config_json)?;
        let weights = hf::load_weights("model.safetensors", &files.model, config)?;
        let tokenizer = Tokenizer::from_bytes("tokenizer.json", files.tokenizer_json.as_bytes())?;
        let mut cfg = saved_run(&files.state, &config)?.run;
        adjust(&mut cfg)?;
        let mut run = Run::new(kernels, cfg, &weights, tokenizer, text)?;
        run.restore(&files.state)?;
        Ok(run)
    }

    /// The same run on a new device (after the old one was lost): the weights, optimizer state,
    /// step and data position of `files`; the settings, data and tokenizer stay.
    pub fn reopen(&mut self, kernels: std::sync::Arc<Kernels>, files: &CheckpointFiles) -> Result<()> {
        let weights = hf::load_weights("model.safetensors", &files.model, self.cfg.model)?;
        // the submit budget carries over to the new device
        let model = Gpt2::new(kernels, &weights)?.with_submit_budget(self.trainer.model.submit_budget_ms);
        let decoder = Decoder::new(&model)?;
        (self.trainer, self.decoder) = (Trainer::new(model, self.cfg.train)?, decoder);
        self.trainer.track_dynamics(dynamics_interval(self.cfg.log_interval));
        self.restore(&files.state)
    }

    /// Sets the submit budget of the run's steps, evaluations and samples in milliseconds (0: one
    /// submit each); a new run's is [`crate::submit::DEFAULT_BUDGET_MS`].
    pub fn set_submit_budget(&mut self, ms: f64) {
        self.trainer.set_submit_budget(ms);
        self.decoder.set_submit_budget(ms);
    }

    /// The device the run trains on.
    pub fn gpu(&self) -> &Gpu {
        &self.trainer.model.kernels.gpu
    }

    /// Continues a run, just built, from a checkpoint's training state; one saved without the
    /// moments goes on at its step with the trainer's moments as built (zero), AdamW's bias
    /// correction counting from that step as for a fresh optimizer.
    pub fn restore(&mut self, state_bytes: &[u8]) -> Result<()> {
        let (moments, state): (_, RunState) =
            checkpoint::parse_state(checkpoint::STATE_FILE, state_bytes, &self.cfg.model)?;
        if state.moments_since > state.step {
            return Err(Error::Format(format!(
                "{}: its moments start at step {}, after its step {}: the run is damaged",
                checkpoint::STATE_FILE,
                state.moments_since,
                state.step
            )));
        }
        // the steps the loss scaler skipped count towards bias correction only while the
        // moments they skipped are kept: fresh moments start the count again
        let mut loss_scale = state.loss_scale;
        match moments {
            Some(optimizer) => {
                self.trainer.restore(&optimizer, state.step)?;
                self.trainer.moments_since = state.moments_since;
            }
            None if !state.model_only => {
                return Err(Error::Format(format!(
                    "{} holds no optimizer state but does not say it was saved without it: the run is damaged; \
                     resume an earlier copy or export it again",
                    checkpoint::STATE_FILE
                )))
            }
            None => {
                self.trainer.step = state.step;
                self.trainer.moments_since = state.step;
                if let Some(s) = loss_scale.as_mut() {
                    s.skipped = 0;
                }
            }
        }
        if let Some(s) = &loss_scale {
            self.trainer.restore_loss_scale(s)?;
        }
        self.fresh_moments = state.model_only;
        self.data_rng = Rng { state: state.data_rng };
        Ok(())
    }

    pub fn step(&self) -> u64 {
        self.trainer.step
    }

    pub fn done(&self) -> bool {
        self.trainer.step as usize >= self.cfg.max_iters
    }

    /// One optimizer step on grad_accum fresh training batches (no readback).
    pub fn train_step(&mut self) -> Result<()> {
        let (b, t) = (self.cfg.train.batch_size, self.cfg.train.seq_len);
        let batches: Vec<_> =
            (0..self.cfg.train.grad_accum).map(|_| self.data.batch(Split::Train, &mut self.data_rng, b, t)).collect();
        self.trainer.step(&batches)
    }

    /// The last step's loss (a readback).
    pub async fn loss(&self) -> Result<f32> {
        self.trainer.last_loss().await
    }

    /// Mean train and val loss over eval_iters batches each, from an RNG of its own (so
    /// evaluating does not change the training batches), and the task accuracy if any.
    pub async fn evaluate(&mut self) -> Result<Eval> {
        let (b, t) = (self.cfg.train.batch_size, self.cfg.train.seq_len);
        let mut rng = Rng::new(self.cfg.seed ^ 0xE7A1 ^ self.trainer.step);
        let mut draw = |split| -> Vec<_> {
            (0..self.cfg.eval_iters.max(1)).map(|_| self.data.batch(split, &mut rng, b, t)).collect()
        };
        let (train_batches, val_batches) = (draw(Split::Train), draw(Split::Val));
        let train_loss = self.trainer.eval_loss(&train_batches).await?;
        let val_loss = self.trainer.eval_loss(&val_batches).await?;
        let accuracy = match self.task.clone() {
            Some(task) => {
                let score = self.task_score(&task, HELD_OUT_EXAMPLES).await?;
                let accuracy = score.accuracy();
                self.task_score = Some(score);
                Some(accuracy)
            }
            None => None,
        };
        Ok(Eval { iter: self.trainer.step, train_loss, val_loss, accuracy })
    }

    /// Token ids of `prompt`, or the first token of the validation split when it is empty.
    pub fn prompt_ids(&self, prompt: &str) -> Result<Vec<u32>> {
        if prompt.is_empty() {
            Ok(self.data.val[..1].to_vec())
        } else {
            self.tokenizer.prompt_ids(prompt)
        }
    }

    /// Continues `ids` with the KV-cache decoder (see [`Decoder::generate`]), stopping at
    /// `<|endoftext|>` where the tokenizer has it.
    pub async fn generate(
        &mut self,
        ids: &[u32],
        cfg: &SampleConfig,
        on_token: impl FnMut(u32) -> bool,
    ) -> Result<Vec<u32>> {
        // training moves the weights between generations: in f16 the copies are made again
        self.decoder.weights_changed();
        self.decoder.generate(&self.trainer.model, ids, cfg, self.tokenizer.end_of_text(), on_token).await
    }

    /// The precision [`Run::generate`] runs in (f32 unless another decoder was put in through
    /// [`Run::decoder_mut`]; training's precision is the run's own) and, where it is not the one
    /// asked for, why.
    pub fn precision(&self) -> &crate::precision::Resolved {
        self.decoder.precision()
    }

    /// The model and the decoder [`Run::generate`] uses (to make another in a new precision).
    pub fn decoder_mut(&mut self) -> (&Gpt2, &mut Decoder) {
        (&self.trainer.model, &mut self.decoder)
    }

    /// Text continuing `prompt` (the start of the validation split when empty), prompt included.
    pub async fn sample(&mut self, prompt: &str, cfg: &SampleConfig) -> Result<String> {
        let mut ids = self.prompt_ids(prompt)?;
        let out = self.generate(&ids, cfg, |_| true).await?;
        ids.extend(out);
        self.tokenizer.decode(&ids)
    }

    /// The model, tokenizer and training state as files; with `moments` false a model-only
    /// checkpoint (the training state without AdamW's moments).
    pub async fn checkpoint(&self, moments: bool) -> Result<CheckpointFiles> {
        let weights = self.trainer.model.weights().await?;
        // a LoRA run's state is its adapters and their small moments: always saved whole
        let moments = moments || self.trainer.model.lora.is_some();
        let moments = if moments { Some(self.trainer.optimizer_state().await?) } else { None };
        let loss_scale = self.trainer.loss_scale().await?;
        let state = RunState {
            step: self.trainer.step,
            data_rng: self.data_rng.state,
            run: self.cfg.clone(),
            model_only: moments.is_none(),
            moments_since: self.trainer.moments_since,
            loss_scale,
        };
        Ok(CheckpointFiles {
            config_json: hf::config_json(&self.cfg.model),
            model: hf::save_weights(&weights)?,
            tokenizer_json: self.tokenizer.to_json()?,
            state: checkpoint::state_bytes(&self.cfg.model, moments.as_ref(), &state)?,
        })
    }
}

/// Reads the run settings saved in a checkpoint's training state (checking its moments, where it
/// has them, against `model`).
pub fn saved_run(state_bytes: &[u8], model: &Gpt2Config) -> Result<RunState> {
    let (_, state) = checkpoint::parse_state(checkpoint::STATE_FILE, state_bytes, model)?;
    Ok(state)
}
