//! The page's engine (wasm32 only). [`Engine`] lives in a dedicated Web Worker (www/worker.js)
//! and owns the GPU: the page sends it requests as JSON ([`Request`]) and gets events back as
//! JSON ([`Event`]), so the page's thread never waits for the GPU. One async driver does all GPU
//! work in order (a training step, a generation, an evaluation); `handle` only queues requests
//! and flips the pause/stop/cancel flags, which the driver reads between steps and tokens.
//! [`draw_loss_chart`] runs on the page's thread and draws the loss chart with plotters.

// wgpu's web types are not Send: the worker is single-threaded, an Arc is only shared ownership
#![allow(clippy::arc_with_non_send_sync)]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;

use crate::data::{corpus_text, Dataset, Task};
use crate::generate::{Decoder, SampleConfig, TextStream};
use crate::inspect::Inspector;
use crate::kernels::{AttentionKind, Kernels};
use crate::model::{ActivationTensors, Gpt2, Gpt2Config, Weights};
use crate::parity::{self, ParityFile};
use crate::run::{CheckpointFiles, DataSource, Run, RunConfig};
use crate::tokenizer::Tokenizer;
use crate::train::{training_bytes, TrainConfig};
use crate::{hf, Error, Gpu, Result};

/// What the page asks of the worker.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
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
    /// Tokenize the corpus with `tokenizer` ("char" or "bpe:N") and plan `settings`: token counts,
    /// parameter count, memory estimate and the device check, before anything is allocated.
    Plan {
        settings: Settings,
    },
    /// Start training from scratch with `settings`.
    Start {
        settings: Settings,
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
    },
    /// Stop the generation in progress.
    Cancel,
    /// The current model as Hugging Face files (an `export` event with the bytes).
    Export,
    /// A GPT-2-family Hugging Face model: config.json and tokenizer.json as text, the bytes sent
    /// alongside are model.safetensors. Replaces the current model; Start then fine-tunes it.
    Import {
        name: String,
        config: String,
        tokenizer: String,
    },
    /// Continue a saved run: the files sent alongside are config.json, model.safetensors,
    /// tokenizer.json, training_state.safetensors and the corpus text, as `checkpoint` events
    /// hand them out (www/worker.js keeps them in the browser's origin-private file system).
    Restore {
        id: String,
        /// A new peak learning rate (min_lr scales with it), e.g. after the run diverged.
        #[serde(default)]
        lr: Option<f32>,
    },
    /// The next-token top 10 and the attention of `layer`/`head` for `prompt` (the look-inside
    /// view; the page sends it, debounced, as the prompt changes).
    Inspect {
        prompt: String,
        layer: usize,
        head: usize,
    },
    /// Run a parity file (its bytes alongside; the format of tests/fixtures/make_parity.py) on
    /// this GPU: logits and loss, and where the file has them gradients and an AdamW step.
    Parity {
        name: String,
    },
    /// Destroys the GPU device, as a driver reset or a crashed GPU process would, to exercise
    /// the recovery (tests; `wgptDebug.loseDevice()` in the page's console).
    LoseDevice,
}

/// The page's training settings (the rest are nanoGPT's defaults for small models).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Settings {
    pub tokenizer: String,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_embd: usize,
    pub block_size: usize,
    pub batch_size: usize,
    /// Micro-batches per optimizer step (a bigger effective batch in the same memory).
    #[serde(default = "one")]
    pub grad_accum: usize,
    pub max_iters: usize,
    pub lr: f32,
    pub eval_interval: usize,
    pub log_interval: usize,
    pub seed: u64,
}

fn one() -> usize {
    1
}

/// The largest n in 1..limit with `ok(n)`, for an `ok` that holds up to some point and not past
/// it (memory grows with n); None when not even 1 is ok.
fn largest_below(limit: usize, ok: impl Fn(usize) -> bool) -> Option<usize> {
    let (mut lo, mut hi) = (0, limit); // ok(lo) or lo == 0; not ok(hi)
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if ok(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    (lo > 0).then_some(lo)
}

/// What the worker tells the page.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    Ready {
        adapter: String,
        max_buffer_size: u64,
        max_storage_binding: u64,
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
        memory_bytes: u64,
    },
    /// "training", "paused", "stopped" or "done".
    State {
        state: &'static str,
        step: u64,
    },
    Progress {
        step: u64,
        max_iters: usize,
        loss: f32,
        lr: f32,
        ms_per_step: f64,
        tokens_per_sec: f64,
        eta_s: f64,
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
    },
    /// The model's files, in this order, posted alongside as byte arrays.
    Export {
        files: Vec<&'static str>,
        step: u64,
    },
    /// An auto-checkpoint of run `id` (every eval_interval steps, at the start, on pause and on
    /// stop):
    /// config.json, model.safetensors, tokenizer.json and training_state.safetensors posted
    /// alongside as byte arrays, then the corpus text the first time.
    Checkpoint {
        id: String,
        name: String,
        step: u64,
        max_iters: usize,
        params: usize,
    },
    /// The GPU device was lost at step `lost_at` (`reason`); training goes on on a new device
    /// from the checkpoint of step `step`.
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
    /// A saved run is back, at the step of its checkpoint, and training.
    Restored {
        id: String,
        name: String,
        step: u64,
        max_iters: usize,
    },
    /// The look inside: each token of the prompt (the last block_size), the most likely next
    /// tokens with their probabilities, and `attention` (T x T, row i over tokens 0..=i).
    Inspect {
        tokens: Vec<String>,
        top: Vec<(String, f32)>,
        layer: usize,
        head: usize,
        n_layer: usize,
        n_head: usize,
        attention: Vec<f32>,
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
    /// `scope` is what failed ("gpu", "corpus", "plan", "train", "generate", "export",
    /// "import"); the page
    /// keeps everything else as it was.
    Error {
        scope: &'static str,
        message: String,
    },
}

