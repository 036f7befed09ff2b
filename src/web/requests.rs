//! The engine's requests: which does what, and the first steps of a run (the GPU, the corpus,
//! the plan). Each request that fails reports an error of its scope and changes nothing else.

use std::collections::BTreeSet;
use std::rc::Rc;
use std::sync::Arc;

use crate::data::{corpus_text, Dataset, Task};
use crate::generate::SampleConfig;
use crate::kernels::{AttentionKind, Kernels};
use crate::options::Options;
use crate::precision::Purpose;
use crate::run::fits::check_fits;
use crate::run::settings::{DEFAULT_SEED, TASK_EXAMPLES};
use crate::run::RunSettings;
use crate::tokenizer::Tokenizer;
use crate::train::training_bytes;
use crate::tune::CacheFile;
use crate::web::engine::{Corpus, Engine, Model};
use crate::web::protocol::{Event, Manifest, Request, Scope, TrainState};
use crate::{Error, Gpu, Result};

impl Engine {
    pub(crate) async fn request(&mut self, request: Request, files: Vec<Vec<u8>>) {
        let file = files.first().cloned();
        match request {
            Request::Init { tune_cache } => match Gpu::new(Options::default().device).await {
                Ok(gpu) => {
                    let l = gpu.limits();
                    self.post(&Event::Ready {
                        adapter: gpu.describe(),
                        max_buffer_size: l.max_buffer_size,
                        max_storage_binding: l.max_storage_buffer_binding_size,
                        protocol: Manifest::new(),
                    });
                    match Kernels::with_family(&gpu, Options::default().family) {
                        Ok(k) => {
                            // a stale or malformed cache only costs a retune
                            let file = tune_cache.and_then(|json| CacheFile::parse(&json).ok()).unwrap_or_default();
                            if let Some(cached) = file.choices(&gpu) {
                                k.set_selection(k.selection().with_cached(&gpu, cached));
                            }
                            self.kernels = Some(Arc::new(k));
                        }
                        Err(e) => self.error(Scope::Gpu, e),
                    }
                }
                Err(e) => self.error(Scope::Gpu, e),
            },
            Request::LoseDevice => {
                if let Some(k) = &self.kernels {
                    k.gpu.device.destroy();
                }
            }
            Request::Corpus { name, text, task } => match self.corpus(name, text, task, file) {
                Ok(event) => self.post(&event),
                Err(e) => self.error(Scope::Corpus, e),
            },
            Request::Plan { settings } => match self.plan(&settings) {
                Ok(event) => self.post(&event),
                Err(e) => self.error(Scope::Plan, e),
            },
            Request::Start { settings } => match self.start(&settings).await {
                Ok(()) => self.post(&Event::State { state: TrainState::Training, step: 0 }),
                Err(e) => self.fail(Scope::Train, e).await,
            },
            Request::Restore { id, names, lr } => {
                if let Err(e) = self.restore(id, names, files, lr).await {
                    self.fail(Scope::Restore, e).await;
                }
            }
            Request::ImportRun { name, max_iters } => {
                drop(files); // the zip's one copy is `file`
                if let Err(e) = self.import_run(&name, file, max_iters).await {
                    self.fail(Scope::Restore, e).await;
                }
            }
            Request::ExportRun => {
                if let Err(e) = self.export_run().await {
                    self.fail(Scope::Export, e).await;
                }
            }
            Request::Import { name, config, tokenizer } => match self.import(name, &config, &tokenizer, file).await {
                Ok(event) => self.post(&event),
                Err(e) => self.error(Scope::Import, e),
            },
            Request::Export => {
                if let Err(e) = self.export().await {
                    self.fail(Scope::Export, e).await;
                }
            }
            Request::Generate { prompt, temperature, top_k, top_p, max_tokens, seed, precision } => {
                let cfg = SampleConfig { max_new_tokens: max_tokens, temperature, top_k, top_p, seed };
                if let Err(e) = self.generate(&prompt, &cfg, precision).await {
                    self.fail(Scope::Generate, e).await;
                }
            }
            Request::Inspect { prompt, layer, sampling } => {
                if let Err(e) = self.inspect(&prompt, layer, sampling).await {
                    self.fail(Scope::Inspect, e).await;
                }
            }
            Request::Sampling(sampling) => match self.sampling(sampling) {
                Ok(event) => self.post(&event),
                Err(e) => self.error(Scope::Inspect, e),
            },
            Request::Parity { name } => match self.parity(name, file).await {
                Ok(event) => self.post(&event),
                Err(e) => self.fail(Scope::Parity, e).await,
            },
            Request::Memory => {
                let (gpu_buffers, gpu_bytes) = self.kernels.as_ref().map_or((0, 0), |k| k.gpu.buffer_stats());
                self.post(&Event::Memory { wasm_bytes: self.host.memory_bytes(), gpu_buffers, gpu_bytes });
            }
            Request::Checkpoints { optimizer_state } => {
                self.optimizer_state = optimizer_state;
                if let Model::Training(tr) = &mut self.model {
                    tr.driver.set_optimizer_state(optimizer_state);
                }
            }
            Request::CapMemory { bytes } => match &self.kernels {
                Some(k) => k.gpu.cap_memory(bytes),
                None => self.error(Scope::Gpu, Error::Gpu("the GPU is not ready".into())),
            },
            // flags, flipped by Inbox::handle as they arrive
            Request::Pause | Request::Resume | Request::Stop | Request::Cancel => {}
        }
    }

