// Helpers for the page tests: the browser's flags, the command line, a small corpus, the page's
// controls, the memory figures (wgptDebug.memory() with the worker's JS heap read over CDP), the
// end-to-end scripts' session, look inside's check, a restored run's Resume, and the views' tabs
// (a hook in a closed tab is shown before a test acts on it: showTab).

import { execSync } from "node:child_process";
import fs from "node:fs";

export const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
export const FLAGS = [
  "--headless=new",
  "--no-sandbox",
  "--enable-unsafe-webgpu",
  "--enable-unsafe-swiftshader",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

// `--name value` pairs from the command line.
export const cliArgs = () =>
  Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []));

export function fail(message) {
  process.exitCode = 1;
  throw new Error(`FAIL: ${message}`);
}

export const log = (...a) => console.log(`${new Date().toISOString().slice(11, 19)}`, ...a);

// Short lines from a tiny grammar (as e2e.mjs's): a small model learns them fast.
export function corpus(lines = 600) {
  const who = ["the cat", "a dog", "my friend", "the old man", "a small bird", "the baker"];
  const did = ["sat on", "looked at", "ran to", "sang for", "waited by", "walked past"];
  const what = ["the mat", "the door", "a tree", "the river", "the moon", "a red house"];
  let s = 1;
  const pick = (xs) => xs[(s = (s * 1103515245 + 12345) % 2147483648) % xs.length];
  return Array.from({ length: lines }, () => `${pick(who)} ${pick(did)} ${pick(what)}.`).join("\n") + "\n";
}

// The views' tab that holds the hook `id` (a data-testid, or else an element id): chosen with a
// click where its panel is hidden (an element shown with several tabs, data-tabs, opens the
// first). Nothing where the hook is in no tab or its tab is open.
export async function showTab(page, id) {
  const tab = await page.evaluate((id) => {
    const el = document.querySelector(`[data-testid="${id}"]`) ?? document.getElementById(id);
    const panel = el?.closest('[role="tabpanel"], [data-tabs]');
    if (!panel || !panel.hidden) return null;
    return panel.getAttribute("role") === "tabpanel" ? panel.getAttribute("aria-labelledby") : `tab-${panel.dataset.tabs.split(" ")[0]}`;
  }, id);
  if (tab) await page.click(`#${tab}`);
}

// What a test does to a hook that needs it shown: kit.byId's locators open its tab first.
const SHOWN_FOR = new Set(["click", "dblclick", "fill", "pressSequentially", "press", "type", "selectOption", "check", "uncheck", "setChecked", "hover", "focus", "boundingBox", "screenshot"]);

// The page's controls and the engine's events, for a playwright page.
export function pageKit(page) {
  // a hook's locator; acting on it (SHOWN_FOR) first opens the tab that holds it
  const byId = (id) =>
    new Proxy(page.locator(`[data-testid="${id}"]`), {
      get(loc, prop) {
        const v = loc[prop];
        if (typeof v !== "function") return v;
        if (!SHOWN_FOR.has(prop)) return v.bind(loc);
        return async (...args) => {
          await showTab(page, id);
          return v.apply(loc, args);
        };
      },
    });
  const kit = {
    byId,
    text: async (id) => (await byId(id).textContent()) ?? "",
    step: async () => Number(await kit.text("step")),
    // the first engine event of `type` (matching `props`) since the page loaded or the list was cleared
    event: (type, props = {}, timeout = 120_000) =>
      page
        .waitForFunction(
          ([type, props]) => (window.wgptEvents || []).find((e) => e.type === type && Object.entries(props).every(([k, v]) => e[k] === v)),
          [type, props],
          { timeout },
        )
        .then((h) => h.jsonValue()),
    events: (type) => page.evaluate((type) => (window.wgptEvents || []).filter((e) => e.type === type), type),
    clearEvents: () => page.evaluate(() => (window.wgptEvents = [])),
    ready: () => page.waitForFunction(() => document.querySelector('[data-testid="status"]').textContent.startsWith("Ready on"), null, { timeout: 180_000 }),
    status: (prefix, timeout = 120_000) =>
      page.waitForFunction((p) => document.querySelector('[data-testid="status"]').textContent.startsWith(p), prefix, { timeout }),
    stepAtLeast: (n, timeout = 300_000) => page.waitForFunction((n) => Number(document.querySelector('[data-testid="step"]').textContent) >= n, n, { timeout }),
    // the generate view's greedy text for `prompt`: `n` tokens at temperature 0
    greedy: async (prompt, n) => {
      await byId("prompt").fill(prompt);
      await byId("temperature").fill("0");
      await byId("max-tokens").fill(String(n));
      await page.evaluate(() => (document.getElementById("gen-speed").textContent = ""));
      await byId("generate").click();
      await page.waitForFunction(() => document.getElementById("gen-speed").textContent !== "" && !document.querySelector('[data-testid="generate"]').disabled, null, { timeout: 120_000 });
      return kit.text("output");
    },
    // a setting's input, as a person types it
    set: async (id, value) => {
      await showTab(page, id);
      await page.fill(`#${id}`, String(value));
      await page.dispatchEvent(`#${id}`, "change");
    },
    // a corpus pasted into the page (its name is "pasted text"), and the plan for it
    // the model's dimensions become editable
    custom: () => page.selectOption("#preset", "custom"),
    paste: async (text) => {
      await page.evaluate(() => (document.getElementById("paste").closest("details").open = true));
      await page.fill("#paste", text);
      await page.click("#paste-use");
      await page.waitForFunction(() => document.getElementById("c-name").textContent === "pasted text", null, { timeout: 60_000 });
      await page.waitForFunction(() => document.getElementById("m-params").textContent !== "—", null, { timeout: 60_000 });
    },
    // the saved runs listed: [{id, step, openElsewhere, text}]
    listed: () =>
      page.$$eval('[data-testid="saved-runs"] li[data-run]', (lis) =>
        lis.map((li) => ({ id: li.dataset.run, step: Number(li.dataset.step), openElsewhere: li.dataset.openElsewhere === "true", text: li.textContent })),
      ),
    listedAtLeast: (n, timeout = 60_000) => page.waitForFunction((n) => document.querySelectorAll('[data-testid="saved-runs"] li[data-run]').length >= n, n, { timeout }),
  };
  return kit;
}

