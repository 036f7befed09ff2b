//! The page protocol: what the page asks of the engine ([`Request`]) and what the engine tells
//! it ([`Event`]), as JSON objects tagged by `type`. Files travel beside a message as byte
//! arrays, in the order its `names`/`files` field lists them. The engine sends the names of
//! every message type, training state and error scope, and the presets, in its `ready` event
//! ([`Manifest`]): the JS takes them from there, not from a copy of its own.

use serde::{Deserialize, Serialize};
use strum::{EnumIter, IntoEnumIterator, VariantNames};

use crate::data::MAX_CORPUS_BYTES;
use crate::dynamics::{Dynamics, LayerDynamics, TensorDynamics};
use crate::generate::SampleConfig;
use crate::params::ParamRow;
use crate::precision::Precision;
use crate::run::format::History;
use crate::run::{Progress, RunSettings};

/// The page generates in auto precision unless it asks for another.
fn auto() -> Precision {
    Precision::Auto
}

/// What the page asks of the engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, VariantNames)]
#[serde(tag = "type", rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Request {
    /// Open the GPU, with the kernel tuning cache the page stored (crate::tune) if any.
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
        temperature: f32,
        top_k: usize,
        top_p: f32,
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
    /// A GPT-2-family Hugging Face model: config.json and tokenizer.json as text, the bytes sent
    /// alongside are model.safetensors. Replaces the current model; Start then fine-tunes it.
    Import {
        name: String,
        config: String,
        tokenizer: String,
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

/// What the page takes from the engine instead of keeping a copy: the protocol's names, each
/// error scope's "Could not ..." text, the presets and the corpus limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub requests: Vec<String>,
    pub events: Vec<String>,
    pub states: Vec<String>,
    /// (scope, what could not be done)
    pub scopes: Vec<(Scope, String)>,
    pub presets: Vec<(String, RunSettings)>,
    pub max_corpus_bytes: u64,
}

impl Manifest {
    pub fn new() -> Manifest {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        Manifest {
            requests: names(Request::VARIANTS),
            events: names(Event::VARIANTS),
            states: names(TrainState::VARIANTS),
            scopes: Scope::iter().map(|s| (s, s.failed_to().to_string())).collect(),
            presets: RunSettings::presets(),
            max_corpus_bytes: MAX_CORPUS_BYTES,
        }
    }
}

