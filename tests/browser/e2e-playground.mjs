// End to end, the playground's links (src/run/link.rs, www/js/share.js): the page built by
// `trunk build --offline --release` (dist/) in headless Chromium on SwiftShader's WebGPU.
// Sets every field the form has and a built-in task as the corpus, copies the link
// (`share-copy`, shown in `share-link`), opens it in a fresh page and compares: the form, the
// corpus, and the settings that page's own link carries, key by key; nothing starts. Then three
// hostile links (not JSON, a newer version, script in the tokenizer) are refused with a message,
// shown as text (no element made from them), nothing started and no setting changed; and while a
// run trains, a link asks first, and declined, replaces nothing.
// The layout: at 1366x768 Start, the loss chart and the views' tab strip are on the screen
// without scrolling, the controls beside the chart; every view's tab opens from the keyboard
// (arrow keys, Home/End, Enter and Space) showing a hook of its panel and hiding the others. The
// task's parameter (max=6) and the answer-only loss travel in the link; the task run's first
// evaluation shows in `task-view` as its `task_eval` says, every answer token marked; the task's
// recipe (`task-recipe`) fills the form as its link says, starting nothing.
// `--shots DIR` then trains a small character-level reverse run in the fresh page and saves the
// layout at 1440x900 (layout.png) and the task view (tasks.png) there, for docs/.
//
//   node tests/browser/e2e-playground.mjs [--dist dist] [--screenshot target/browser/links.png] [--shots DIR]

import fs from "node:fs";
import path from "node:path";
import { cliArgs, fail, openE2e, pageKit, posterised, showTab } from "./lib.mjs";

const args = cliArgs();
const root = path.resolve(args.dist ?? "dist");
const shot = path.resolve(args.screenshot ?? "target/browser/links.png");
const hubDir = path.resolve(args["hub-dir"] ?? "../shared/data/hf-tiny-gpt2");
const e2e = await openE2e({ root, hubDir, wgptBin: path.resolve("target/debug/wgpt") });
const { page, byId, text, url } = e2e;

// The settings a link carries: its fragment's JSON.
const carried = (link) => JSON.parse(Buffer.from(link.slice(link.indexOf("#run=") + 5), "base64url").toString("utf8"));
const link = (json) => `#run=${Buffer.from(json).toString("base64url")}`;

// The form as a person sees it: every field's value.
const FIELDS = ["preset", "tokenizer", "bpe_vocab", "n_layer", "n_head", "n_embd", "block_size", "batch_size", "grad_accum", "max_iters", "lr", "eval_interval", "eval_iters", "train_seed", "train_precision", "optimizer", "momentum", "lr_schedule", "nesterov", "answer_loss", "task-param-max"];
const form = (p) =>
  p.evaluate(
    (ids) =>
      Object.fromEntries(
        ids.map((id) => {
          const el = document.getElementById(id);
          return [id, el.type === "checkbox" ? String(el.checked) : el.value];
        }),
      ),
    FIELDS,
  );

// A hook of each view, shown when its tab is chosen.
const VIEW_HOOKS = { generate: "generate", inspect: "look-caption", params: "param-table", dynamics: "dynamics-chart", compare: "compare-runs", tasks: "task-view" };

// At 1366x768 the run's controls, its chart and the tab strip are on the screen as it opens.
async function fitsLaptop(p) {
  await p.setViewportSize({ width: 1366, height: 768 });
  const boxes = await p.evaluate(() =>
    Object.fromEntries(
      ["train-start", "chart", "view-tabs", "corpus-drop"].map((id) => {
        const el = document.querySelector(`[data-testid="${id}"]`) ?? document.getElementById(id);
        const r = el.getBoundingClientRect();
        return [id, { left: r.left, top: r.top, right: r.right, bottom: r.bottom }];
      }),
    ),
  );
  console.log(`at 1366x768: ${JSON.stringify(boxes)}`);
  for (const id of ["train-start", "chart", "view-tabs"]) {
    const b = boxes[id];
    if (b.top < 0 || b.bottom > 768 || b.right > 1366) fail(`at 1366x768 ${id} is not on the screen: ${JSON.stringify(b)}`);
  }
  if (!(boxes["corpus-drop"].right <= boxes.chart.left)) fail("at 1366x768 the controls are not beside the chart");
}