// A tiny model that trains in a few hundred ms a step on SwiftShader: the page's "tiny" preset
// with a short context, checkpoints every `every` steps, one evaluation batch.
export async function smallRun(kit, { steps, every, batch = 4, block = 16 }) {
  await kit.custom();
  await kit.set("block_size", block);
  await kit.set("batch_size", batch);
  await kit.set("max_iters", steps);
  await kit.set("eval_interval", every);
  await kit.set("eval_iters", 1);
}

// The page's memory: the engine's (wasm memory, our GPU buffers and their bytes), the page's JS
// heap, and the worker's JS heap after a garbage collection (CDP through the page's session;
// playwright opens no session on a worker itself).
export async function memoryProbe(context, page) {
  const cdp = await context.newCDPSession(page);
  const attached = new Promise((resolve) => cdp.on("Target.attachedToTarget", (e) => e.targetInfo.type === "worker" && resolve(e)));
  await cdp.send("Target.setAutoAttach", { autoAttach: true, waitForDebuggerOnStart: false, flatten: false });
  const { sessionId } = await attached;
  let n = 0;
  const waiting = new Map();
  cdp.on("Target.receivedMessageFromTarget", (e) => {
    const m = JSON.parse(e.message);
    waiting.get(m.id)?.(m.result);
    waiting.delete(m.id);
  });
  const wsend = (method, params = {}) =>
    new Promise((resolve) => {
      const id = ++n;
      waiting.set(id, resolve);
      cdp.send("Target.sendMessageToTarget", { sessionId, message: JSON.stringify({ id, method, params }) });
    });
  return async () => {
    await wsend("HeapProfiler.collectGarbage");
    await cdp.send("HeapProfiler.collectGarbage");
    const worker = await wsend("Runtime.getHeapUsage");
    const page_heap = (await cdp.send("Runtime.getHeapUsage")).usedSize;
    const m = await page.evaluate(() => window.wgptDebug.memory());
    return { wasm: m.wasm_bytes, buffers: m.gpu_buffers, gpu: m.gpu_bytes, page_heap, worker_heap: worker.usedSize };
  };
}

// Chromium's browser process launched by this node process (playwright starts it as a direct
// child: /usr/bin/chromium execs /usr/lib/chromium/chromium).
export function browserPid() {
  const kids = execSync(`ps -o pid= --ppid ${process.pid} || true`).toString().split(/\s+/).filter(Boolean).map(Number);
  const pid = kids.find((p) => {
    try {
      return fs.readFileSync(`/proc/${p}/cmdline`, "utf8").startsWith("/usr/lib/chromium/chromium");
    } catch {
      return false;
    }
  });
  if (!pid) throw new Error("no Chromium browser process among this process's children");
  return pid;
}