impl Default for Manifest {
    fn default() -> Manifest {
        Manifest::new()
    }
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
    /// The kernel choice for a new run: where it came from, problems timed and the ms spent;
    /// `cache` is the tuning cache to store (crate::tune) where it changed.
    Tuned {
        source: String,
        timed: usize,
        ms: f64,
        cache: Option<String>,
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
        /// The precision the generation ran in: "f16" (where the adapter has shader-f16 and f16
        /// or auto was asked for) or "f32".
        precision: String,
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug>(value: &T) -> String {
        let json = serde_json::to_string(value).unwrap();
        let back: T = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{json}: {e}"));
        assert_eq!(&back, value, "{json}");
        json
    }

    /// The `type` tag of a message, checked against the names the manifest exports.
    fn tag(json: &str, names: &[String]) -> String {
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        let t = v["type"].as_str().unwrap().to_string();
        assert!(names.contains(&t), "{t} is not in the manifest's {names:?}");
        t
    }

    #[test]
    fn every_request_round_trips_under_its_manifest_name() {
        let m = Manifest::new();
        let settings = RunSettings::preset("tiny").unwrap();
        let sampling = Sampler { temperature: 0.8, top_k: 40, top_p: 0.9 };
        let requests = [
            Request::Init { tune_cache: Some("{}".into()) },
            Request::Corpus { name: "a.txt".into(), text: Some("hi".into()), task: None },
            Request::Plan { settings: settings.clone() },
            Request::Start { settings },
            Request::Pause,
            Request::Resume,
            Request::Stop,
            Request::Generate {
                prompt: "to be".into(),
                temperature: 0.8,
                top_k: 40,
                top_p: 0.9,
                max_tokens: 10,
                seed: 1,
                precision: Precision::F16,
            },
            Request::Cancel,
            Request::Export,
            Request::ExportRun,
            Request::Import { name: "gpt2".into(), config: "{}".into(), tokenizer: "{}".into() },
            Request::Restore { id: "run-1".into(), names: vec!["config.json".into()], lr: Some(1e-4) },
            Request::ImportRun { name: "run.zip".into(), max_iters: Some(100) },
            Request::Inspect { prompt: "x".into(), layer: 1, sampling },
            Request::Sampling(Sampler { temperature: 0.0, ..sampling }),
            Request::Parity { name: "tiny.safetensors".into() },
            Request::LoseDevice,
            Request::Memory,
            Request::Checkpoints { optimizer_state: false },
            Request::CapMemory { bytes: Some(1 << 20) },
        ];
        let tags: Vec<String> = requests.iter().map(|r| tag(&round_trip(r), &m.requests)).collect();
        assert_eq!(tags, m.requests, "one sample per request, in declaration order");
        // what the page sends: optional fields may be left out
        let r: Request = serde_json::from_str(r#"{"type":"restore","id":"run-1","names":[]}"#).unwrap();
        assert_eq!(r, Request::Restore { id: "run-1".into(), names: vec![], lr: None });
        assert!(serde_json::from_str::<Request>(r#"{"type":"launch"}"#).is_err());
    }

    #[test]
    fn every_event_round_trips_under_its_manifest_name() {
        let m = Manifest::new();
        let progress = Progress {
            step: 3,
            max_iters: 60,
            loss: 2.5,
            lr: 1e-3,
            ms_per_step: 20.0,
            tokens_per_sec: 1e4,
            eta_s: 1.2,
            dynamics: None,
            loss_scale: None,
        };
        let history = History { train: vec![(1, 3.0), (2, 2.75)], val: vec![(0, 3.25)] };
        let layer = LayerDynamics { name: "h.0".into(), grad_norm: 0.5, update_ratio: 1e-3 };
        let point = DynamicsPoint { step: 10, lr: 1e-3, grad_norm: 0.75, grad_clip: 1.0, layers: vec![layer] };
        let tensor = TensorDynamics {
            name: "transformer.wte.weight".into(),
            count: 1536,
            grad_norm: 0.25,
            grad_rms: 0.01,
            weight_rms: 0.02,
            update_rms: 2e-5,
            update_ratio: 1e-3,
        };
        let guess = Guess { id: 3, text: " the".into(), p: 0.5 };
        let bar = Bar { id: 3, text: " the".into(), before: 0.5, after: 0.625, candidate: true };
        let sampling = SamplingView {
            settings: Sampler { temperature: 0.8, top_k: 0, top_p: 0.9 },
            bars: vec![bar],
            candidates: 12,
            mass: 0.875,
        };
        let params = crate::params::param_table(&crate::model::Gpt2Config::preset("tiny").unwrap());
        let events = [
            Event::Ready {
                adapter: "lavapipe".into(),
                max_buffer_size: 1 << 30,
                max_storage_binding: 1 << 27,
                protocol: m.clone(),
            },
            Event::Tuned { source: "built-in table".into(), timed: 0, ms: 0.0, cache: None },
            Event::Corpus { name: "a.txt".into(), bytes: 10, chars: 10, distinct: 5 },
            Event::Plan {
                vocab: 24,
                tokens: 1000,
                train: 900,
                val: 100,
                params: 103_680,
                memory_bytes: 1 << 20,
                precision: Precision::F32,
                precision_note: Some("f16 asked, but ...".into()),
            },
            Event::State { state: TrainState::Paused, step: 4 },
            Event::Progress(progress),
            Event::Dynamics { point: point.clone(), tensors: vec![tensor] },
            Event::Eval { step: 30, train_loss: 2.0, val_loss: 2.25, accuracy: Some(0.5), sample: "the cat".into() },
            Event::Token { text: "a".into() },
            Event::Generated { tokens: 10, tokens_per_sec: 100.0, precision: "f16".into(), precision_note: None },
            Event::Export { files: vec!["config.json".into()], step: 60 },
            Event::ExportRun { name: "lines.txt-step60.zip".into(), step: 60 },
            Event::Checkpoint { id: "run-1".into(), name: "a.txt".into(), step: 30, files: vec!["config.json".into()] },
            Event::Recovered { lost_at: 33, step: 30, reason: "Destroyed".into() },
            Event::Diverged { id: "run-1".into(), step: 5, saved: Some(0), lr: 1e6, message: "diverged".into() },
            Event::Restored {
                id: "run-1".into(),
                name: "a.txt".into(),
                step: 30,
                max_iters: 60,
                history,
                dynamics: vec![point],
                fresh_moments: true,
            },
            Event::Params {
                total: crate::params::total(&params),
                rows: params,
                flops_per_token: 6e5,
                peak_flops: None,
            },
            Event::Inspect {
                step: 30,
                prompt: "the".into(),
                notes: vec![],
                ids: vec![3],
                tokens: vec![" the".into()],
                lens: vec![LensRow { layer: 0, top: vec![guess.clone()], cells: vec![guess] }],
                sampling: sampling.clone(),
                layer: 0,
                n_layer: 2,
                n_head: 2,
            },
            Event::Sampling { step: 30, prompt: "the".into(), sampling },
            Event::Parity {
                name: "tiny".into(),
                adapter: "x".into(),
                checks: vec![ParityCheck {
                    name: "logits".into(),
                    passed: true,
                    max_abs: 1e-6,
                    max_rel: 1e-5,
                    atol: 1e-4,
                    rtol: 0.0,
                }],
                passed: true,
            },
            Event::Imported {
                name: "gpt2".into(),
                n_layer: 12,
                n_head: 12,
                n_embd: 768,
                block_size: 1024,
                vocab_size: 50257,
                params: 124_439_808,
            },
            Event::Error { scope: Scope::Checkpoint, message: "full".into() },
            Event::Memory { wasm_bytes: Some(1 << 24), gpu_buffers: 300, gpu_bytes: 1 << 22 },
        ];
        let tags: Vec<String> = events.iter().map(|e| tag(&round_trip(e), &m.events)).collect();
        assert_eq!(tags, m.events, "one sample per event, in declaration order");
        // a progress report is flat: the page reads ev.step, ev.loss
        let json = serde_json::to_string(&events[5]).unwrap();
        assert!(json.starts_with(r#"{"type":"progress","step":3,"max_iters":60,"loss":2.5"#), "{json}");
    }

    #[test]
    fn states_and_scopes_serialize_as_their_manifest_names() {
        let m = Manifest::new();
        for s in [TrainState::Training, TrainState::Paused, TrainState::Stopped, TrainState::Done] {
            assert!(m.states.contains(&round_trip(&s).trim_matches('"').to_string()));
        }
        assert_eq!(m.scopes.len(), Scope::VARIANTS.len());
        for (scope, text) in &m.scopes {
            assert_eq!(round_trip(scope).trim_matches('"'), Scope::VARIANTS[*scope as usize]);
            assert!(!text.is_empty());
        }
    }
}