/// One compared quantity of a parity run: the largest errors and the tolerance.
#[derive(Debug, Serialize)]
pub struct ParityCheck {
    name: String,
    passed: bool,
    max_abs: f32,
    max_rel: f32,
    atol: f32,
    rtol: f32,
}

#[derive(Default)]
struct Inbox {
    queue: VecDeque<(Request, Vec<Vec<u8>>)>,
    paused: bool,
    stop: bool,
    cancel: bool,
    /// Resolves the driver's wait for work.
    wake: Option<js_sys::Function>,
}

/// The worker side of the page: construct it with the function that posts events
/// (`postMessage`), then hand it every message.
#[wasm_bindgen]
pub struct Engine {
    inbox: Rc<RefCell<Inbox>>,
}

#[wasm_bindgen]
impl Engine {
    /// Starts the driver; `post` receives each [`Event`] as a JSON string (and, for `export` and
    /// `checkpoint`, an array of byte arrays as its second argument).
    #[wasm_bindgen(constructor)]
    pub fn new(post: js_sys::Function) -> Engine {
        console_error_panic_hook::set_once();
        let inbox = Rc::new(RefCell::new(Inbox::default()));
        let driver =
            Driver { post, inbox: inbox.clone(), kernels: None, corpus: None, tokens: None, run: None, loaded: None };
        wasm_bindgen_futures::spawn_local(driver.drive());
        Engine { inbox }
    }

    /// One request as JSON ([`Request`]), with the files it brings (a corpus file, a model's
    /// safetensors, a saved run's files) as byte arrays.
    pub fn handle(&self, request: &str, files: Vec<js_sys::Uint8Array>) -> std::result::Result<(), JsError> {
        let bytes: Vec<Vec<u8>> = files.iter().map(|f| f.to_vec()).collect();
        let request: Request =
            serde_json::from_str(request).map_err(|e| JsError::new(&format!("bad request {request}: {e}")))?;
        let mut inbox = self.inbox.borrow_mut();
        match request {
            Request::Pause => inbox.paused = true,
            Request::Resume => inbox.paused = false,
            Request::Stop => inbox.stop = true,
            Request::Cancel => inbox.cancel = true,
            other => inbox.queue.push_back((other, bytes)),
        }
        if let Some(wake) = inbox.wake.take() {
            let _ = wake.call0(&JsValue::NULL);
        }
        Ok(())
    }
}

/// The current corpus: its name, its text, and the built-in task it came from if any.
struct Corpus {
    name: String,
    text: String,
    task: Option<String>,
}

/// Device losses in a row (no checkpoint between them) that training recovers from.
const MAX_RECOVERIES: u32 = 3;

struct Driver {
    post: js_sys::Function,
    inbox: Rc<RefCell<Inbox>>,
    kernels: Option<Arc<Kernels>>,
    corpus: Option<Rc<Corpus>>,
    /// The tokenizer spec, the tokenizer built on the current corpus and the corpus's token count
    /// (BPE training is slow: kept until the corpus or the spec changes).
    tokens: Option<(String, Tokenizer, usize)>,
    run: Option<Training>,
    /// An imported model, until training starts from it.
    loaded: Option<Loaded>,
}

/// A model loaded from Hugging Face files, with its decoder and tokenizer.
struct Loaded {
    model: Gpt2,
    decoder: Decoder,
    tokenizer: Tokenizer,
    inspector: Inspector,
}

struct Training {
    run: Run,
    active: bool,
    /// When the last progress report was made, and at which step.
    last: (f64, u64),
    /// Names the run's saved checkpoints.
    id: String,
    corpus: Rc<Corpus>,
    /// The last checkpoint, kept to rebuild the run on a new device when this one is lost.
    saved: Option<(u64, CheckpointFiles)>,
    /// Whether a checkpoint event has handed out the corpus text yet.
    corpus_sent: bool,
    /// Device losses since the last checkpoint.
    recoveries: u32,
    inspector: Inspector,
}

/// A promise resolved after the event loop has run (setTimeout 0), so that messages get in.
async fn yield_now() {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        let global = js_sys::global();
        if let Ok(set_timeout) = js_sys::Reflect::get(&global, &"setTimeout".into()) {
            let set_timeout: js_sys::Function = set_timeout.unchecked_into();
            let _ = set_timeout.call2(&global, &resolve, &0.into());
        } else {
            let _ = resolve.call0(&JsValue::NULL);
        }
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}

/// Posts one event to the page as JSON.
fn emit(post: &js_sys::Function, event: &Event) {
    if let Ok(json) = serde_json::to_string(event) {
        let _ = post.call1(&JsValue::NULL, &json.into());
    }
}

