// End to end, the second half (e2e.mjs is the first): the page built by `trunk build --offline
// --release` (dist/) in headless Chromium on SwiftShader's WebGPU, with a corpus pasted in.
// Plays the Hugging Face hub (the tiny HF-layout GPT-2 of ../shared/data/hf-tiny-gpt2 under
// /hubmock/{repo}/resolve/main/{file}, the first download of model.safetensors cut off half way):
// "Load GPT-2" retries from where it broke, the greedy continuation equals the file's
// `greedy_text` (HF transformers' own), look inside shows it (the lens' last layer top-1 is
// greedy's first token, hovering its attention names query, key and weight), the second load
// comes from the browser's cache, and the model fine-tunes a few steps. Then parity in the page
// (PyTorch's numbers on this GPU), a diverged run that resumes from its checkpoint with the lower
// learning rate the page offers, a CLI run zipped by `wgpt export-run` that comes back in the
// page's Import run done at its step and trains on when asked, and that zip dropped at once after
// a reload (the engine still loading): it waits for the GPU, then at its step for the user.
//
//   node tests/browser/e2e-views.mjs [--dist dist] [--screenshot target/browser/views-e2e.png]
//                                    [--hub-dir ../shared/data/hf-tiny-gpt2]
//                                    [--parity-file ../shared/data/parity/tiny.safetensors]
//                                    [--wgpt target/debug/wgpt]

import fs from "node:fs";
import path from "node:path";
import { checkLook, cliArgs, corpus, fail, inked, openE2e, resumeHeld, showTab } from "./lib.mjs";

const args = cliArgs();
const root = path.resolve(args.dist ?? "dist");
const shot = path.resolve(args.screenshot ?? "target/browser/views-e2e.png");
const hubDir = path.resolve(args["hub-dir"] ?? "../shared/data/hf-tiny-gpt2");
const wgptBin = path.resolve(args.wgpt ?? "target/debug/wgpt");
const e2e = await openE2e({ root, hubDir, wgptBin, cutFirst: true });
const { page, byId, text, waitEvent, url, hubLog, scratch, wgpt, haveCli } = e2e;

