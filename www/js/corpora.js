// TinyStories, the built-in corpus beside Tiny Shakespeare: the validation stories of
// roneneldan/TinyStories from the Hugging Face hub (the URL in `tinystories-url`, editable as the
// model hub's is, so a mirror works), downloaded once with a progress bar (`corpus-progress`) and
// kept in the browser's Cache Storage ("wgpt-corpora", keyed by the URL): the next choice needs
// no network. Offline without a kept copy it says so. A file of ~20 MB fits Cache Storage (the
// hub's 548 MB GPT-2 does not, which is why hub.js keeps those in OPFS).

import { $, bytes } from "./dom.js";

const CACHE = "wgpt-corpora";
const NAME = "TinyStories"; // share.js maps this name to the link's {builtin: "tinystories"}

function progress(done, total, started, what) {
  const secs = (performance.now() - started) / 1e3;
  const speed = secs > 0 ? done / secs : 0;
  const bar = $("corpus-bar");
  bar.max = total || 1;
  bar.value = total ? done : 0;
  const pct = total ? ` (${((100 * done) / total).toFixed(0)}%)` : "";
  $("corpus-dl-text").textContent = `${what}: ${bytes(done)}${total ? ` of ${bytes(total)}` : ""}${pct}${speed ? `, ${bytes(Math.round(speed))}/s` : ""}`;
}

// The kept copy of `url`, or null (none, or no Cache Storage here).
async function kept(url) {
  try {
    const hit = await (await caches.open(CACHE)).match(url);
    return hit ? new Uint8Array(await hit.arrayBuffer()) : null;
  } catch {
    return null;
  }
}

// Downloads `url` with progress; the error says what went wrong and what to do.
async function download(url, started) {
  let res;
  try {
    res = await fetch(url);
  } catch (e) {
    const where = new URL(url).host;
    throw new Error(
      navigator.onLine === false
        ? `You are offline, and TinyStories is not kept in this browser yet: connect to the network and choose it again (after the first download it needs none).`
        : `Could not reach ${where} (${e.message}): offline, or the URL is wrong. Check the connection and the TinyStories URL, then choose it again.`,
    );
  }
  if (!res.ok) throw new Error(`Downloading TinyStories from ${url} failed: the server answered ${res.status} ${res.statusText}. Check the TinyStories URL.`);
  const total = Number(res.headers.get("content-length")) || 0;
  const parts = [];
  let got = 0;
  const reader = res.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    parts.push(value);
    got += value.length;
    progress(got, total, started, "downloading TinyStories");
  }
  if (total && got < total) throw new Error(`The download of TinyStories broke off after ${bytes(got)} of ${bytes(total)}: choose it again.`);
  const out = new Uint8Array(got);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

// Keeps `data` for the next time; a failure only costs a download then.
async function keep(url, data) {
  try {
    await (await caches.open(CACHE)).put(url, new Response(data, { headers: { "content-type": "text/plain; charset=utf-8" } }));
    return null;
  } catch (e) {
    return `keeping it in this browser failed (${e.name}: ${e.message}), so the next choice downloads it again`;
  }
}

// TinyStories to the engine as a corpus: from the kept copy, or downloaded and kept. Resolves
// true once sent, false where it could not be had (the error says why).
export async function loadTinyStories({ send, say, showError }) {
  const url = $("tinystories-url").value.trim();
  if (!/^https?:\/\/[^\s]+$/.test(url)) {
    showError(`The TinyStories URL must be an http(s) URL; got ${JSON.stringify(url.slice(0, 80))}.`, "The current corpus is unchanged.");
    return false;
  }
  const started = performance.now();
  $("corpus-progress").hidden = false;
  let data = await kept(url);
  let note = null;
  if (data) progress(data.length, data.length, started, "TinyStories from this browser's storage");
  else {
    say("Downloading TinyStories…");
    try {
      data = await download(url, started);
    } catch (e) {
      $("corpus-dl-text").textContent = "not downloaded";
      showError(e.message, "TinyStories did not load; the current corpus is unchanged.");
      return false;
    }
    note = await keep(url, data);
    progress(data.length, data.length, started, "TinyStories downloaded and kept in this browser");
  }
  if (note) showError(`TinyStories loaded, but ${note}.`);
  say(`Reading TinyStories (${bytes(data.length)})…`);
  send({ type: "corpus", name: NAME }, data);
  return true;
}