impl Driver {
    fn post(&self, event: &Event) {
        emit(&self.post, event);
    }

    fn error(&self, scope: &'static str, e: Error) {
        self.post(&Event::Error { scope, message: e.to_string() });
    }

    async fn drive(mut self) {
        loop {
            let next = self.inbox.borrow_mut().queue.pop_front();
            if let Some((request, bytes)) = next {
                self.request(request, bytes).await;
                continue;
            }
            let (paused, stop) = {
                let mut inbox = self.inbox.borrow_mut();
                (inbox.paused, std::mem::take(&mut inbox.stop))
            };
            if let Some(tr) = self.run.as_mut().filter(|tr| tr.active) {
                if stop {
                    tr.active = false;
                    let step = tr.run.step();
                    // a stopped run is saved where it stopped, so a reload resumes it exactly
                    if tr.saved.as_ref().is_none_or(|(at, _)| *at != step) {
                        if let Err(e) = self.checkpoint().await {
                            self.fail("train", e).await;
                        }
                    }
                    self.post(&Event::State { state: "stopped", step });
                    continue;
                }
                if !paused {
                    if let Err(e) = self.train_step().await {
                        self.fail("train", e).await;
                    }
                    yield_now().await;
                    continue;
                }
                // paused: saved where it paused (once), so a reload resumes from here
                if tr.saved.as_ref().is_none_or(|(at, _)| *at != tr.run.step()) {
                    if let Err(e) = self.checkpoint().await {
                        self.fail("train", e).await;
                    }
                    continue;
                }
            }
            // nothing to do: wait for the next message
            let inbox = self.inbox.clone();
            let promise = js_sys::Promise::new(&mut |resolve, _| inbox.borrow_mut().wake = Some(resolve));
            let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
        }
    }

    /// A new or restored run starts running, whatever the last one was told.
    fn unpause(&self) {
        let mut inbox = self.inbox.borrow_mut();
        inbox.paused = false;
        inbox.stop = false;
    }

    /// Reports an error; when the device was lost, first opens a new one and, if a run was
    /// training, rebuilds it there from its last checkpoint and goes on.
    async fn fail(&mut self, scope: &'static str, e: Error) {
        // the lost callback may come a turn of the event loop after the failed readback
        yield_now().await;
        let Some(reason) = self.kernels.as_ref().and_then(|k| k.gpu.lost()) else {
            if let Some(tr) = self.run.as_mut() {
                if scope == "train" {
                    tr.active = false;
                }
            }
            return self.error(scope, e);
        };
        if let Err(e) = self.recover(reason).await {
            if let Some(tr) = self.run.as_mut() {
                tr.active = false;
            }
            self.error(scope, e);
        }
    }

    async fn recover(&mut self, reason: String) -> Result<()> {
        self.kernels = None;
        self.loaded = None; // an imported model lived on the lost device only
        let gpu = Gpu::new().await.map_err(|e| Error::Gpu(format!("the GPU device was lost ({reason}) and {e}")))?;
        let kernels = Arc::new(Kernels::new(&gpu)?);
        self.kernels = Some(kernels.clone());
        let Some(tr) = self.run.as_mut() else {
            return Err(Error::Gpu(format!(
                "the GPU device was lost ({reason}); a new one is ready, but the model on the old one is gone: \
                 import or train it again"
            )));
        };
        let lost_at = tr.run.step();
        let Some(saved) = tr.saved.as_ref().filter(|_| tr.recoveries < MAX_RECOVERIES) else {
            self.run = None;
            return Err(Error::Gpu(format!(
                "the GPU device was lost at step {lost_at} ({reason}) and there is no checkpoint to go on from"
            )));
        };
        let text = tr.corpus.text.clone();
        tr.run = Run::from_checkpoint(kernels, &saved.1, |_| Ok(text))?;
        tr.inspector = Inspector::default();
        tr.recoveries += 1;
        tr.last = (js_sys::Date::now(), tr.run.step());
        let step = tr.run.step();
        self.post(&Event::Recovered { lost_at, step, reason });
        Ok(())
    }

    /// Saves the training run's state: kept here for a lost device, and handed to the page
    /// (www/worker.js stores it) so that a reload can resume it.
    async fn checkpoint(&mut self) -> Result<()> {
        let tr = self.run.as_mut().expect("checkpoint with a run");
        // one checkpoint in memory at a time: GPT-2 124M's is 1.5 GB of the wasm's 4 GiB
        tr.saved = None;
        let files = tr.run.checkpoint().await?;
        let c = &tr.run.cfg;
        let event = Event::Checkpoint {
            id: tr.id.clone(),
            name: tr.corpus.name.clone(),
            step: tr.run.step(),
            max_iters: c.max_iters,
            params: c.model.num_params(),
        };
        let bytes = js_sys::Array::new();
        for b in [files.config_json.as_bytes(), &files.model, files.tokenizer_json.as_bytes(), &files.state] {
            bytes.push(&js_sys::Uint8Array::from(b));
        }
        if !tr.corpus_sent {
            bytes.push(&js_sys::Uint8Array::from(tr.corpus.text.as_bytes()));
            tr.corpus_sent = true;
        }
        tr.saved = Some((tr.run.step(), files));
        tr.recoveries = 0;
        if let Ok(json) = serde_json::to_string(&event) {
            let _ = self.post.call2(&JsValue::NULL, &json.into(), &bytes);
        }
        Ok(())
    }

