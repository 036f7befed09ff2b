// The page's saved runs, in the browser's origin-private file system (used by the worker): one
// folder per run, wgpt-runs/<id>/, holding the run format's files, the same as `wgpt train
// --out DIR` writes (src/run/format.rs): config.json, model.safetensors, tokenizer.json,
// training_state.safetensors, metrics.jsonl and corpus.txt.
//
// A checkpoint is one commit, as src/run/format.rs's dir::commit does it on disk: each file to
// ".NAME.tmp", then the list of names to ".commit" (the commit point), then each temporary file
// renamed into place, then ".commit" removed. Opening a run first finishes an interrupted commit
// (".commit" there: rename what is left) or drops one that never reached its commit point, so a
// tab closed at any moment leaves the last complete checkpoint.

const RUNS = "wgpt-runs";
const COMMIT = ".commit";
const STATE = "training_state.safetensors";

async function runsDir() {
  if (!navigator.storage || !navigator.storage.getDirectory)
    throw new Error("this browser has no origin-private file system (OPFS) to save runs in");
  return (await navigator.storage.getDirectory()).getDirectoryHandle(RUNS, { create: true });
}

async function exists(dir, name) {
  return dir.getFileHandle(name).then(
    () => true,
    () => false,
  );
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

async function rename(dir, from, to) {
  await dir.removeEntry(to).catch(() => {});
  await (await dir.getFileHandle(from)).move(to);
}

// Finishes an interrupted commit in `dir`, or drops the temporary files of one that did not
// reach its commit point.
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
    if (names && names.includes(m[1])) await rename(dir, name, m[1]);
    else await dir.removeEntry(name).catch(() => {});
  }
  await dir.removeEntry(COMMIT).catch(() => {});
}

// Writes `named` ([name, bytes] pairs) into `dir` as one commit. On a failure before the
// commit point, the temporary files go and the previous checkpoint stays whole.
async function commit(dir, named) {
  try {
    for (const [name, bytes] of named) await writeFile(dir, `.${name}.tmp`, bytes);
    await writeFile(dir, `.${COMMIT}.tmp`, new TextEncoder().encode(JSON.stringify(named.map(([n]) => n))));
    await rename(dir, `.${COMMIT}.tmp`, COMMIT);
  } catch (e) {
    await finish(dir).catch(() => {});
    throw e;
  }
  await finish(dir);
}

// The corpus of each run this session, as the engine handed it out with the run's first
// checkpoint: written again with a later checkpoint where the first save failed (a full quota).
const corpora = new Map();

// Saves a `checkpoint` event's files (named by ev.files) as run ev.id; resolves to its summary.
export async function save(ev, files) {
  const named = ev.files.map((name, i) => [name, files[i]]);
  const corpus = named.find(([name]) => name === "corpus.txt");
  if (corpus) corpora.set(ev.id, corpus[1]);
  const dir = await (await runsDir()).getDirectoryHandle(ev.id, { create: true });
  await finish(dir);
  if (!corpus && !(await exists(dir, "corpus.txt")) && corpora.has(ev.id)) named.push(["corpus.txt", corpora.get(ev.id)]);
  await commit(dir, named);
  return summary(ev.id, dir);
}

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
  for await (const [, handle] of dir.entries()) if (handle.kind === "file") bytes += (await handle.getFile()).size;
  const m = state.run.model;
  return { id, name, step: state.step, max_iters: state.run.max_iters, shape: `${m.n_layer} layers, ${m.n_embd} dims`, bytes, saved_at: file.lastModified };
}

// Every saved run's summary, newest first, and the storage used.
export async function list() {
  const runs = [];
  for await (const [id, dir] of (await runsDir()).entries()) {
    if (dir.kind !== "directory") continue;
    try {
      await finish(dir);
      runs.push(await summary(id, dir));
    } catch {
      // a run folder without a readable training state (its first save failed): not listed
    }
  }
  runs.sort((a, b) => b.saved_at - a.saved_at);
  const estimate = navigator.storage.estimate ? await navigator.storage.estimate() : {};
  return { runs, usage: estimate.usage ?? null, quota: estimate.quota ?? null };
}

// A saved run's files: {names, files}.
export async function read(id) {
  const dir = await (await runsDir()).getDirectoryHandle(id);
  await finish(dir);
  const names = [];
  const files = [];
  for await (const [name, handle] of dir.entries()) {
    if (handle.kind !== "file" || name.startsWith(".")) continue;
    names.push(name);
    files.push(await readFile(dir, name));
  }
  return { names, files };
}

export async function remove(id) {
  await (await runsDir()).removeEntry(id, { recursive: true });
}
