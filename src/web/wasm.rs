//! The engine's glue to the browser: `new Engine(post)` in the worker, `handle(json, files)` for
//! each message, events posted back as JSON strings (with an array of byte arrays for the files
//! a checkpoint or an export hands out), the browser's clock, and waits on the event loop.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use wasm_bindgen::prelude::*;

use crate::run::driver::Clock;
use crate::web::host::{Host, Inbox};
use crate::web::protocol::Event;

struct Worker {
    post: js_sys::Function,
}

impl Host for Worker {
    fn post(&self, event: &Event, files: &[&[u8]]) {
        let Ok(json) = serde_json::to_string(event) else { return };
        if files.is_empty() {
            let _ = self.post.call1(&JsValue::NULL, &json.into());
        } else if matches!(event, Event::Checkpoint { .. }) {
            // a checkpoint (1.5 GB for GPT-2 124M) goes out as views into wasm memory, not
            // copies: www/js/runs.js writes them to storage before this call returns
            // SAFETY: nothing runs in wasm (so nothing allocates or moves memory) until the
            // call returns, and the JS keeps no view past it
            let views: js_sys::Array = files.iter().map(|f| unsafe { js_sys::Uint8Array::view(f) }).collect();
            let _ = self.post.call2(&JsValue::NULL, &json.into(), &views);
        } else {
            let bytes: js_sys::Array = files.iter().map(|f| js_sys::Uint8Array::from(*f)).collect();
            let _ = self.post.call2(&JsValue::NULL, &json.into(), &bytes);
        }
    }

    fn clock(&self) -> Clock {
        js_sys::Date::now
    }

    fn settle(&self) -> Pin<Box<dyn Future<Output = ()>>> {
        Box::pin(set_timeout_0())
    }

    fn memory_bytes(&self) -> Option<u64> {
        Some(core::arch::wasm32::memory_size(0) as u64 * 65536)
    }

    fn new_run_id(&self) -> String {
        // two tabs may start a run in the same millisecond
        format!("run-{}-{:04x}", js_sys::Date::now() as u64, (js_sys::Math::random() * 65536.0) as u32)
    }
}

/// A promise resolved after the event loop has run (setTimeout 0), so that messages get in.
async fn set_timeout_0() {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        let global = js_sys::global();
        match js_sys::Reflect::get(&global, &"setTimeout".into()) {
            Ok(set_timeout) => {
                let _ = set_timeout.unchecked_into::<js_sys::Function>().call2(&global, &resolve, &0.into());
            }
            Err(_) => {
                let _ = resolve.call0(&JsValue::NULL);
            }
        }
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}

/// The worker side of the page: construct it with the function that posts events
/// (`postMessage`), then hand it every message.
#[wasm_bindgen(js_name = Engine)]
pub struct WorkerEngine {
    inbox: Rc<RefCell<Inbox>>,
    /// Resolves the engine's wait for a message.
    wake: Rc<RefCell<Option<js_sys::Function>>>,
}

#[wasm_bindgen(js_class = Engine)]
impl WorkerEngine {
    /// Starts the engine's loop; `post` receives each event as a JSON string (and, for
    /// checkpoints and exports, an array of byte arrays as its second argument).
    #[wasm_bindgen(constructor)]
    pub fn new(post: js_sys::Function) -> WorkerEngine {
        console_error_panic_hook::set_once();
        let mut engine = crate::web::Engine::new(Box::new(Worker { post }));
        let inbox = engine.inbox();
        let wake: Rc<RefCell<Option<js_sys::Function>>> = Rc::default();
        let waiting = wake.clone();
        wasm_bindgen_futures::spawn_local(async move {
            loop {
                if engine.tick().await {
                    set_timeout_0().await; // let messages in between units of work
                } else {
                    let promise = js_sys::Promise::new(&mut |resolve, _| *waiting.borrow_mut() = Some(resolve));
                    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
                }
            }
        });
        WorkerEngine { inbox, wake }
    }

    /// One request as JSON ([`crate::web::protocol::Request`]), with the files it brings (a
    /// corpus, a model's safetensors, a saved run's files, a run zip) as byte arrays.
    pub fn handle(&self, request: &str, files: Vec<js_sys::Uint8Array>) -> Result<(), JsError> {
        let files = files.iter().map(|f| f.to_vec()).collect();
        self.inbox.borrow_mut().handle(request, files).map_err(|e| JsError::new(&e.to_string()))?;
        if let Some(wake) = self.wake.borrow_mut().take() {
            let _ = wake.call0(&JsValue::NULL);
        }
        Ok(())
    }
}
