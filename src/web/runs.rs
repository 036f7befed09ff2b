//! The page's runs: a new one (from scratch, or fine-tuning an imported model), one going on
//! from the page's store of saved runs or from a run zip, and Export run. All three are the run
//! format's files ([`crate::run::format`]), the same as `wgpt train`'s.

use std::collections::BTreeMap;
use std::rc::Rc;

use crate::data::corpus_text;
use crate::model::Weights;
use crate::precision::Purpose;
use crate::run::fits::{allocate, check_fits, Building};
use crate::run::format::{checkpoint_files, RunFiles, CORPUS_FILE};
use crate::run::{archive, DataSource, Driver, Run, RunSettings};
use crate::tune::{tune_live, CacheFile};
use crate::web::engine::{Corpus, Engine, Model, Training};
use crate::web::protocol::{Event, TrainState};
use crate::web::requests::corpus_event;
use crate::web::views::{dynamics_history, params_event, Looker};
use crate::{Error, Result};

impl Engine {
    /// A new run on the current corpus: from random weights of `settings`' shape or, after an
    /// import, fine-tuning the imported model with its own tokenizer.
    pub(crate) async fn start(&mut self, settings: &RunSettings) -> Result<()> {
        let kernels = self.kernels()?;
        let corpus = self.current_corpus()?;
        let (weights, tokenizer, spec) = match &self.model {
            Model::Loaded(l) => (l.model.weights().await?, l.tokenizer.clone(), "dir".to_string()),
            _ => {
                let tok = self.tokenizer(&settings.tokenizer)?.0.clone();
                let model = settings.model(tok.vocab_size())?;
                (Weights::random(model, settings.seed), tok, settings.tokenizer.clone())
            }
        };
        let data = match &corpus.task {
            Some(task) => DataSource::Task(task.clone()),
            None => DataSource::Text(corpus.name.clone()),
        };
        let cfg = settings.run_config(weights.config, data, spec)?;
        let (model, b, t) = (cfg.model, cfg.train.batch_size, cfg.train.seq_len);
        // the kind before tuning; Trainer::new checks the activations again with the tuned one
        let kind = model.attention_kind(&kernels.selection(), b, t);
        check_fits(&kernels.gpu, &model, b, t, kind)?;
        // a task's examples come from the run's own seed, as when `wgpt train` regenerates them
        let corpus = match cfg.data.task_text(cfg.seed) {
            Some(text) => Rc::new(Corpus { name: corpus.name.clone(), text: text?, task: corpus.task.clone() }),
            None => corpus,
        };
        let report = tune_live(&kernels, model.run_shape(b, t)).await?;
        let cache = report.recorded.then(|| CacheFile::one(&kernels.gpu, &kernels.selection().choices).to_json());
        self.post(&Event::Tuned { source: report.describe(), timed: report.timed, ms: report.ms, cache });
        // the old run (and its GPU memory) goes only once the new one exists
        let kind = model.attention_kind(&kernels.selection(), b, t);
        let gpu = kernels.gpu.clone();
        let f16 = cfg.train.precision.resolve(Purpose::Training, gpu.shader_f16()).f16();
        let build = || Run::new(kernels, cfg, &weights, tokenizer, &corpus.text);
        let run = allocate(&gpu, Building::Run { model: &model, b, t, kind, f16 }, build).await?;
        let mut driver = Driver::new(run, self.host.clock());
        driver.set_optimizer_state(self.optimizer_state);
        self.begin(driver, self.new_id(), corpus, false);
        Ok(())
    }

    fn new_id(&self) -> String {
        self.host.new_run_id()
    }

    /// Makes `driver` the current run, training on `corpus` (which becomes the current corpus).
    fn begin(&mut self, driver: Driver, id: String, corpus: Rc<Corpus>, corpus_sent: bool) {
        if self.corpus.as_ref().is_none_or(|c| !Rc::ptr_eq(c, &corpus)) {
            self.corpus = Some(corpus.clone());
            self.tokens = None;
        }
        let cfg = &driver.run.cfg;
        self.post(&params_event(&cfg.model, cfg.train.seq_len, &driver.run.gpu().describe()));
        let state = TrainState::Training;
        let look = Looker::default();
        self.model = Model::Training(Box::new(Training { driver, id, corpus, corpus_sent, state, look }));
        self.unpause();
    }

