// End to end, the experiments gallery (www/js/experiments.js) and TinyStories (www/js/corpora.js):
// the page built by `trunk build --offline --release` (dist/) in headless Chromium on
// SwiftShader's WebGPU, with the hub mock serving a small fake TinyStories file.
// TinyStories: downloaded once with its progress (100%), chosen again offline from the browser's
// storage (no second request), and offline without a kept copy the message says so. Experiments:
// the gallery has a button per entry; an #experiment= link shows its entry and trains nothing;
// one entry (induction-head) runs shortened to 2 steps a run: both runs train one after the other,
// are ticked in Compare runs (2 curves, n_layer highlighted), and look inside's attention is kept
// at each run's start and end.
//
// `--shots DIR` then saves the page at 1440x900 with the experiments tab open on that entry
// (experiment.png, posterised), for docs/.
//
//   node tests/browser/e2e-experiments.mjs [--dist dist] [--screenshot target/browser/experiments.png] [--shots DIR]

import fs from "node:fs";
import path from "node:path";
import { cliArgs, fail, log, openE2e, posterised, showTab } from "./lib.mjs";

const args = cliArgs();
const root = path.resolve(args.dist ?? "dist");
const shot = path.resolve(args.screenshot ?? "target/browser/experiments.png");
const FILE = "TinyStoriesV2-GPT4-valid.txt";
// a few hundred short stories (the real file is ~20 MB of them, separated so)
const who = ["Lily", "Tom", "a little dog", "the old cat", "Ben", "a small bird"];
const did = ["found a red ball", "went to the park", "was very happy", "shared a cake", "saw a big tree", "helped a friend"];
const stories = Array.from({ length: 600 }, (_, i) => `Once upon a time, ${who[i % 6]} ${did[(i * 5) % 6]}. The end.\n<|endoftext|>\n`).join("");
const e2e = await openE2e({ root, hubDir: path.resolve("../shared/data/hf-tiny-gpt2"), wgptBin: path.resolve("target/debug/wgpt"), datasets: { [FILE]: Buffer.from(stories) } });
const { page, byId, text, url, hubLog, context } = e2e;
const mock = (file) => `${url}hubmock/datasets/roneneldan/TinyStories/resolve/main/${file}`;

// Chooses TinyStories in the built-in corpora; resolves with the status or error it ends in.
async function chooseTinyStories() {
  await page.evaluate(() => (window.wgptEvents = []));
  await page.selectOption("#builtin", "");
  await page.selectOption("#builtin", "tinystories");
  await page.waitForFunction(() => (window.wgptEvents || []).some((e) => e.type === "corpus") || !document.querySelector('[data-testid="error"]').hidden, null, { timeout: 60_000 });
}