// ---------------------------------------------------------------------------------------------
// The end-to-end scripts' session (e2e.mjs, e2e-views.mjs, e2e-playground.mjs,
// e2e-experiments.mjs): the page built in `root` served on localhost (with the hub mock of
// `hubDir`, and of the `datasets` files), one Chromium page with its console kept, the native
// CLI (`wgptBin`) and a scratch folder.
export async function openE2e({ root, hubDir, wgptBin, cutFirst = false, datasets = {}, viewport = { width: 1280, height: 1000 } }) {
  const { spawnSync } = await import("node:child_process");
  const os = await import("node:os");
  const path = await import("node:path");
  const { chromium } = await import("playwright-core");
  const { serve } = await import("./server.mjs");
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "wgpt-e2e-"));
  const haveCli = fs.existsSync(wgptBin);
  if (!haveCli && process.env.CI) throw new Error(`${wgptBin} is missing: the run-moving tests need the CLI (cargo build)`);
  const { server, hubLog } = await serve(root, hubDir, { cutFirst, datasets });
  const url = `http://127.0.0.1:${server.address().port}/`;
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS.slice(0, 4) });
  const page = await browser.newPage({ viewport });
  const consoleLines = [];
  page.on("console", (m) => consoleLines.push(`[${m.type()}] ${m.text()}`));
  page.on("pageerror", (e) => consoleLines.push(`[pageerror] ${e.message}`));
  page.on("worker", (w) => w.on("console", (m) => consoleLines.push(`[worker ${m.type()}] ${m.text()}`)));
  page.on("requestfailed", (r) => consoleLines.push(`[requestfailed] ${r.url()}`));
  page.on("response", (r) => r.status() >= 400 && consoleLines.push(`[http ${r.status()}] ${r.url()}`));
  const kit = pageKit(page);
  return {
    ...kit,
    page,
    context: page.context(),
    browser,
    server,
    hubLog,
    url,
    scratch,
    haveCli,
    // runs the native CLI: its exit code and what it printed
    wgpt: (...cliArgs) => {
      const r = spawnSync(wgptBin, cliArgs, { encoding: "utf8", env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? "/tmp" } });
      return { code: r.status, out: `${r.stdout}${r.stderr}` };
    },
    // the first engine event of `type` (matching `props`) seen since the page loaded
    waitEvent: kit.event,
    // the page opened, its WebGPU check passed and the engine ready
    open: async () => {
      await page.goto(url);
      await page.waitForSelector('#gpu:not([data-state="checking"])', { timeout: 60_000 });
      const gpuState = await page.getAttribute("#gpu", "data-state");
      if (gpuState !== "ok") fail(`WebGPU check says ${gpuState}: ${await page.textContent("#gpu")}`);
      await kit.ready();
    },
    // what a failure leaves to read: the console, the last events, the status and a screenshot
    failed: async (e, shot) => {
      process.exitCode = 1;
      console.error(e.message);
      console.error("browser console:\n" + consoleLines.slice(-40).join("\n"));
      try {
        console.error(`last engine events: ${await page.evaluate(() => JSON.stringify((window.wgptEvents || []).slice(-15)))}`);
        console.error(`status: ${await kit.text("status")}`);
      } catch {}
      try {
        await page.screenshot({ path: shot.replace(/\.png$/, "-failed.png"), fullPage: true });
      } catch {}
    },
    close: async () => {
      await browser.close();
      server.close();
      fs.rmSync(scratch, { recursive: true, force: true });
    },
  };
}

// The share of a canvas' pixels that are not white.
export const inked = (page, id) =>
  page.evaluate((id) => {
    const c = document.querySelector(`[data-testid="${id}"]`);
    const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) if (d[i] < 250 || d[i + 1] < 250 || d[i + 2] < 250) n++;
    return n / (c.width * c.height);
  }, id);

// A restored or imported run waits at its step (nothing trains unasked): the step holds for 2 s
// and the state is paused (or done); then Resume goes on (for a done run: Train on, to `to`
// steps, typed into Steps first).
export async function resumeHeld(page, { to } = {}) {
  const kit = pageKit(page);
  await page.waitForFunction(() => /^(Resume|Train on)/.test(document.querySelector('[data-testid="train-pause"]').textContent), null, { timeout: 120_000 });
  const held = await kit.step();
  await page.waitForTimeout(2000);
  const label = await kit.text("train-pause");
  // the progress reported since the run came back (the events before are the run before's)
  const since = await page.evaluate(() => {
    const events = window.wgptEvents || [];
    const back = events.findLastIndex((e) => e.type === "restored");
    return events.slice(back + 1).filter((e) => e.type === "progress").map((e) => e.step);
  });
  if ((await kit.step()) !== held || since.length) fail(`a restored run trained unasked: step ${held} -> ${await kit.step()}, progress at ${since}`);
  if (label.startsWith("Train on")) {
    if (!to) fail(`the restored run is done at step ${held}; the test gave no steps to train on to`);
    await kit.set("max_iters", to);
    await page.waitForFunction((n) => document.querySelector('[data-testid="train-pause"]').textContent === `Train on to ${n} steps`, to, { timeout: 30_000 });
  }
  await kit.byId("train-pause").click();
  return held;
}

