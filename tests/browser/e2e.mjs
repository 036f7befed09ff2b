// End to end: the page built by `trunk build --offline --release` (dist/), served on localhost,
// in headless Chromium on SwiftShader's WebGPU. Loads a corpus through `corpus-input`, trains the
// default model for a few dozen steps (step rises, train loss falls, a val loss appears), samples
// from a prompt, loses the GPU device mid-run (training goes on from the last auto-checkpoint),
// exports the model as Hugging Face files and imports them back (the same text for the same prompt
// and seed), loads a non-UTF-8 file and checks the error while the page keeps working, reloads the
// page and resumes the saved run at its step (paused until Resume: nothing trains unasked) with
// every tensor's bytes as the page held them when it saved (Export before and after), and
// fills the storage quota (the failed checkpoint is reported, the previous one kept).
// Moves runs between the page and the CLI (`--wgpt`, the native binary): the page's Export run
// goes on in `wgpt train --resume run.zip` (step, lr and loss go on, the metrics keep the page's
// history), and a hostile run zip is refused with the page's run untouched.
// The views of issue 15 on the run it trains, each with the engine's numbers: `param-table` has a
// row per tensor and the plan's total, look inside mid-training for "the" fills `prompt-tokens`,
// the next-token bars, `logit-lens` and every head's attention, the bars follow the temperature,
// a prompt the vocabulary cannot spell is explained in look inside's own box, model FLOP/s shows
// beside tokens/s, `dynamics-chart` is drawn after the tracked steps with the table's live
// columns, the lens and bars are the same bit for bit after export and import, and
// `compare-runs` overlays two saved runs with their differing settings.
// Prints the figures BENCHMARKS.md records and saves a screenshot. e2e-views.mjs goes on with the
// hub model and its views, parity, divergence and runs from the CLI.
//
//   node tests/browser/e2e.mjs [--dist dist] [--screenshot target/browser/playground.png] [--steps 60]
//                              [--export-dir DIR]   (also write the exported files there)
//                              [--wgpt target/debug/wgpt]

import fs from "node:fs";
import path from "node:path";
import { checkLook, cliArgs, corpus, fail, inked, openE2e, resumeHeld, showTab } from "./lib.mjs";

const args = cliArgs();
const root = path.resolve(args.dist ?? "dist");
const shot = path.resolve(args.screenshot ?? "target/browser/playground.png");
const steps = Number(args.steps ?? 60);
const hubDir = path.resolve(args["hub-dir"] ?? "../shared/data/hf-tiny-gpt2");
const wgptBin = path.resolve(args.wgpt ?? "target/debug/wgpt");
const e2e = await openE2e({ root, hubDir, wgptBin, cutFirst: false });
const { page, byId, text, waitEvent, url, hubLog, scratch, wgpt, haveCli } = e2e;

// metrics.jsonl's records
const metricsOf = (dir) =>
  fs
    .readFileSync(path.join(dir, "metrics.jsonl"), "utf8")
    .split("\n")
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l));

// a safetensors file's tensors: {name: {dtype, shape, bytes}}
const tensorsOf = (st) => {
  const headerLen = Number(st.readBigUInt64LE(0));
  const header = JSON.parse(st.subarray(8, 8 + headerLen).toString("utf8"));
  const data = st.subarray(8 + headerLen);
  return Object.fromEntries(
    Object.entries(header)
      .filter(([k]) => k !== "__metadata__")
      .map(([k, t]) => [k, { dtype: t.dtype, shape: t.shape.join("x"), bytes: data.subarray(...t.data_offsets) }]),
  );
};

// every tensor of `got` has `want`'s dtype, shape and bytes; fails naming the first tensor and
// element that differ
const sameTensors = (what, want, got) => {
  const names = [...new Set([...Object.keys(want), ...Object.keys(got)])].sort();
  for (const name of names) {
    const [w, g] = [want[name], got[name]];
    if (!w || !g) fail(`${what}: ${name} is ${w ? "missing after" : "new after"} the reload`);
    if (w.dtype !== g.dtype || w.shape !== g.shape) fail(`${what}: ${name} was ${w.dtype} ${w.shape}, is ${g.dtype} ${g.shape}`);
    if (w.bytes.equals(g.bytes)) continue;
    let i = 0;
    while (w.bytes.readUInt32LE(4 * i) === g.bytes.readUInt32LE(4 * i)) i++;
    fail(`${what}: ${name}[${i}] of ${w.bytes.length / 4} differs: saved ${w.bytes.readFloatLE(4 * i)}, reloaded ${g.bytes.readFloatLE(4 * i)}`);
  }
  return names.length;
};

