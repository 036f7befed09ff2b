// End to end, the playground's links (src/run/link.rs, www/js/share.js): the page built by
// `trunk build --offline --release` (dist/) in headless Chromium on SwiftShader's WebGPU.
// Sets every field the form has and a built-in task as the corpus, copies the link
// (`share-copy`, shown in `share-link`), opens it in a fresh page and compares: the form, the
// corpus, and the settings that page's own link carries, key by key; nothing starts. Then three
// hostile links (not JSON, a newer version, script in the tokenizer) are refused with a message,
// shown as text (no element made from them), nothing started and no setting changed; and while a
// run trains, a link asks first, and declined, replaces nothing.
//
//   node tests/browser/e2e-playground.mjs [--dist dist] [--screenshot target/browser/links.png]

import path from "node:path";
import { cliArgs, fail, openE2e } from "./lib.mjs";

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
const FIELDS = ["preset", "tokenizer", "bpe_vocab", "n_layer", "n_head", "n_embd", "block_size", "batch_size", "grad_accum", "max_iters", "lr", "eval_interval", "eval_iters", "train_seed", "train_precision", "optimizer", "momentum", "lr_schedule"];
const form = (p) => p.evaluate((ids) => Object.fromEntries(ids.map((id) => [id, document.getElementById(id).value])), FIELDS);

// Copy link on `p`: the link shown.
async function copy(p) {
  await p.evaluate(() => (document.querySelector('[data-testid="share-link"]').textContent = ""));
  await p.locator('[data-testid="share-copy"]').click();
  await p.waitForFunction(() => document.querySelector('[data-testid="share-link"]').textContent.includes("#run="), null, { timeout: 60_000 });
  return p.locator('[data-testid="share-link"]').textContent();
}

// What the engine said about training on `p`: its state events.
const states = (p) => p.evaluate(() => (window.wgptEvents || []).filter((e) => e.type === "state"));

try {
  await e2e.open();
  await page.context().grantPermissions(["clipboard-read", "clipboard-write"], { origin: new URL(url).origin });
  // every field of the form away from its default, and a built-in task
  await page.selectOption("#builtin", "task:reverse");
  await page.waitForFunction(() => document.getElementById("c-name").textContent === "reverse task", null, { timeout: 60_000 });
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
  if (sent.v !== 1 || sent.tokenizer !== "bpe:300" || sent.lr !== 0.0015 || sent.seed !== 4242 || sent.precision !== "f16" || sent.optimizer !== "sgd" || sent.nesterov !== false || JSON.stringify(sent.corpus) !== '{"task":{"name":"reverse","params":""}}')
    fail(`the link carries ${JSON.stringify(sent)}`);
  const clip = await page.evaluate(() => navigator.clipboard.readText().catch((e) => `clipboard: ${e.message}`));
  if (clip !== first) console.log(`note: the clipboard holds ${JSON.stringify(clip.slice(0, 80))}`);

  // a fresh page opens it: the same form, corpus and settings; nothing starts
  const fresh = await page.context().newPage();
  await fresh.goto(first);
  await fresh.waitForFunction(() => document.querySelector('[data-testid="status"]').textContent.startsWith("Opened a link") || (window.wgptEvents || []).some((e) => e.type === "link_opened"), null, { timeout: 180_000 });
  await fresh.waitForFunction(() => document.getElementById("c-name").textContent === "reverse task", null, { timeout: 60_000 });
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
  await page.screenshot({ path: shot, fullPage: true });
  console.log("PASS");
} catch (e) {
  await e2e.failed(e, shot);
} finally {
  await e2e.close();
}