    /// Checks and keeps a new corpus; on error the current one stays.
    fn corpus(
        &mut self,
        name: String,
        text: Option<String>,
        task: Option<String>,
        file: Option<Vec<u8>>,
    ) -> Result<Event> {
        let (text, task) = match (task, text, file) {
            (Some(task), _, _) => {
                let t = Task::from_name(&task)?;
                // the run regenerates it from its own seed (DataSource::task_text)
                (t.corpus(TASK_EXAMPLES, DEFAULT_SEED), Some(t.name().to_string()))
            }
            (None, Some(text), _) => (corpus_text(&name, text.as_bytes())?, None),
            (None, None, Some(bytes)) => (corpus_text(&name, &bytes)?, None),
            (None, None, None) => return Err(Error::Input("no corpus given".into())),
        };
        let corpus = Corpus { name, text, task };
        let event = corpus_event(&corpus);
        self.corpus = Some(Rc::new(corpus));
        self.tokens = None;
        Ok(event)
    }

    pub(crate) fn current_corpus(&self) -> Result<Rc<Corpus>> {
        self.corpus.clone().ok_or_else(|| Error::Input("choose a corpus first".into()))
    }

    /// The tokenizer for `spec` on the current corpus and the corpus's token count (cached).
    pub(crate) fn tokenizer(&mut self, spec: &str) -> Result<(&Tokenizer, usize)> {
        let corpus = self.current_corpus()?;
        if self.tokens.as_ref().is_none_or(|(s, _, _)| s != spec) {
            let tok = match (&self.model, spec) {
                // "dir": the imported model's own tokenizer (reset on import and corpus change)
                (Model::Loaded(l), "dir") => l.tokenizer.clone(),
                _ => Tokenizer::from_spec(spec, &corpus.text)?,
            };
            let n = tok.encode(&corpus.text)?.len();
            self.tokens = Some((spec.to_string(), tok, n));
        }
        let (_, tok, n) = self.tokens.as_ref().expect("set above");
        Ok((tok, *n))
    }

    /// What a Start would train, checked against this GPU before anything is allocated: the
    /// imported model (with its tokenizer) or a new one of `settings`' shape, its token count on
    /// the corpus, parameters and memory. Past the device's limits the error says what fits.
    fn plan(&mut self, settings: &RunSettings) -> Result<Event> {
        let (model, tokens) = match &self.model {
            Model::Loaded(l) => {
                let config = l.model.config;
                (config, self.tokenizer("dir")?.1)
            }
            _ => {
                let (tok, tokens) = self.tokenizer(&settings.tokenizer)?;
                (settings.model(tok.vocab_size())?, tokens)
            }
        };
        let (b, t) = (settings.batch_size.max(1), settings.block_size.clamp(1, model.block_size));
        let kind = self.kernels.as_ref().map_or(AttentionKind::Flash, |k| model.attention_kind(&k.selection(), b, t));
        if let Some(k) = &self.kernels {
            check_fits(&k.gpu, &model, b, t, kind)?;
        }
        let shader_f16 = self.kernels.as_ref().is_some_and(|k| k.gpu.shader_f16());
        let precision = settings.precision.resolve(Purpose::Training, shader_f16);
        Dataset::check_len(tokens, t)?;
        let train = tokens * 9 / 10;
        Ok(Event::Plan {
            vocab: model.vocab_size,
            tokens,
            train,
            val: tokens - train,
            params: model.num_params(),
            memory_bytes: training_bytes(&model, b, t, kind, precision.f16()),
            precision: precision.runs,
            precision_note: precision.note,
        })
    }
}

pub(crate) fn corpus_event(c: &Corpus) -> Event {
    let distinct = c.text.chars().collect::<BTreeSet<_>>().len();
    Event::Corpus { name: c.name.clone(), bytes: c.text.len(), chars: c.text.chars().count(), distinct }
}