// Look inside as drawn for the `inspect` event `ev`: the prompt's tokens, the next-token bars, the
// logit lens (a row per layer, a cell per token) and every head's attention, each with the
// engine's numbers, and the caption naming the step and the prompt.
export async function checkLook(page, ev, what) {
  const look = await page.evaluate(() => {
    const q = (s) => document.querySelector(`[data-testid="${s}"]`);
    const rows = [...q("logit-lens").querySelectorAll("tbody tr")];
    return {
      count: Number(q("prompt-tokens").dataset.count),
      boxes: q("prompt-tokens").querySelectorAll(".tok").length,
      bars: [...q("next-token-probs").querySelectorAll("li")].map((li) => [li.dataset.text, Number(li.dataset.before), Number(li.dataset.after)]),
      lens: rows.map((tr) => ({ layer: Number(tr.dataset.layer), top1: tr.dataset.top1, cells: tr.querySelectorAll("td.cell").length })),
      heads: q("attention-heads").querySelectorAll("canvas").length,
      caption: q("look-caption").textContent,
    };
  });
  const t = ev.ids.length;
  if (!(t > 0) || look.count !== t || look.boxes !== t) fail(`${what}: prompt-tokens shows ${look.count} (${look.boxes} boxes), the engine looked at ${t} tokens`);
  if (look.bars.length !== Math.min(10, ev.sampling.bars.length) || !look.bars.every(([, b, a]) => b > 0 && b <= 1 && a >= 0 && a <= 1))
    fail(`${what}: next-token bars ${JSON.stringify(look.bars)}`);
  if (look.bars[0][0] !== ev.lens.at(-1).top[0].text) fail(`${what}: the first bar ${look.bars[0][0]} is not the lens' last layer's top-1 ${ev.lens.at(-1).top[0].text}`);
  if (look.lens.length !== ev.n_layer + 1 || !look.lens.every((r) => r.cells === t && r.top1 !== undefined))
    fail(`${what}: logit lens rows ${JSON.stringify(look.lens)}, expected ${ev.n_layer + 1} layers x ${t} tokens`);
  if (look.heads !== ev.n_head) fail(`${what}: ${look.heads} small multiples for ${ev.n_head} heads`);
  const ink = await inked(page, "attention-canvas");
  if (!(ink > 0.01)) fail(`${what}: the attention canvas is (nearly) blank: ${ink}`);
  if (!look.caption.includes(`step ${ev.step.toLocaleString("en-US")}`)) fail(`${what}: the caption says ${JSON.stringify(look.caption)}`);
  console.log(`${what}: ${look.caption} ${t} tokens; next token ${JSON.stringify(look.bars.slice(0, 3))}; lens top-1 per layer ${JSON.stringify(look.lens.map((r) => r.top1))}; ${look.heads} heads, attention ${(ink * 100).toFixed(1)}% inked`);
}

// A PNG (a Buffer) posterised in the page to 16 levels a channel, so that it compresses well: the
// pictures docs/ keeps.
export async function posterised(page, png) {
  const out = await page.evaluate(async (b64) => {
    const image = await createImageBitmap(new Blob([Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))], { type: "image/png" }));
    const canvas = new OffscreenCanvas(image.width, image.height);
    const ctx = canvas.getContext("2d");
    ctx.drawImage(image, 0, 0);
    const img = ctx.getImageData(0, 0, canvas.width, canvas.height);
    for (let k = 0; k < img.data.length; k++) if (k % 4 !== 3) img.data[k] = Math.min(255, Math.round(img.data[k] / 17) * 17);
    ctx.putImageData(img, 0, 0);
    const bytes = new Uint8Array(await (await canvas.convertToBlob({ type: "image/png" })).arrayBuffer());
    let s = "";
    for (const b of bytes) s += String.fromCharCode(b);
    return btoa(s);
  }, png.toString("base64"));
  return Buffer.from(out, "base64");
}
