//! What the engine tells the page ([`Event`]), and the values its events carry: the manifest of
//! the protocol's names (in `ready`), the look inside's rows and bars, the dynamics chart's
//! points, a parity run's checks.

use serde::{Deserialize, Serialize};
use strum::{IntoEnumIterator, VariantNames};

use crate::data::{Task, TaskSpec, MAX_CORPUS_BYTES, TASKS};
use crate::dynamics::{Dynamics, LayerDynamics, TensorDynamics};
use crate::model::{Arch, ArchChoice, ArchPreset, Named};
use crate::params::ParamRow;
use crate::precision::Precision;
use crate::run::experiments::ExperimentInfo;
use crate::run::format::History;
use crate::run::link::{Link, LinkCorpus, Opened};
use crate::run::score::Scored;
use crate::run::settings::DEFAULT_SEED;
use crate::run::{Progress, RunSettings};
use crate::web::protocol::requests::{Request, Sampler, Scope, TrainState};
use crate::web::protocol::store::{StoreEvent, StoreRequest};

/// A token with its visible text and a probability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Guess {
    pub id: u32,
    pub text: String,
    pub p: f32,
}

/// One layer of the logit lens: 0 the embeddings, l the output of block l (h.{l-1}), n_layer the
/// model's own prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LensRow {
    pub layer: usize,
    /// The most likely next tokens after the last position.
    pub top: Vec<Guess>,
    /// At each position, the most likely next token.
    pub cells: Vec<Guess>,
}

/// One bar of the next-token distribution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bar {
    pub id: u32,
    pub text: String,
    /// The model's probability (softmax of the logits).
    pub before: f32,
    /// The probability sampling draws it with under the settings.
    pub after: f32,
    /// Whether sampling can pick it.
    pub candidate: bool,
}

/// The next-token distribution before and after sampling's settings: the most likely tokens as
/// bars, and how many tokens remain candidates with how much of the model's probability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplingView {
    pub settings: Sampler,
    pub bars: Vec<Bar>,
    pub candidates: usize,
    /// The model's probability of all the candidates together.
    pub mass: f32,
}

/// What the dynamics chart draws of one tracked step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DynamicsPoint {
    pub step: u64,
    pub lr: f32,
    /// The global gradient norm before clipping.
    pub grad_norm: f32,
    /// The clipping threshold (0 = none).
    pub grad_clip: f32,
    /// Embeddings, each block, ln_f.
    pub layers: Vec<LayerDynamics>,
}

impl From<&Dynamics> for DynamicsPoint {
    fn from(d: &Dynamics) -> DynamicsPoint {
        DynamicsPoint { step: d.step, lr: d.lr, grad_norm: d.grad_norm, grad_clip: d.grad_clip, layers: d.layers() }
    }
}

/// One compared quantity of a parity run: the largest errors and the tolerance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParityCheck {
    pub name: String,
    pub passed: bool,
    pub max_abs: f32,
    pub max_rel: f32,
    pub atol: f32,
    pub rtol: f32,
}