try {
  await e2e.open();
  await e2e.paste(corpus());
  // the hub: load GPT-2 (here the tiny HF-layout one) with progress, through a cut connection
  if (!fs.existsSync(path.join(hubDir, "model.safetensors"))) {
    if (process.env.CI) fail(`${hubDir} is missing: the hub test needs ../shared/data/hf-tiny-gpt2`);
    console.log(`SKIP the hub test: ${hubDir} is missing (outside CI)`);
  } else {
    const st = fs.readFileSync(path.join(hubDir, "expected.safetensors"));
    const meta = JSON.parse(st.subarray(8, 8 + Number(st.readBigUInt64LE(0))).toString("utf8")).__metadata__;
    await byId("hub-url").fill(`${url}hubmock`);
    const t1 = Date.now();
    await byId("load-gpt2").click();
    await page.waitForFunction(() => !document.querySelector('[data-testid="download-progress"]').hidden, null, { timeout: 30_000 });
    await page.waitForFunction(() => document.querySelector('[data-testid="status"]').textContent.startsWith("Imported"), null, { timeout: 300_000 });
    const first = (Date.now() - t1) / 1e3;
    console.log(`hub load: ${await text("download-progress")}; ${await text("status")}`);
    console.log(`hub requests ${JSON.stringify(hubLog.requests)}, ranges ${JSON.stringify(hubLog.ranges)}, cut ${hubLog.cut}`);
    if (hubLog.cut !== 1 || !hubLog.ranges.some((r) => r.startsWith("model.safetensors from ")) || !(await text("download-progress")).includes("100%"))
      fail("the cut download was not resumed with a range request");
    await byId("prompt").fill(meta.prompt);
    await byId("temperature").fill("0");
    await byId("max-tokens").fill("20");
    await byId("generate").click();
    await page.waitForFunction(() => document.getElementById("gen-speed").textContent !== "" && !document.querySelector('[data-testid="generate"]').disabled, null, { timeout: 120_000 });
    const greedy = await text("output");
    console.log(`greedy from the hub model: ${JSON.stringify(greedy)} (${await page.textContent("#gen-speed")})`);
    if (greedy !== meta.greedy_text) fail(`greedy ${JSON.stringify(greedy)} != transformers' ${JSON.stringify(meta.greedy_text)}`);
    // look inside: the logit lens' last layer (the model's own distribution) starts greedy's text;
    // layer 1's heads, head 1 large
    const hubLook = await waitEvent("inspect", { prompt: meta.prompt }, 60_000);
    await checkLook(page, hubLook, "look inside the hub model");
    const lensTop1 = await page.getAttribute(`[data-testid="logit-lens"] tr[data-layer="${hubLook.n_layer}"]`, "data-top1");
    if (!meta.greedy_text.startsWith(lensTop1)) fail(`the logit lens' last layer's top-1 ${JSON.stringify(lensTop1)} is not greedy's first token`);
    await showTab(page, "attention-layer");
    await page.selectOption('[data-testid="attention-layer"]', "1");
    await page.waitForFunction(() => (window.wgptEvents || []).some((e) => e.type === "inspect" && e.layer === 1), null, { timeout: 60_000 });
    await page.selectOption('[data-testid="attention-head"]', "1");
    const box = await byId("attention-canvas").boundingBox();
    await byId("attention-canvas").hover({ position: { x: box.width * 0.6, y: box.height * 0.9 } });
    const hovered = await text("attention-hover");
    console.log(`logit lens' last layer top-1 ${JSON.stringify(lensTop1)} starts greedy's ${JSON.stringify(meta.greedy_text.slice(0, 20))}; hover: ${hovered}`);
    if (!/query .* attends to key .* with weight \d\.\d{3}/.test(hovered) || !hovered.includes("Layer 1, head 1")) fail(`hovering the attention says ${JSON.stringify(hovered)}`);
    // the second load comes from the cache: no request reaches the hub
    const before = JSON.stringify(hubLog.requests);
    const t2 = Date.now();
    await byId("load-gpt2").click();
    await page.waitForFunction(() => document.querySelector('[data-testid="status"]').textContent.includes("from this browser's cache"), null, { timeout: 300_000 });
    console.log(`hub load: ${first.toFixed(1)} s downloading, ${((Date.now() - t2) / 1e3).toFixed(1)} s from the cache (${await text("status")})`);
    if (JSON.stringify(hubLog.requests) !== before) fail(`the second load went to the hub: ${before} -> ${JSON.stringify(hubLog.requests)}`);
    // fine-tune it a few steps on the corpus with GPT-2's tokenizer
    await byId("train-start").click();
    await page.waitForFunction(() => Number(document.querySelector('[data-testid="step"]').textContent) >= 2, null, { timeout: 300_000 });
    await byId("train-stop").click();
    await page.waitForFunction(() => document.querySelector('[data-testid="status"]').textContent.startsWith("Stopped"), null, { timeout: 120_000 });
    console.log(`fine-tuned the hub model to step ${await text("step")}, train loss ${await text("train-loss")}, ${await text("tokens-per-sec")} tokens/s`);
  }
  // parity in the page: PyTorch's numbers for the tiny parity file, on this browser's GPU
  const parityFile = path.resolve(args["parity-file"] ?? "../shared/data/parity/tiny.safetensors");
  if (!fs.existsSync(parityFile)) {
    if (process.env.CI) fail(`${parityFile} is missing: the parity test needs ../shared/data/parity`);
    console.log(`SKIP the parity test: ${parityFile} is missing (outside CI)`);
  } else {
    await page.evaluate(() => (document.getElementById("parity-input").closest("details").open = true));
    await byId("parity-input").setInputFiles(parityFile);
    await page.waitForFunction(() => ["pass", "fail"].includes(document.querySelector('[data-testid="parity-result"]').dataset.state), null, { timeout: 300_000 });
    const rows = await page.$$eval('[data-testid="parity-result"] tbody tr', (trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent).join(" | ")));
    console.log(`parity in the page (${path.basename(parityFile)}):\n  ${rows.join("\n  ")}`);
    if ((await page.getAttribute('[data-testid="parity-result"]', "data-state")) !== "pass") fail("parity failed in the page");
    if (rows.length < 5) fail(`parity ran ${rows.length} checks; expected logits, loss, gradients, the AdamW step and the losses`);
  }
  // an absurd learning rate: the loss becomes NaN, training stops with a message, and the saved
  // checkpoint resumes with the lower learning rate the page offers
  await page.selectOption("#preset", "tiny");
  await page.dispatchEvent("#preset", "change");
  await page.evaluate(() => {
    const lr = document.getElementById("lr");
    lr.value = "1e6";
    lr.dispatchEvent(new Event("change"));
  });
  await byId("train-start").click();
  const diverged = await waitEvent("diverged", {}, 300_000);
  console.log(`diverged: ${diverged.message}`);
  if (diverged.saved !== 0 || !diverged.message.includes("kept")) fail(`diverged ${JSON.stringify(diverged)}`);
  await byId("lower-lr").fill("0.002");
  await byId("resume-lower-lr").click();
  const lowered = await waitEvent("restored", { id: diverged.id }, 120_000);
  await resumeHeld(page);
  await page.waitForFunction(() => Number(document.querySelector('[data-testid="step"]').textContent) >= 5, null, { timeout: 120_000 });
  const after = Number(await text("train-loss"));
  console.log(`resumed from step ${lowered.step} with lr 0.002: step ${await text("step")}, loss ${after}`);
  if (!Number.isFinite(after)) fail(`the loss after resuming is ${after}`);
  await byId("train-stop").click();
  await page.waitForFunction(() => document.querySelector('[data-testid="status"]').textContent.startsWith("Stopped"), null, { timeout: 120_000 });

  // CLI -> page: a CLI run, zipped by `wgpt export-run`, comes back in the page done at its step
  // (the page sends none of its Steps with it) and trains on to 8 when asked
  if (!haveCli) console.log(`SKIP CLI -> page: ${wgptBin} is missing (outside CI)`);
  else {
    const corpusPath = path.join(scratch, "lines.txt");
    fs.writeFileSync(corpusPath, corpus());
    const cliRun = path.join(scratch, "cli-run");
    const r = wgpt("train", "--preset", "tiny", "--data", corpusPath, "--max-iters", "4", "--eval-interval", "2", "--log-interval", "1", "--out", cliRun);
    if (r.code !== 0) fail(`wgpt train failed: ${r.out}`);
    const zip = path.join(scratch, "cli-run.zip");
    const x = wgpt("export-run", cliRun, zip);
    if (x.code !== 0) fail(`wgpt export-run failed: ${x.out}`);
    await page.evaluate(() => (window.wgptEvents = []));
    await byId("import-run-input").setInputFiles(zip);
    const back = await waitEvent("restored", {}, 120_000);
    console.log(`CLI run imported: ${back.name} at step ${back.step} of ${back.max_iters}, history ${back.history.train.length} losses and ${back.history.val.length} evaluations`);
    if (back.step !== 4 || back.max_iters !== 4 || back.history.train.length !== 4 || back.history.val.length !== 3) fail(`restored ${JSON.stringify(back)}`);
    await resumeHeld(page, { to: 8 });
    await page.waitForFunction(() => Number(document.querySelector('[data-testid="step"]').textContent) >= 5, null, { timeout: 120_000 });
    console.log(`the CLI run goes on in the page: step ${await text("step")}, loss ${await text("train-loss")}`);
    await byId("train-stop").click();
    await page.waitForFunction(() => document.querySelector('[data-testid="status"]').textContent.startsWith("Stopped"), null, { timeout: 120_000 });
    // Import run at once after a reload: a run zip dropped while the engine still loads waits for
    // the GPU and comes back at its step, done (it used to fail with "the GPU is not ready" and
    // be lost), and trains nothing until asked
    await page.reload();
    await page.waitForFunction(() => Array.isArray(window.wgptEvents), null, { timeout: 60_000 });
    await page.evaluate((b64) => {
      const dt = new DataTransfer();
      dt.items.add(new File([Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))], "early-run.zip"));
      document.body.dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
    }, fs.readFileSync(zip).toString("base64"));
    const early = await waitEvent("restored", {}, 300_000);
    const earlyErrors = await page.evaluate(() => window.wgptEvents.filter((e) => e.type === "error" && ["gpu", "restore"].includes(e.scope)).map((e) => e.message));
    console.log(`a run zip dropped at once after the page loaded: restored at step ${early.step}; errors ${JSON.stringify(earlyErrors)}`);
    if (early.step !== 4 || earlyErrors.length) fail(`the run dropped at load: ${JSON.stringify(early)}, errors ${JSON.stringify(earlyErrors)}`);
    await waitEvent("state", { state: "done", step: 4 }, 120_000);
    await page.waitForTimeout(2000);
    if ((await e2e.events("progress")).length) fail("a run dropped at load trained unasked");
    console.log(`then: ${await text("status")}`);
  }
  console.log("PASS");
} catch (e) {
  await e2e.failed(e, shot);
} finally {
  await e2e.close();
}