// Every view's tab from the keyboard: the arrow keys move along the tabs, Enter or Space
// chooses; Home and End; the chosen view's hook shows and the other panels hide.
async function keyboardTabs(p) {
  const names = await p.$$eval('#view-tabs [role="tab"]', (tabs) => tabs.map((t) => t.id.slice(4)));
  if (Object.keys(VIEW_HOOKS).some((v) => !names.includes(v))) fail(`the tabs are ${names}`);
  const chosen = (name) =>
    p.evaluate((name) => {
      const tab = document.getElementById(`tab-${name}`);
      const panels = [...document.querySelectorAll('[role="tabpanel"]')];
      return tab.getAttribute("aria-selected") === "true" && document.activeElement === tab && panels.every((x) => x.hidden === (x.id !== `view-${name}`));
    }, name);
  await p.locator('[data-testid="tab-generate"]').click();
  for (const [i, key] of [...names.keys()].slice(1).map((i) => [i, i % 2 ? "Enter" : " "])) {
    await p.keyboard.press("ArrowRight");
    await p.keyboard.press(key);
    if (!(await chosen(names[i]))) fail(`ArrowRight and ${JSON.stringify(key)} did not choose the tab ${names[i]}`);
    const hook = VIEW_HOOKS[names[i]];
    if (hook && !(await p.locator(`[data-testid="${hook}"]`).isVisible())) fail(`the tab ${names[i]} is chosen but ${hook} is not visible`);
  }
  await p.keyboard.press("ArrowRight"); // wraps to the first
  await p.keyboard.press("End");
  await p.keyboard.press("Home");
  await p.keyboard.press("Enter");
  if (!(await chosen(names[0]))) fail("Home and Enter did not choose the first tab");
  await p.keyboard.press("ArrowLeft"); // wraps to the last
  await p.keyboard.press(" ");
  if (!(await chosen(names.at(-1)))) fail("ArrowLeft from the first tab and Space did not choose the last");
  await p.keyboard.press("Home");
  await p.keyboard.press("Enter");
  console.log(`tabs from the keyboard: ${names.join(", ")}`);
}

// The task view as drawn: each example's marks, and whether it is an exact match.
const taskView = (p) =>
  p.evaluate(() => {
    const v = document.querySelector('[data-testid="task-view"]');
    const items = [...v.querySelectorAll("li")].map((li) => ({ exact: li.dataset.exact === "true", marks: [...li.querySelectorAll("[data-right]")].map((s) => s.dataset.right === "true") }));
    return { step: v.dataset.step, caption: v.querySelector(".caption")?.textContent ?? "", items };
  });

// Copy link on `p`: the link shown.
async function copy(p) {
  await p.evaluate(() => (document.querySelector('[data-testid="share-link"]').textContent = ""));
  await p.locator('[data-testid="share-copy"]').click();
  await p.waitForFunction(() => document.querySelector('[data-testid="share-link"]').textContent.includes("#run="), null, { timeout: 60_000 });
  return p.locator('[data-testid="share-link"]').textContent();
}

// docs/'s pictures: a character-level reverse run (max=6, answer-only loss) of 200 steps on `p`,
// then the page at 1440x900 (layout.png) and the task view (tasks.png) in `dir`.
async function docsShots(p, dir) {
  const kit = pageKit(p);
  await p.setViewportSize({ width: 1440, height: 900 });
  await p.selectOption("#tokenizer", "char");
  await p.selectOption("#optimizer", "adamw");
  await p.selectOption("#lr_schedule", "cosine");
  for (const [id, v] of Object.entries({ n_embd: 48, batch_size: 16, grad_accum: 1, max_iters: 200, lr: 0.01, eval_interval: 50, eval_iters: 1 })) await kit.set(id, v);
  await p.evaluate(() => (window.wgptEvents = []));
  await kit.byId("train-start").click();
  await kit.event("task_eval", { step: 200 }, 600_000);
  await showTab(p, "generate");
  await p.evaluate(() => {
    window.scrollTo(0, 0);
    document.querySelector(".controls").scrollTop = 0;
  });
  await p.waitForTimeout(500);
  fs.writeFileSync(path.join(dir, "layout.png"), await posterised(p, await p.screenshot()));
  await showTab(p, "task-view");
  fs.writeFileSync(path.join(dir, "tasks.png"), await posterised(p, await p.locator("#view-tasks").screenshot()));
  console.log(`docs pictures in ${dir}: ${await kit.text("status")}`);
}

// What the engine said about training on `p`: its state events.
const states = (p) => p.evaluate(() => (window.wgptEvents || []).filter((e) => e.type === "state"));