/// What the engine tells the page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, VariantNames)]
#[serde(tag = "type", rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Event {
    Ready {
        adapter: String,
        max_buffer_size: u64,
        max_storage_binding: u64,
        protocol: Manifest,
    },
    /// The kernel choice for a new run: where it came from, problems timed and the ms spent.
    Tuned {
        source: String,
        timed: usize,
        ms: f64,
    },
    /// The kernel tuning cache (crate::tune) changed with a new run's choices: the worker stores
    /// it, and hands it back with `init` when the page opens again.
    TuneCache {
        cache: String,
    },
    Corpus {
        name: String,
        bytes: usize,
        chars: usize,
        distinct: usize,
    },
    Plan {
        vocab: usize,
        tokens: usize,
        train: usize,
        val: usize,
        params: usize,
        /// GPU memory the run would hold (with the f16 weight copies where it trains in f16).
        memory_bytes: u64,
        /// The precision it would train in: f32, or f16 (mixed precision) where the settings ask
        /// for f16 and the adapter has shader-f16.
        precision: Precision,
        /// Why that is not the one asked for (f16 without shader-f16), if so.
        precision_note: Option<String>,
        // architecture (issue 25)
        /// The transformers class Export writes the model as (config.json's `architectures`):
        /// GPT2LMHeadModel, LlamaForCausalLM, Qwen3ForCausalLM or WgptForCausalLM.
        export_class: String,
        /// Its config.json `model_type` (`wgpt`: wgpt's own, loaded with trust_remote_code).
        model_type: String,
        // issue 26, LoRA in the page
        /// Where the settings ask for LoRA: the adapters' size and what a full fine-tune would
        /// hold instead (memory_bytes is then the LoRA run's).
        #[serde(default)]
        lora: Option<LoraPlan>,
    },
    State {
        state: TrainState,
        step: u64,
    },
    /// A training step's loss and pace; its training dynamics, where the step tracked them,
    /// follow as a `dynamics` event.
    Progress(Progress),
    /// The training dynamics of a tracked step (every multiple of the log interval that is at
    /// least 10 steps): per layer for the chart, per tensor for the parameter table.
    Dynamics {
        point: DynamicsPoint,
        tensors: Vec<TensorDynamics>,
    },
    Eval {
        step: u64,
        train_loss: f32,
        val_loss: f32,
        accuracy: Option<f32>,
        sample: String,
    },
    /// Newly generated text.
    Token {
        text: String,
    },
    Generated {
        tokens: usize,
        tokens_per_sec: f64,
        /// The precision the generation ran in: f16 (where the adapter has shader-f16 and f16 or
        /// auto was asked for) or f32.
        precision: Precision,
        /// Why it is not the one asked for (f16 without shader-f16), if so.
        #[serde(skip_serializing_if = "Option::is_none")]
        precision_note: Option<String>,
    },
    /// The model's Hugging Face files, named by `files`, alongside.
    Export {
        files: Vec<String>,
        step: u64,
    },
    /// The run as a zip (alongside), to download as `name`.
    ExportRun {
        name: String,
        step: u64,
    },
    /// A checkpoint of run `id` (at step 0, every evaluation, on pause and on stop): its files,
    /// named by `files` (the run format's; corpus.txt the first time), alongside.
    Checkpoint {
        id: String,
        name: String,
        step: u64,
        files: Vec<String>,
    },
    /// The GPU device was lost after step `lost_at` (`reason`); training goes on on a new
    /// device from the checkpoint of step `step`.
    Recovered {
        lost_at: u64,
        step: u64,
        reason: String,
    },
    /// The loss became NaN or infinite at `step`: training stopped; the checkpoint of step
    /// `saved` (none if there is none) of run `id` is intact and can go on with a lower lr.
    Diverged {
        id: String,
        step: u64,
        saved: Option<u64>,
        lr: f32,
        message: String,
    },
    /// A saved or imported run is back at the step of its checkpoint, training, with its loss
    /// history and its training dynamics so far. `fresh_moments`: the checkpoint was saved
    /// without the optimizer state, so AdamW's moments start from zero (and its checkpoints go on
    /// being saved so).
    Restored {
        id: String,
        name: String,
        step: u64,
        max_iters: usize,
        history: History,
        dynamics: Vec<DynamicsPoint>,
        #[serde(default)]
        fresh_moments: bool,
    },
    /// The current model's parameter table (HF names, shapes, counts, what each is for;
    /// lm_head tied and counted once), its total, and what throughput means for it: model FLOPs
    /// per trained token and the adapter's fp32 peak where it is known. Sent when a model is
    /// imported or a run starts.
    Params {
        rows: Vec<ParamRow>,
        total: usize,
        flops_per_token: f64,
        peak_flops: Option<f64>,
        // architecture (issue 25)
        /// The model's switches, every one explicit (the page shows a held model's).
        arch: ArchChoice,
        /// The transformers class whose names the rows are (as `plan`'s).
        export_class: String,
    },
    /// Look inside, at training step `step`, for `prompt` (`notes` say what became of it: an
    /// empty prompt's start, characters the vocabulary lacks, a window): the tokens looked at
    /// (`ids`, each one's text), the logit lens, the next-token distribution, and alongside as
    /// bytes the attention probabilities of every head of `layer`, f32 (n_head, T, T) row-major,
    /// row i over tokens 0..=i.
    Inspect {
        step: u64,
        prompt: String,
        notes: Vec<String>,
        ids: Vec<u32>,
        tokens: Vec<String>,
        lens: Vec<LensRow>,
        sampling: SamplingView,
        layer: usize,
        n_layer: usize,
        n_head: usize,
        /// Key/value heads: query head h shares KV head h / (n_head / n_kv_head) (GQA).
        n_kv_head: usize,
    },
    /// The last look inside's next-token distribution under new sampling settings.
    Sampling {
        step: u64,
        prompt: String,
        sampling: SamplingView,
    },
    /// A parity file's checks on this GPU, each against PyTorch's numbers in the file.
    Parity {
        name: String,
        adapter: String,
        checks: Vec<ParityCheck>,
        passed: bool,
    },
    /// An imported model is ready to sample from (and to fine-tune on the corpus).
    Imported {
        name: String,
        n_layer: usize,
        n_head: usize,
        n_embd: usize,
        block_size: usize,
        vocab_size: usize,
        params: usize,
    },
    Error {
        scope: Scope,
        message: String,
    },
    /// The engine's memory: the worker's wasm memory (None natively), and the GPU buffers alive
    /// and their bytes (what the engine made; 0 before the GPU is ready).
    Memory {
        wasm_bytes: Option<u64>,
        gpu_buffers: u64,
        gpu_bytes: u64,
    },
    // issue 27 (links)
    /// The link of the page's settings: `#run=...`, for the page to put after its address.
    Link {
        fragment: String,
    },
    /// A link opened: the settings to fill the form with, the corpus to choose, and what it set,
    /// ignored and refused (every string of it to be shown as text, never as HTML). Boxed: the
    /// largest event by far.
    LinkOpened(Box<Opened>),
    // issue 27 (tasks): the task view
    /// A task run's evaluation at `step`: the exact-match accuracy over `total` held-out examples
    /// of `task` (its spec, `reverse:max=12`) and the first of them as the model answered, token
    /// by token (every string to be shown as text, never as HTML).
    TaskEval {
        step: u64,
        task: String,
        accuracy: f32,
        total: usize,
        examples: Vec<Scored>,
    },
    // issue 26, LoRA in the page
    /// A LoRA run's adapter as a zip (alongside) to download as `name`: adapter_config.json
    /// naming its base and adapter_model.safetensors, the files `wgpt train` writes.
    ExportAdapter {
        name: String,
        step: u64,
        base: String,
    },
    /// A LoRA run's model with its adapter merged in, as a zip (alongside) of a Hugging Face
    /// model directory, to download as `name`.
    ExportMerged {
        name: String,
        step: u64,
    },
    /// A peft LoRA adapter runs on the imported model: its rank, alpha, the modules it targets,
    /// the base it names, and whether it was merged into the weights (adapters on parts of
    /// fused products) rather than run beside them.
    AdapterImported {
        name: String,
        rank: usize,
        alpha: f64,
        targets: Vec<String>,
        base: Option<String>,
        merged: bool,
    },
}

