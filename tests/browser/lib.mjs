// Helpers for the page tests that drive several browsers, tabs and profiles (reliability.mjs,
// soak.mjs): the browser's flags, the command line, a small corpus, the page's controls, and
// the memory figures (wgptDebug.memory() with the worker's JS heap read over CDP).

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

// The page's controls and the engine's events, for a playwright page.
export function pageKit(page) {
  const byId = (id) => page.locator(`[data-testid="${id}"]`);
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
    // a setting's input, as a person types it
    set: async (id, value) => {
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