try {
  await e2e.open();
  await fitsLaptop(page);
  await keyboardTabs(page);
  await page.context().grantPermissions(["clipboard-read", "clipboard-write"], { origin: new URL(url).origin });
  // every field of the form away from its default, and a built-in task
  await page.selectOption("#builtin", "task:reverse");
  await page.waitForFunction(() => document.getElementById("c-name").textContent === "reverse task", null, { timeout: 60_000 });
  // the task's parameter: the corpus is the task again, with it
  await e2e.set("task-param-max", 6);
  await page.waitForFunction(() => document.getElementById("c-name").textContent === "reverse:max=6 task", null, { timeout: 60_000 });
  await page.check("#answer_loss");
  await e2e.custom();
  const values = { n_layer: 2, n_head: 2, n_embd: 24, block_size: 16, batch_size: 3, grad_accum: 2, max_iters: 77, lr: 0.0015, eval_interval: 11, eval_iters: 3, train_seed: 4242 };
  for (const [id, v] of Object.entries(values)) await e2e.set(id, v);
  await page.selectOption("#tokenizer", "bpe");
  await e2e.set("bpe_vocab", 300);
  await page.selectOption("#train_precision", "f16");
  await page.selectOption("#optimizer", "sgd");
  await e2e.set("momentum", 0.8);
  await page.uncheck("#nesterov");
  await page.selectOption("#lr_schedule", "wsd");
  const first = await copy(page);
  const sent = carried(first);
  const before = await form(page);
  console.log(`link: ${first.length} characters: ${JSON.stringify(sent)}`);
  if (!first.startsWith(`${url}#run=`)) fail(`the link ${first} is not this page's address with #run=`);
  if (sent.v !== 3 || sent.tokenizer !== "bpe:300" || sent.lr !== 0.0015 || sent.seed !== 4242 || sent.precision !== "f16" || sent.optimizer !== "sgd" || sent.nesterov !== false || sent.answer_loss !== true || JSON.stringify(sent.corpus) !== '{"task":{"name":"reverse","params":"max=6"}}')
    fail(`the link carries ${JSON.stringify(sent)}`);
  const clip = await page.evaluate(() => navigator.clipboard.readText().catch((e) => `clipboard: ${e.message}`));
  if (clip !== first) console.log(`note: the clipboard holds ${JSON.stringify(clip.slice(0, 80))}`);

  // a fresh page opens it: the same form, corpus and settings; nothing starts
  // a page of its own context: no storage, no state shared with the first
  const fresh = await page.context().browser().newPage({ viewport: page.viewportSize() });
  await fresh.context().grantPermissions(["clipboard-read", "clipboard-write"], { origin: new URL(url).origin });
  await fresh.goto(first);
  await fresh.waitForFunction(() => document.querySelector('[data-testid="status"]').textContent.startsWith("Opened a link") || (window.wgptEvents || []).some((e) => e.type === "link_opened"), null, { timeout: 180_000 });
  await fresh.waitForFunction(() => document.getElementById("c-name").textContent === "reverse:max=6 task", null, { timeout: 60_000 });
  const after = await form(fresh);
  const note = await fresh.locator('[data-testid="share-note"]').textContent();
  console.log(`the fresh page: ${note}`);
  for (const id of FIELDS) if (after[id] !== before[id]) fail(`the fresh page's ${id} is ${after[id]}, the link's page had ${before[id]}`);
  const again = carried(await copy(fresh));
  const keys = [...new Set([...Object.keys(sent), ...Object.keys(again)])].sort();
  const differ = keys.filter((k) => JSON.stringify(sent[k]) !== JSON.stringify(again[k]));
  if (differ.length) fail(`the settings differ after the round trip: ${differ.map((k) => `${k} ${JSON.stringify(sent[k])} -> ${JSON.stringify(again[k])}`).join(", ")}`);
  console.log(`round trip: ${keys.length} keys equal`);
  if ((await states(fresh)).length || (await fresh.locator('[data-testid="train-start"]').textContent()) !== "Start training") fail("opening a link started something");

  // hostile links: refused with a message, as text, nothing started, no setting changed
  const hostile = [
    ["not JSON", link("n_layer=2&lr=0.1"), "not JSON"],
    ["a newer version", link('{"v":99,"n_layer":2}'), "version 99"],
    ["script in the tokenizer", link('{"v":1,"tokenizer":"<script>window.pwned=1</script><img src=x onerror=window.pwned=2>"}'), "Refused tokenizer"],
  ];
  for (const [what, fragment, says] of hostile) {
    await fresh.evaluate(() => (window.wgptEvents = []));
    await fresh.evaluate((f) => (location.hash = f), fragment);
    await fresh.waitForFunction(() => (window.wgptEvents || []).some((e) => e.type === "link_opened" || (e.type === "error" && e.scope === "link")), null, { timeout: 60_000 });
    const shown = `${await fresh.locator('[data-testid="error"]').textContent()} ${await fresh.locator('[data-testid="share-note"]').textContent()}`;
    console.log(`hostile link, ${what}: ${shown.trim()}`);
    if (!shown.includes(says)) fail(`the hostile link (${what}) is reported as ${JSON.stringify(shown)}`);
    const made = await fresh.evaluate(() => ({ pwned: window.pwned ?? null, elements: document.querySelectorAll("#share-note *:not(span), #error script, #error img").length }));
    if (made.pwned !== null || made.elements) fail(`the hostile link (${what}) made elements or ran: ${JSON.stringify(made)}`);
    const now = await form(fresh);
    if (FIELDS.some((id) => now[id] !== before[id])) fail(`the hostile link (${what}) changed the form: ${JSON.stringify(now)}`);
    if ((await states(fresh)).length) fail(`the hostile link (${what}) started something`);
  }

  // while a run trains, a link asks first; declined, it replaces nothing
  await e2e.set("max_iters", 500);
  await page.bringToFront();
  await byId("train-start").click();
  // the first evaluation's held-out examples in the task view, marked as the engine marked them
  const te = await e2e.event("task_eval", {}, 300_000);
  await showTab(page, "task-view");
  await page.waitForFunction((step) => document.querySelector('[data-testid="task-view"]').dataset.step === String(step), te.step, { timeout: 30_000 });
  const view = await taskView(page);
  console.log(`task-view: ${view.caption} ${view.items.length} examples, ${view.items.reduce((n, x) => n + x.marks.length, 0)} tokens marked`);
  if (te.task !== "reverse:max=6" || te.total !== 200 || !te.examples.length || view.items.length !== te.examples.length) fail(`task_eval ${JSON.stringify({ ...te, examples: te.examples.length })}, the view shows ${view.items.length}`);
  te.examples.forEach((x, i) => {
    const got = view.items[i];
    if (got.exact !== x.exact || JSON.stringify(got.marks) !== JSON.stringify(x.right) || !got.marks.length) fail(`task-view example ${i}: ${JSON.stringify(got)}, the engine's ${JSON.stringify(x)}`);
  });
  await e2e.stepAtLeast(1, 300_000);
  const asked = [];
  page.once("dialog", (d) => {
    asked.push(d.message());
    d.dismiss();
  });
  await page.evaluate((f) => (location.hash = f), link('{"v":1,"n_layer":5}'));
  await page.waitForFunction(() => document.querySelector('[data-testid="share-note"]').textContent.includes("not opened"), null, { timeout: 60_000 });
  console.log(`a link while training: asked ${JSON.stringify(asked)}; ${await text("share-note")}`);
  if (asked.length !== 1 || (await page.inputValue("#n_layer")) !== String(values.n_layer)) fail("a link replaced the settings of a training page without asking");
  await byId("train-stop").click();
  await e2e.status("Stopped");
  // the task's recipe (under the task's description) fills the form as its link says; nothing starts
  const recipe = carried(await byId("task-recipe").getAttribute("href"));
  await page.evaluate(() => (window.wgptEvents = []));
  await byId("task-recipe").click();
  await page.waitForFunction(() => document.querySelector('[data-testid="share-note"]').textContent.startsWith("Opened a link"), null, { timeout: 60_000 });
  await page.waitForFunction(() => document.getElementById("c-name").textContent === "reverse task", null, { timeout: 60_000 });
  const filled = await form(page);
  console.log(`the recipe's link: ${JSON.stringify(recipe)}; ${await text("share-note")}`);
  if (JSON.stringify(recipe.corpus) !== '{"task":{"name":"reverse","params":""}}' || recipe.answer_loss !== true) fail(`the recipe's link carries ${JSON.stringify(recipe)}`);
  for (const k of ["n_layer", "n_head", "n_embd", "block_size", "batch_size", "max_iters", "lr", "eval_interval", "answer_loss"])
    if (filled[k] !== String(recipe[k])) fail(`after the recipe the form's ${k} is ${filled[k]}, its link's ${recipe[k]}`);
  if ((await states(page)).length) fail("opening the recipe started something");
  await page.screenshot({ path: shot, fullPage: true });
  if (args.shots) await docsShots(fresh, path.resolve(args.shots));
  console.log("PASS");
} catch (e) {
  await e2e.failed(e, shot);
} finally {
  await e2e.close();
}
