//! The page's engine: the inbox the page's messages land in, and the loop that does all GPU work
//! in order, one unit at a time ([`Engine::tick`]): a request, or a unit of the training run
//! through the shared [`Driver`]. Portable: the page runs it in its worker (web/wasm.rs hands it
//! the browser's clock and postMessage), the tests run it natively through the same requests.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

use crate::generate::Decoder;
use crate::kernels::Kernels;
use crate::model::Gpt2;
use crate::run::driver::{diverged_message, Clock};
use crate::run::format::checkpoint_files;
use crate::run::{Driver, RunEvent, Status};
use crate::tokenizer::Tokenizer;
use crate::web::protocol::{Event, Request, Scope, TrainState};
use crate::web::views::{dynamics_event, Looker};
use crate::{Error, Gpu, Result};

/// What the engine needs from where it runs.
pub trait Host {
    /// Posts one event, with the files it hands out (checkpoint, export) in the order it names
    /// them.
    fn post(&self, event: &Event, files: &[&[u8]]);
    /// The wall clock.
    fn clock(&self) -> Clock;
    /// Lets the event loop run once (the browser reports a lost device a turn after the failed
    /// readback); natively there is nothing to wait for.
    fn settle(&self) -> Pin<Box<dyn Future<Output = ()>>>;
    /// The bytes of the engine's own memory where there is one to measure (the worker's wasm
    /// memory); natively None.
    fn memory_bytes(&self) -> Option<u64> {
        None
    }
    /// A name for a new run, unique among the runs of every tab of the page (they share one
    /// store): the time, and where the host has one, a random suffix.
    fn new_run_id(&self) -> String {
        format!("run-{}", (self.clock())() as u64)
    }
}

/// Requests waiting for the engine, and the flags the page flips at once (pause, stop, cancel)
/// for the engine to read between steps and tokens.
#[derive(Default)]
pub struct Inbox {
    queue: VecDeque<(Request, Vec<Vec<u8>>)>,
    paused: bool,
    stop: bool,
    pub(crate) cancel: bool,
}

impl Inbox {
    /// One request as JSON, with the files it brings.
    pub fn handle(&mut self, json: &str, files: Vec<Vec<u8>>) -> Result<()> {
        let request = serde_json::from_str(json).map_err(|e| Error::Input(format!("bad request {json}: {e}")))?;
        match request {
            Request::Pause => self.paused = true,
            Request::Resume => self.paused = false,
            Request::Stop => self.stop = true,
            Request::Cancel => self.cancel = true,
            other => self.queue.push_back((other, files)),
        }
        Ok(())
    }
}

/// The page's current corpus: its name, its text, and the built-in task it came from if any.
pub(crate) struct Corpus {
    pub name: String,
    pub text: String,
    pub task: Option<String>,
}

/// A model loaded from Hugging Face files, with its decoder and tokenizer.
pub(crate) struct Loaded {
    pub model: Gpt2,
    pub decoder: Decoder,
    pub tokenizer: Tokenizer,
    pub look: Looker,
}

/// A run and what the page knows it by.
pub(crate) struct Training {
    pub driver: Driver,
    /// Names the run's saved checkpoints.
    pub id: String,
    /// The text it trains on (corpus.txt).
    pub corpus: Rc<Corpus>,
    /// Whether a checkpoint event has handed out corpus.txt yet.
    pub corpus_sent: bool,
    pub state: TrainState,
    pub look: Looker,
}

/// What the engine holds.
pub(crate) enum Model {
    None,
    /// An imported model, until training starts from it.
    Loaded(Box<Loaded>),
    Training(Box<Training>),
}

pub struct Engine {
    pub(crate) host: Box<dyn Host>,
    pub(crate) inbox: Rc<RefCell<Inbox>>,
    pub(crate) kernels: Option<Arc<Kernels>>,
    pub(crate) corpus: Option<Rc<Corpus>>,
    /// The tokenizer spec, the tokenizer built on the current corpus and the corpus's token count
    /// (BPE training is slow: kept until the corpus or the spec changes).
    pub(crate) tokens: Option<(String, Tokenizer, usize)>,
    pub(crate) model: Model,
    /// Whether checkpoints hold AdamW's moments (Request::Checkpoints; a restored run's kind).
    pub(crate) optimizer_state: bool,
}

