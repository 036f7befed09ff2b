// The page's saved runs, in the browser's origin-private file system (used by the worker): one
// folder per run, wgpt-runs/<id>/, holding the run format's files, the same as `wgpt train
// --out DIR` writes (src/run/format.rs): config.json, model.safetensors, tokenizer.json,
// training_state.safetensors, metrics.jsonl and corpus.txt.
//
// A checkpoint is one commit, as src/run/format.rs's dir::commit does it on disk: each file to
// ".NAME.tmp", then the list of names to ".commit" (the commit point), then each temporary file
// renamed into place, then ".commit" removed. Opening a run first finishes an interrupted commit
// (".commit" there: rename what is left) or drops one that never reached its commit point, so a
// tab closed or a browser killed at any moment leaves the last complete checkpoint. While the
// new checkpoint is written the old one stays whole, so a save needs room for both.
//
// The files come straight from the engine's memory (views valid only while the engine's event
// is handled): stage() writes them synchronously into this tab's staging files
// (wgpt-staging/<tab>/, opened ahead), which save() then moves into the run's folder as the
// commit's temporary files. No copy of a checkpoint is held in the worker's JavaScript memory
// (where staging is not ready, stage() copies, and says so).
//
// Several tabs share this store. Each run is written by one tab at a time: the tab that trains
// it holds the Web Lock "wgpt-run-<id>"; another tab lists it as open elsewhere and refuses to
// resume or delete it until the lock is free (the holder closed, crashed or moved on).

const RUNS = "wgpt-runs";
const STAGING = "wgpt-staging";
const COMMIT = ".commit";
const STATE = "training_state.safetensors";
const RUN_FILES = ["config.json", "tokenizer.json", "model.safetensors", STATE, "metrics.jsonl", "corpus.txt"];

async function root() {
  if (!navigator.storage || !navigator.storage.getDirectory)
    throw new Error("this browser has no origin-private file system (OPFS) to save runs in");
  return navigator.storage.getDirectory();
}

export const runsDir = async () => (await root()).getDirectoryHandle(RUNS, { create: true });

async function exists(dir, name) {
  return dir.getFileHandle(name).then(
    () => true,
    () => false,
  );
}

// ---------------------------------------------------------------------------------------------
// One tab per run: Web Locks

const locks = typeof navigator.locks === "object" ? navigator.locks : null;
const runLock = (id) => `wgpt-run-${id}`;
const held = new Map(); // run id -> releases its lock

export class OpenElsewhere extends Error {
  constructor(id) {
    super(`this run (${id}) is open in another tab of this page: go on with it there, or close that tab and try again`);
    this.name = "OpenElsewhere";
  }
}

// Takes run `id`'s lock unless another tab holds it; true when this tab holds it.
export async function hold(id) {
  if (held.has(id) || !locks) return true;
  return new Promise((resolve) => {
    locks
      .request(runLock(id), { ifAvailable: true }, (lock) => {
        if (!lock) return resolve(false);
        return new Promise((release) => {
          held.set(id, release);
          resolve(true);
        });
      })
      .catch(() => resolve(false));
  });
}

export function release(id) {
  held.get(id)?.();
  held.delete(id);
}

// Releases every run lock but `id`'s (the run this tab goes on with).
export function releaseAllBut(id) {
  for (const other of [...held.keys()]) if (other !== id) release(other);
}

// Runs `job` on run `id` under its lock (taken for the job where this tab does not hold it);
// throws OpenElsewhere where another tab holds it.
async function withRun(id, job) {
  if (held.has(id) || !locks) return job();
  const out = await locks.request(runLock(id), { ifAvailable: true }, async (lock) => (lock ? { value: await job() } : null));
  if (!out) throw new OpenElsewhere(id);
  return out.value;
}

// The runs another tab holds.
async function heldElsewhere() {
  if (!locks) return new Set();
  const { held: all } = await locks.query();
  const ids = all.map((l) => l.name).filter((n) => n.startsWith("wgpt-run-")).map((n) => n.slice("wgpt-run-".length));
  return new Set(ids.filter((id) => !held.has(id)));
}

// ---------------------------------------------------------------------------------------------
// Writing

// A test hook (wgptDebug.commitPause(ms)): waits this long between the steps of a commit.
let pauseMs = 0;
export const setCommitPause = (ms) => (pauseMs = Math.max(0, Number(ms) || 0));
const pause = () => (pauseMs ? new Promise((r) => setTimeout(r, pauseMs)) : null);

// Writes all of `bytes` through a sync access handle, from the start, and flushes.
function writeAll(handle, bytes, name) {
  handle.truncate(0);
  let at = 0;
  while (at < bytes.length) {
    const n = handle.write(bytes.subarray(at), { at });
    // Chromium answers a write past its storage limit with a bogus count, not always a throw;
    // a view of memory that grew meanwhile (detached: no bytes left) writes 0
    if (!(n > 0 && n <= bytes.length - at)) {
      const stored = `the browser stored ${at} of ${bytes.length} bytes of ${name}`;
      if (bytes.buffer.byteLength === 0) throw new Error(`${stored}: the engine's memory moved during the write`);
      throw new DOMException(stored, "QuotaExceededError");
    }
    at += n;
  }
  handle.flush();
}