    async fn request(&mut self, request: Request, bytes: Vec<Vec<u8>>) {
        match request {
            Request::Init { tune_cache } => match Gpu::new().await {
                Ok(gpu) => {
                    let l = gpu.limits();
                    self.post(&Event::Ready {
                        adapter: gpu.describe(),
                        max_buffer_size: l.max_buffer_size,
                        max_storage_binding: l.max_storage_buffer_binding_size,
                    });
                    match Kernels::new(&gpu) {
                        Ok(k) => {
                            if let Some(json) = tune_cache {
                                // a stale or malformed cache only costs a retune
                                let _ = k.tuning.load_json(&k, &json);
                            }
                            self.kernels = Some(Arc::new(k));
                        }
                        Err(e) => self.error("gpu", e),
                    }
                }
                Err(e) => self.error("gpu", e),
            },
            Request::LoseDevice => {
                if let Some(k) = &self.kernels {
                    k.gpu.device.destroy();
                }
            }
            Request::Restore { id, lr } => match self.restore(id, lr, bytes) {
                Ok((corpus, restored)) => {
                    self.unpause();
                    let step = self.run.as_ref().map_or(0, |tr| tr.run.step());
                    self.post(&corpus);
                    self.post(&restored);
                    self.post(&Event::State { state: "training", step });
                }
                Err(e) => self.error("restore", e),
            },
            Request::Corpus { name, text, task } => match self.corpus(name, text, task, bytes.into_iter().next()) {
                Ok(event) => self.post(&event),
                Err(e) => self.error("corpus", e),
            },
            Request::Plan { settings } => match self.plan(&settings) {
                Ok(event) => self.post(&event),
                Err(e) => self.error("plan", e),
            },
            Request::Import { name, config, tokenizer } => {
                match self.import(name, &config, &tokenizer, bytes.into_iter().next()) {
                    Ok(event) => self.post(&event),
                    Err(e) => self.error("import", e),
                }
            }
            Request::Start { settings } => match self.start(&settings).await {
                Ok(step) => {
                    self.unpause();
                    self.post(&Event::State { state: "training", step });
                    if let Err(e) = self.checkpoint().await {
                        self.fail("train", e).await;
                    }
                }
                Err(e) => self.fail("train", e).await,
            },
            Request::Generate { prompt, temperature, top_k, top_p, max_tokens, seed } => {
                let cfg = SampleConfig { max_new_tokens: max_tokens, temperature, top_k, top_p, seed };
                if let Err(e) = self.generate(&prompt, &cfg).await {
                    self.fail("generate", e).await;
                }
            }
            Request::Export => {
                if let Err(e) = self.export().await {
                    self.fail("export", e).await;
                }
            }
            Request::Parity { name } => match self.parity(name, bytes.into_iter().next()).await {
                Ok(event) => self.post(&event),
                Err(e) => self.fail("parity", e).await,
            },
            Request::Inspect { prompt, layer, head } => match self.inspect(&prompt, layer, head).await {
                Ok(event) => self.post(&event),
                Err(e) => self.fail("inspect", e).await,
            },
            Request::Pause | Request::Resume | Request::Stop | Request::Cancel => {}
        }
    }

    /// Checks and keeps a new corpus; on error the current one stays.
    fn corpus(
        &mut self,
        name: String,
        text: Option<String>,
        task: Option<String>,
        bytes: Option<Vec<u8>>,
    ) -> Result<Event> {
        let (text, task) = match (task, text, bytes) {
            (Some(task), _, _) => {
                let t = Task::from_name(&task)?;
                (t.corpus(20_000, 1337), Some(t.name().to_string()))
            }
            (None, Some(text), _) => (corpus_text(&name, text.as_bytes())?, None),
            (None, None, Some(bytes)) => (corpus_text(&name, &bytes)?, None),
            (None, None, None) => return Err(Error::Input("no corpus given".into())),
        };
        self.corpus = Some(Rc::new(Corpus { name, text, task }));
        self.tokens = None;
        Ok(self.corpus_event())
    }

    fn corpus_event(&self) -> Event {
        let c = self.corpus.as_ref().expect("a corpus");
        let distinct = c.text.chars().collect::<std::collections::BTreeSet<_>>().len();
        Event::Corpus { name: c.name.clone(), bytes: c.text.len(), chars: c.text.chars().count(), distinct }
    }

