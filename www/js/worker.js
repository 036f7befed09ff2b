// The GPU side of the page: the wasm engine (src/web/) in a dedicated module worker, and the
// store of saved runs (runs.js). The page posts {request, files?}: the store's requests (the
// manifest's store_requests, src/web/protocol/store.rs) are answered here, every other goes to the
// engine as it is. The engine posts JSON strings; each is parsed once, here, and goes on to the
// page as it is, {event, files?}; the store also acts on two of them: a checkpoint's files (views
// into the engine's memory) are written before this returns, and a tune_cache is stored. The
// worker opens the GPU itself (`init`, with the stored tuning cache) as soon as the engine has
// loaded; messages that arrive while the wasm module loads wait, and the engine keeps requests
// that need the GPU until it is open.
// The run this tab trains holds its Web Lock (runs.js) until it stops or the tab moves on.

import init, { Engine } from "../wgpt.js";
import * as runs from "./runs.js";
import { histories } from "./run-history.js";

let engine = null;
const pending = [];
let current = null; // the run the engine trains (its id), once a checkpoint or a restore names it
let restoring = null;

const post = (event, files) => (files ? postMessage({ event, files }, files.map((f) => f.buffer)) : postMessage({ event }));
const report = (message, scope = "gpu") => post({ type: "error", scope, message });

const storageError = (what, err) =>
  `${what} failed: ${err && err.name ? `${err.name}: ${err.message.replace(/\.$/, "")}` : err}.` +
  (err && err.name === "QuotaExceededError"
    ? " The browser's storage for this page is full: delete saved runs (below the training controls) or free disk space."
    : "");

// The kernel tuning cache (src/tune.rs): the engine's choices per adapter, as JSON in OPFS,
// handed to the engine at init and replaced when a run's start reports new choices (tune_cache).
const TUNE_CACHE = "wgpt-tune.json";

async function readTuneCache() {
  try {
    const file = await (await navigator.storage.getDirectory()).getFileHandle(TUNE_CACHE);
    return await (await file.getFile()).text();
  } catch {
    return null; // none yet, or no storage: the engine tunes (or uses its built-in table)
  }
}

async function writeTuneCache(json) {
  try {
    const file = await (await navigator.storage.getDirectory()).getFileHandle(TUNE_CACHE, { create: true });
    const w = await file.createWritable();
    await w.write(json);
    await w.close();
  } catch {
    // no storage only costs a retune on the next start
  }
}

// Storage work happens one job at a time, in order.
let storage = Promise.resolve();
const queue = (job) => (storage = storage.then(job).catch(() => {}));

async function listRuns() {
  try {
    post({ type: "runs", ...(await runs.list()) });
  } catch (e) {
    // no storage (some private modes): the page says so beside the list, not as an error
    post({ type: "runs", runs: [], usage: null, quota: null, unavailable: storageError("Opening this browser's storage", e) });
  }
}

function deliver({ request, files }) {
  try {
    switch (request.type) {
      case "runs":
        queue(listRuns);
        return;
      case "delete_run":
        queue(() => runs.remove(request.id).then(listRuns, (e) => report(storageError("Deleting the saved run", e), "storage")));
        return;
      case "run_histories":
        queue(() => histories(request.ids).then((found) => post({ type: "run_histories", runs: found }), (e) => report(storageError("Reading the saved runs' loss curves", e), "storage")));
        return;
      case "restore_run":
        queue(async () => {
          try {
            const { names, files } = await runs.read(request.id);
            restoring = request.id;
            engine.handle(JSON.stringify({ type: "restore", id: request.id, names, lr: request.lr ?? null }), files);
          } catch (e) {
            if (request.id !== current) runs.release(request.id);
            report(storageError("Reading the saved run", e), "restore");
          }
        });
        return;
      case "room":
        // full checkpoints first; where they do not fit, model-only ones (the plan offers those)
        queue(async () => {
          const probe = (n) => (n ? runs.room(n).catch(() => false) : Promise.resolve(false));
          const fits = await probe(request.bytes);
          const model_fits = fits || (await probe(request.model_bytes));
          post({ type: "room", bytes: request.bytes, fits, model_bytes: request.model_bytes ?? null, model_fits });
        });
        return;
      case "commit_pause":
        runs.setCommitPause(request.ms);
        return;
    }
    engine.handle(JSON.stringify(request), files ?? []);
  } catch (err) {
    report(`the engine rejected a request: ${err}`);
  }
}

self.onmessage = (e) => (engine ? deliver(e.data) : pending.push(e.data));

// The engine goes on with run `id`: it keeps that run's lock and lets the others go (once the
// saves queued before are done).
function moveTo(id) {
  current = id;
  queue(() => runs.releaseAllBut(id));
}

function onEngineEvent(json, files) {
  const event = JSON.parse(json);
  switch (event.type) {
    case "checkpoint": {
      // now, while the views into the engine's memory are valid
      const staged = runs.stage(event, files ?? []);
      if (event.id !== current) moveTo(event.id);
      queue(() =>
        runs.save(event, staged).then(
          (saved) => post({ type: "saved", ...saved, copied: Boolean(staged.copies) }),
          (e) => report(`${storageError(`Saving the checkpoint of step ${event.step}`, e)} The run itself is not affected; the previous checkpoint is kept.`, "checkpoint"),
        ),
      );
      break;
    }
    case "restored":
      restoring = null;
      moveTo(event.id);
      break;
    case "state":
    case "diverged":
      // a run that stopped is written no more: another tab may go on with it
      if (current && (event.type === "diverged" || ["stopped", "done"].includes(event.state))) {
        const id = current;
        queue(() => runs.release(id));
      }
      break;
    case "error":
      if (event.scope === "restore" && restoring && restoring !== current) {
        const id = restoring;
        queue(() => runs.release(id));
      }
      restoring = null;
      break;
    case "tune_cache":
      queue(() => writeTuneCache(event.cache));
      break;
  }
  // an export hands over its files' bytes (transferred); a checkpoint's are the engine's memory
  post(event, event.type === "checkpoint" ? undefined : files);
}

init()
  .then(async () => {
    const fresh = new Engine(onEngineEvent);
    // the GPU opens first: every request of the page comes after init
    fresh.handle(JSON.stringify({ type: "init", tune_cache: await readTuneCache() }), []);
    engine = fresh;
    pending.splice(0).forEach(deliver);
    await runs.sweep().catch(() => {});
    await runs.prepare();
  })
  .catch((err) => report(`loading the engine (wgpt_bg.wasm) failed: ${err}`));
