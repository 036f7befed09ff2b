//! The page's engine. It runs in a dedicated Web Worker (www/js/worker.js) and owns the GPU: the
//! page sends it requests and gets events back ([`protocol`]), so the page's thread never waits
//! for the GPU. One loop ([`engine::Engine::tick`]) does all GPU work in order: a request, handed
//! to the part that handles it (the GPU session, the runs, the models, the views), or a unit of
//! the training run through the run driver the CLI uses too. Everything but the glue to
//! the browser ([`wasm`]: postMessage, the clock, the event loop) builds and is tested natively.

// wgpu's web types are not Send: the worker is single-threaded, an Arc is only shared ownership
#![allow(clippy::arc_with_non_send_sync)]

mod adapters;
pub mod engine;
mod held;
mod host;
mod links;
mod models;
pub mod protocol;
mod run_loop;
mod runs;
mod session;
mod views;
#[cfg(target_arch = "wasm32")]
pub mod wasm;

pub use engine::Engine;
pub use host::{Host, Inbox};