    /// Rebuilds a saved run from its files (see [`Request::Restore`]); its corpus becomes the
    /// current one. On error everything stays as it was.
    fn restore(&mut self, id: String, lr: Option<f32>, files: Vec<Vec<u8>>) -> Result<(Event, Event)> {
        let kernels = self.kernels.clone().ok_or_else(|| Error::Gpu("the GPU is not ready".into()))?;
        let [config, model, tokenizer, state, corpus]: [Vec<u8>; 5] = files.try_into().map_err(|f: Vec<_>| {
            Error::Input(format!(
                "a saved run has 5 files (the model's three, the training state, the corpus), got {}",
                f.len()
            ))
        })?;
        let utf8 = |what: &str, b: Vec<u8>| {
            String::from_utf8(b).map_err(|_| Error::Format(format!("the saved run's {what} is not UTF-8 text")))
        };
        let files = CheckpointFiles {
            config_json: utf8("config.json", config)?,
            model,
            tokenizer_json: utf8("tokenizer.json", tokenizer)?,
            state,
        };
        let text = corpus_text("the saved run's corpus", &corpus)?;
        drop(corpus);
        let run = Run::from_checkpoint(kernels, &files, |cfg| {
            if let Some(lr) = lr {
                cfg.train.set_lr(lr)?;
            }
            Ok(text.clone())
        })?;
        let name = match &run.cfg.data {
            DataSource::Text(name) | DataSource::File(name) => name.clone(),
            DataSource::Task(task) => format!("{task} task"),
        };
        let task = match &run.cfg.data {
            DataSource::Task(task) => Some(task.clone()),
            _ => None,
        };
        let corpus = Rc::new(Corpus { name: name.clone(), text, task });
        let (step, max_iters) = (run.step(), run.cfg.max_iters);
        self.loaded = None;
        self.corpus = Some(corpus.clone());
        self.tokens = None;
        self.run = Some(Training {
            run,
            active: true,
            last: (js_sys::Date::now(), step),
            id: id.clone(),
            corpus,
            saved: Some((step, files)),
            corpus_sent: true,
            recoveries: 0,
            inspector: Inspector::default(),
        });
        Ok((self.corpus_event(), Event::Restored { id, name, step, max_iters }))
    }

    /// The tokenizer for `spec` on the current corpus and the corpus's token count (cached).
    fn tokenizer(&mut self, spec: &str) -> Result<(&Tokenizer, usize)> {
        let corpus = self.corpus.as_ref().ok_or_else(|| Error::Input("choose a corpus first".into()))?;
        if self.tokens.as_ref().is_none_or(|(s, _, _)| s != spec) {
            let tok = Tokenizer::from_spec(spec, &corpus.text)?;
            let n = tok.encode(&corpus.text)?.len();
            self.tokens = Some((spec.to_string(), tok, n));
        }
        let (_, tok, n) = self.tokens.as_ref().expect("set above");
        Ok((tok, *n))
    }

    fn config(settings: &Settings, vocab: usize) -> Result<RunConfig> {
        let model = Gpt2Config {
            n_layer: settings.n_layer,
            n_head: settings.n_head,
            n_embd: settings.n_embd,
            block_size: settings.block_size,
            vocab_size: vocab,
        };
        model.validate()?;
        let train = TrainConfig {
            batch_size: settings.batch_size,
            grad_accum: settings.grad_accum.max(1),
            seq_len: settings.block_size,
            lr: settings.lr,
            min_lr: settings.lr / 10.0,
            warmup_iters: (settings.max_iters / 20).min(100),
            lr_decay_iters: settings.max_iters,
            ..TrainConfig::default()
        };
        train.validate(model.block_size)?;
        Ok(RunConfig {
            model,
            train,
            max_iters: settings.max_iters,
            eval_interval: settings.eval_interval.max(1),
            eval_iters: 10,
            log_interval: settings.log_interval.max(1),
            seed: settings.seed,
            data: DataSource::Text(String::new()),
            tokenizer: settings.tokenizer.clone(),
        })
    }

    /// What a Start would train, checked against this GPU before anything is allocated: the
    /// imported model (with its tokenizer) or a new one of `settings`' shape, its token count on
    /// the corpus, parameters and memory. Past the device's limits the error says what fits.
    fn plan(&mut self, settings: &Settings) -> Result<Event> {
        let (model, tokens) = match &self.loaded {
            Some(l) => {
                let corpus = self.corpus.as_ref().ok_or_else(|| Error::Input("choose a corpus first".into()))?;
                // "dir": the imported model's own tokenizer (reset on import and corpus change)
                if self.tokens.as_ref().is_none_or(|(s, _, _)| s != "dir") {
                    let n = l.tokenizer.encode(&corpus.text)?.len();
                    self.tokens = Some(("dir".into(), l.tokenizer.clone(), n));
                }
                (l.model.config, self.tokens.as_ref().map_or(0, |(_, _, n)| *n))
            }
            None => {
                let (tok, tokens) = self.tokenizer(&settings.tokenizer)?;
                (Self::config(settings, tok.vocab_size())?.model, tokens)
            }
        };
        let (b, t) = (settings.batch_size.max(1), settings.block_size.clamp(1, model.block_size));
        let kind = self.kernels.as_ref().map_or(AttentionKind::Flash, |k| k.attention_kind(&model, b, t));
        if let Some(k) = &self.kernels {
            if let Err(e) = Self::fits(&k.gpu, &model, b, t, kind) {
                return Err(Self::what_fits(&k.gpu, &model, b, t, kind, e));
            }
        }
        Dataset::check_len(tokens, t)?;
        let train = tokens * 9 / 10;
        Ok(Event::Plan {
            vocab: model.vocab_size,
            tokens,
            train,
            val: tokens - train,
            params: model.num_params(),
            memory_bytes: training_bytes(&model, b, t, kind),
        })
    }