async function writeFile(dir, name, bytes) {
  const handle = await (await dir.getFileHandle(name, { create: true })).createSyncAccessHandle();
  try {
    writeAll(handle, bytes, name);
  } finally {
    handle.close();
  }
}

async function readFile(dir, name) {
  return new Uint8Array(await (await (await dir.getFileHandle(name)).getFile()).arrayBuffer());
}

// A move onto an existing file replaces it, in one step.
async function rename(dir, from, to) {
  await (await dir.getFileHandle(from)).move(to);
}

// Finishes an interrupted commit in `dir`, or drops the temporary files of one that did not
// reach its commit point. Only the tab holding the run's lock calls it.
async function finish(dir) {
  let names = null;
  if (await exists(dir, COMMIT)) {
    try {
      names = JSON.parse(new TextDecoder().decode(await readFile(dir, COMMIT)));
    } catch {
      names = null; // unreadable: it never became the commit point
    }
  }
  const entries = [];
  for await (const [name] of dir.entries()) entries.push(name);
  for (const name of entries) {
    const m = name.match(/^\.(.+)\.tmp$/);
    if (!m) continue;
    if (names && names.includes(m[1])) {
      await rename(dir, name, m[1]);
      await pause();
    } else await dir.removeEntry(name).catch(() => {});
  }
  await dir.removeEntry(COMMIT).catch(() => {});
}

// ---------------------------------------------------------------------------------------------
// This tab's staging files: one per run file, open ahead so that a checkpoint is written
// synchronously from the engine's memory

const tab = crypto.randomUUID();
let staging = null; // {handles: Map name -> {file, sah}, busy} once open
let opening = null;

async function openStaging() {
  const base = await (await root()).getDirectoryHandle(STAGING, { create: true });
  if (locks) locks.request(`wgpt-tab-${tab}`, () => new Promise(() => {})); // held while this worker lives
  const dir = await base.getDirectoryHandle(tab, { create: true });
  const handles = new Map();
  for (const name of RUN_FILES) {
    const file = await dir.getFileHandle(name, { create: true });
    handles.set(name, { file, sah: await file.createSyncAccessHandle() });
  }
  return { dir, handles, busy: false };
}

// Opens the staging files (again, after a save moved them away).
export function prepare() {
  opening ??= openStaging().then(
    (s) => {
      staging = s;
      opening = null;
    },
    () => {
      staging = null; // no staging: checkpoints are copied (stage() says so)
      opening = null;
    },
  );
  return opening;
}

// Removes the staging folders of tabs that are gone (their lock is free), and the room probe.
export async function sweep() {
  const base = await (await root()).getDirectoryHandle(STAGING, { create: true });
  const live = locks ? new Set((await locks.query()).held.map((l) => l.name)) : null;
  for await (const [name] of base.entries()) {
    if (name !== tab && live && !live.has(`wgpt-tab-${name}`)) await base.removeEntry(name, { recursive: true }).catch(() => {});
  }
}

// Closes the staging files (a save moved some away, or failed): prepare() opens them anew.
function closeStaging(s) {
  for (const { sah } of s.handles.values()) {
    try {
      sah.close();
    } catch {
      // closed already
    }
  }
}

// The corpus of each run this session, as the engine handed it out with the run's first
// checkpoint: written again with a later checkpoint where the first save failed (a full quota).
const corpora = new Map();

// Writes a `checkpoint` event's files (views into the engine's memory, valid only during this
// call) into the staging files, synchronously; where staging is not ready, copies them. What
// save() takes next.
export function stage(ev, files) {
  const named = ev.files.map((name, i) => [name, files[i]]);
  const corpus = named.find(([name]) => name === "corpus.txt");
  if (corpus) corpora.set(ev.id, corpus[1].slice());
  if (staging && !staging.busy && named.every(([name]) => staging.handles.has(name))) {
    staging.busy = true;
    try {
      for (const [name, bytes] of named) writeAll(staging.handles.get(name).sah, bytes, name);
      return { staged: named.map(([name]) => name) };
    } catch (e) {
      const s = staging;
      staging = null;
      closeStaging(s);
      prepare();
      return { error: e };
    }
  }
  return { copies: named.map(([name, bytes]) => [name, bytes.slice()]) };
}