/// Posts what the driver did as the page's events; a checkpoint hands out its files (and the
/// corpus the first time).
fn post_run_event(host: &dyn Host, id: &str, corpus: &Corpus, corpus_sent: &mut bool, ev: RunEvent<'_>) -> Result<()> {
    let event = match ev {
        RunEvent::Progress(mut p) => match p.dynamics.take() {
            None => Event::Progress(p),
            Some(d) => {
                host.post(&Event::Progress(p), &[]);
                dynamics_event(d)
            }
        },
        RunEvent::Eval { eval, sample } => Event::Eval {
            step: eval.iter,
            train_loss: eval.train_loss,
            val_loss: eval.val_loss,
            accuracy: eval.accuracy,
            sample,
        },
        RunEvent::Saved { step, checkpoint, metrics } => {
            let mut files = checkpoint_files(checkpoint, metrics);
            if !*corpus_sent {
                files.push((crate::run::format::CORPUS_FILE, corpus.text.as_bytes()));
                *corpus_sent = true;
            }
            let names = files.iter().map(|(n, _)| n.to_string()).collect();
            let bytes: Vec<&[u8]> = files.iter().map(|(_, b)| *b).collect();
            let event = Event::Checkpoint { id: id.into(), name: corpus.name.clone(), step, files: names };
            host.post(&event, &bytes);
            return Ok(());
        }
        RunEvent::Recovered { lost_at, step, reason } => Event::Recovered { lost_at, step, reason },
        RunEvent::Diverged { step, loss, lr, saved } => {
            let kept = match saved {
                Some(s) => {
                    format!("the checkpoint of step {s} is kept: resume it with a lower learning rate (e.g. a tenth)")
                }
                None => "start again with a lower learning rate".into(),
            };
            let message = format!("{}; {kept}", diverged_message(step, loss, lr));
            Event::Diverged { id: id.into(), step, saved, lr, message }
        }
        RunEvent::Done { step } => Event::State { state: TrainState::Done, step },
    };
    host.post(&event, &[]);
    Ok(())
}

impl Engine {
    pub fn new(host: Box<dyn Host>) -> Engine {
        Engine {
            host,
            inbox: Rc::default(),
            kernels: None,
            corpus: None,
            tokens: None,
            model: Model::None,
            optimizer_state: true,
        }
    }

    /// The inbox, shared with whoever hands the engine its messages.
    pub fn inbox(&self) -> Rc<RefCell<Inbox>> {
        self.inbox.clone()
    }

    /// Hands the engine a message (see [`Inbox::handle`]).
    pub fn handle(&self, json: &str, files: Vec<Vec<u8>>) -> Result<()> {
        self.inbox.borrow_mut().handle(json, files)
    }

    pub(crate) fn post(&self, event: &Event) {
        self.host.post(event, &[]);
    }

    pub(crate) fn error(&self, scope: Scope, e: Error) {
        self.post(&Event::Error { scope, message: e.to_string() });
    }

    pub(crate) fn kernels(&self) -> Result<Arc<Kernels>> {
        self.kernels.clone().ok_or_else(|| Error::Gpu("the GPU is not ready".into()))
    }

    /// A new or restored run starts running, whatever the last one was told.
    pub(crate) fn unpause(&self) {
        let mut inbox = self.inbox.borrow_mut();
        inbox.paused = false;
        inbox.stop = false;
    }

