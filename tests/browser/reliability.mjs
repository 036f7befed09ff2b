// The page under real use, in headless Chromium on SwiftShader (dist/ from `trunk build`):
//
// tabs        two tabs of one profile train and save at once; each lists the other's run as
//             open in another tab (no resume, no delete there); both load the hub model
//             (../shared/data/hf-tiny-gpt2 behind the mock hub) into the shared cache at once;
//             a third tab then lists both runs, whole, loads the model from the cache without
//             the network, and resumes each run.
// kill        the browser SIGKILLed while a run saves a checkpoint every 2 steps (the commit's
//             steps widened by wgptDebug.commitPause), at --kills moments, half of them inside a
//             save; after each relaunch of the same profile the page lists the run once, at a
//             complete checkpoint no older than the last one saved before the kill, and resumes it.
// background  the tab hidden (another target in front) and frozen (Page.setWebLifecycleState),
//             through raw CDP (playwright pins its pages visible): training goes on while
//             hidden, waits while frozen, goes on after; the page says so; a tab closed and
//             opened again offers to resume the run.
// oom         an injected GPU memory budget (wgptDebug.capMemory) 8 MiB over what a trained run
//             holds: a bigger run fails out of memory with what fits, its buffers freed, and
//             the run before still generates.
// room        a model whose checkpoints are big against the storage quota: the page says the
//             checkpoint's size before training and whether the storage has room (probed);
//             persist() asked on Start shows in the runs' storage line. With room for model-only
//             checkpoints only, the plan offers to save without the optimizer state; taken, the
//             run saves so, a reload lists it as model only, and it resumes saying AdamW's
//             moments start fresh, and trains and saves on.
//
//   node --experimental-websocket tests/browser/reliability.mjs [--dist dist] [--only tabs,kill,background,oom,room]
//                                  [--kills 4] [--seed 17] [--hub-dir ../shared/data/hf-tiny-gpt2]

import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";
import { serve } from "./server.mjs";
import { CHROMIUM, FLAGS, browserPid, cliArgs, corpus, fail, log, pageKit, resumeHeld, smallRun } from "./lib.mjs";

const args = cliArgs();
const root = path.resolve(args.dist ?? "dist");
const only = new Set((args.only ?? "tabs,kill,background,oom,room").split(","));
const kills = Number(args.kills ?? 4);
let seed = Number(args.seed ?? 17);
const random = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
const TEXT = corpus();

const hubDir = path.resolve(args["hub-dir"] ?? "../shared/data/hf-tiny-gpt2");
const haveHub = fs.existsSync(path.join(hubDir, "model.safetensors"));
if (!haveHub && process.env.CI) throw new Error(`${hubDir} is missing: the tabs test loads it through the hub cache`);
const { server, hubLog } = await serve(root, hubDir);
const url = `http://127.0.0.1:${server.address().port}/`;
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "wgpt-reliability-"));

// A page of `context` on the playground, ready, with the corpus and a small run's settings.
async function openPage(context, run = { steps: 400, every: 2 }) {
  const page = context.pages().find((p) => p.url() === "about:blank") ?? (await context.newPage());
  page.on("pageerror", (e) => log(`[pageerror] ${e.message}`));
  const kit = pageKit(page);
  await page.goto(url);
  await kit.ready();
  await kit.paste(TEXT);
  await smallRun(kit, run);
  return { page, kit };
}