// Saves a staged checkpoint (stage()'s answer for event `ev`) as run ev.id; resolves to the
// run's summary. On a failure before the commit point the previous checkpoint stays whole.
export async function save(ev, staged) {
  if (staged.error) throw staged.error;
  const s = staged.staged ? staging : null;
  if (s) staging = null; // this save's: closed and opened anew when it is done
  try {
    if (!(await hold(ev.id))) throw new OpenElsewhere(ev.id);
    const dir = await (await runsDir()).getDirectoryHandle(ev.id, { create: true });
    await finish(dir);
    const names = staged.staged ?? staged.copies.map(([name]) => name);
    try {
      if (s) {
        for (const name of names) {
          const { file, sah } = s.handles.get(name);
          sah.close();
          await file.move(dir, `.${name}.tmp`);
          await pause();
        }
      } else for (const [name, bytes] of staged.copies) await writeFile(dir, `.${name}.tmp`, bytes);
      if (!names.includes("corpus.txt") && !(await exists(dir, "corpus.txt")) && corpora.has(ev.id)) {
        await writeFile(dir, ".corpus.txt.tmp", corpora.get(ev.id));
        names.push("corpus.txt");
      }
      await writeFile(dir, `.${COMMIT}.tmp`, new TextEncoder().encode(JSON.stringify(names)));
      await pause();
      await rename(dir, `.${COMMIT}.tmp`, COMMIT);
      await pause();
    } catch (e) {
      await finish(dir).catch(() => {});
      throw e;
    }
    await finish(dir);
    return summary(ev.id, dir);
  } finally {
    if (s) {
      closeStaging(s);
      prepare();
    }
  }
}

// Whether `bytes` more fit in this page's storage: a probe file grown to that size and
// removed (navigator.storage.estimate() does not tell: Chromium says usage + 10 GiB whatever
// the real quota).
export async function room(bytes) {
  const base = await (await root()).getDirectoryHandle(STAGING, { create: true });
  const probe = await base.getFileHandle(`room-${tab}.probe`, { create: true });
  const sah = await probe.createSyncAccessHandle();
  let fits = false;
  try {
    sah.truncate(bytes);
    fits = sah.getSize() === bytes; // in memory, Chromium may leave the file short without a throw
  } catch {
    fits = false;
  } finally {
    try {
      sah.truncate(0);
    } finally {
      sah.close();
      await base.removeEntry(`room-${tab}.probe`).catch(() => {});
    }
  }
  return fits;
}

// ---------------------------------------------------------------------------------------------
// Reading

// What the list of saved runs shows, from the run's own files: training_state.safetensors'
// header holds its step and settings (src/checkpoint.rs, metadata "wgpt_state").
async function summary(id, dir) {
  const file = await (await dir.getFileHandle(STATE)).getFile();
  const n = Number(new DataView(await file.slice(0, 8).arrayBuffer()).getBigUint64(0, true));
  if (!(n > 0 && n < 100 * 1024 * 1024)) throw new Error(`${id}'s ${STATE} is not a safetensors file`);
  const header = JSON.parse(new TextDecoder().decode(await file.slice(8, 8 + n).arrayBuffer()));
  const state = JSON.parse(header.__metadata__.wgpt_state);
  const [kind, what] = Object.entries(state.run.data)[0]; // DataSource: {Text: name} | {Task: name} | {File: path}
  const name = kind === "Task" ? `${what} task` : what.split(/[\\/]/).pop();
  let bytes = 0;
  for await (const [fname, handle] of dir.entries()) if (handle.kind === "file" && RUN_FILES.includes(fname)) bytes += (await handle.getFile()).size;
  const m = state.run.model;
  // model_only: saved without AdamW's moments (src/run/mod.rs's RunState)
  return { id, name, step: state.step, max_iters: state.run.max_iters, shape: `${m.n_layer} layers, ${m.n_embd} dims`, bytes, saved_at: file.lastModified, settings: state.run, model_only: Boolean(state.model_only) };
}

// Every saved run's summary, newest first, with the runs another tab holds marked
// (open_elsewhere); the storage used, and whether the browser keeps it under storage pressure.
export async function list() {
  const elsewhere = await heldElsewhere();
  const runs = [];
  for await (const [id, dir] of (await runsDir()).entries()) {
    if (dir.kind !== "directory") continue;
    let open = elsewhere.has(id);
    let run = null;
    if (!open) {
      try {
        run = await withRun(id, async () => (await finish(dir), summary(id, dir)));
      } catch (e) {
        open = e instanceof OpenElsewhere;
      }
    }
    // another tab's run is read as it is: that tab finishes its commits
    if (open) run = await summary(id, dir).then((r) => ({ ...r, open_elsewhere: true }), () => null);
    // no readable training state (its first save failed, or is being written): not listed
    if (run) runs.push(run);
  }
  runs.sort((a, b) => b.saved_at - a.saved_at);
  const estimate = navigator.storage.estimate ? await navigator.storage.estimate() : {};
  const persisted = navigator.storage.persisted ? await navigator.storage.persisted() : null;
  return { runs, usage: estimate.usage ?? null, quota: estimate.quota ?? null, persisted };
}

// A saved run's files, {names, files}, for this tab to go on with: it takes the run's lock
// first (OpenElsewhere where another tab has it).
export async function read(id) {
  if (!(await hold(id))) throw new OpenElsewhere(id);
  const dir = await (await runsDir()).getDirectoryHandle(id);
  await finish(dir);
  const names = [];
  const files = [];
  for (const name of RUN_FILES) {
    if (!(await exists(dir, name))) continue;
    names.push(name);
    files.push(await readFile(dir, name));
  }
  return { names, files };
}

export async function remove(id) {
  const runs = await runsDir();
  await withRun(id, () => runs.removeEntry(id, { recursive: true }));
}