    /// One unit of work: the next request, or a unit of training (or saving on pause and stop).
    /// False when there is nothing to do until the next message.
    pub async fn tick(&mut self) -> bool {
        let next = self.inbox.borrow_mut().queue.pop_front();
        if let Some((request, files)) = next {
            self.request(request, files).await;
            return true;
        }
        let (paused, stop) = {
            let mut inbox = self.inbox.borrow_mut();
            (inbox.paused, std::mem::take(&mut inbox.stop))
        };
        let Model::Training(tr) = &mut self.model else { return false };
        if !matches!(tr.state, TrainState::Training | TrainState::Paused) {
            return false;
        }
        let state = if stop {
            TrainState::Stopped
        } else if paused {
            TrainState::Paused
        } else {
            TrainState::Training
        };
        if state == TrainState::Training && tr.state == TrainState::Training {
            self.train().await;
            return true;
        }
        if state == tr.state {
            return false; // paused, and saved where it paused
        }
        // paused, resumed or stopped: a paused or stopped run is saved where it is (once), so a
        // reload resumes it exactly
        tr.state = state;
        let step = tr.driver.run.step();
        if state != TrainState::Training {
            if let Err(e) = self.save().await {
                self.fail(Scope::Train, e).await;
            }
        }
        self.post(&Event::State { state, step });
        true
    }

    /// Saves the run where it is, unless it is saved there already.
    pub(crate) async fn save(&mut self) -> Result<()> {
        let Model::Training(tr) = &mut self.model else { return Ok(()) };
        let Training { driver, id, corpus, corpus_sent, .. } = &mut **tr;
        let host = &*self.host;
        driver.save(&mut |ev| post_run_event(host, id, corpus, corpus_sent, ev)).await
    }

    async fn train(&mut self) {
        let Model::Training(tr) = &mut self.model else { return };
        let Training { driver, id, corpus, corpus_sent, .. } = &mut **tr;
        let host = &*self.host;
        let status = driver.advance(&mut |ev| post_run_event(host, id, corpus, corpus_sent, ev)).await;
        match status {
            Ok(Status::Running) => {}
            Ok(Status::Done) => tr.state = TrainState::Done,
            Ok(Status::Diverged) => tr.state = TrainState::Stopped,
            Err(e) => self.fail(Scope::Train, e).await,
        }
    }

    /// Reports an error; when the device was lost, first opens a new one and, if there is a run,
    /// rebuilds it there from its last checkpoint and goes on.
    pub(crate) async fn fail(&mut self, scope: Scope, e: Error) {
        self.host.settle().await; // the lost callback may come a turn after the failed readback
        if self.kernels.as_ref().and_then(|k| k.gpu.lost()).is_none() {
            if let Model::Training(tr) = &mut self.model {
                if scope == Scope::Train {
                    tr.state = TrainState::Stopped;
                }
            }
            return self.error(scope, e);
        }
        let e = match std::mem::replace(&mut self.model, Model::None) {
            Model::Training(mut tr) => {
                let Training { driver, id, corpus, corpus_sent, .. } = &mut *tr;
                let host = &*self.host;
                match driver.recover(e, &mut |ev| post_run_event(host, id, corpus, corpus_sent, ev)).await {
                    Ok(()) => {
                        self.kernels = Some(tr.driver.run.trainer.model.kernels.clone());
                        tr.look = Looker::default();
                        self.model = Model::Training(tr);
                        return;
                    }
                    Err(e) => e,
                }
            }
            // an imported model lived on the lost device only
            Model::Loaded(_) | Model::None => Error::Gpu(format!(
                "{e}; a new GPU device is ready, but the model on the old one is gone: import or train it again"
            )),
        };
        self.kernels = None;
        match Gpu::new().await {
            Ok(gpu) => match Kernels::with_family(&gpu, crate::kernels::Family::Auto) {
                Ok(k) => self.kernels = Some(Arc::new(k)),
                Err(e2) => {
                    return self.error(Scope::Gpu, Error::Gpu(format!("{e}, and the new GPU device's kernels: {e2}")))
                }
            },
            Err(e2) => return self.error(Scope::Gpu, Error::Gpu(format!("{e}, and no new GPU device opens: {e2}"))),
        }
        self.error(scope, e);
    }
}