    /// Checks the buffers and bindings training `model` at (B, T) needs against `gpu`'s limits
    /// (wte is bound in row chunks, so it needs one buffer only).
    fn fits(gpu: &Gpu, model: &Gpt2Config, b: usize, t: usize, kind: AttentionKind) -> Result<()> {
        gpu.check_buffer("the token embedding wte (vocab x n_embd)", 4 * (model.vocab_size * model.n_embd) as u64)?;
        for (what, shape) in ActivationTensors::specs(model, b, t, kind) {
            gpu.check_binding(&format!("the {what} at B={b}, T={t}"), 4 * shape.iter().product::<usize>() as u64)?;
        }
        Ok(())
    }

    /// `e` plus what would fit: the largest batch (with the gradient accumulation that keeps the
    /// sequences per step) and the longest context at this batch.
    fn what_fits(gpu: &Gpu, model: &Gpt2Config, b: usize, t: usize, kind: AttentionKind, e: Error) -> Error {
        let batch = largest_below(b, |b2| Self::fits(gpu, model, b2, t, kind).is_ok());
        let context = largest_below(t, |t2| Self::fits(gpu, model, b, t2, kind).is_ok());
        let mut offers = vec![];
        if let Some(b2) = batch {
            offers.push(format!(
                "batch size {b2} with gradient accumulation {} ({} sequences per step)",
                b.div_ceil(b2),
                b2 * b.div_ceil(b2)
            ));
        }
        if let Some(t2) = context {
            offers.push(format!("a context (block size) of {t2} at batch {b}"));
        }
        if offers.is_empty() {
            return e;
        }
        let why = match e {
            Error::Limits(m) => m,
            other => other.to_string(),
        };
        Error::Limits(format!("{}. What fits this GPU: {}", why.trim_end_matches('.'), offers.join("; or ")))
    }

    /// A new run on the current corpus: from random weights of `settings`' shape, or, after an
    /// import, fine-tuning the imported model with its own tokenizer.
    async fn start(&mut self, settings: &Settings) -> Result<u64> {
        let kernels = self.kernels.clone().ok_or_else(|| Error::Gpu("the GPU is not ready".into()))?;
        let corpus = self.corpus.as_ref().ok_or_else(|| Error::Input("choose a corpus first".into()))?;
        let data = match &corpus.task {
            Some(task) => DataSource::Task(task.clone()),
            None => DataSource::Text(corpus.name.clone()),
        };
        let (weights, tokenizer, spec) = match &self.loaded {
            Some(l) => (l.model.weights().await?, l.tokenizer.clone(), "dir".to_string()),
            None => {
                let (tok, _) = self.tokenizer(&settings.tokenizer)?;
                let tok = tok.clone();
                let cfg = Self::config(settings, tok.vocab_size())?;
                (Weights::random(cfg.model, cfg.seed), tok, settings.tokenizer.clone())
            }
        };
        let mut cfg = Self::config(settings, weights.config.vocab_size)?;
        cfg.model = weights.config;
        cfg.train.seq_len = settings.block_size.min(cfg.model.block_size);
        cfg.train.validate(cfg.model.block_size)?;
        cfg.data = data;
        cfg.tokenizer = spec;
        let corpus = self.corpus.clone().expect("checked above");
        let report = kernels.tuning.tune(&kernels, &cfg.model, cfg.train.batch_size, cfg.train.seq_len, false).await?;
        let cache = report.recorded.then(|| kernels.tuning.to_json());
        self.post(&Event::Tuned { source: report.source, timed: report.timed, ms: report.ms, cache });
        // the old run (and its GPU memory) goes only once the new one exists
        let run = Run::new(kernels, cfg, &weights, tokenizer, &corpus.text)?;
        self.loaded = None;
        let id = format!("run-{}", js_sys::Date::now() as u64);
        let last = (js_sys::Date::now(), 0);
        let inspector = Inspector::default();
        self.run = Some(Training {
            run,
            active: true,
            last,
            id,
            corpus,
            saved: None,
            corpus_sent: false,
            recoveries: 0,
            inspector,
        });
        Ok(0)
    }

    /// Loads a Hugging Face GPT-2 directory's files; on error the current model stays.
    fn import(&mut self, name: String, config: &str, tokenizer: &str, bytes: Option<Vec<u8>>) -> Result<Event> {
        let kernels = self.kernels.clone().ok_or_else(|| Error::Gpu("the GPU is not ready".into()))?;
        let bytes = bytes.ok_or_else(|| Error::Input("model.safetensors is missing".into()))?;
        let cfg = hf::parse_config(config)?;
        let weights = hf::load_weights("model.safetensors", &bytes, cfg)?;
        drop(bytes);
        let tokenizer = Tokenizer::from_bytes("tokenizer.json", tokenizer.as_bytes())?;
        if tokenizer.vocab_size() > cfg.vocab_size {
            return Err(Error::Format(format!(
                "tokenizer.json has {} tokens but the model's vocab_size is {}",
                tokenizer.vocab_size(),
                cfg.vocab_size
            )));
        }
        let model = Gpt2::new(kernels, &weights)?;
        let decoder = Decoder::new(&model)?;
        self.run = None;
        self.tokens = None;
        self.loaded = Some(Loaded { model, decoder, tokenizer, inspector: Inspector::default() });
        Ok(Event::Imported {
            name,
            n_layer: cfg.n_layer,
            n_head: cfg.n_head,
            n_embd: cfg.n_embd,
            block_size: cfg.block_size,
            vocab_size: cfg.vocab_size,
            params: cfg.num_params(),
        })
    }

