//! The runs part of the engine: the corpus (and its tokenizer), the plan, a new run (from
//! scratch, or fine-tuning an imported model), one going on from the page's store of saved runs
//! or from a run zip, Export run, and what checkpoints hold. Runs start and resume through the
//! run builder `wgpt train` uses ([`crate::run::builder`]), and are the run format's files
//! ([`crate::run::format`]), the same as `wgpt train`'s.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use crate::data::{corpus_text, Dataset, Task};
use crate::hf::peft::{self, PeftConfig};
use crate::model::{HfClass, Weights};
use crate::run::builder::{self, Init, NewRun, Overrides, Resumed, TuneCache, Tuned};
use crate::run::format::{adapter_files, checkpoint_files, code_files, RunFiles, CORPUS_FILE, RUN_FILES};
use crate::run::settings::{DEFAULT_SEED, TASK_EXAMPLES};
use crate::run::{archive, DataSource, RunSettings};
use crate::tokenizer::Tokenizer;
use crate::web::held::{Corpus, Held, Loaded, Training, With};
use crate::web::host::Inbox;
use crate::web::protocol::{Event, LoraPlan, Request, TrainState};
use crate::web::run_loop;
use crate::web::views::{dynamics_history, params_event};
use crate::{Error, Result};

/// A tokenizer built on the current corpus, and the corpus's token count.
struct Tokens {
    spec: String,
    /// For "dir" (the imported model's own tokenizer): the [`Held::generation`] of that model.
    of: Option<u64>,
    tokenizer: Tokenizer,
    n: usize,
}

/// The runs part: the page's corpus, what checkpoints hold, and the run the engine holds.
pub(crate) struct Runs {
    inbox: Rc<RefCell<Inbox>>,
    corpus: Option<Rc<Corpus>>,
    /// The current corpus's tokens (BPE training is slow: kept until the corpus, the spec or,
    /// for "dir", the model changes).
    tokens: Option<Tokens>,
    /// Whether checkpoints hold AdamW's moments (Request::Checkpoints; a restored run's kind).
    optimizer_state: bool,
}

impl Runs {
    pub fn new(inbox: Rc<RefCell<Inbox>>) -> Runs {
        Runs { inbox, corpus: None, tokens: None, optimizer_state: true }
    }

    /// Handles `corpus`, `plan`, `start`, `restore`, `import_run`, `train_on`, `export_run` and
    /// `checkpoints`.
    pub async fn handle(&mut self, request: Request, files: Vec<Vec<u8>>, mut w: With<'_>) -> Result<()> {
        match request {
            Request::Corpus { name, text, task } => {
                let event = self.corpus(name, text, task, files.into_iter().next())?;
                w.host.post(&event, &[]);
            }
            Request::Plan { settings } => {
                let event = self.plan(&settings, &w)?;
                w.host.post(&event, &[]);
            }
            Request::Start { settings } => {
                self.start(&settings, &mut w).await?;
                w.host.post(&Event::State { state: TrainState::Training, step: 0 }, &[]);
            }
            Request::Restore { id, names, lr } => self.restore(id, names, files, lr, &mut w).await?,
            Request::ImportRun { name, max_iters } => {
                self.import_run(&name, files.into_iter().next(), max_iters, &mut w).await?
            }
            Request::TrainOn { max_iters } => self.train_on(max_iters, &mut w)?,
            Request::ExportRun => export_run(&mut w).await?,
            Request::Checkpoints { optimizer_state } => {
                self.optimizer_state = optimizer_state;
                if let Some(tr) = w.held.training_mut() {
                    tr.driver.set_optimizer_state(optimizer_state);
                }
            }
            other => unreachable!("the runs part does not handle {other:?}"),
        }
        Ok(())
    }