// ---------------------------------------------------------------------------------------------
async function tabs() {
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS });
  try {
    const context = await browser.newContext();
    const a = await openPage(context);
    const b = await openPage(context);
    for (const t of [a, b]) await t.kit.byId("train-start").click();
    // both save (every 2 steps) at once
    const [sa, sb] = [await a.kit.event("saved", { step: 4 }, 300_000), await b.kit.event("saved", { step: 4 }, 300_000)];
    if (sa.id === sb.id) fail(`the two tabs train one run ${sa.id}`);
    if (sa.copied || sb.copied) fail("a checkpoint was copied into the worker's memory instead of streamed from the engine's");
    log(`tabs: A trains ${sa.id}, B trains ${sb.id}; both saved step 4`);
    // each lists the other's run as open elsewhere: marked, and neither resumable nor deletable there
    for (const [t, own, other] of [[a, sa.id, sb.id], [b, sb.id, sa.id]]) {
      await t.page.waitForFunction((id) => document.querySelector(`li[data-run="${id}"]`)?.dataset.openElsewhere === "true", other, { timeout: 60_000 });
      const row = t.page.locator(`li[data-run="${other}"]`);
      const says = await row.textContent();
      if (!says.includes("this run is open in another tab")) fail(`the other tab's run is listed as ${JSON.stringify(says)}`);
      if (!(await row.locator('[data-testid="resume-run"]').isDisabled()) || !(await row.locator('[data-testid="delete-run"]').isDisabled()))
        fail("the other tab's run can be resumed or deleted here");
      if ((await t.page.getAttribute(`li[data-run="${own}"]`, "data-open-elsewhere")) !== "false") fail("a tab lists its own run as open elsewhere");
    }
    log("tabs: each lists the other's run as open in another tab, its buttons disabled");
    // both go on a few steps, then stop (saving): the stopped runs' locks are free
    const stopped = {};
    for (const [t, id] of [[a, sa.id], [b, sb.id]]) {
      await t.kit.stepAtLeast(7);
      await t.kit.byId("train-stop").click();
    }
    for (const [t, id] of [[a, sa.id], [b, sb.id]]) {
      await t.kit.status("Stopped");
      stopped[id] = await t.kit.step();
      await t.page.waitForFunction((s) => (window.wgptEvents || []).some((e) => e.type === "saved" && e.step === s), stopped[id], { timeout: 60_000 });
    }
    log(`tabs: stopped at ${JSON.stringify(stopped)}`);
    // both load the hub model at once: the shared cache ends up whole (a third tab loads from it)
    const hub = (t) => t.kit.byId("hub-url").fill(`${url}hubmock`).then(() => t.kit.byId("load-gpt2").click());
    if (haveHub) {
      await Promise.all([hub(a), hub(b)]);
      await Promise.all([a, b].map((t) => t.kit.status("Imported", 300_000)));
      log(`tabs: both loaded the hub model at once (hub requests ${JSON.stringify(hubLog.requests)})`);
    } else log(`SKIP the shared hub cache: ${hubDir} is missing (outside CI)`);
    // a third tab lists both, at their steps, and resumes each
    const c = await openPage(context);
    await c.kit.listedAtLeast(2);
    const listed = await c.kit.listed();
    for (const [id, step] of Object.entries(stopped)) {
      const r = listed.find((x) => x.id === id);
      if (!r || r.step !== step || r.openElsewhere) fail(`the third tab lists ${id} as ${JSON.stringify(r)}; it stopped at ${step}`);
    }
    if (haveHub) {
      const before = JSON.stringify(hubLog.requests);
      await hub(c);
      await c.page.waitForFunction(() => document.querySelector('[data-testid="status"]').textContent.includes("from this browser's cache"), null, { timeout: 300_000 });
      if (JSON.stringify(hubLog.requests) !== before) fail(`the third tab's hub load went to the hub: ${before} -> ${JSON.stringify(hubLog.requests)}`);
      log(`tabs: the third tab loaded the hub model from the shared cache: ${await c.kit.text("status")}`);
    }
    for (const [id, step] of Object.entries(stopped)) {
      await c.kit.clearEvents();
      await c.page.click(`[data-testid="resume-run"][data-run="${id}"]`);
      const restored = await c.kit.event("restored", { id });
      if (restored.step !== step) fail(`${id} resumed at step ${restored.step}, saved at ${step}`);
      await resumeHeld(c.page);
      await c.kit.stepAtLeast(step + 2);
      await c.kit.byId("train-stop").click();
      await c.kit.status("Stopped");
      await c.kit.event("saved", { id });
      log(`tabs: the third tab resumed ${id} at step ${step}, trained to ${await c.kit.step()}, loss ${await c.kit.text("train-loss")}`);
    }
  } finally {
    await browser.close();
  }
}

