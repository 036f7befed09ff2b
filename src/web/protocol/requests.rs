//! What the page asks of the engine ([`Request`]), with the sampling settings several requests
//! carry, and the states and error scopes the events name.

use serde::{Deserialize, Serialize};
use strum::{EnumIter, VariantNames};

use crate::generate::SampleConfig;
use crate::precision::Precision;
use crate::run::link::LinkCorpus;
use crate::run::RunSettings;

/// The page generates in auto precision unless it asks for another.
fn auto() -> Precision {
    Precision::Auto
}

/// What the page asks of the engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, VariantNames)]
#[serde(tag = "type", rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Request {
    /// Open the GPU, with the kernel tuning cache the page stored (crate::tune) if any. The
    /// worker sends it once the engine has loaded; requests that need the GPU and come before it
    /// opens wait for it.
    Init {
        #[serde(default)]
        tune_cache: Option<String>,
    },
    /// Use a corpus: the file bytes sent alongside, `text`, or a built-in `task`'s examples.
    Corpus {
        name: String,
        #[serde(default)]
        text: Option<String>,
        #[serde(default)]
        task: Option<String>,
    },
    /// Tokenize the corpus and plan `settings`: token counts, parameter count, memory estimate
    /// and the device check, before anything is allocated.
    Plan {
        settings: RunSettings,
    },
    /// Start training: from scratch with `settings`, or fine-tuning an imported model.
    Start {
        settings: RunSettings,
    },
    Pause,
    Resume,
    Stop,
    /// Continue `prompt` with the current model, streaming tokens.
    Generate {
        prompt: String,
        sampling: Sampler,
        max_tokens: usize,
        seed: u64,
        /// f32, f16 or auto (the page's default: f16 where the adapter has shader-f16).
        #[serde(default = "auto")]
        precision: Precision,
    },
    /// Stop the generation in progress.
    Cancel,
    /// The current model as Hugging Face files (an `export` event with the bytes).
    Export,
    /// The current run as a run zip (an `export_run` event with its bytes).
    ExportRun,
    /// A Hugging Face model (GPT-2, Llama, Qwen3 or wgpt's own): config.json and tokenizer.json as
    /// text, the bytes sent alongside are model.safetensors or the shards `names` names (f32,
    /// f16 or bf16). Replaces the current model; Start then fine-tunes it.
    Import {
        name: String,
        config: String,
        tokenizer: String,
        // architecture (issue 25): sharded checkpoints and generation_config.json from the hub
        /// The safetensors files alongside, in order: a checkpoint's shards (those
        /// model.safetensors.index.json names); empty: one file, model.safetensors.
        #[serde(default)]
        names: Vec<String>,
        /// generation_config.json, where the model has one: its eos tokens end generated text.
        #[serde(default)]
        generation_config: Option<String>,
    },
    /// Go on with a saved run `id` (www/js/runs.js keeps them in the browser's origin-private
    /// file system): its files alongside, named by `names`. `lr` replaces the learning rate
    /// (min_lr scales with it), e.g. after the run diverged.
    Restore {
        id: String,
        names: Vec<String>,
        #[serde(default)]
        lr: Option<f32>,
    },
    /// Go on with a run zip (the bytes alongside) from Export run or `wgpt export-run`; with
    /// `max_iters` past the run's, train on to it (as `wgpt train --resume --max-iters`).
    ImportRun {
        name: String,
        #[serde(default)]
        max_iters: Option<usize>,
    },
    /// Look inside for `prompt`: its tokens, the logit lens, every head's attention in `layer`
    /// and the next-token distribution under `sampling` (an `inspect` event).
    Inspect {
        prompt: String,
        layer: usize,
        sampling: Sampler,
    },
    /// The last look inside's next-token distribution under other sampling settings, from the
    /// logits it kept (no forward pass): a `sampling` event.
    Sampling(Sampler),
    /// Run a parity file (its bytes alongside; the format of tests/fixtures/make_parity.py) on
    /// this GPU.
    Parity {
        name: String,
    },
    /// Destroys the GPU device, as a driver reset would, to exercise the recovery (tests;
    /// `wgptDebug.loseDevice()` in the page's console).
    LoseDevice,
    /// The engine's memory: a `memory` event (`wgptDebug.memory()`; the soak test reads it).
    Memory,
    /// Save the current run's checkpoints, and those of runs started after, with AdamW's moments
    /// (true) or without them (false: model-only, a third of the size, where storage is short;
    /// resumed, the moments start from zero). A restored run keeps the kind it was saved as
    /// until this says otherwise.
    Checkpoints {
        optimizer_state: bool,
    },
    /// Behave as if the GPU had `bytes` of memory for our buffers (None: what it has), past
    /// which building a model or run fails as out of memory (tests; `wgptDebug.capMemory(bytes)`).
    CapMemory {
        #[serde(default)]
        bytes: Option<u64>,
    },
    // issue 27 (nothing trains unasked, links)
    /// Train the held run on to `max_iters` steps, more than it has (a restored run that is done
    /// goes on; as `wgpt train --resume --max-iters`).
    TrainOn {
        max_iters: usize,
    },
    /// A link of the page's `settings` and corpus choice (a `link` event); answered at once,
    /// without the GPU.
    ShareLink {
        settings: RunSettings,
        #[serde(default)]
        corpus: Option<LinkCorpus>,
    },
    /// Open a link's `fragment` over the page's `settings` (a `link_opened` event: what it set,
    /// ignored and refused; a link that is no link is an error); answered at once, without the
    /// GPU. Opening trains nothing.
    OpenLink {
        fragment: String,
        settings: RunSettings,
    },
    // issue 26, LoRA in the page
    /// The held LoRA run's adapter as a zip (an `export_adapter` event with its bytes).
    ExportAdapter,
    /// The held LoRA run's model with the adapter merged in, as a zip of HF files (an
    /// `export_merged` event with its bytes).
    ExportMerged,
    /// A peft LoRA adapter onto the imported model: the bytes alongside are one zip holding
    /// adapter_config.json and adapter_model.safetensors (`names` empty), or those two files
    /// named by `names`.
    ImportAdapter {
        name: String,
        #[serde(default)]
        names: Vec<String>,
    },
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, VariantNames)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum TrainState {
    Training,
    Paused,
    Stopped,
    Done,
}

