//! What the engine needs from where it runs ([`Host`]: posting events, the clock, a turn of the
//! event loop), and the inbox the page's messages land in ([`Inbox`]), with the flags the page
//! flips at once (pause, stop, cancel) for the engine to read between steps and tokens.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;

use crate::run::driver::Clock;
use crate::web::protocol::{Event, Request};
use crate::{Error, Result};

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

/// A request with the files it brings.
pub(crate) type Message = (Request, Vec<Vec<u8>>);

/// Requests waiting for the engine, and the flags the page flips at once (pause, stop, cancel)
/// for the engine to read between steps and tokens.
#[derive(Default)]
pub struct Inbox {
    queue: VecDeque<Message>,
    paused: bool,
    stop: bool,
    cancel: bool,
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

    /// The next request, first come first served.
    pub(crate) fn next(&mut self) -> Option<Message> {
        self.queue.pop_front()
    }

    /// Puts `messages` back at the head of the queue, in their order (requests that waited for
    /// the GPU go before those that came meanwhile).
    pub(crate) fn put_back(&mut self, messages: impl DoubleEndedIterator<Item = Message>) {
        for m in messages.rev() {
            self.queue.push_front(m);
        }
    }

    /// Whether the run should pause, and whether it was told to stop (told once).
    pub(crate) fn run_flags(&mut self) -> (bool, bool) {
        (self.paused, std::mem::take(&mut self.stop))
    }

    /// A new run starts running, whatever the last one was told.
    pub(crate) fn unpause(&mut self) {
        self.paused = false;
        self.stop = false;
    }

    /// A restored or imported run waits, paused, until the page says Resume: nothing trains
    /// unasked.
    pub(crate) fn hold(&mut self) {
        self.paused = true;
        self.stop = false;
    }

    /// Whether the generation in progress was cancelled.
    pub(crate) fn cancelled(&self) -> bool {
        self.cancel
    }

    /// A new generation starts uncancelled.
    pub(crate) fn uncancel(&mut self) {
        self.cancel = false;
    }
}