// ---------------------------------------------------------------------------------------------
async function kill() {
  const profile = path.join(scratch, "profile");
  const launch = () => chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, args: FLAGS });
  let context = await launch();
  try {
    let { page, kit } = await openPage(context);
    // persist(): granted here as a person's browser would for a site they use (Chromium decides)
    await (await context.newCDPSession(page)).send("Browser.setPermission", {
      permission: { name: "persistent-storage" },
      setting: "granted",
      origin: new URL(url).origin,
    });
    await page.evaluate(() => window.wgptDebug.commitPause(120));
    await kit.byId("train-start").click();
    const first = await kit.event("saved", {}, 300_000);
    const id = first.id;
    await page.waitForFunction(() => document.getElementById("storage-use").textContent.includes("It is persistent"), null, { timeout: 60_000 });
    log(`kill: training ${id}; storage: ${await page.textContent("#storage-use")}`);
    for (let k = 1; k <= kills; k++) {
      const inSave = k % 2 === 0;
      if (inSave) {
        // right after a checkpoint event: its commit is under way
        const last = Math.max(...(await kit.events("checkpoint")).map((e) => e.step));
        await page.waitForFunction((s) => (window.wgptEvents || []).some((e) => e.type === "checkpoint" && e.step > s), last, { timeout: 120_000 });
        await page.waitForTimeout(Math.floor(random() * 2000));
      } else await page.waitForTimeout(300 + Math.floor(random() * 2500));
      const seen = await page.evaluate(() => {
        const ev = window.wgptEvents || [];
        const max = (type) => Math.max(-1, ...ev.filter((e) => e.type === type).map((e) => e.step));
        return { saved: max("saved"), checkpoint: max("checkpoint"), step: Number(document.querySelector('[data-testid="step"]').textContent) };
      });
      const closed = new Promise((r) => context.once("close", r));
      process.kill(browserPid(), "SIGKILL");
      await closed;
      const during = seen.checkpoint > seen.saved ? `inside the save of step ${seen.checkpoint}` : "between saves";
      context = await launch();
      ({ page, kit } = await openPage(context));
      await kit.listedAtLeast(1);
      const listed = await kit.listed();
      log(`kill ${k} at step ${seen.step} (${during}; last saved ${seen.saved}): relaunched, listed ${listed.map((r) => `${r.id} step ${r.step}`).join(", ")}`);
      if (listed.length !== 1 || listed[0].id !== id) fail(`after kill ${k} the page lists ${JSON.stringify(listed)}; expected the one run ${id}`);
      const at = listed[0].step;
      if (seen.checkpoint > seen.saved) log(`  the save of step ${seen.checkpoint} ${at === seen.checkpoint ? "had passed its commit point: finished on reopening" : "had not reached its commit point: dropped"}`);
      if (!(at >= seen.saved && at <= seen.step + 2 && at % 2 === 0)) fail(`after kill ${k} the run is at step ${at}: last saved ${seen.saved}, trained to ${seen.step}`);
      if (!(await kit.byId("resume").isVisible())) fail(`after kill ${k} the page does not offer to resume`);
      await page.evaluate(() => window.wgptDebug.commitPause(120));
      await kit.byId("resume").click();
      const restored = await kit.event("restored", { id });
      if (restored.step !== at) fail(`resumed at ${restored.step}, listed at ${at}`);
      await resumeHeld(page);
      await kit.event("saved", { step: at + 2 }, 300_000);
    }
    await kit.byId("train-stop").click();
    await kit.status("Stopped");
    const loss = Number(await kit.text("train-loss"));
    log(`kill: after ${kills} kills the run trained on to step ${await kit.step()}, loss ${loss}`);
    if (!Number.isFinite(loss)) fail(`the loss is ${loss}`);
  } finally {
    await context.close().catch(() => {});
  }
}