/// What failed, in an `error` event; the page keeps everything else as it was. `checkpoint` and
/// `storage` come from the page's store of saved runs (www/js/runs.js), not from the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, VariantNames, EnumIter)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Scope {
    Gpu,
    Corpus,
    Plan,
    Train,
    Generate,
    Export,
    Import,
    Restore,
    Inspect,
    Parity,
    Checkpoint,
    Storage,
    Link,
}

impl Scope {
    /// What could not be done, as the page's status line says it ("Could not ...").
    pub fn failed_to(self) -> &'static str {
        match self {
            Scope::Gpu => "open the GPU",
            Scope::Corpus => "use that corpus",
            Scope::Plan => "plan this model",
            Scope::Train => "train",
            Scope::Generate => "generate",
            Scope::Export => "export",
            Scope::Import => "import that model",
            Scope::Restore => "resume that run",
            Scope::Inspect => "look inside",
            Scope::Parity => "run the parity file",
            Scope::Checkpoint => "save the checkpoint",
            Scope::Storage => "use the browser's storage",
            Scope::Link => "use that link",
        }
    }
}

/// Sampling's settings, as the Generate controls set them (temperature 0 is greedy, top-k 0 and
/// top-p 1 are off).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sampler {
    pub temperature: f32,
    pub top_k: usize,
    pub top_p: f32,
}

impl Sampler {
    /// The generator's settings for these (length and seed play no part in a distribution).
    pub fn config(self) -> SampleConfig {
        SampleConfig { temperature: self.temperature, top_k: self.top_k, top_p: self.top_p, ..SampleConfig::greedy(1) }
    }
}