    /// Goes on with a saved run of the page's store: its files by `names`.
    pub(crate) async fn restore(
        &mut self,
        id: String,
        names: Vec<String>,
        files: Vec<Vec<u8>>,
        lr: Option<f32>,
    ) -> Result<()> {
        if names.len() != files.len() {
            return Err(Error::Input(format!("{} file names for {} files", names.len(), files.len())));
        }
        let files = RunFiles::from_named("the saved run", names.into_iter().zip(files).collect::<BTreeMap<_, _>>())?;
        self.resume(id, files, lr, None, true).await
    }

    /// Goes on with a run zip (Export run's, or `wgpt export-run`'s); on error the page keeps
    /// what it had.
    pub(crate) async fn import_run(
        &mut self,
        name: &str,
        zip: Option<Vec<u8>>,
        max_iters: Option<usize>,
    ) -> Result<()> {
        let zip = zip.ok_or_else(|| Error::Input("no run zip given".into()))?;
        let files = archive::read(name, &zip)?;
        drop(zip);
        let id = self.new_id();
        self.resume(id, files, None, max_iters, false).await
    }

    /// Rebuilds a run from its files and makes it the current one, training. `stored`: the files
    /// come from the page's store (which has them; it saves anew only where the settings change).
    async fn resume(
        &mut self,
        id: String,
        files: RunFiles,
        lr: Option<f32>,
        max_iters: Option<usize>,
        stored: bool,
    ) -> Result<()> {
        let kernels = self.kernels()?;
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
        let mut changed = !stored;
        let (b, t) = (saved.train.batch_size, saved.train.seq_len);
        let kind = saved.train.attention.unwrap_or_else(|| saved.model.attention_kind(&kernels.selection(), b, t));
        // a saved run goes on in its precision
        let f16 = saved.train.precision.resolve(Purpose::Training, kernels.gpu.shader_f16()).f16();
        let (gpu, building) = (kernels.gpu.clone(), Building::Run { model: &saved.model, b, t, kind, f16 });
        let build = || {
            Run::from_checkpoint(kernels, &checkpoint, &text, |cfg| {
                if let Some(lr) = lr {
                    cfg.train.set_lr(lr)?;
                    changed = true;
                }
                if let Some(n) = max_iters.filter(|&n| n > cfg.max_iters) {
                    cfg.max_iters = n;
                    changed = true;
                }
                Ok(())
            })
        };
        let run = allocate(&gpu, building, build).await?;
        let (step, max_iters) = (run.step(), run.cfg.max_iters);
        let name = run.cfg.data.name();
        let task = match &run.cfg.data {
            DataSource::Task(task) => Some(task.clone()),
            _ => None,
        };
        let fresh_moments = run.fresh_moments;
        let driver = Driver::resume(run, metrics, checkpoint, changed, self.host.clock());
        self.optimizer_state = driver.optimizer_state();
        let (history, dynamics) = (driver.metrics().history(), dynamics_history(driver.metrics()));
        let corpus = Rc::new(Corpus { name: name.clone(), text, task });
        self.post(&corpus_event(&corpus));
        self.begin(driver, id.clone(), corpus, stored);
        self.post(&Event::Restored { id, name, step, max_iters, history, dynamics, fresh_moments });
        self.post(&Event::State { state: TrainState::Training, step });
        Ok(())
    }

    /// The current run as a run zip (saved first where it is not saved at its step).
    pub(crate) async fn export_run(&mut self) -> Result<()> {
        self.save().await?;
        let Model::Training(tr) = &self.model else {
            return Err(Error::Input(
                "there is no run to export: train (or fine-tune) first; Export model saves an imported model".into(),
            ));
        };
        let checkpoint = tr.driver.current_checkpoint().ok_or_else(|| Error::Input("the run is not saved".into()))?;
        let mut files = checkpoint_files(checkpoint, tr.driver.metrics());
        files.push((CORPUS_FILE, tr.corpus.text.as_bytes()));
        let zip = archive::write(&files)?;
        let step = tr.driver.run.step();
        let stem: String = tr
            .corpus
            .name
            .trim_end_matches(".txt")
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '-' })
            .collect();
        self.host.post(&Event::ExportRun { name: format!("{stem}-step{step}.zip"), step }, &[&zip]);
        Ok(())
    }
}