// ---------------------------------------------------------------------------------------------
// A browser driven by raw CDP only (playwright's focus emulation would keep the page visible).
async function rawBrowser() {
  const userDataDir = path.join(scratch, "raw");
  const proc = spawn(CHROMIUM, [...FLAGS, `--user-data-dir=${userDataDir}`, "--remote-debugging-port=0", "about:blank"], { stdio: ["ignore", "ignore", "pipe"] });
  let err = "";
  const ws = new WebSocket(
    await new Promise((resolve, reject) => {
      proc.stderr.on("data", (d) => {
        err += d;
        const m = err.match(/DevTools listening on (ws:\S+)/);
        if (m) resolve(m[1]);
      });
      proc.on("exit", () => reject(new Error(`chromium exited: ${err}`)));
    }),
  );
  await new Promise((r) => (ws.onopen = r));
  let n = 0;
  const waiting = new Map();
  ws.onmessage = (m) => {
    const msg = JSON.parse(m.data);
    const w = waiting.get(msg.id);
    if (!w) return;
    waiting.delete(msg.id);
    msg.error ? w.reject(new Error(JSON.stringify(msg.error))) : w.resolve(msg.result);
  };
  const send = (method, params = {}, sessionId) =>
    new Promise((resolve, reject) => {
      const id = ++n;
      waiting.set(id, { resolve, reject });
      ws.send(JSON.stringify({ id, method, params, sessionId }));
    });
  const close = async () => {
    await send("Browser.close").catch(() => {});
    if (proc.exitCode === null) await new Promise((r) => proc.on("exit", r));
  };
  // a page target: evaluate an expression in it, wait for one to hold
  const open = async (target) => {
    const { targetId } = await send("Target.createTarget", { url: target });
    const { sessionId } = await send("Target.attachToTarget", { targetId, flatten: true });
    const evaluate = async (expression) => {
      const r = await send("Runtime.evaluate", { expression, awaitPromise: true, returnByValue: true }, sessionId);
      if (r.exceptionDetails) throw new Error(`${expression}: ${JSON.stringify(r.exceptionDetails)}`);
      return r.result.value;
    };
    const until = async (expression, timeout = 120_000) => {
      const end = Date.now() + timeout;
      for (;;) {
        if (await evaluate(expression).catch(() => false)) return;
        if (Date.now() > end) fail(`timed out waiting for ${expression}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    };
    return { targetId, sessionId, evaluate, until };
  };
  return { send, open, close };
}

async function background() {
  if (typeof WebSocket === "undefined") fail("no WebSocket in this node: run it with --experimental-websocket");
  const raw = await rawBrowser();
  try {
    let p = await raw.open(url);
    await p.until(`document.querySelector('[data-testid="status"]').textContent.startsWith("Ready on")`);
    const setValue = (id, v) => `(() => { const e = document.getElementById(${JSON.stringify(id)}); e.value = ${JSON.stringify(String(v))}; e.dispatchEvent(new Event("input")); e.dispatchEvent(new Event("change")); })()`;
    await p.evaluate(`${setValue("paste", TEXT)}, document.getElementById("paste-use").click()`);
    await p.until(`document.getElementById("c-name").textContent === "pasted text" && document.getElementById("m-params").textContent !== "—"`);
    for (const [id, v] of Object.entries({ preset: "custom", block_size: 16, batch_size: 4, max_iters: 1000, eval_interval: 10, eval_iters: 1 })) await p.evaluate(setValue(id, v));
    await p.evaluate(`document.querySelector('[data-testid="train-start"]').click()`);
    // the step as the worker last reported it (the page draws less often while hidden)
    const step = () => p.evaluate(`Math.max(0, ...(window.wgptEvents || []).filter((e) => e.type === "progress").map((e) => e.step))`);
    await p.until(`Math.max(0, ...(window.wgptEvents || []).filter((e) => e.type === "progress").map((e) => e.step)) >= 3`, 300_000);
    const note = () => p.evaluate(`document.querySelector('[data-testid="background-note"]').hidden ? "" : document.querySelector('[data-testid="background-note"]').textContent`);

    // hidden: another tab in front
    const other = await raw.send("Target.createTarget", { url: "about:blank" });
    await p.until(`document.visibilityState === "hidden"`, 10_000);
    const h0 = await step();
    await new Promise((r) => setTimeout(r, 6000));
    const h1 = await step();
    const hiddenNote = await note();
    log(`background: hidden, steps ${h0} -> ${h1} in 6 s; the page says ${JSON.stringify(hiddenNote)}`);
    if (!(h1 >= h0 + 2)) fail(`training did not go on while the tab was hidden: step ${h0} -> ${h1}`);
    if (!hiddenNote.includes("training goes on")) fail(`while hidden the page says ${JSON.stringify(hiddenNote)}`);

    // frozen: the worker waits; resumed: it goes on, and the page says what happened
    await raw.send("Page.setWebLifecycleState", { state: "frozen" }, p.sessionId);
    await new Promise((r) => setTimeout(r, 1000));
    const f0 = await step();
    await new Promise((r) => setTimeout(r, 4000));
    const f1 = await step();
    await raw.send("Page.setWebLifecycleState", { state: "active" }, p.sessionId);
    await raw.send("Target.activateTarget", { targetId: p.targetId });
    await p.until(`document.visibilityState === "visible"`, 10_000);
    const r0 = await step();
    await new Promise((r) => setTimeout(r, 4000));
    const r1 = await step();
    const resumedNote = await note();
    log(`background: frozen, steps ${f0} -> ${f1} in 4 s; resumed, ${r0} -> ${r1} in 4 s; the page says ${JSON.stringify(resumedNote)}`);
    if (f1 > f0 + 1) fail(`the worker trained on while its tab was frozen: ${f0} -> ${f1}`);
    if (!(r1 >= r0 + 2)) fail(`training did not go on after the freeze: ${r0} -> ${r1}`);
    if (!resumedNote.includes("froze this tab")) fail(`after the freeze the page says ${JSON.stringify(resumedNote)}`);

    // discarded (no CDP discards a tab): the tab closed and opened again offers to resume
    const saved = await p.evaluate(`Math.max(-1, ...(window.wgptEvents || []).filter((e) => e.type === "saved").map((e) => e.step))`);
    await raw.send("Target.closeTarget", { targetId: p.targetId });
    await raw.send("Target.closeTarget", { targetId: other.targetId });
    p = await raw.open(url);
    await p.until(`document.querySelector('[data-testid="status"]').textContent.startsWith("Ready on")`);
    await p.until(`!document.getElementById("resume-offer").hidden && document.querySelector('[data-testid="saved-runs"] li[data-run]')`, 60_000);
    const at = Number(await p.evaluate(`document.querySelector('[data-testid="saved-runs"] li[data-run]').dataset.step`));
    log(`background: closed at saved step ${saved}, opened again: the page offers to resume at step ${at}`);
    if (at < saved) fail(`reopened, the page offers step ${at}; step ${saved} was saved`);
  } finally {
    await raw.close();
  }
}

// ---------------------------------------------------------------------------------------------
async function oom() {
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS });
  try {
    const context = await browser.newContext();
    const { page, kit } = await openPage(context, { steps: 6, every: 6 });
    await kit.byId("train-start").click();
    await kit.status("Done", 300_000);
    const memory = () => page.evaluate(() => window.wgptDebug.memory());
    const before = await memory();
    // a GPU with 8 MiB more than the run holds: a run at batch 64 does not fit beside it
    await page.evaluate((bytes) => window.wgptDebug.capMemory(bytes), before.gpu_bytes + 8 * 2 ** 20);
    await kit.set("batch_size", 64);
    await page.evaluate(() => (document.querySelector('[data-testid="error"]').hidden = true));
    await kit.byId("train-start").click();
    await page.waitForFunction(() => !document.querySelector('[data-testid="error"]').hidden, null, { timeout: 120_000 });
    const message = await kit.text("error");
    log(`oom: ${JSON.stringify(message)}`);
    if (!message.includes("ran out of memory") || !message.includes("already held by the model in use") || !/batch size \d+/.test(message))
      fail(`out of GPU memory, the page says ${JSON.stringify(message)}`);
    const after = await memory();
    if (after.gpu_bytes !== before.gpu_bytes || after.gpu_buffers !== before.gpu_buffers)
      fail(`the failed run's GPU buffers stayed: ${JSON.stringify(before)} -> ${JSON.stringify(after)}`);
    if ((await kit.step()) !== 6) fail(`the step shows ${await kit.step()} after the failed start`);
    await kit.byId("max-tokens").fill("5");
    await kit.byId("generate").click();
    await page.waitForFunction(() => document.getElementById("gen-speed").textContent !== "", null, { timeout: 120_000 });
    if ((await kit.text("output")) === "") fail("the kept model does not generate");
    await page.evaluate(() => window.wgptDebug.capMemory(null));
    log(`oom: the run before is kept (${before.gpu_buffers} buffers, ${before.gpu_bytes} bytes) and generates ${JSON.stringify(await kit.text("output"))}`);
  } finally {
    await browser.close();
  }
}

// ---------------------------------------------------------------------------------------------
async function room() {
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS });
  try {
    const context = await browser.newContext();
    const { page, kit } = await openPage(context);
    const cdp = await context.newCDPSession(page);
    const origin = new URL(url).origin;
    // about 7M parameters: checkpoints of about 85 MB, checked against the storage
    let before = "";
    const plan = async (layers, quota) => {
      await cdp.send("Storage.overrideQuotaForOrigin", { origin, quotaSize: quota });
      await kit.set("n_embd", 384);
      await kit.set("n_head", 6);
      await kit.set("n_layer", layers);
      await page.waitForFunction(
        (before) => {
          const now = document.querySelector('[data-testid="checkpoint-plan"]').textContent;
          return now !== before && /has (no )?room/.test(now);
        },
        before,
        { timeout: 120_000 },
      );
      return (before = await kit.text("checkpoint-plan"));
    };
    const short = await plan(4, 32 * 2 ** 20);
    log(`room: 32 MiB of quota: ${JSON.stringify(short)}`);
    if (!short.includes("has no room") || !/Each checkpoint: about \d+/.test(short)) fail(`with 32 MiB of quota the plan says ${JSON.stringify(short)}`);
    const roomy = await plan(5, 2 ** 30);
    log(`room: 1 GiB of quota: ${JSON.stringify(roomy)}`);
    if (!roomy.includes("has room for that")) fail(`with 1 GiB of quota the plan says ${JSON.stringify(roomy)}`);
    if (await page.isVisible("#model-only-offer")) fail("with room for full checkpoints the page offers model-only ones");

    // room for model-only checkpoints (2 x 31 MB) but not full ones (2 x 87 MB): the plan offers to
    // save without the optimizer state; taken, the run saves model-only checkpoints that a reload
    // lists as such and that resume with AdamW's moments starting fresh
    const lean = await plan(4, 110 * 2 ** 20);
    const offer = await kit.text("model-only-label").catch(() => "");
    log(`room: 110 MiB of quota: ${JSON.stringify(lean)}; the offer: ${JSON.stringify(offer)}`);
    if (!lean.includes("has no room for that") || !lean.includes("but has for checkpoints saved without the optimizer state"))
      fail(`with 110 MiB of quota the plan says ${JSON.stringify(lean)}`);
    if (!(await page.isVisible("#model-only-offer")) || !/without the optimizer state \(\d+(\.\d+)? MiB each instead of \d+(\.\d+)? MiB\)/.test(offer))
      fail(`the plan's offer is ${JSON.stringify(offer)}, visible: ${await page.isVisible("#model-only-offer")}`);
    await kit.byId("model-only").check();
    await kit.byId("train-start").click();
    for (const step of [0, 2]) {
      const saved = await kit.event("saved", { step }, 300_000);
      log(`room: step ${step} saved, ${saved.bytes} bytes, model only: ${saved.model_only}`);
      if (!saved.model_only) fail(`the checkpoint of step ${step} holds the optimizer state: ${JSON.stringify(saved)}`);
    }
    await kit.byId("train-stop").click();
    await kit.status("Stopped");
    const stoppedAt = await kit.step();
    await kit.event("saved", { step: stoppedAt }, 120_000);
    const errors = (await kit.events("error")).filter((e) => e.scope === "checkpoint");
    if (errors.length) fail(`saving failed: ${JSON.stringify(errors)}`);
    await page.reload();
    await kit.ready();
    await kit.listedAtLeast(1);
    const [run] = await kit.listed();
    const kind = await page.getAttribute(`li[data-run="${run.id}"]`, "data-model-only");
    log(`room: after a reload the page lists ${JSON.stringify(run.text)}`);
    if (run.step !== stoppedAt || kind !== "true" || !run.text.includes("model only")) fail(`after a reload the run is listed as ${JSON.stringify(run)} (model only: ${kind}); it stopped at ${stoppedAt}`);
    await kit.byId("resume").click();
    const restored = await kit.event("restored", {}, 300_000);
    const status = await kit.text("status");
    log(`room: resumed at step ${restored.step}: ${JSON.stringify(status)}`);
    if (restored.step !== stoppedAt || !restored.fresh_moments || !status.includes("AdamW's moments start fresh"))
      fail(`resuming the model-only run: ${JSON.stringify(restored)}, the page says ${JSON.stringify(status)}`);
    if (!(await kit.byId("model-only").isChecked())) fail("the resumed model-only run's saves are not marked model-only in the plan");
    await resumeHeld(page);
    const next = stoppedAt + 2 - (stoppedAt % 2);
    const again = await kit.event("saved", { step: next }, 300_000);
    if (!again.model_only) fail(`after the resume step ${next} was saved with the optimizer state`);
    const loss = Number(await kit.text("train-loss"));
    log(`room: trained on to step ${await kit.step()} (saved ${next}, model only), loss ${loss}`);
    if (!Number.isFinite(loss)) fail(`the loss after the resume is ${loss}`);
  } finally {
    await browser.close();
  }
}

try {
  for (const [name, job] of Object.entries({ tabs, kill, background, oom, room })) {
    if (!only.has(name)) continue;
    const t0 = Date.now();
    await job();
    log(`${name}: passed in ${((Date.now() - t0) / 1e3).toFixed(0)} s`);
  }
  console.log("PASS");
} catch (e) {
  process.exitCode = 1;
  console.error(e.message);
} finally {
  server.close();
  fs.rmSync(scratch, { recursive: true, force: true });
}
