// Models from the Hugging Face hub: {hub}/{repo}/resolve/main/{file}, cached in the
// origin-private file system (wgpt-hub/, one file per URL, and a "<name>.size" marker written
// after it is whole) so the second load needs no network. Not Cache Storage: Chromium's refuses
// bodies of a few hundred MB, and GPT-2's model.safetensors is 548 MB. A download that breaks
// off is retried from where it stopped (an HTTP Range request), three times, with a message each
// time.

import { $, bytes } from "./dom.js";

const HUB_CACHE = "wgpt-hub";
const HUB_FILES = ["config.json", "tokenizer.json", "model.safetensors"];
const RETRIES = 3;

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
    const dir = await this.dir();
    const name = encodeURIComponent(url);
    await dir.removeEntry(`${name}.size`).catch(() => {});
    for (const [file, data] of [[name, bytes], [`${name}.size`, String(bytes.length)]]) {
      const w = await (await dir.getFileHandle(file, { create: true })).createWritable();
      await w.write(data);
      await w.close();
    }
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

// A model's three files from `hub`'s `repo`, with progress in the download bar and messages
// through `say`: {files: {name: bytes}, load: {repo, seconds, cached, bytes, cacheError}}.
export async function loadFromHub(hub, repo, say) {
  if (!/^https?:\/\//.test(hub) || !/^[\w.-]+(\/[\w.-]+)?$/.test(repo))
    throw new Error(`The hub must be an http(s) URL and the repo a name like openai-community/gpt2; got ${JSON.stringify(hub)} and ${JSON.stringify(repo)}.`);
  const started = performance.now();
  $("download-progress").hidden = false;
  const counted = { done: 0, report: (file, total) => progress(counted.done, Math.max(total, counted.done), started, file) };
  const files = {};
  let cached = 0;
  let cacheError = null;
  for (const file of HUB_FILES) {
    say(`Loading ${repo}: ${file}…`);
    const r = await hubFile(`${hub}/${repo}/resolve/main/${file}`, file, counted, say);
    files[file] = r.bytes;
    cached += r.cached ? 1 : 0;
    cacheError = cacheError || r.cacheError;
  }
  const seconds = (performance.now() - started) / 1e3;
  const all = HUB_FILES.reduce((n, f) => n + files[f].length, 0);
  progress(all, all, started, cached === HUB_FILES.length ? "from the cache" : "downloaded");
  return { files, load: { repo, seconds, cached: cached === HUB_FILES.length, bytes: all, cacheError } };
}