/// What LoRA saves, in a plan: the adapters' parameters (all that trains) and the memory a full
/// fine-tune of the same model and batch would hold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LoraPlan {
    pub params: usize,
    pub full_memory_bytes: u64,
}

/// What the page takes from the engine instead of keeping a copy: the protocol's names (the
/// store's too), each
/// error scope's "Could not ..." text, the presets, the corpus limit and the built-in tasks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub requests: Vec<String>,
    pub events: Vec<String>,
    /// The store of saved runs' requests and events (answered in the worker, not the engine).
    pub store_requests: Vec<String>,
    pub store_events: Vec<String>,
    pub states: Vec<String>,
    /// (scope, what could not be done)
    pub scopes: Vec<(Scope, String)>,
    pub presets: Vec<(String, RunSettings)>,
    pub max_corpus_bytes: u64,
    // issue 27, tasks: the built-in tasks the page's corpus choice lists
    /// Every built-in task, in `wgpt tasks`' order.
    #[serde(default)]
    pub tasks: Vec<TaskInfo>,
    // issue 27, experiments: the gallery of one-click comparisons (src/run/experiments.rs)
    #[serde(default)]
    pub experiments: Vec<ExperimentInfo>,
    // architecture (issue 25): the page's Architecture group
    /// The architecture presets, GPT-2's first.
    #[serde(default)]
    pub arch_presets: Vec<ArchPresetInfo>,
}

