// The GPU side of the page: the wasm Engine (src/web.rs) in a dedicated module worker, and the
// store of saved runs. The page posts {request, bytes?}; the engine posts JSON event strings
// back. Messages that arrive while the wasm module loads are queued.
//
// Saved runs live in the origin-private file system (OPFS), one folder per run:
//   wgpt-runs/<id>/meta.json     {id, name, step, max_iters, params, dir, saved_at, bytes}
//   wgpt-runs/<id>/corpus.txt    the text it trains on
//   wgpt-runs/<id>/step-<N>/     config.json, model.safetensors, tokenizer.json,
//                                training_state.safetensors (an HF model directory + state)
// A checkpoint is written into a new step folder, then meta.json points at it, then the old
// folder goes: a failure half way leaves the previous checkpoint whole.
import init, { Engine } from "./wgpt.js";

const RUNS = "wgpt-runs";
const FILES = ["config.json", "model.safetensors", "tokenizer.json", "training_state.safetensors"];

let engine = null;
const pending = [];

function post(event) {
  postMessage(JSON.stringify(event));
}

function report(message, scope = "gpu") {
  post({ type: "error", scope, message });
}

async function runsDir() {
  if (!navigator.storage || !navigator.storage.getDirectory)
    throw new Error("this browser has no origin-private file system (OPFS) to save runs in");
  return (await navigator.storage.getDirectory()).getDirectoryHandle(RUNS, { create: true });
}

async function writeFile(dir, name, bytes) {
  const handle = await (await dir.getFileHandle(name, { create: true })).createSyncAccessHandle();
  try {
    handle.truncate(0);
    let at = 0;
    while (at < bytes.length) {
      const n = handle.write(bytes.subarray(at), { at });
      // Chromium answers a write past its storage limit with a bogus count, not always a throw
      if (!(n > 0 && n <= bytes.length - at)) throw new Error(`the browser stored ${at} of ${bytes.length} bytes of ${name}`);
      at += n;
    }
    handle.flush();
  } finally {
    handle.close();
  }
}

async function readFile(dir, name) {
  return new Uint8Array(await (await (await dir.getFileHandle(name)).getFile()).arrayBuffer());
}

async function readMeta(dir) {
  try {
    return JSON.parse(new TextDecoder().decode(await readFile(dir, "meta.json")));
  } catch {
    return null;
  }
}

async function listRuns() {
  const runs = [];
  for await (const [id, dir] of (await runsDir()).entries()) {
    if (dir.kind !== "directory") continue;
    const meta = await readMeta(dir);
    if (meta) runs.push(meta);
  }
  runs.sort((a, b) => b.saved_at - a.saved_at);
  const estimate = navigator.storage.estimate ? await navigator.storage.estimate() : {};
  post({ type: "runs", runs, usage: estimate.usage ?? null, quota: estimate.quota ?? null });
}

// The corpus of each run this session, as the engine handed it out with the run's first
// checkpoint: written again if that save failed (a full quota) and a later one succeeds.
const corpora = new Map();

async function saveCheckpoint(ev, files) {
  const run = await (await runsDir()).getDirectoryHandle(ev.id, { create: true });
  const prev = await readMeta(run);
  const hasCorpus = await run.getFileHandle("corpus.txt").then(() => true, () => false);
  if (files.length > FILES.length || !hasCorpus) await writeFile(run, "corpus.txt", corpora.get(ev.id));
  const dirName = `step-${ev.step}`;
  const dir = await run.getDirectoryHandle(dirName, { create: true });
  for (let i = 0; i < FILES.length; i++) await writeFile(dir, FILES[i], files[i]);
  const corpusBytes = (await (await run.getFileHandle("corpus.txt")).getFile()).size;
  const bytes = files.slice(0, FILES.length).reduce((n, f) => n + f.length, corpusBytes);
  const meta = { id: ev.id, name: ev.name, step: ev.step, max_iters: ev.max_iters, params: ev.params, dir: dirName, saved_at: Date.now(), bytes };
  await writeFile(run, "meta.json", new TextEncoder().encode(JSON.stringify(meta)));
  if (prev && prev.dir !== dirName) await run.removeEntry(prev.dir, { recursive: true }).catch(() => {});
  post({ type: "saved", ...meta });
}

