// The GPU side of the page: the wasm Engine (src/web.rs) in a dedicated module worker. The page
// posts {request, bytes?}; the engine posts JSON event strings back. Messages that arrive while
// the wasm module loads are queued.
import init, { Engine } from "./wgpt.js";

let engine = null;
const pending = [];

function report(message) {
  postMessage(JSON.stringify({ type: "error", scope: "gpu", message }));
}

function deliver({ request, bytes }) {
  try {
    engine.handle(JSON.stringify(request), bytes);
  } catch (err) {
    report(`the engine rejected a request: ${err}`);
  }
}

self.onmessage = (e) => (engine ? deliver(e.data) : pending.push(e.data));

init()
  .then(() => {
    // events are JSON strings; an export also hands over the files' bytes (transferred)
    engine = new Engine((json, files) =>
      files ? postMessage({ json, files }, files.map((f) => f.buffer)) : postMessage(json),
    );
    pending.splice(0).forEach(deliver);
  })
  .catch((err) => report(`loading the engine (wgpt_bg.wasm) failed: ${err}`));