try {
  const t0 = Date.now();
  await e2e.open();
  console.log(`page ready (WebGPU + engine) after ${((Date.now() - t0) / 1e3).toFixed(1)} s`);

  // corpus through the file input
  await byId("corpus-input").setInputFiles({ name: "lines.txt", mimeType: "text/plain", buffer: Buffer.from(corpus()) });
  await page.waitForFunction(() => document.getElementById("c-name").textContent === "lines.txt", null, { timeout: 30_000 });
  await page.fill("#max_iters", String(steps));
  await page.dispatchEvent("#max_iters", "change");
  await page.fill("#eval_interval", String(Math.max(1, Math.floor(steps / 2))));
  await page.dispatchEvent("#eval_interval", "change");
  await page.waitForFunction(() => document.getElementById("m-params").textContent !== "—", null, { timeout: 60_000 });
  console.log(`corpus: ${await page.textContent("#c-chars")} chars, ${await page.textContent("#c-tokens")} tokens; model ${await page.textContent("#m-params")} parameters, ${await page.textContent("#m-memory")}`);

  // train
  const start = Date.now();
  await byId("train-start").click();
  await page.waitForFunction(() => Number(document.querySelector('[data-testid="step"]').textContent) >= 1, null, { timeout: 120_000 });
  const firstStep = (Date.now() - start) / 1e3;
  const firstLoss = Number(await text("train-loss"));
  console.log(`first step after ${firstStep.toFixed(1)} s, loss ${firstLoss}`);

  // the parameter table of the model being trained: a row per tensor, HF names, the total of the plan
  const params = await waitEvent("params", {}, 30_000);
  const nLayer = Number(await page.inputValue("#n_layer"));
  const planned = Number((await page.textContent("#m-params")).replaceAll(",", ""));
  const paramNames = await page.$$eval('[data-testid="param-table"] tr[data-name]', (trs) => trs.map((tr) => tr.dataset.name));
  if (paramNames.length !== 4 + 12 * nLayer + 1 || paramNames.length !== params.rows.length || !paramNames.includes("transformer.h.1.mlp.c_proj.weight") || !paramNames.includes("lm_head.weight"))
    fail(`param-table rows ${JSON.stringify(paramNames)}`);
  const total = (await text("param-total")).replaceAll(",", "");
  if (Number(total) !== params.total || params.total !== planned) fail(`param-table total ${total}, params event ${params.total}, plan ${planned}`);
  console.log(`param-table: ${paramNames.length} tensors, ${total} parameters (the plan's ${planned})`);
  // look inside mid-training, "the" typed as a new user would
  await page.evaluate(() => (window.wgptEvents = []));
  await byId("prompt").pressSequentially("the", { delay: 50 });
  const midLook = await waitEvent("inspect", { prompt: "the" }, 120_000);
  await page.waitForFunction(() => document.querySelector('[data-testid="look-caption"]').textContent.startsWith("Showing step"), null, { timeout: 30_000 });
  if (!(midLook.step >= 1 && midLook.step < steps)) fail(`the mid-training look is of step ${midLook.step}`);
  await checkLook(page, midLook, `look inside mid-training (step ${midLook.step})`);
  // the sampling bars follow the temperature, from the look's logits (no forward pass)
  const afterOf = () => page.$$eval('[data-testid="next-token-probs"] li', (lis) => lis.map((li) => li.dataset.after));
  const barsBefore = await afterOf();
  await byId("temperature").fill("2");
  await page.waitForFunction((t) => (window.wgptEvents || []).some((e) => e.type === "sampling" && e.sampling.settings.temperature === t), 2, { timeout: 60_000 });
  await page.waitForFunction((b) => JSON.stringify([...document.querySelectorAll('[data-testid="next-token-probs"] li')].map((li) => li.dataset.after)) !== b, JSON.stringify(barsBefore), { timeout: 30_000 });
  const barsHot = await afterOf();
  console.log(`sampling bars at temperature 0.8 -> 2: ${barsBefore.slice(0, 3).map(Number).map((p) => p.toFixed(3))} -> ${barsHot.slice(0, 3).map(Number).map((p) => p.toFixed(3))}; ${await page.textContent("#sampling-note")}`);
  if (!(Number(barsHot[0]) < Number(barsBefore[0]))) fail(`a hotter temperature did not flatten the top bar: ${barsBefore[0]} -> ${barsHot[0]}`);
  await byId("temperature").fill("0.8");
  // a prompt the vocabulary cannot spell: look inside says why, in its own box, and training goes on
  await byId("prompt").fill("XYZ");
  await page.waitForFunction(() => document.querySelector('[data-testid="look-caption"]').textContent.startsWith("Could not look inside"), null, { timeout: 60_000 });
  const why = await text("look-caption");
  console.log(`look inside for "XYZ": ${why}; prompt-tokens: ${await text("prompt-tokens")}`);
  if (!why.includes("none of the prompt's characters") || !why.includes("it knows") || (await page.getAttribute('[data-testid="prompt-tokens"]', "data-count")) !== "0")
    fail(`look inside for a prompt of unknown characters says ${JSON.stringify(why)}`);
  if (!(await byId("error").isHidden())) fail(`a prompt being typed raised a page error: ${await text("error")}`);
  await byId("prompt").fill("the");
  // throughput beside tokens/s
  const flopsText = await text("flops");
  console.log(`throughput: ${await text("tokens-per-sec")} tokens/s, ${flopsText}, MFU ${await text("mfu")}`);
  if (!/^\d+\.\d\d [MGT]FLOP\/s$/.test(flopsText)) fail(`model FLOP/s shows ${JSON.stringify(flopsText)}`);

  // pause, generate while paused (the step must not move), resume
  await page.waitForFunction(() => Number(document.querySelector('[data-testid="step"]').textContent) >= 5, null, { timeout: 120_000 });
  await byId("train-pause").click();
  await page.waitForTimeout(1500); // a step in flight may still land
  const pausedAt = await text("step");
  await byId("max-tokens").fill("10");
  await byId("generate").click();
  await page.waitForFunction(() => document.getElementById("gen-speed").textContent !== "", null, { timeout: 120_000 });
  const pausedOut = await text("output");
  if (pausedOut === "") fail("no text generated while paused");
  if ((await text("step")) !== pausedAt) fail(`training went on while paused: step ${pausedAt} -> ${await text("step")}`);
  console.log(`paused at step ${pausedAt}: generated ${JSON.stringify(pausedOut)}`);
  await byId("train-pause").click(); // Resume

  // the GPU device is lost after the checkpoint of step 30: training goes on from it
  const half = Math.floor(steps / 2);
  await waitEvent("saved", { step: half }, 300_000);
  await page.waitForFunction((n) => Number(document.querySelector('[data-testid="step"]').textContent) >= n, half + 3, { timeout: 120_000 });
  await page.evaluate(() => window.wgptDebug.loseDevice());
  const recovered = await waitEvent("recovered", {}, 120_000);
  console.log(`device lost at step ${recovered.lost_at} (${recovered.reason}); resumed on a new device from step ${recovered.step}`);
  if (recovered.step !== half || !(recovered.lost_at > half)) fail(`recovered ${JSON.stringify(recovered)}; expected the checkpoint of step ${half}`);
  await page.waitForFunction(
    (n) => Number(document.querySelector('[data-testid="step"]').textContent) >= n && document.querySelector('[data-testid="val-loss"]').textContent !== "",
    steps,
    { timeout: 600_000 },
  );
  await page.waitForFunction(() => !document.querySelector('[data-testid="generate"]').disabled, null, { timeout: 120_000 });
  const lastLoss = Number(await text("train-loss"));
  const valLoss = Number(await text("val-loss"));
  const tps = await text("tokens-per-sec");
  console.log(`after ${await text("step")} steps: train loss ${lastLoss}, val loss ${valLoss}, ${tps} tokens/s, ${((Date.now() - start) / 1e3).toFixed(1)} s in all`);
  if (!(lastLoss < firstLoss - 0.5)) fail(`train loss did not fall: ${firstLoss} -> ${lastLoss}`);
  if (!Number.isFinite(valLoss)) fail(`val loss is not a number: ${await text("val-loss")}`);
  // the training dynamics of every tracked step, charted per layer; the table's live columns
  await page.waitForFunction(() => Number(document.querySelector('[data-testid="dynamics-chart"]').dataset.points) >= 3, null, { timeout: 30_000 });
  const dynInk = await inked(page, "dynamics-chart");
  const points = await page.getAttribute('[data-testid="dynamics-chart"]', "data-points");
  const live = await page.$$eval('[data-testid="param-table"] tr[data-name="transformer.h.0.attn.c_attn.weight"] td', (tds) => tds.slice(4).map((td) => td.textContent));
  console.log(`dynamics-chart: ${points} tracked steps, ${(dynInk * 100).toFixed(1)}% inked; h.0.attn.c_attn.weight weight RMS, gradient RMS, update/weight: ${live.join(", ")} (${await text("params-caption")})`);
  if (!(dynInk > 0.03)) fail(`the dynamics chart is (nearly) blank: ${dynInk}`);
  if (live.length !== 3 || !live.every((x) => Number.isFinite(Number(x)) && Number(x) > 0)) fail(`the param table's live columns show ${JSON.stringify(live)}`);

  // generate after training
  await byId("prompt").fill("the cat");
  await byId("max-tokens").fill("40");
  await byId("generate").click();
  await page.waitForFunction(() => document.getElementById("gen-speed").textContent !== "", null, { timeout: 120_000 });
  const out = await text("output");
  console.log(`generated: ${JSON.stringify(out)} (${await page.textContent("#gen-speed")})`);
  if (out.trim() === "") fail("generation produced no text");
  await page.screenshot({ path: shot, fullPage: true });
  console.log(`screenshot: ${shot}`);

  // the look-inside numbers for the prompt: next-token probabilities read from the model's logits
  const inspectNow = async () => {
    await page.evaluate(() => {
      window.wgptEvents = [];
      document.getElementById("prompt").dispatchEvent(new Event("input"));
    });
    return waitEvent("inspect", {}, 120_000);
  };
  const seen = (ev) => ({ lens: ev.lens, bars: ev.sampling.bars });
  const topBefore = seen(await inspectNow());

  // Page -> CLI: the run as a zip goes on in `wgpt train --resume run.zip` where the page stopped
  const runDownload = page.waitForEvent("download");
  await byId("export-run").click();
  const runZipFile = await runDownload;
  const runZip = fs.readFileSync(await runZipFile.path());
  const exported = await waitEvent("export_run", {}, 60_000);
  console.log(`export run: ${runZipFile.suggestedFilename()}, ${runZip.length} bytes at step ${exported.step}`);
  if (exported.step !== steps || !runZipFile.suggestedFilename().endsWith(".zip")) fail(`exported ${JSON.stringify(exported)}`);
  const pageLoss = await text("train-loss");
  const pageLr = Number(await page.textContent("#lr-now"));
  if (!haveCli) console.log(`SKIP page -> CLI: ${wgptBin} is missing (outside CI)`);
  else {
    const zipPath = path.join(scratch, runZipFile.suggestedFilename());
    fs.writeFileSync(zipPath, runZip);
    const cliOut = path.join(scratch, "from-page");
    const more = steps + 6;
    const r = wgpt("train", "--resume", zipPath, "--out", cliOut, "--max-iters", String(more));
    if (r.code !== 0) fail(`wgpt train --resume ${zipPath} failed: ${r.out}`);
    const records = metricsOf(cliOut);
    const progress = records.filter((m) => "loss" in m);
    const pageSteps = progress.filter((m) => m.iter <= steps).map((m) => m.iter);
    const after = progress.filter((m) => m.iter > steps);
    console.log(`CLI: ${r.out.split("\n").find((l) => l.startsWith("resuming"))}; steps ${after.map((m) => m.iter).join(",")}, lr ${after[0]?.lr}, loss ${after[0]?.loss} -> ${after.at(-1)?.loss}`);
    if (JSON.stringify(pageSteps) !== JSON.stringify(Array.from({ length: steps }, (_, i) => i + 1)))
      fail(`the CLI's metrics lack the page's history (steps ${pageSteps.join(",")})`);
    if (progress.find((m) => m.iter === steps).loss.toFixed(4) !== pageLoss) fail(`the page's last loss ${pageLoss} is not in the CLI's metrics`);
    if (after[0]?.iter !== steps + 1 || after.at(-1).iter !== more) fail(`the CLI went on at steps ${after.map((m) => m.iter)}`);
    if (!(after[0].lr <= pageLr * 1.001 && after[0].lr > 0)) fail(`the lr did not go on from the page's ${pageLr}: ${after[0].lr}`);
    if (!(Math.abs(after[0].loss - Number(pageLoss)) < 0.5 && after[0].loss < firstLoss - 0.5))
      fail(`the loss did not go on from the page's ${pageLoss}: ${after[0].loss}`);
  }

  // a hostile run zip (an entry pointing outside the folder): refused, the page's run untouched
  const hostileZip = Buffer.from(runZip.toString("latin1").replaceAll("config.json", "../fig.json"), "latin1");
  const stepBefore = await text("step");
  await byId("import-run-input").setInputFiles({ name: "hostile.zip", mimeType: "application/zip", buffer: hostileZip });
  await page.waitForFunction(() => !document.querySelector('[data-testid="error"]').hidden, null, { timeout: 60_000 });
  const hostileErr = await text("error");
  console.log(`hostile run zip: ${JSON.stringify(hostileErr)}`);
  if (!hostileErr.includes("../fig.json") || !hostileErr.includes("outside")) fail(`the hostile zip's error says ${hostileErr}`);
  if ((await text("step")) !== stepBefore || (await byId("generate").isDisabled())) fail("the page lost its run to a hostile zip");

  // export: three downloads that make a Hugging Face GPT-2 directory
  const downloads = [];
  page.on("download", (d) => downloads.push(d));
  await byId("export").click();
  const deadline = Date.now() + 60_000;
  while (downloads.length < 3 && Date.now() < deadline) await page.waitForTimeout(200);
  const files = {};
  for (const d of downloads) files[d.suggestedFilename()] = fs.readFileSync(await d.path());
  const names = Object.keys(files).sort().join(", ");
  if (names !== "config.json, model.safetensors, tokenizer.json") fail(`export gave ${names}`);
  const config = JSON.parse(files["config.json"]);
  if (config.model_type !== "gpt2" || config.n_layer !== 2 || config.n_embd !== 64 || config.vocab_size !== 24)
    fail(`exported config.json: ${JSON.stringify(config)}`);
  const st = files["model.safetensors"];
  const headerLen = Number(st.readBigUInt64LE(0));
  const header = JSON.parse(st.subarray(8, 8 + headerLen).toString("utf8"));
  const wte = header["transformer.wte.weight"];
  if (!wte || wte.shape.join("x") !== "24x64" || header.__metadata__?.format !== "pt")
    fail(`exported model.safetensors header: ${JSON.stringify(header).slice(0, 300)}`);
  const tensors = Object.keys(header).filter((k) => k !== "__metadata__").length;
  // exactly GPT2LMHeadModel's parameters (lm_head tied, so absent), f32, in HF's shapes
  const [V, C, T, L] = [config.vocab_size, config.n_embd, config.n_positions, config.n_layer];
  const want = { "wte.weight": [V, C], "wpe.weight": [T, C], "ln_f.weight": [C], "ln_f.bias": [C] };
  for (let l = 0; l < L; l++)
    Object.assign(want, {
      [`h.${l}.ln_1.weight`]: [C], [`h.${l}.ln_1.bias`]: [C], [`h.${l}.attn.c_attn.weight`]: [C, 3 * C], [`h.${l}.attn.c_attn.bias`]: [3 * C],
      [`h.${l}.attn.c_proj.weight`]: [C, C], [`h.${l}.attn.c_proj.bias`]: [C], [`h.${l}.ln_2.weight`]: [C], [`h.${l}.ln_2.bias`]: [C],
      [`h.${l}.mlp.c_fc.weight`]: [C, 4 * C], [`h.${l}.mlp.c_fc.bias`]: [4 * C], [`h.${l}.mlp.c_proj.weight`]: [4 * C, C], [`h.${l}.mlp.c_proj.bias`]: [C],
    });
  const got = Object.fromEntries(Object.entries(header).filter(([k]) => k !== "__metadata__"));
  const wantKeys = Object.keys(want).map((k) => `transformer.${k}`).sort();
  if (JSON.stringify(Object.keys(got).sort()) !== JSON.stringify(wantKeys)) fail(`exported keys ${Object.keys(got).sort()} != ${wantKeys}`);
  for (const [k, shape] of Object.entries(want)) {
    const t = got[`transformer.${k}`];
    if (t.dtype !== "F32" || t.shape.join("x") !== shape.join("x")) fail(`exported ${k}: ${t.dtype} ${t.shape}, expected F32 ${shape}`);
  }
  for (const [field, value] of Object.entries({ activation_function: "gelu_new", layer_norm_epsilon: 1e-5, tie_word_embeddings: true, n_head: 2 }))
    if (config[field] !== value) fail(`exported config.json ${field} = ${config[field]}, expected ${value}`);
  if (!config.architectures?.includes("GPT2LMHeadModel")) fail(`exported config.json architectures: ${config.architectures}`);
  JSON.parse(files["tokenizer.json"]);
  if (args["export-dir"]) {
    fs.mkdirSync(args["export-dir"], { recursive: true });
    for (const [name, bytes] of Object.entries(files)) fs.writeFileSync(path.join(args["export-dir"], name), bytes);
  }
  console.log(`export: ${names}; ${tensors} tensors, ${st.length} bytes of safetensors`);

  // import the exported files back: the same prompt and seed give the same text
  await byId("import-input").setInputFiles(
    Object.entries(files).map(([name, buffer]) => ({ name, mimeType: "application/octet-stream", buffer })),
  );
  await page.waitForFunction(() => document.querySelector('[data-testid="status"]').textContent.startsWith("Imported"), null, { timeout: 60_000 });
  await byId("generate").click();
  await page.waitForFunction(() => document.getElementById("gen-speed").textContent !== "", null, { timeout: 120_000 });
  const again = await text("output");
  if (again !== out) fail(`the re-imported model generated ${JSON.stringify(again)}, the trained one ${JSON.stringify(out)}`);
  console.log("re-imported: the same 40 tokens for the same prompt and seed");
  // an imported model generates in the page's auto precision: f32 on SwiftShader (no shader-f16)
  const speed = await page.textContent("#gen-speed");
  if (!speed.endsWith(", f32")) fail(`the generate panel should say the precision (f32 on SwiftShader): ${JSON.stringify(speed)}`);
  // f16 asked on SwiftShader: f32 with the note, the same text, never an error
  await byId("precision").selectOption("f16");
  await byId("generate").click();
  await page.waitForFunction(() => document.getElementById("gen-speed").textContent !== "" && !document.querySelector('[data-testid="generate"]').disabled, null, { timeout: 120_000 });
  const f16Speed = await page.textContent("#gen-speed");
  if (!f16Speed.includes(", f32 (f16 asked, but this GPU adapter has no shader-f16")) fail(`f16 without shader-f16 should fall back to f32 and say so: ${JSON.stringify(f16Speed)}`);
  if ((await text("output")) !== out) fail(`f16 falling back to f32 generated ${JSON.stringify(await text("output"))}, f32 ${JSON.stringify(out)}`);
  console.log(`precision f16 on SwiftShader: ${f16Speed.slice(f16Speed.indexOf("f32"))}, the same text`);
  await byId("precision").selectOption("auto");
  const topAfter = seen(await inspectNow());
  if (JSON.stringify(topAfter) !== JSON.stringify(topBefore)) fail(`the logit lens and next-token bars after re-import ${JSON.stringify(topAfter)} != ${JSON.stringify(topBefore)}`);
  console.log(`re-imported: the same logit lens and next-token bars, bit for bit (${JSON.stringify(topAfter.bars.slice(0, 2))} ...)`);
  // the same three files dropped onto the page import too
  await page.evaluate(async (entries) => {
    document.querySelector('[data-testid="status"]').textContent = "";
    const dt = new DataTransfer();
    for (const [name, b64] of entries) dt.items.add(new File([Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))], name));
    document.body.dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
  }, Object.entries(files).map(([name, bytes]) => [name, bytes.toString("base64")]));
  await page.waitForFunction(() => document.querySelector('[data-testid="status"]').textContent.startsWith("Imported"), null, { timeout: 60_000 });
  console.log("dropped the three files on the page: imported");
  // fine-tune the imported model a few steps on the corpus, in f16 asked: on SwiftShader (no
  // shader-f16) the plan says it trains in f32 and why, and it trains; then stop
  await byId("train-precision").selectOption("f16");
  await page.waitForFunction(() => document.getElementById("plan-note").textContent.includes("f16 asked"), null, { timeout: 60_000 }).catch(() => {});
  const precisionPlan = await page.textContent("#plan-note");
  if (!precisionPlan.includes("Trains in f32. Note: f16 asked, but this GPU adapter has no shader-f16")) fail(`f16 training without shader-f16 should plan f32 and say why: ${JSON.stringify(precisionPlan)}`);
  await byId("train-start").click();
  await page.waitForFunction(() => Number(document.querySelector('[data-testid="step"]').textContent) >= 3, null, { timeout: 120_000 });
  await byId("train-stop").click();
  await page.waitForFunction(() => document.querySelector('[data-testid="status"]').textContent.startsWith("Stopped"), null, { timeout: 60_000 });
  const tunedLoss = Number(await text("train-loss"));
  if (!Number.isFinite(tunedLoss)) fail(`the f16-asked fine-tune's loss is ${tunedLoss}`);
  console.log(`fine-tuned the imported model (f16 asked: ${JSON.stringify(precisionPlan)}) to step ${await text("step")}, train loss ${tunedLoss}`);
  await byId("train-precision").selectOption("f32");

  // a non-UTF-8 file: a message, and the page keeps its corpus and keeps working
  await byId("corpus-input").setInputFiles({ name: "image.bin", mimeType: "application/octet-stream", buffer: Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0xff, 0xfe, 0x00]) });
  await page.waitForFunction(() => !document.querySelector('[data-testid="error"]').hidden, null, { timeout: 30_000 });
  const err = await text("error");
  console.log(`binary file: ${JSON.stringify(err)}`);
  if (!err.includes("image.bin")) fail(`the error does not name the file: ${err}`);
  if ((await page.textContent("#c-name")) !== "lines.txt") fail("the corpus changed after a bad file");
  await byId("temperature").fill("0");
  await byId("generate").click();
  await page.waitForFunction(() => document.querySelector('[data-testid="output"]').textContent !== "" && !document.querySelector('[data-testid="generate"]').disabled, null, { timeout: 120_000 });
  console.log(`still generating after the bad file: ${JSON.stringify(await text("output"))}`);
  const stoppedBefore = Number(await text("step"));

  // bad input, each row with a message that says what is wrong; the page keeps its model and state
  const expectError = async (what, action, needles) => {
    await page.evaluate(() => {
      const e = document.querySelector('[data-testid="error"]');
      e.hidden = true;
      e.textContent = "";
    });
    await action();
    await page.waitForFunction(() => !document.querySelector('[data-testid="error"]').hidden, null, { timeout: 60_000 });
    const err = await text("error");
    console.log(`${what}: ${JSON.stringify(err)}`);
    for (const n of needles) if (!err.includes(n)) fail(`${what}: the message does not say ${JSON.stringify(n)}`);
  };
  await expectError("empty corpus", async () => {
    await page.evaluate(() => (document.getElementById("paste").closest("details").open = true));
    await page.fill("#paste", "");
    await page.click("#paste-use");
  }, ["empty"]);
  await expectError("corpus over the limit", () =>
    page.evaluate(() => {
      const input = document.getElementById("corpus-input");
      const dt = new DataTransfer();
      dt.items.add(new File([new Uint8Array(200 * 1024 * 1024)], "huge.txt", { type: "text/plain" }));
      input.files = dt.files;
      input.dispatchEvent(new Event("change"));
    }), ["huge.txt", "at most 128 MiB"]);
  if ((await page.textContent("#c-name")) !== "lines.txt") fail("the corpus changed after a refused file");
  const importBad = (name, bytes) =>
    byId("import-input").setInputFiles(
      Object.entries({ ...files, [name]: bytes }).map(([name, buffer]) => ({ name, mimeType: "application/octet-stream", buffer })),
    );
  await expectError("truncated model.safetensors", () => importBad("model.safetensors", files["model.safetensors"].subarray(0, 1000)), ["model.safetensors"]);
  const hostile = Buffer.concat([Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00]), Buffer.from("{}")]);
  await expectError("huge safetensors header length", () => importBad("model.safetensors", hostile), ["model.safetensors"]);
  await expectError("config.json with a wrong field", () => importBad("config.json", Buffer.from(JSON.stringify({ ...config, n_embd: "wide" }))), ["n_embd"]);
  await expectError("malformed tokenizer.json", () => importBad("tokenizer.json", Buffer.from("{\"model\": ")), ["tokenizer.json"]);
  await page.fill("#batch_size", "10000000");
  await page.dispatchEvent("#batch_size", "change");
  await expectError("a batch past the device's limits", async () => {}, ["device limits", "bytes but this GPU", "What fits this GPU: batch size"]);
  await page.fill("#batch_size", "8");
  await page.dispatchEvent("#batch_size", "change");
  // a prompt longer than the context (32): the window slides, as documented
  await byId("prompt").fill("the cat sat on the mat. ".repeat(8));
  await byId("max-tokens").fill("10");
  await byId("generate").click();
  await page.waitForFunction(() => document.querySelector('[data-testid="output"]').textContent !== "" && !document.querySelector('[data-testid="generate"]').disabled, null, { timeout: 120_000 });
  console.log(`a 192-character prompt with a 32-token context: ${JSON.stringify(await text("output"))}`);
  if ((await text("step")) !== String(stoppedBefore)) fail("the model changed after bad input");
  await expectError("a corpus shorter than the context needs", async () => {
    await page.fill("#paste", "to be, or not to be");
    await page.click("#paste-use");
  }, ["at least 330"]);

  // the model the page holds, through Export: model.safetensors' tensors
  const exportedWeights = async () => {
    downloads.length = 0;
    await byId("export").click();
    const until = Date.now() + 60_000;
    while (downloads.length < 3 && Date.now() < until) await page.waitForTimeout(200);
    const model = downloads.find((d) => d.suggestedFilename() === "model.safetensors");
    if (!model) fail(`Export gave ${downloads.map((d) => d.suggestedFilename())}, no model.safetensors`);
    return tensorsOf(fs.readFileSync(await model.path()));
  };

  // reload: the saved runs are listed, and the newest (the fine-tune, saved on Stop) comes back
  // paused at its step, with the weights it was saved with bit for bit, and goes on at Resume
  const stoppedAt = Number(await text("step"));
  const savedWeights = await exportedWeights();
  await page.reload();
  await page.waitForFunction(() => document.querySelector('[data-testid="status"]').textContent.startsWith("Ready on"), null, { timeout: 120_000 });
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="saved-runs"] li[data-run]').length >= 2, null, { timeout: 60_000 });
  const listed = await page.$$eval('[data-testid="saved-runs"] li[data-run]', (lis) => lis.map((li) => li.textContent));
  console.log(`after a reload, saved runs:\n  ${listed.join("\n  ")}`);
  // compare runs: two saved runs' curves on one chart, the settings that differ highlighted
  await showTab(page, "compare-list");
  const ticks = byId("compare-list").locator("input[type=checkbox]");
  await ticks.nth(0).check();
  await ticks.nth(1).check();
  await page.waitForFunction(() => document.querySelector('[data-testid="compare-runs"]').dataset.runs === "2", null, { timeout: 60_000 });
  const differs = await page.$$eval('[data-testid="compare-legend"] tr[data-differs="true"]', (trs) => trs.map((tr) => tr.dataset.key));
  const cmpInk = await inked(page, "compare-runs");
  console.log(`compare-runs: 2 runs, ${(cmpInk * 100).toFixed(1)}% inked; differing settings ${differs.join(", ")}`);
  if (!(cmpInk > 0.02) || !differs.length) fail(`compare-runs drew ${cmpInk} with differing settings ${JSON.stringify(differs)}`);
  const newestStep = Number(await page.getAttribute('[data-testid="saved-runs"] li[data-run]', "data-step"));
  if (newestStep !== stoppedAt) fail(`the newest saved run is at step ${newestStep}, the fine-tune stopped at ${stoppedAt}`);
  if (!(await byId("resume").isVisible())) fail("after a reload the page does not offer to resume");
  await byId("resume").click();
  const restored = await waitEvent("restored", {}, 120_000);
  if (restored.step !== stoppedAt) fail(`resumed at step ${restored.step}, saved at ${stoppedAt}`);
  await page.waitForFunction(() => /^(Resume|Train on)/.test(document.querySelector('[data-testid="train-pause"]').textContent), null, { timeout: 120_000 });
  const reloadedWeights = await exportedWeights();
  const same = sameTensors("the run reloaded from the browser's storage", savedWeights, reloadedWeights);
  const bytes = Object.values(savedWeights).reduce((n, t) => n + t.bytes.length, 0);
  console.log(`reloaded from storage: the saved run's ${same} tensors (${bytes} bytes) equal the weights the page held at Stop, bit for bit`);
  await resumeHeld(page);
  await page.waitForFunction((n) => Number(document.querySelector('[data-testid="step"]').textContent) >= n, stoppedAt + 2, { timeout: 120_000 });
  console.log(`resumed ${restored.name} at step ${restored.step}; now at step ${await text("step")}, loss ${await text("train-loss")}`);
  // delete the oldest saved run: the list loses it
  const before = await page.locator('[data-testid="saved-runs"] li[data-run]').count();
  await byId("delete-run").last().click();
  await page.waitForFunction((n) => document.querySelectorAll('[data-testid="saved-runs"] li[data-run]').length === n - 1, before, { timeout: 60_000 });
  console.log(`deleted a saved run: ${before} -> ${before - 1}`);

  // a storage quota too small for a checkpoint: Stop's checkpoint fails with a message, the run stops normally
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("Storage.overrideQuotaForOrigin", { origin: new URL(url).origin, quotaSize: 64 * 1024 });
  await byId("train-stop").click();
  await page.waitForFunction(() => document.querySelector('[data-testid="status"]').textContent.includes("save the checkpoint"), null, { timeout: 60_000 });
  const quotaErr = await text("error");
  console.log(`quota: ${JSON.stringify(quotaErr)}`);
  if (!quotaErr.includes("QuotaExceededError") || !quotaErr.includes("the previous checkpoint is kept")) fail(`the quota error says ${quotaErr}`);
  await cdp.send("Storage.overrideQuotaForOrigin", { origin: new URL(url).origin });
  const wasm = fs.statSync(path.join(root, "wgpt_bg.wasm")).size;
  console.log(`wasm size: ${(wasm / 1024 / 1024).toFixed(2)} MiB`);
  console.log("PASS");
} catch (e) {
  await e2e.failed(e, shot);
} finally {
  await e2e.close();
}
