// Models from the Hugging Face hub: {hub}/{repo}/resolve/main/{file}, cached in the
// origin-private file system (wgpt-hub/, one file per URL, and a "<name>.size" marker written
// after it is whole) so the second load needs no network. Not Cache Storage: Chromium's refuses
// bodies of a few hundred MB, and GPT-2's model.safetensors is 548 MB. A download that breaks
// off is retried from where it stopped (an HTTP Range request), three times, with a message each
// time. Tabs share the cache: writes to it take the Web Lock "wgpt-hub" one at a time, and a
// file counts as cached only once its marker says it is whole. A model is config.json,
// tokenizer.json, generation_config.json where it has one (its eos tokens end generated text) and
// its weights: model.safetensors, or where that is not there the shards that
// model.safetensors.index.json names (Llama's and Qwen3's bigger checkpoints); the engine reads
// f32, f16 and bf16 (src/hf/tensors.rs). A file the hub does not have (404) is not retried.

import { $, bytes } from "./dom.js";

const HUB_CACHE = "wgpt-hub";
const RETRIES = 3;
// A shard's name as an index may give it: a file beside the index, nothing else.
const SHARD = /^[\w.-]+\.safetensors$/;

// The hub has no such file (a 404): not retried, and optional files are then left out.
class Missing extends Error {}

function progress(done, total, started, what) {
  const bar = $("dl-bar");
  const secs = (performance.now() - started) / 1e3;
  const speed = secs > 0 ? done / secs : 0;
  bar.max = total || 1;
  bar.value = total ? done : 0;
  const pct = total ? ` (${((100 * done) / total).toFixed(0)}%)` : "";
  $("dl-text").textContent = `${what}: ${bytes(done)}${total ? ` of ${bytes(total)}` : ""}${pct}, ${bytes(Math.round(speed))}/s`;
}

const hubCache = {
  async dir() {
    return (await navigator.storage.getDirectory()).getDirectoryHandle(HUB_CACHE, { create: true });
  },
  async get(url) {
    try {
      const dir = await this.dir();
      const name = encodeURIComponent(url);
      const size = Number(await (await (await dir.getFileHandle(`${name}.size`)).getFile()).text());
      const file = await (await dir.getFileHandle(name)).getFile();
      return file.size === size ? new Uint8Array(await file.arrayBuffer()) : null;
    } catch {
      return null; // not cached (or no OPFS)
    }
  },
  async put(url, bytes) {
    const write = async () => {
      const dir = await this.dir();
      const name = encodeURIComponent(url);
      // the swap files of writes a killed browser left (no other tab writes while this holds the lock)
      for await (const [file] of dir.entries()) if (file.endsWith(".crswap")) await dir.removeEntry(file).catch(() => {});
      await dir.removeEntry(`${name}.size`).catch(() => {});
      for (const [file, data] of [[name, bytes], [`${name}.size`, String(bytes.length)]]) {
        const w = await (await dir.getFileHandle(file, { create: true })).createWritable();
        await w.write(data);
        await w.close();
      }
    };
    return navigator.locks ? navigator.locks.request("wgpt-hub", write) : write();
  },
};

// One file's bytes: from the cache, or downloaded (resuming after a broken connection) and cached.
async function hubFile(url, file, counted, say) {
  const hit = await hubCache.get(url);
  if (hit) {
    counted.done += hit.length;
    return { bytes: hit, cached: true };
  }
  const parts = [];
  let got = 0;
  let total = 0;
  for (let attempt = 1; ; attempt++) {
    try {
      const res = await fetch(url, got ? { headers: { Range: `bytes=${got}-` } } : {});
      if (res.status === 404) throw new Missing(`${url} is not there (404)`);
      if (!res.ok) throw new Error(`the server answered ${res.status} ${res.statusText}`);
      if (got && res.status !== 206) {
        // the server ignored the range: start over
        counted.done -= got;
        parts.length = 0;
        got = 0;
      }
      total = total || Number(res.headers.get("content-length")) || 0;
      const reader = res.body.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        parts.push(value);
        got += value.length;
        counted.done += value.length;
        counted.report(file, total);
      }
      if (total && got < total) throw new Error(`the connection closed after ${bytes(got)} of ${bytes(total)}`);
      break;
    } catch (e) {
      if (e instanceof Missing) throw e;
      if (attempt > RETRIES) throw new Error(`downloading ${url} failed after ${RETRIES} retries (${e.message}). Check the connection and the hub URL, then press Load again; what was cached so far is kept`);
      const wait = 2 ** (attempt - 1);
      say(`Downloading ${file} failed (${e.message}); retrying in ${wait} s from ${bytes(got)} (retry ${attempt} of ${RETRIES})…`);
      await new Promise((r) => setTimeout(r, wait * 1000));
    }
  }
  const out = new Uint8Array(got);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  try {
    await hubCache.put(url, out);
  } catch (e) {
    return { bytes: out, cached: false, cacheError: `caching ${file} failed (${e.name}: ${e.message}), so the next load downloads it again; free some of this site's storage (saved runs) to cache it` };
  }
  return { bytes: out, cached: false };
}