/// An architecture preset as the page offers it: its name (the settings' `arch`), its label,
/// the line on what changed and why, and the switches it sets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchPresetInfo {
    pub name: String,
    /// "GPT-2 (2019)", "Llama (2023)", ...
    pub label: String,
    pub about: String,
    /// Every switch but n_kv_head explicit (head_dim and intermediate_size follow the size).
    pub switches: ArchChoice,
    /// Whether its n_kv_head is half of n_head (n_head where that is odd), else n_head.
    pub kv_half: bool,
}

impl ArchPresetInfo {
    /// Every preset of [`ArchPreset`].
    pub fn all() -> Vec<ArchPresetInfo> {
        ArchPreset::ALL
            .iter()
            .map(|&(preset, name)| {
                let mut arch = Arch::default();
                preset.apply(&mut arch, 12);
                let kv_half = arch.n_kv_head == Some(6);
                arch.n_kv_head = None;
                let (label, about) = preset.about().split_once(": ").unwrap_or((name, preset.about()));
                let switches = ArchChoice { arch: Some(name.to_string()), ..ArchChoice::of(&arch) };
                ArchPresetInfo { name: name.into(), label: label.into(), about: about.into(), switches, kv_half }
            })
            .collect()
    }
}

/// A built-in task as the page shows it: what it teaches, its parameters, a few examples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskInfo {
    pub name: String,
    pub describe: String,
    /// (name, what it is, default, min, max)
    pub params: Vec<(String, String, f64, f64, f64)>,
    /// Training lines of the task at its defaults, from the default seed.
    pub examples: Vec<String>,
    /// The task's recipe: a link (`#run=...`) that fills the form with it, and the step where
    /// it reached 95% exact match.
    pub recipe: Option<RecipeInfo>,
}

/// A task's recipe as the page offers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecipeInfo {
    pub link: String,
    pub reached: usize,
    /// The settings it sets, as `wgpt train`'s flags.
    pub flags: String,
}

impl TaskInfo {
    /// Every task of [`TASKS`] with three examples each.
    pub fn all() -> Vec<TaskInfo> {
        TASKS
            .iter()
            .map(|t| TaskInfo {
                name: t.name.to_string(),
                describe: t.describe.to_string(),
                params: t.params.iter().map(|p| (p.name.into(), p.what.into(), p.default, p.min, p.max)).collect(),
                examples: Task::parse(t.name).map(|task| task.examples(3, DEFAULT_SEED)).unwrap_or_default(),
                recipe: RecipeInfo::of(t),
            })
            .collect()
    }
}

impl RecipeInfo {
    /// `task`'s recipe for the page (None where it has none; a recipe that does not make a link
    /// is caught by tests/tasks.rs).
    fn of(task: &TaskSpec) -> Option<RecipeInfo> {
        let recipe = task.recipe.as_ref()?;
        let corpus = LinkCorpus::Task { name: task.name.into(), params: String::new() };
        let link = Link::share(RunSettings::recipe(task).ok()?, Some(corpus)).ok()?;
        Some(RecipeInfo { link, reached: recipe.reached, flags: recipe.flags().ok()? })
    }
}

impl Manifest {
    pub fn new() -> Manifest {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        Manifest {
            requests: names(Request::VARIANTS),
            events: names(Event::VARIANTS),
            store_requests: names(StoreRequest::VARIANTS),
            store_events: names(StoreEvent::VARIANTS),
            states: names(TrainState::VARIANTS),
            scopes: Scope::iter().map(|s| (s, s.failed_to().to_string())).collect(),
            presets: RunSettings::presets(),
            max_corpus_bytes: MAX_CORPUS_BYTES,
            tasks: TaskInfo::all(),
            experiments: ExperimentInfo::all(),
            arch_presets: ArchPresetInfo::all(),
        }
    }
}

impl Default for Manifest {
    fn default() -> Manifest {
        Manifest::new()
    }
}