    async fn train_step(&mut self) -> Result<()> {
        let post = &self.post;
        let tr = self.run.as_mut().expect("train_step with a run");
        let run = &mut tr.run;
        if run.done() {
            tr.active = false;
            emit(post, &Event::State { state: "done", step: run.step() });
            return Ok(());
        }
        run.train_step()?;
        let step = run.step();
        let cfg = &run.cfg;
        let last_step = step as usize >= cfg.max_iters;
        if step == 1 || (step as usize).is_multiple_of(cfg.log_interval) || last_step {
            let loss = run.loss().await?;
            if !loss.is_finite() {
                Self::diverged(post, tr, loss);
                return Ok(());
            }
            let now = js_sys::Date::now();
            let (t0, s0) = tr.last;
            let ms_per_step = (now - t0) / (step - s0).max(1) as f64;
            tr.last = (now, step);
            let tokens = (cfg.train.batch_size * cfg.train.seq_len * cfg.train.grad_accum) as f64;
            emit(
                post,
                &Event::Progress {
                    step,
                    max_iters: cfg.max_iters,
                    loss,
                    lr: cfg.train.lr_at(step as usize - 1),
                    ms_per_step,
                    tokens_per_sec: tokens / ms_per_step * 1e3,
                    eta_s: ms_per_step * cfg.max_iters.saturating_sub(step as usize) as f64 / 1e3,
                },
            );
        }
        let eval_now = (step as usize).is_multiple_of(cfg.eval_interval) || last_step;
        if eval_now {
            let eval = run.evaluate().await?;
            if !(eval.train_loss.is_finite() && eval.val_loss.is_finite()) {
                // not saved: the last checkpoint stays the last good one
                Self::diverged(post, tr, eval.val_loss);
                return Ok(());
            }
            let sample = run.sample("", &SampleConfig::greedy(200)).await?;
            tr.last = (js_sys::Date::now(), step); // evaluation time is not training time
            emit(
                post,
                &Event::Eval {
                    step,
                    train_loss: eval.train_loss,
                    val_loss: eval.val_loss,
                    accuracy: eval.accuracy,
                    sample,
                },
            );
            self.checkpoint().await?;
        }
        Ok(())
    }

    /// Stops a run whose loss is no longer a finite number and says what is kept.
    fn diverged(post: &js_sys::Function, tr: &mut Training, loss: f32) {
        tr.active = false;
        let (step, lr) = (tr.run.step(), tr.run.cfg.train.lr);
        let saved = tr.saved.as_ref().map(|(at, _)| *at);
        let kept = match saved {
            Some(s) => {
                format!("the checkpoint of step {s} is kept: resume it with a lower learning rate (e.g. a tenth)")
            }
            None => "start again with a lower learning rate".into(),
        };
        let message =
            format!("training diverged at step {step}: the loss became {loss} (learning rate {lr:e}); {kept}");
        emit(post, &Event::Diverged { id: tr.id.clone(), step, saved, lr, message });
    }

    async fn export(&mut self) -> Result<()> {
        let (files, step) = match (&self.run, &self.loaded) {
            (Some(tr), _) => (tr.run.hf_files().await?, tr.run.step()),
            (None, Some(l)) => (hf::files(&l.model.weights().await?, &l.tokenizer)?, 0),
            (None, None) => return Err(Error::Input("train or import a model first, then export it".into())),
        };
        let event = Event::Export { files: files.iter().map(|(name, _)| *name).collect(), step };
        let bytes = js_sys::Array::new();
        for (_, b) in &files {
            bytes.push(&js_sys::Uint8Array::from(b.as_slice()));
        }
        if let Ok(json) = serde_json::to_string(&event) {
            let _ = self.post.call2(&JsValue::NULL, &json.into(), &bytes);
        }
        Ok(())
    }

    async fn parity(&mut self, name: String, bytes: Option<Vec<u8>>) -> Result<Event> {
        let kernels = self.kernels.clone().ok_or_else(|| Error::Gpu("the GPU is not ready".into()))?;
        let bytes = bytes.ok_or_else(|| Error::Input("no parity file given".into()))?;
        let p = ParityFile::parse(&name, &bytes)?;
        drop(bytes);
        let checks = parity::check(kernels.clone(), &p).await?;
        let checks: Vec<ParityCheck> = checks
            .iter()
            .map(|c| ParityCheck {
                name: c.name.clone(),
                passed: c.passed(),
                max_abs: c.closeness.max_abs,
                max_rel: c.closeness.max_rel,
                atol: c.atol,
                rtol: c.rtol,
            })
            .collect();
        let passed = checks.iter().all(|c| c.passed);
        Ok(Event::Parity { name, adapter: kernels.gpu.describe(), checks, passed })
    }

