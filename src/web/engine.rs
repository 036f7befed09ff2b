//! The page's engine: the loop that does all GPU work in order, one unit at a time
//! ([`Engine::tick`]): a request, handed to the part that handles it (the GPU [`Session`], the
//! [`Runs`], the [`Models`], the [`Views`]), or a unit of the training run. Portable: the page
//! runs it in its worker (web/wasm.rs hands it the browser's clock and postMessage), the tests
//! run it natively through the same requests.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use crate::web::adapters;
use crate::web::held::{Held, With};
use crate::web::host::{Host, Inbox, Message};
use crate::web::links;
use crate::web::models::Models;
use crate::web::protocol::{Request, Scope};
use crate::web::run_loop::fail;
use crate::web::runs::Runs;
use crate::web::session::Session;
use crate::web::views::Views;
use crate::Result;

pub struct Engine {
    host: Box<dyn Host>,
    inbox: Rc<RefCell<Inbox>>,
    session: Session,
    held: Held,
    runs: Runs,
    models: Models,
    views: Views,
    /// Requests that came before `init` opened the GPU, waiting for it, in order.
    waiting: VecDeque<Message>,
}

/// The scope a request's failure is reported under.
fn scope(request: &Request) -> Scope {
    match request {
        Request::Init { .. } | Request::LoseDevice | Request::Memory | Request::CapMemory { .. } => Scope::Gpu,
        Request::Corpus { .. } => Scope::Corpus,
        Request::Plan { .. } => Scope::Plan,
        Request::Start { .. } | Request::Checkpoints { .. } | Request::TrainOn { .. } => Scope::Train,
        Request::Restore { .. } | Request::ImportRun { .. } => Scope::Restore,
        Request::Export | Request::ExportRun => Scope::Export,
        Request::Import { .. } => Scope::Import,
        Request::Generate { .. } => Scope::Generate,
        Request::Inspect { .. } | Request::Sampling(_) => Scope::Inspect,
        Request::Parity { .. } => Scope::Parity,
        Request::Pause | Request::Resume | Request::Stop | Request::Cancel => Scope::Train,
        Request::ShareLink { .. } | Request::OpenLink { .. } => Scope::Link,
        Request::ExportAdapter | Request::ExportMerged => Scope::Export,
        Request::ImportAdapter { .. } => Scope::Import,
    }
}

/// Whether a request waits for `init` to open the GPU (links never touch it).
fn needs_gpu(request: &Request) -> bool {
    !matches!(request, Request::Init { .. } | Request::ShareLink { .. } | Request::OpenLink { .. })
}

impl Engine {
    pub fn new(host: Box<dyn Host>) -> Engine {
        let inbox: Rc<RefCell<Inbox>> = Rc::default();
        Engine {
            host,
            session: Session::new(),
            held: Held::new(),
            runs: Runs::new(inbox.clone()),
            models: Models::new(inbox.clone()),
            views: Views::new(),
            inbox,
            waiting: VecDeque::new(),
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

    /// One unit of work: the next request, or a unit of training (or saving on pause and stop).
    /// False when there is nothing to do until the next message.
    pub async fn tick(&mut self) -> bool {
        let next = self.inbox.borrow_mut().next();
        let busy = match next {
            Some((request, files)) => {
                self.request(request, files).await;
                true
            }
            None => self.runs.tick(With { session: &mut self.session, held: &mut self.held, host: &*self.host }).await,
        };
        self.views.follow(&self.held);
        busy
    }

    /// Hands `request` to its part; a request that fails reports an error of its scope and
    /// changes nothing else. Until `init` has opened the GPU (or failed to), every request that
    /// needs it waits for it, in order.
    async fn request(&mut self, request: Request, files: Vec<Vec<u8>>) {
        let opens = matches!(request, Request::Init { .. });
        if needs_gpu(&request) && self.session.waits() {
            self.waiting.push_back((request, files));
            return;
        }
        let scope = scope(&request);
        if let Err(e) = self.dispatch(request, files).await {
            fail(scope, e, With { session: &mut self.session, held: &mut self.held, host: &*self.host }).await;
        }
        if opens {
            self.inbox.borrow_mut().put_back(std::mem::take(&mut self.waiting).into_iter());
        }
    }

    async fn dispatch(&mut self, request: Request, files: Vec<Vec<u8>>) -> Result<()> {
        let w = With { session: &mut self.session, held: &mut self.held, host: &*self.host };
        match request {
            Request::Init { .. } | Request::LoseDevice | Request::Memory | Request::CapMemory { .. } => {
                w.session.handle(request, w.host).await
            }
            Request::Corpus { .. }
            | Request::Plan { .. }
            | Request::Start { .. }
            | Request::Restore { .. }
            | Request::ImportRun { .. }
            | Request::ExportRun
            | Request::Checkpoints { .. }
            | Request::TrainOn { .. } => self.runs.handle(request, files, w).await,
            Request::Import { .. } | Request::Export | Request::Generate { .. } | Request::Parity { .. } => {
                self.models.handle(request, files, w).await
            }
            Request::Inspect { .. } | Request::Sampling(_) => self.views.handle(request, w.held, w.host).await,
            Request::ShareLink { .. } | Request::OpenLink { .. } => links::handle(request, w.host),
            Request::ExportAdapter | Request::ExportMerged | Request::ImportAdapter { .. } => {
                adapters::handle(request, files, w).await
            }
            // flags, flipped by Inbox::handle as they arrive
            Request::Pause | Request::Resume | Request::Stop | Request::Cancel => Ok(()),
        }
    }
}
