// Soak: --steps steps of a tiny model in the page (a checkpoint every --every), then --rounds
// rounds of generate and cancel, in headless Chromium on SwiftShader (dist/ from `trunk build`).
// The engine's wasm memory, our GPU buffers (count and bytes, wgptDebug.memory()) and the JS
// heaps of the page and its worker (after a garbage collection, over CDP) are read after a
// warm-up (the first checkpoints, the first generations), during the run and at the end, and
// must stay flat: the GPU buffers equal to the warm-up's, the wasm memory grown only with the
// run's history (metrics.jsonl, which the run keeps whole; see flat()), by at most 1 MiB over the
// generate/cancel rounds, the heaps within --heap-slack MiB (the page keeps the loss history it
// draws: a few bytes a step). CI runs a short version; BENCHMARKS.md records the full
// one (`node tests/browser/soak.mjs --steps 5000 --rounds 1000`).
//
//   node tests/browser/soak.mjs [--dist dist] [--steps 300] [--every 50] [--rounds 50] [--heap-slack 2]

import path from "node:path";
import { chromium } from "playwright-core";
import { serve } from "./server.mjs";
import { CHROMIUM, FLAGS, cliArgs, corpus, fail, log, memoryProbe, pageKit, smallRun } from "./lib.mjs";

const args = cliArgs();
const root = path.resolve(args.dist ?? "dist");
const steps = Number(args.steps ?? 300);
const every = Number(args.every ?? 50);
const rounds = Number(args.rounds ?? 50);
const slack = Number(args["heap-slack"] ?? 2) * 2 ** 20;
const warm = Math.min(2 * every, Math.floor(steps / 3)); // past the first checkpoints

const { server } = await serve(root, "/nonexistent");
const browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS });
const MiB = (b) => (b / 2 ** 20).toFixed(2);
const show = (m) => `metrics.jsonl ${MiB(m.metrics)} MiB, wasm ${MiB(m.wasm)} MiB, ${m.buffers} GPU buffers ${MiB(m.gpu)} MiB, page heap ${MiB(m.page_heap)} MiB, worker heap ${MiB(m.worker_heap)} MiB`;

// Each figure of `m` against the warm-up's `base`: the GPU buffers equal; the wasm memory grown
// by no more than HISTORY times what the run's metrics grew (the run format keeps every record,
// in the engine as records and as metrics.jsonl's text, and a growing buffer's reallocation
// holds the old copy and the new at once), 1 MiB aside; the heaps within the slack.
const HISTORY = 8;
function flat(what, base, m) {
  for (const k of ["buffers", "gpu"]) if (m[k] !== base[k]) fail(`${what}: ${k} went from ${base[k]} to ${m[k]}`);
  const history = m.metrics - base.metrics;
  if (m.wasm - base.wasm > HISTORY * history + 2 ** 20)
    fail(`${what}: the wasm memory grew by ${MiB(m.wasm - base.wasm)} MiB, the run's metrics by ${MiB(history)} MiB`);
  for (const k of ["page_heap", "worker_heap"]) if (m[k] - base[k] > slack) fail(`${what}: the ${k} grew by ${MiB(m[k] - base[k])} MiB`);
}

try {
  const context = await browser.newContext();
  const page = await context.newPage();
  const kit = pageKit(page);
  await page.goto(`http://127.0.0.1:${server.address().port}/`);
  await kit.ready();
  const memory = await memoryProbe(context, page);
  // with the size of the run's metrics.jsonl as last saved (the history the engine holds)
  const probe = async () => ({
    ...(await memory()),
    metrics: await page.evaluate(async () => {
      let n = 0;
      const runs = await (await navigator.storage.getDirectory()).getDirectoryHandle("wgpt-runs", { create: true });
      for await (const [, dir] of runs.entries())
        if (dir.kind === "directory") n = Math.max(n, await dir.getFileHandle("metrics.jsonl").then((f) => f.getFile()).then((f) => f.size, () => 0));
      return n;
    }),
  });
  await kit.paste(corpus());
  await smallRun(kit, { steps, every });
  const t0 = Date.now();
  await kit.byId("train-start").click();
  await kit.stepAtLeast(warm + 1);
  const base = await probe();
  log(`training, step ${await kit.step()}: ${show(base)}`);
  const samples = [{ at: `step ${await kit.step()}`, ...base }];
  for (let q = 1; q <= 4; q++) {
    await kit.stepAtLeast(warm + Math.floor(((steps - warm) * q) / 4) - 1, 3_600_000);
    const m = await probe();
    samples.push({ at: `step ${await kit.step()}`, ...m });
    log(`training, step ${await kit.step()}: ${show(m)}`);
    flat(`training at step ${await kit.step()}`, base, m);
  }
  await kit.status("Done", 600_000);
  const seconds = (Date.now() - t0) / 1e3;
  log(`${steps} steps in ${seconds.toFixed(0)} s (${(seconds / steps * 1e3).toFixed(0)} ms a step), loss ${await kit.text("train-loss")}`);

  // generate and cancel: each round waits for a first token, cancels, and waits for the end
  await kit.byId("max-tokens").fill("200");
  // each round's token count (the "N tokens" of the speed line): under 200 where the cancel took
  const genRounds = (rounds) => page.evaluate(async (rounds) => {
    const gen = document.querySelector('[data-testid="generate"]');
    const stop = document.getElementById("gen-stop");
    const out = document.querySelector('[data-testid="output"]');
    const speed = document.getElementById("gen-speed");
    const until = (f) => new Promise((resolve) => { const tick = () => (f() ? resolve() : setTimeout(tick, 5)); tick(); });
    const counts = [];
    for (let i = 0; i < rounds; i++) {
      await until(() => !gen.disabled);
      gen.click();
      await until(() => out.textContent !== "");
      stop.click();
      await until(() => !gen.disabled && speed.textContent !== "");
      counts.push(parseInt(speed.textContent, 10));
    }
    return counts;
  }, rounds);
  // a few rounds first: the first generations grow the wasm memory once (the sampler's buffers)
  const first = await genRounds(Math.max(1, Math.floor(rounds / 10)));
  const rounds0 = await probe();
  log(`after ${first.length} rounds of generate and cancel: ${show(rounds0)}`);
  const g0 = Date.now();
  const counts = first.concat(await genRounds(rounds - first.length));
  const done = counts.length;
  const uncancelled = counts.filter((n) => !(n >= 1 && n < 200));
  if (uncancelled.length) fail(`${uncancelled.length} of ${done} generations were not cancelled: ${uncancelled.slice(0, 5)} tokens`);
  const end = await probe();
  samples.push({ at: `${done} generate/cancel rounds`, ...end });
  log(`${done - first.length} more rounds of generate and cancel in ${((Date.now() - g0) / 1e3).toFixed(1)} s: ${show(end)}`);
  flat(`after ${done} rounds of generate and cancel`, rounds0, end);
  console.log(
    `soak: ${steps} steps (a checkpoint every ${every}) and ${done} generate/cancel rounds (${Math.min(...counts)} to ${Math.max(...counts)} tokens each); ` +
      samples.map((s) => `${s.at}: ${show(s)}`).join("; "),
  );
  console.log("PASS");
} catch (e) {
  process.exitCode = 1;
  console.error(e.message);
} finally {
  await browser.close();
  server.close();
}