    async fn inspect(&mut self, prompt: &str, layer: usize, head: usize) -> Result<Event> {
        let (model, tokenizer, inspector, ids) = match (self.run.as_mut(), self.loaded.as_mut()) {
            (Some(tr), _) => {
                let ids = tr.run.prompt_ids(prompt)?;
                (&tr.run.trainer.model, &tr.run.tokenizer, &mut tr.inspector, ids)
            }
            (None, Some(l)) => {
                let ids = l.tokenizer.prompt_ids(prompt)?;
                (&l.model, &l.tokenizer, &mut l.inspector, ids)
            }
            (None, None) => return Err(Error::Input("train or import a model first, then look inside it".into())),
        };
        let seen = inspector.inspect(model, &ids, layer, head, 10).await?;
        let text = |id: u32| tokenizer.decode(&[id]);
        Ok(Event::Inspect {
            tokens: seen.ids.iter().map(|&id| text(id)).collect::<Result<_>>()?,
            top: seen.top.iter().map(|&(id, p)| Ok((text(id)?, p))).collect::<Result<_>>()?,
            layer,
            head,
            n_layer: model.config.n_layer,
            n_head: model.config.n_head,
            attention: seen.attention,
        })
    }

    async fn generate(&mut self, prompt: &str, cfg: &SampleConfig) -> Result<()> {
        cfg.validate()?;
        let none = || Error::Input("train or import a model first, then generate from it".into());
        let (ids, tokenizer) = match (&self.run, &self.loaded) {
            (Some(tr), _) => (tr.run.prompt_ids(prompt)?, tr.run.tokenizer.clone()),
            (None, Some(l)) => (l.tokenizer.prompt_ids(prompt)?, l.tokenizer.clone()),
            (None, None) => return Err(none()),
        };
        self.inbox.borrow_mut().cancel = false;
        let mut stream = TextStream::new(&tokenizer, &ids)?;
        let started = js_sys::Date::now();
        let inbox = self.inbox.clone();
        let post = self.post.clone();
        let send = |text: String| {
            if !text.is_empty() {
                emit(&post, &Event::Token { text });
            }
        };
        let on_token = |id| {
            if let Ok(text) = stream.push(&tokenizer, id) {
                send(text);
            }
            !inbox.borrow().cancel
        };
        let out = match (self.run.as_mut(), self.loaded.as_mut()) {
            (Some(tr), _) => tr.run.generate(&ids, cfg, on_token).await?,
            (None, Some(l)) => {
                let stop = l.tokenizer.end_of_text();
                l.decoder.generate(&l.model, &ids, cfg, stop, on_token).await?
            }
            (None, None) => return Err(none()),
        };
        send(stream.finish(&tokenizer)?);
        let secs = (js_sys::Date::now() - started) / 1e3;
        self.post(&Event::Generated { tokens: out.len(), tokens_per_sec: out.len() as f64 / secs.max(1e-3) });
        Ok(())
    }
}

/// Draws train (blue) and val (red) loss against steps into `canvas` (on the page's thread),
/// with a log-scale y axis when `log` is set. Steps and losses come in matching pairs of arrays.
#[wasm_bindgen]
pub fn draw_loss_chart(
    canvas: web_sys::HtmlCanvasElement,
    train_steps: &[f32],
    train: &[f32],
    val_steps: &[f32],
    val: &[f32],
    log: bool,
) -> std::result::Result<(), JsError> {
    use plotters::prelude::*;
    use plotters_canvas::CanvasBackend;

    let backend = CanvasBackend::with_canvas_object(canvas).ok_or_else(|| JsError::new("no 2D context"))?;
    let root = backend.into_drawing_area();
    let fail = |e: &dyn std::fmt::Display| JsError::new(&format!("drawing the loss chart failed: {e}"));
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let points = |s: &[f32], y: &[f32]| -> Vec<(f32, f32)> {
        s.iter().zip(y).filter(|(_, l)| l.is_finite() && **l > 0.0).map(|(&s, &l)| (s, l)).collect()
    };
    let (tr, va) = (points(train_steps, train), points(val_steps, val));
    let all = tr.iter().chain(&va);
    let max_step = all.clone().map(|p| p.0).fold(1.0f32, f32::max);
    let (lo, hi) = all.fold((f32::MAX, f32::MIN), |(lo, hi), p| (lo.min(p.1), hi.max(p.1)));
    let (lo, hi) = if lo > hi { (0.1, 10.0) } else { (lo * 0.95, hi * 1.05) };
    let mut chart = ChartBuilder::on(&root);
    chart.margin(12).x_label_area_size(32).y_label_area_size(48);
    if log {
        let mut c = chart.build_cartesian_2d(0f32..max_step, (lo..hi).log_scale()).map_err(|e| fail(&e))?;
        c.configure_mesh().x_desc("step").y_desc("loss (log)").draw().map_err(|e| fail(&e))?;
        c.draw_series(LineSeries::new(tr, &BLUE)).map_err(|e| fail(&e))?;
        c.draw_series(LineSeries::new(va, &RED)).map_err(|e| fail(&e))?;
    } else {
        let mut c = chart.build_cartesian_2d(0f32..max_step, lo..hi).map_err(|e| fail(&e))?;
        c.configure_mesh().x_desc("step").y_desc("loss").draw().map_err(|e| fail(&e))?;
        c.draw_series(LineSeries::new(tr, &BLUE)).map_err(|e| fail(&e))?;
        c.draw_series(LineSeries::new(va, &RED)).map_err(|e| fail(&e))?;
    }
    root.present().map_err(|e| fail(&e))?;
    Ok(())
}
