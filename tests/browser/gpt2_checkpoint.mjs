// GPT-2 124M checkpoints in the page, in a persistent profile (headless Chromium, SwiftShader):
// loads an HF-layout GPT-2 124M directory through the mock hub (tests/fixtures/make_random_gpt2.py
// writes one), fine-tunes one step at B 1, T 128 (checkpoints at step 0 and at the end), then
// reloads the page and resumes the saved run at its step. Prints the plan's checkpoint line, each
// checkpoint's size and whether its save copied it into JavaScript memory, and the storage used
// (BENCHMARKS.md). Minutes on a software adapter, so not in CI.
//
// --size ci is the same path at a size CI runs (.ci/run's stage 5): a model of GPT-2's width,
// 768 dims, with one layer (7.1M parameters: 84 MiB checkpoints, past the 64 MiB from which the
// plan probes the storage; --layers N and --embd C for bigger ones) trained from scratch on a
// pasted corpus instead of loaded from the hub; saved at step 0 and 1 in a persistent profile,
// streamed from the engine's memory (never copied into JS), listed after a reload, resumed with
// its optimizer state, and run to its end with no error. About 90 s on this machine under load
// (the two evaluations' samples take most of it; 4 layers took 4.5 minutes).
//
//   python3 tests/fixtures/make_random_gpt2.py /tmp/gpt2-random
//   node tests/browser/gpt2_checkpoint.mjs --model-dir /tmp/gpt2-random [--dist dist]
//   node tests/browser/gpt2_checkpoint.mjs --size ci [--dist dist]

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";
import { serve } from "./server.mjs";
import { CHROMIUM, FLAGS, cliArgs, corpus, fail, log, pageKit } from "./lib.mjs";

const args = cliArgs();
const root = path.resolve(args.dist ?? "dist");
const ci = args.size === "ci";
const modelDir = path.resolve(args["model-dir"] ?? "/tmp/gpt2-random");
if (!ci && !fs.existsSync(path.join(modelDir, "model.safetensors"))) {
  console.error(`${modelDir}/model.safetensors is missing: python3 tests/fixtures/make_random_gpt2.py ${modelDir}`);
  process.exit(2);
}
const { server } = await serve(root, modelDir);
const url = `http://127.0.0.1:${server.address().port}/`;
const profile = fs.mkdtempSync(path.join(os.tmpdir(), "wgpt-gpt2-profile-"));
const context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, args: FLAGS });
try {
  const page = context.pages()[0] ?? (await context.newPage());
  const kit = pageKit(page);
  await page.goto(url);
  await kit.ready();
  if (!ci) {
    await kit.byId("hub-url").fill(`${url}hubmock`);
    await kit.byId("load-gpt2").click();
    await kit.status("Imported", 900_000);
    log(await kit.text("status"));
  }
  await kit.paste(corpus());
  await kit.custom();
  if (ci) for (const [id, v] of Object.entries({ n_embd: Number(args.embd ?? 768), n_head: 12, n_layer: Number(args.layers ?? 1) })) await kit.set(id, v);
  await kit.set("block_size", ci ? 32 : 128);
  await kit.set("batch_size", 1);
  await kit.set("max_iters", 1);
  await kit.set("eval_interval", 1000);
  await kit.set("eval_iters", 1);
  await page.waitForFunction(() => /Each checkpoint/.test(document.querySelector('[data-testid="checkpoint-plan"]').textContent), null, { timeout: 120_000 });
  await page.waitForFunction(() => /has (no )?room/.test(document.querySelector('[data-testid="checkpoint-plan"]').textContent), null, { timeout: 300_000 });
  log(`plan: ${await kit.text("checkpoint-plan")}`);
  const t0 = Date.now();
  await kit.byId("train-start").click();
  const tuned = await kit.event("tuned", {}, 900_000);
  log(`kernels: ${tuned.source}, ${tuned.timed} problems timed in ${tuned.ms.toFixed(0)} ms, ${((Date.now() - t0) / 1e3).toFixed(0)} s since Start`);
  await kit.event("eval", { step: 0 }, 900_000);
  log(`step 0 evaluated (and sampled), ${((Date.now() - t0) / 1e3).toFixed(0)} s since Start`);
  for (const step of [0, 1]) {
    const saved = await kit.event("saved", { step }, 1_800_000);
    log(`step ${step} saved: ${(saved.bytes / 2 ** 20).toFixed(0)} MiB, copied into JS memory: ${saved.copied}, ${((Date.now() - t0) / 1e3).toFixed(0)} s since Start`);
    if (saved.copied) fail("the checkpoint was copied into the worker's JS memory");
  }
  const errors = await kit.events("error");
  if (errors.length) fail(`errors: ${JSON.stringify(errors)}`);
  const usage = await page.evaluate(async () => (await navigator.storage.estimate()).usage);
  log(`storage used: ${(usage / 2 ** 20).toFixed(0)} MiB`);
  await page.reload();
  await kit.ready();
  await kit.listedAtLeast(1);
  const [run] = await kit.listed();
  log(`after a reload: ${run.text}`);
  if (run.step !== 1) fail(`the saved run is at step ${run.step}`);
  await kit.byId("resume").click();
  const restored = await kit.event("restored", {}, 900_000);
  log(`resumed ${restored.name} at step ${restored.step}, ${((Date.now() - t0) / 1e3).toFixed(0)} s since Start`);
  if (restored.step !== 1) fail(`resumed at step ${restored.step}`);
  if (restored.fresh_moments) fail("the resumed run lost its optimizer state");
  // at its end (its one step): it comes back done and says so, with nothing failed
  await kit.event("state", { state: "done" }, 300_000);
  const late = await kit.events("error");
  if (late.length) fail(`errors after the resume: ${JSON.stringify(late)}`);
  console.log("PASS");
} catch (e) {
  process.exitCode = 1;
  console.error(e.message);
} finally {
  await context.close();
  server.close();
  fs.rmSync(profile, { recursive: true, force: true });
}
