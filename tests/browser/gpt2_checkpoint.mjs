// GPT-2 124M checkpoints in the page, in a persistent profile (headless Chromium, SwiftShader):
// loads an HF-layout GPT-2 124M directory through the mock hub (tests/fixtures/make_random_gpt2.py
// writes one), fine-tunes one step at B 1, T 128 (checkpoints at step 0 and at the end), then
// reloads the page and resumes the saved run at its step. Prints the plan's checkpoint line, each
// checkpoint's size and whether its save copied it into JavaScript memory, and the storage used
// (BENCHMARKS.md). Minutes on a software adapter, so not in CI.
//
//   python3 tests/fixtures/make_random_gpt2.py /tmp/gpt2-random
//   node tests/browser/gpt2_checkpoint.mjs --model-dir /tmp/gpt2-random [--dist dist]

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";
import { serve } from "./server.mjs";
import { CHROMIUM, FLAGS, cliArgs, corpus, fail, log, pageKit } from "./lib.mjs";

const args = cliArgs();
const root = path.resolve(args.dist ?? "dist");
const modelDir = path.resolve(args["model-dir"] ?? "/tmp/gpt2-random");
if (!fs.existsSync(path.join(modelDir, "model.safetensors"))) {
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
  await kit.byId("hub-url").fill(`${url}hubmock`);
  await kit.byId("load-gpt2").click();
  await kit.status("Imported", 900_000);
  log(await kit.text("status"));
  await kit.paste(corpus());
  await kit.custom();
  await kit.set("block_size", 128);
  await kit.set("batch_size", 1);
  await kit.set("max_iters", 1);
  await kit.set("eval_interval", 1000);
  await kit.set("eval_iters", 1);
  await page.waitForFunction(() => /Each checkpoint/.test(document.querySelector('[data-testid="checkpoint-plan"]').textContent), null, { timeout: 120_000 });
  await page.waitForFunction(() => /has (no )?room/.test(document.querySelector('[data-testid="checkpoint-plan"]').textContent), null, { timeout: 300_000 });
  log(`plan: ${await kit.text("checkpoint-plan")}`);
  const t0 = Date.now();
  await kit.byId("train-start").click();
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
  log(`resumed ${restored.name} at step ${restored.step}`);
  if (restored.step !== 1) fail(`resumed at step ${restored.step}`);
  console.log("PASS");
} catch (e) {
  process.exitCode = 1;
  console.error(e.message);
} finally {
  await context.close();
  server.close();
  fs.rmSync(profile, { recursive: true, force: true });
}