try {
  await e2e.open();
  // TinyStories: the first choice downloads it, with progress
  await byId("tinystories-url").fill(mock(FILE));
  await chooseTinyStories();
  await page.waitForFunction(() => document.getElementById("c-name").textContent === "TinyStories", null, { timeout: 60_000 });
  const first = await text("corpus-dl-text");
  log(`TinyStories: ${first}; corpus ${await page.textContent("#c-bytes")}; requests ${JSON.stringify(hubLog.requests)}`);
  if (!first.includes("100%") || !first.includes("downloaded")) fail(`the progress says ${JSON.stringify(first)}`);
  if (hubLog.requests[`datasets/${FILE}`] !== 1) fail(`the hub saw ${JSON.stringify(hubLog.requests)}`);
  const bar = await page.evaluate(() => [document.getElementById("corpus-bar").value, document.getElementById("corpus-bar").max]);
  if (bar[0] !== bar[1] || bar[1] !== stories.length) fail(`the progress bar is at ${bar} of ${stories.length} bytes`);
  // a reload, then offline: it comes from the browser's storage
  await e2e.open();
  await byId("tinystories-url").fill(mock(FILE));
  await context.setOffline(true);
  await chooseTinyStories();
  await page.waitForFunction(() => document.getElementById("c-name").textContent === "TinyStories", null, { timeout: 60_000 });
  const again = await text("corpus-dl-text");
  log(`offline, after a reload: ${again}; requests ${JSON.stringify(hubLog.requests)}`);
  if (!again.includes("storage") || hubLog.requests[`datasets/${FILE}`] !== 1) fail(`offline TinyStories: ${again}, ${JSON.stringify(hubLog.requests)}`);
  // offline, a file not kept: the message says so and the corpus stays
  await byId("tinystories-url").fill(mock("TinyStories-other.txt"));
  await chooseTinyStories();
  const offline = await text("error");
  log(`offline without a kept copy: ${offline}`);
  if (!offline.includes("offline") || !offline.includes("not kept")) fail(`the offline message is ${JSON.stringify(offline)}`);
  if ((await page.textContent("#c-name")) !== "TinyStories") fail("a failed download changed the corpus");
  await context.setOffline(false);

  // an experiment's link shows its entry and trains nothing
  await page.goto("about:blank");
  await page.goto(`${url}#experiment=positions`);
  await e2e.event("ready", {}, 180_000);
  await page.waitForFunction(() => !document.querySelector('[data-testid="experiment-about"]').hidden, null, { timeout: 30_000 });
  const title = await page.textContent("#experiment-title");
  const buttons = await page.$$eval('[data-testid="experiment-gallery"] button', (bs) => bs.map((b) => b.dataset.testid));
  log(`#experiment=positions shows ${JSON.stringify(title)}; gallery ${buttons.join(", ")}`);
  if (!/positions/i.test(title)) fail(`#experiment=positions shows ${title}`);
  for (const name of ["architectures", "optimizers", "positions", "grokking", "induction-head", "tied-head"])
    if (!buttons.includes(`experiment-${name}`)) fail(`the gallery lacks experiment-${name}`);
  const runLinks = await page.$$eval('[data-testid="experiment-runs"] a', (as) => as.map((a) => a.getAttribute("href")));
  if (runLinks.length !== 3 || !runLinks.every((l) => l.startsWith("#run="))) fail(`the runs' links: ${runLinks}`);
  await page.waitForTimeout(1000);
  if ((await e2e.events("state")).length) fail("opening an experiment's link trained something");

  // one experiment, shortened: its runs train one after the other and are overlaid
  await byId("experiment-induction-head").click();
  await byId("experiment-steps").fill("2");
  await page.dispatchEvent('[data-testid="experiment-steps"]', "input");
  log(`estimate: ${await text("experiment-estimate")}`);
  if (!(await text("experiment-estimate")).includes("4 steps in all")) fail(`the estimate says ${await text("experiment-estimate")}`);
  if (!(await text("experiment-link")).endsWith("#experiment=induction-head")) fail(`the link is ${await text("experiment-link")}`);
  const t0 = Date.now();
  await byId("experiment-run").click();
  await page.waitForFunction(() => /^(Done|The experiment stopped)/.test(document.querySelector('[data-testid="experiment-status"]').textContent), null, { timeout: 540_000 });
  const status = await text("experiment-status");
  log(`experiment: ${status} (${((Date.now() - t0) / 1e3).toFixed(0)} s)`);
  if (!status.startsWith("Done")) fail(`the experiment ended: ${status}`);
  const starts = (await e2e.events("state")).filter((e) => e.state === "done");
  if (starts.length !== 2 || !starts.every((e) => e.step === 2)) fail(`runs done: ${JSON.stringify(starts)}`);
  await page.waitForFunction(() => document.querySelector('[data-testid="compare-runs"]').dataset.runs === "2", null, { timeout: 60_000 });
  const differs = await page.$$eval('[data-testid="compare-legend"] tr[data-differs="true"]', (trs) => trs.map((tr) => tr.dataset.key));
  log(`Compare runs: 2 runs; settings that differ: ${differs.join(", ")}`);
  if (!differs.some((k) => k.endsWith("n_layer"))) fail(`Compare runs does not highlight n_layer: ${differs}`);
  const figures = await page.$$eval('[data-testid="experiment-attention"] figure', (fs) => fs.map((f) => `${f.dataset.run}:${f.dataset.at}`));
  log(`attention kept: ${figures.join(", ")}`);
  if (!figures.includes("1-layer:start") || !figures.includes("2-layers:start") || !figures.some((f) => f.endsWith(":end"))) fail(`attention kept: ${figures}`);
  await byId("experiments").screenshot({ path: shot });
  if (args.shots) {
    await page.setViewportSize({ width: 1440, height: 900 });
    await showTab(page, "experiments");
    await page.evaluate(() => document.getElementById("view-tabs").scrollIntoView({ block: "start" }));
    await page.waitForTimeout(500);
    fs.writeFileSync(path.join(path.resolve(args.shots), "experiment.png"), await posterised(page, await page.screenshot()));
  }
  log(`PASS (screenshot ${shot})`);
} catch (e) {
  await e2e.failed(e, shot);
} finally {
  await e2e.close();
}