    /// One unit of the run the engine holds (see [`run_loop::tick`]).
    pub async fn tick(&self, w: With<'_>) -> bool {
        let flags = self.inbox.borrow_mut().run_flags();
        run_loop::tick(flags, w).await
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
                let t = Task::parse(&task)?;
                // the run regenerates it from its own seed (DataSource::task_text)
                (t.corpus(TASK_EXAMPLES, DEFAULT_SEED), Some(t.spec()))
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

    fn current_corpus(&self) -> Result<Rc<Corpus>> {
        self.corpus.clone().ok_or_else(|| Error::Input("choose a corpus first".into()))
    }

    /// The tokenizer for `spec` on the current corpus and the corpus's token count (cached).
    fn tokenizer(&mut self, spec: &str, held: &Held) -> Result<(&Tokenizer, usize)> {
        let corpus = self.current_corpus()?;
        let of = (spec == "dir").then(|| held.generation());
        if self.tokens.as_ref().is_none_or(|t| t.spec != spec || t.of != of) {
            let tokenizer = match (held.loaded(), spec) {
                // "dir": the imported model's own tokenizer
                (Some(l), "dir") => l.tokenizer.clone(),
                _ => Tokenizer::from_spec(spec, &corpus.text)?,
            };
            let n = tokenizer.encode(&corpus.text)?.len();
            self.tokens = Some(Tokens { spec: spec.to_string(), of, tokenizer, n });
        }
        let t = self.tokens.as_ref().expect("set above");
        Ok((&t.tokenizer, t.n))
    }

    /// What a Start would train, checked against this GPU before anything is allocated: the
    /// imported model (with its tokenizer) or a new one of `settings`' shape, its token count on
    /// the corpus, parameters and memory. Past the device's limits the error says what fits.
    fn plan(&mut self, settings: &RunSettings, w: &With<'_>) -> Result<Event> {
        let (model, tokens) = match w.held.loaded() {
            Some(l) => (l.model.config, self.tokenizer("dir", w.held)?.1),
            None => {
                let (tok, tokens) = self.tokenizer(&settings.tokenizer, w.held)?;
                (settings.model(tok.vocab_size())?, tokens)
            }
        };
        let (b, t) = (settings.batch_size.max(1), settings.block_size.clamp(1, model.block_size));
        let optimizer = settings.optimizer_config();
        let kernels = w.session.open().map(|k| &**k);
        let lora = settings.lora_config(&model)?;
        let plan = builder::plan(kernels, &model, (b, t), settings.precision, &optimizer, lora)?;
        // what LoRA saves: the adapters' size against a full fine-tune's memory
        let lora = match lora {
            Some(lc) => {
                let full = builder::plan(kernels, &model, (b, t), settings.precision, &optimizer, None)?;
                Some(LoraPlan { params: lc.bytes(&model) as usize / 4, full_memory_bytes: full.memory_bytes })
            }
            None => None,
        };
        Dataset::check_len(tokens, t)?;
        let train = tokens * 9 / 10;
        Ok(Event::Plan {
            vocab: model.vocab_size,
            tokens,
            train,
            val: tokens - train,
            params: model.num_params(),
            memory_bytes: plan.memory_bytes,
            precision: plan.precision.runs,
            precision_note: plan.precision.note,
            export_class: HfClass::of(&model).class_name().into(),
            model_type: HfClass::of(&model).model_type().into(),
            lora,
        })
    }

    /// A new run on the current corpus: from random weights of `settings`' shape or, after an
    /// import, fine-tuning the imported model with its own tokenizer. The run before (and its
    /// GPU memory) goes only once the new one exists.
    async fn start(&mut self, settings: &RunSettings, w: &mut With<'_>) -> Result<()> {
        let kernels = w.session.kernels()?;
        let corpus = self.current_corpus()?;
        if settings.lora.rank.is_some() && w.held.loaded().is_none() {
            return Err(Error::Input(
                "LoRA fine-tunes a pretrained model: load one first (Load GPT-2, or Import a model), then Fine-tune"
                    .into(),
            ));
        }
        let base = w.held.loaded().map(|l| l.name.clone());
        let (weights, model, tokenizer, spec) = match w.held.loaded() {
            // an imported adapter is merged in: the fine-tune starts from the model as it generates
            Some(l) => {
                let weights = merged_weights(l).await?;
                let model = weights.config;
                (Init::Pretrained(weights), model, l.tokenizer.clone(), "dir".to_string())
            }
            None => {
                let tok = self.tokenizer(&settings.tokenizer, w.held)?.0.clone();
                let model = settings.model(tok.vocab_size())?;
                (Init::Random(settings.seed), model, tok, settings.tokenizer.clone())
            }
        };
        let data = match &corpus.task {
            Some(task) => DataSource::Task(task.clone()),
            None => DataSource::Text(corpus.name.clone()),
        };
        let cfg = settings.run_config(model, data, spec)?;
        // a task's examples come from the run's own seed, as when `wgpt train` regenerates them
        let corpus = match cfg.data.task_text(cfg.seed) {
            Some(text) => Rc::new(Corpus { name: corpus.name.clone(), text: text?, task: corpus.task.clone() }),
            None => corpus,
        };
        let new = NewRun { cfg, weights, tokenizer, optimizer_state: self.optimizer_state };
        let host = w.host;
        let tuned = |t: &Tuned| {
            host.post(&Event::Tuned { source: t.source.clone(), timed: t.timed, ms: t.ms }, &[]);
            if let Some(cache) = &t.cache {
                host.post(&Event::TuneCache { cache: cache.clone() }, &[]);
            }
        };
        let driver = builder::start(kernels, new, &corpus.text, TuneCache::Returned, host.clock(), tuned).await?;
        let id = host.new_run_id();
        let tr = Training { driver, id, corpus, corpus_sent: false, state: TrainState::Training, base };
        self.begin(tr, w);
        Ok(())
    }

    /// Makes `tr` the run the engine holds, on its corpus (which becomes the current corpus):
    /// training where its state says so, else held (paused or done) until the page asks.
    fn begin(&mut self, tr: Training, w: &mut With<'_>) {
        if self.corpus.as_ref().is_none_or(|c| !Rc::ptr_eq(c, &tr.corpus)) {
            self.corpus = Some(tr.corpus.clone());
            self.tokens = None;
        }
        let cfg = &tr.driver.run.cfg;
        w.host.post(&params_event(&cfg.model, cfg.train.seq_len, &tr.driver.run.gpu().describe()), &[]);
        let training = tr.state == TrainState::Training;
        w.held.train(Box::new(tr));
        if training {
            self.inbox.borrow_mut().unpause();
        } else {
            self.inbox.borrow_mut().hold();
        }
    }

    /// Goes on with a saved run of the page's store: its files by `names`.
    async fn restore(
        &mut self,
        id: String,
        names: Vec<String>,
        files: Vec<Vec<u8>>,
        lr: Option<f32>,
        w: &mut With<'_>,
    ) -> Result<()> {
        if names.len() != files.len() {
            return Err(Error::Input(format!("{} file names for {} files", names.len(), files.len())));
        }
        let files = RunFiles::from_named("the saved run", names.into_iter().zip(files).collect::<BTreeMap<_, _>>())?;
        self.resume(id, (files, None), Overrides { lr, ..Overrides::default() }, true, w).await
    }

    /// Goes on with a run zip (Export run's, or `wgpt export-run`'s); on error the page keeps
    /// what it had.
    async fn import_run(
        &mut self,
        name: &str,
        zip: Option<Vec<u8>>,
        max_iters: Option<usize>,
        w: &mut With<'_>,
    ) -> Result<()> {
        let zip = zip.ok_or_else(|| Error::Input("no run zip given".into()))?;
        // a LoRA run's zip names its base in adapter_config.json
        let names: Vec<&str> = RUN_FILES.into_iter().chain([peft::CONFIG_FILE]).collect();
        let mut entries = archive::read_entries(name, &zip, &names)?;
        drop(zip);
        let base = match entries.remove(peft::CONFIG_FILE) {
            Some(bytes) => {
                PeftConfig::parse(&String::from_utf8_lossy(&bytes))
                    .map_err(|e| Error::Format(format!("{name}: {e}")))?
                    .base_model_name_or_path
            }
            None => None,
        };
        let files = RunFiles::from_named(name, entries)?;
        let id = w.host.new_run_id();
        self.resume(id, (files, base), Overrides { max_iters, ..Overrides::default() }, false, w).await
    }

    /// Rebuilds a run from its files and makes it the current one, paused at its step (done where
    /// it reached max_iters): nothing trains until the page says Resume (or, for a done run,
    /// Train on). `stored`: the files come from the page's store (which has them; it saves anew
    /// only where the settings change); otherwise it is saved at once, so the store keeps it.
    async fn resume(
        &mut self,
        id: String,
        (files, base): (RunFiles, Option<String>),
        over: Overrides,
        stored: bool,
        w: &mut With<'_>,
    ) -> Result<()> {
        let kernels = w.session.kernels()?;
        let saved = files.checkpoint.state()?.run;
        let RunFiles { checkpoint, metrics, corpus } = files;
        let text = match corpus {
            Some(text) => corpus_text("the run's corpus.txt", text.as_bytes())?,
            None => saved.data.task_text(saved.seed).transpose()?.ok_or_else(|| {
                Error::Input(format!(
                    "the run trained on {}, and it has no corpus.txt: make the zip with `wgpt export-run DIR run.zip`, \
                     which puts the corpus in",
                    saved.data.name()
                ))
            })?,
        };
        let over = Overrides { save: !stored, ..over };
        let Resumed { driver, .. } = builder::resume(kernels, checkpoint, metrics, &text, over, w.host.clock()).await?;
        let run = &driver.run;
        let (step, max_iters, name, fresh_moments) =
            (run.step(), run.cfg.max_iters, run.cfg.data.name(), run.fresh_moments);
        // as the run reads its recorded task (an old run's changed defaults at their old values)
        let task = run.task.as_ref().map(|t| t.spec());
        self.optimizer_state = driver.optimizer_state();
        let (history, dynamics) = (driver.metrics().history(), dynamics_history(driver.metrics()));
        let corpus = Rc::new(Corpus { name: name.clone(), text, task });
        w.host.post(&corpus_event(&corpus), &[]);
        let state = if step as usize >= max_iters { TrainState::Done } else { TrainState::Paused };
        let tr = Training { driver, id: id.clone(), corpus, corpus_sent: stored, state, base };
        self.begin(tr, w);
        w.host.post(&Event::Restored { id, name, step, max_iters, history, dynamics, fresh_moments }, &[]);
        w.host.post(&Event::State { state, step }, &[]);
        if let Some(tr) = w.held.training_mut() {
            run_loop::save(tr, w.host).await?;
        }
        Ok(())
    }

    /// Trains the held run on to `max_iters` steps (more than it has): a done run goes on, as
    /// `wgpt train --resume --max-iters` does (saved first, its settings changed).
    fn train_on(&self, max_iters: usize, w: &mut With<'_>) -> Result<()> {
        let Some(tr) = w.held.training_mut() else {
            return Err(Error::Input("there is no run to train on: start or resume one first".into()));
        };
        tr.driver.train_on(max_iters)?;
        tr.state = TrainState::Training;
        self.inbox.borrow_mut().unpause();
        w.host.post(&Event::State { state: TrainState::Training, step: tr.driver.run.step() }, &[]);
        Ok(())
    }
}

/// The current run as a run zip (saved first where it is not saved at its step).
async fn export_run(w: &mut With<'_>) -> Result<()> {
    let host = w.host;
    if let Some(tr) = w.held.training_mut() {
        run_loop::save(tr, host).await?;
    }
    let Some(tr) = w.held.training() else {
        return Err(Error::Input(
            "there is no run to export: train (or fine-tune) first; Export model saves an imported model".into(),
        ));
    };
    let checkpoint = tr.driver.current_checkpoint().ok_or_else(|| Error::Input("the run is not saved".into()))?;
    let mut files = checkpoint_files(checkpoint, tr.driver.metrics());
    files.push((CORPUS_FILE, tr.corpus.text.as_bytes()));
    files.extend(code_files(checkpoint));
    // a LoRA run's adapter as peft saves it, naming its base (as `wgpt train`'s run directory)
    let adapter = adapter_files(checkpoint, &run_base(tr))?;
    files.extend(adapter.iter().map(|(name, bytes)| (*name, bytes.as_slice())));
    let zip = archive::write(&files)?;
    host.post(&Event::ExportRun { name: format!("{}.zip", run_stem(tr)), step: tr.driver.run.step() }, &[&zip]);
    Ok(())
}

/// The name of a run's downloads: its corpus's, file-name safe, and its step.
pub(crate) fn run_stem(tr: &Training) -> String {
    let name = tr.corpus.name.trim_end_matches(".txt");
    let safe: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '-' }).collect();
    format!("{safe}-step{}", tr.driver.run.step())
}

/// The base a LoRA run's adapter names: the model it fine-tuned, else "." (the run's own
/// directory, whose model.safetensors holds the frozen base, as `wgpt train` names it).
pub(crate) fn run_base(tr: &Training) -> String {
    tr.base.clone().unwrap_or_else(|| ".".into())
}

/// An imported model's weights, with the adapter imported onto it (if any) merged in.
async fn merged_weights(l: &Loaded) -> Result<Weights> {
    let mut weights = l.model.weights().await?;
    if let Some(adapter) = &l.adapter {
        peft::merge(&mut weights, adapter)?;
    }
    Ok(weights)
}

fn corpus_event(c: &Corpus) -> Event {
    let distinct = c.text.chars().collect::<BTreeSet<_>>().len();
    Event::Corpus { name: c.name.clone(), bytes: c.text.len(), chars: c.text.chars().count(), distinct }
}
