// GPT-2 124M in the page, in headless Chromium (SwiftShader's WebGPU unless the machine has a GPU
// Chromium uses): the numbers BENCHMARKS.md records. Serves an HF-layout GPT-2 124M directory as
// the hub (tests/fixtures/make_random_gpt2.py writes one with random weights and GPT-2's
// tokenizer), then through the page's own controls:
//   - "Load GPT-2" downloading it, then again from the browser's cache (OPFS);
//   - prefill of a 128-token prompt (a 1-token generation) and greedy decode tokens/s;
//   - fine-tuning steps at B 1, T 128 (forward, backward, AdamW), ms/step.
//
//   python3 tests/fixtures/make_random_gpt2.py /tmp/gpt2-random
//   node tests/browser/bench_gpt2.mjs --model-dir /tmp/gpt2-random [--dist dist] [--steps 3]

import fs from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";
import { serve } from "./server.mjs";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
const root = path.resolve(args.dist ?? "dist");
const modelDir = path.resolve(args["model-dir"] ?? "/tmp/gpt2-random");
const steps = Number(args.steps ?? 3);
if (!fs.existsSync(path.join(modelDir, "model.safetensors"))) {
  console.error(`${modelDir}/model.safetensors is missing: python3 tests/fixtures/make_random_gpt2.py ${modelDir}`);
  process.exit(2);
}

const { server } = await serve(root, modelDir);
const url = `http://127.0.0.1:${server.address().port}/`;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--headless=new", "--no-sandbox", "--enable-unsafe-webgpu", "--enable-unsafe-swiftshader"],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
const byId = (id) => page.locator(`[data-testid="${id}"]`);
const statusIs = (prefix, timeout) =>
  page.waitForFunction((p) => document.querySelector('[data-testid="status"]').textContent.includes(p), prefix, { timeout });
const lastEvent = (type) => page.evaluate((t) => (window.wgptEvents || []).filter((e) => e.type === t).pop() ?? null, type);
const results = [];
const report = (what, value) => {
  results.push(`${what}: ${value}`);
  console.log(`${what}: ${value}`);
};

try {
  await page.goto(url);
  await statusIs("Ready on", 120_000);
  const adapter = (await byId("status").textContent()).replace(/^Ready on (.*)\. Choose.*$/, "$1");
  report("adapter", adapter);

  await byId("hub-url").fill(`${url}hubmock`);
  let t0 = Date.now();
  await byId("load-gpt2").click();
  await statusIs("Imported", 900_000);
  report("load (download from localhost + parse + upload)", `${((Date.now() - t0) / 1e3).toFixed(1)} s`);
  await page.evaluate(() => (document.querySelector('[data-testid="status"]').textContent = ""));
  t0 = Date.now();
  await byId("load-gpt2").click();
  await statusIs("Imported", 900_000);
  const how = await byId("status").textContent();
  const problem = (await byId("error").isVisible()) ? ` (${await byId("error").textContent()})` : "";
  report(`second load: ${how.includes("cache") ? "from the browser's cache" : "NOT from the cache"} (+ parse + upload)`, `${((Date.now() - t0) / 1e3).toFixed(1)} s${problem}`);

  // generation: a 128-token prompt (" the" x 128 with GPT-2's tokenizer), greedy
  const generate = async (n) => {
    await page.evaluate(() => (window.wgptEvents = []));
    await byId("max-tokens").fill(String(n));
    await byId("generate").click();
    await page.waitForFunction(() => (window.wgptEvents || []).some((e) => e.type === "generated"), null, { timeout: 900_000 });
    const ev = await lastEvent("generated");
    return ev.tokens / ev.tokens_per_sec; // seconds, prefill included
  };
  await byId("prompt").fill(" the".repeat(128));
  await byId("temperature").fill("0");
  await generate(1); // warm-up: pipelines and buffers
  const one = await generate(1);
  report("prefill of 128 tokens (+ 1 token)", `${(one * 1e3).toFixed(0)} ms`);
  const n = 33;
  const many = await generate(n);
  report("greedy decode after the 128-token prompt", `${((n - 1) / (many - one)).toFixed(2)} tokens/s`);

  // fine-tune at B 1, T 128 on a small corpus with GPT-2's tokenizer
  const text = "the cat sat on the mat. a dog ran to the door. my friend sang for the moon.\n".repeat(200);
  await byId("corpus-input").setInputFiles({ name: "lines.txt", mimeType: "text/plain", buffer: Buffer.from(text) });
  await page.waitForFunction(() => document.getElementById("c-name").textContent === "lines.txt", null, { timeout: 60_000 });
  await page.selectOption("#preset", "custom");
  await page.evaluate((steps) => {
    const set = (id, v) => {
      const el = document.getElementById(id);
      el.value = String(v);
      el.dispatchEvent(new Event("change"));
    };
    set("block_size", 128);
    set("batch_size", 1);
    set("max_iters", steps + 1);
    set("eval_interval", 1000);
  }, steps);
  await page.evaluate(() => (window.wgptEvents = []));
  t0 = Date.now();
  await byId("train-start").click();
  await page.waitForFunction((n) => (window.wgptEvents || []).filter((e) => e.type === "progress").length >= n, steps + 1, { timeout: 1_800_000 });
  const progress = await page.evaluate(() => window.wgptEvents.filter((e) => e.type === "progress"));
  const ms = progress.slice(1).map((e) => e.ms_per_step).sort((a, b) => a - b);
  report("fine-tune: first step (with the start checkpoint)", `${((progress[0].ms_per_step) / 1e3).toFixed(1)} s`);
  report(`fine-tune step at B 1, T 128 (median of ${ms.length})`, `${(ms[ms.length >> 1] / 1e3).toFixed(2)} s, ${(128 / (ms[ms.length >> 1] / 1e3)).toFixed(1)} tokens/s; loss ${progress.pop().loss.toFixed(3)}`);
  const saved = await lastEvent("saved");
  if (saved) report("auto-checkpoint", `step ${saved.step}, ${(saved.bytes / 2 ** 20).toFixed(0)} MiB in OPFS`);
  const err = await page.evaluate(() => (window.wgptEvents || []).filter((e) => e.type === "error"));
  if (err.length) report("errors", JSON.stringify(err));
} catch (e) {
  process.exitCode = 1;
  console.error(`FAIL: ${e.message}`);
  console.error(`status: ${await byId("status").textContent().catch(() => "?")}`);
  console.error(`events: ${JSON.stringify(await page.evaluate(() => (window.wgptEvents || []).slice(-10)).catch(() => []))}`);
} finally {
  await browser.close();
  server.close();
}