// The weights' files: model.safetensors, or the shards its index names (sorted, each once). The
// index is looked for in the cache first, so a cached sharded model needs no network.
async function weightFiles(base, get) {
  const indexUrl = `${base}/model.safetensors.index.json`;
  if (!(await hubCache.get(indexUrl))) {
    try {
      return { "model.safetensors": await get("model.safetensors") };
    } catch (e) {
      if (!(e instanceof Missing)) throw e;
    }
  }
  let index;
  try {
    index = JSON.parse(new TextDecoder().decode(await get("model.safetensors.index.json")));
  } catch (e) {
    if (e instanceof Missing) throw new Error(`${base} has neither model.safetensors nor model.safetensors.index.json: is the repo name right?`);
    throw new Error(`model.safetensors.index.json is not valid JSON (${e.message})`);
  }
  const map = index?.weight_map;
  if (!map || typeof map !== "object") throw new Error('model.safetensors.index.json has no "weight_map" object (tensor name -> shard file)');
  const shards = [...new Set(Object.values(map))].sort();
  const bad = shards.find((s) => typeof s !== "string" || !SHARD.test(s));
  if (bad !== undefined) throw new Error(`model.safetensors.index.json names ${JSON.stringify(bad)}, not a .safetensors file beside it`);
  const files = {};
  for (const shard of shards) files[shard] = await get(shard);
  return files;
}

// A model's files from `hub`'s `repo`, with progress in the download bar and messages through
// `say`: {files: {name: bytes}, weights: [the safetensors files' names], generation: bytes or
// null, load: {repo, seconds, cached, bytes, cacheError}}.
export async function loadFromHub(hub, repo, say) {
  if (!/^https?:\/\//.test(hub) || !/^[\w.-]+(\/[\w.-]+)?$/.test(repo))
    throw new Error(`The hub must be an http(s) URL and the repo a name like openai-community/gpt2; got ${JSON.stringify(hub)} and ${JSON.stringify(repo)}.`);
  const started = performance.now();
  $("download-progress").hidden = false;
  const counted = { done: 0, report: (file, total) => progress(counted.done, Math.max(total, counted.done), started, file) };
  const files = {};
  let [count, cached] = [0, 0];
  let cacheError = null;
  const base = `${hub}/${repo}/resolve/main`;
  const get = async (file) => {
    say(`Loading ${repo}: ${file}…`);
    const r = await hubFile(`${base}/${file}`, file, counted, say);
    count++;
    cached += r.cached ? 1 : 0;
    cacheError = cacheError || r.cacheError;
    return (files[file] = r.bytes);
  };
  await get("config.json");
  await get("tokenizer.json");
  // optional: a repo without one is remembered as an empty file (no JSON is empty), so the next
  // load asks the hub nothing
  const generation = await get("generation_config.json").catch(async (e) => {
    if (!(e instanceof Missing)) throw e;
    await hubCache.put(`${base}/generation_config.json`, new Uint8Array(0)).catch(() => {});
    return null;
  });
  const weights = Object.keys(await weightFiles(base, get));
  const seconds = (performance.now() - started) / 1e3;
  const all = Object.values(files).reduce((n, f) => n + f.length, 0);
  progress(all, all, started, cached === count ? "from the cache" : "downloaded");
  return { files, weights, generation: generation?.length ? generation : null, load: { repo, seconds, cached: cached === count, bytes: all, cacheError } };
}