async function restoreRun(id, lr) {
  const run = await (await runsDir()).getDirectoryHandle(id);
  const meta = await readMeta(run);
  if (!meta) throw new Error(`the saved run ${id} has no meta.json`);
  const dir = await run.getDirectoryHandle(meta.dir);
  const files = await Promise.all(FILES.map((name) => readFile(dir, name)));
  files.push(await readFile(run, "corpus.txt"));
  engine.handle(JSON.stringify({ type: "restore", id, lr: lr ?? null }), files);
}

async function deleteRun(id) {
  await (await runsDir()).removeEntry(id, { recursive: true });
  await listRuns();
}

const storageError = (what, err) =>
  `${what} failed: ${err && err.name ? `${err.name}: ${err.message.replace(/\.$/, "")}` : err}.` +
  (err && err.name === "QuotaExceededError"
    ? " The browser's storage for this page is full: delete saved runs (below the training controls) or free disk space."
    : "");

// The kernel tuning cache (src/tune.rs): the engine's choices per adapter, as JSON in OPFS,
// handed to the engine at init and replaced when a run's start reports new choices.
const TUNE_CACHE = "wgpt-tune.json";

async function readTuneCache() {
  try {
    return new TextDecoder().decode(await readFile(await navigator.storage.getDirectory(), TUNE_CACHE));
  } catch {
    return null;
  }
}

// Storage work happens one job at a time, in order.
let storage = Promise.resolve();
function queue(job) {
  storage = storage.then(job);
  return storage;
}

function deliver({ request, bytes }) {
  try {
    switch (request.type) {
      case "init":
        queue(() => readTuneCache().then((cache) => engine.handle(JSON.stringify({ ...request, tune_cache: cache }), [])));
        return;
      case "runs":
        // no storage (some private modes): the page says so beside the list, not as an error
        queue(() => listRuns().catch((e) => post({ type: "runs", runs: [], usage: null, quota: null, unavailable: storageError("Opening this browser's storage", e) })));
        return;
      case "delete_run":
        queue(() => deleteRun(request.id).catch((e) => report(storageError("Deleting the saved run", e), "storage")));
        return;
      case "restore_run":
        queue(() => restoreRun(request.id, request.lr).catch((e) => report(storageError("Reading the saved run", e), "restore")));
        return;
    }
    engine.handle(JSON.stringify(request), bytes ? [bytes] : []);
  } catch (err) {
    report(`the engine rejected a request: ${err}`);
  }
}

self.onmessage = (e) => (engine ? deliver(e.data) : pending.push(e.data));

function onEngineEvent(json, files) {
  const type = json.slice(0, 40).match(/"type":"(\w+)"/)?.[1];
  if (type === "checkpoint") {
    const ev = JSON.parse(json);
    if (files.length > FILES.length) corpora.set(ev.id, files[FILES.length]);
    queue(() =>
      saveCheckpoint(ev, files).catch((e) =>
        report(storageError(`Saving the checkpoint of step ${ev.step}`, e) + " The run itself is not affected; the previous checkpoint is kept.", "checkpoint"),
      ),
    );
    post({ type: "checkpoint", id: ev.id, step: ev.step });
    return;
  }
  if (type === "tuned") {
    const ev = JSON.parse(json);
    if (ev.cache) {
      const bytes = new TextEncoder().encode(ev.cache);
      // no storage only costs a retune on the next start
      queue(() => navigator.storage.getDirectory().then((root) => writeFile(root, TUNE_CACHE, bytes)).catch(() => {}));
    }
    post({ type: "tuned", source: ev.source, timed: ev.timed, ms: ev.ms });
    return;
  }
  // an export hands over the files' bytes (transferred)
  if (files) postMessage({ json, files }, files.map((f) => f.buffer));
  else postMessage(json);
}

init()
  .then(() => {
    engine = new Engine(onEngineEvent);
    pending.splice(0).forEach(deliver);
  })
  .catch((err) => report(`loading the engine (wgpt_bg.wasm) failed: ${err}`));
