// End to end, LoRA in the page's fine-tune panel (www/js/lora.js, src/web/adapters.rs): the page
// built by trunk (dist/) in headless Chromium on SwiftShader's WebGPU.
// - The hub mock's tiny GPT-2 (../shared/data/hf-tiny-gpt2) loads; LoRA rank 4 asked, the plan
//   line says what LoRA saves against a full fine-tune (the plan event's numbers); 20 steps
//   train and the loss falls.
// - Export adapter: a zip of adapter_config.json (peft's LoRA, base_model_name_or_path the hub
//   repo) and adapter_model.safetensors holding only lora_A/lora_B under peft's names; with the
//   CLI (target/debug/wgpt), `wgpt forward --model <adapter> --base <hub folder>` gives the next
//   token and its probability the page's look inside shows.
// - Export merged model: a zip of a Hugging Face directory that `wgpt forward` loads, with the
//   same next token and probability. The run zip carries the adapter, naming its base.
// - The page reloaded, the base loaded again (from the browser's cache) and the exported adapter
//   imported onto it (import-adapter-input): the greedy text equals the run's before the export.
//   An adapter for another base is refused with a message saying so.
//
//   node tests/browser/e2e-lora.mjs [--dist dist] [--screenshot target/browser/lora.png]

import fs from "node:fs";
import path from "node:path";
import zlib from "node:zlib";
import { cliArgs, corpus, fail, log, openE2e } from "./lib.mjs";

const args = cliArgs();
const root = path.resolve(args.dist ?? "dist");
const shot = path.resolve(args.screenshot ?? "target/browser/lora.png");
const hubDir = path.resolve(args["hub-dir"] ?? "../shared/data/hf-tiny-gpt2");
const REPO = "tiny/gpt2-lora";
const e2e = await openE2e({ root, hubDir, wgptBin: path.resolve("target/debug/wgpt") });
const { page, byId, text, url, greedy, waitEvent, scratch, wgpt, haveCli } = e2e;

// A zip's files, {name: Buffer} (stored or deflated entries, as the engine writes them).
function unzip(buf) {
  let end = buf.length - 22;
  while (end >= 0 && buf.readUInt32LE(end) !== 0x06054b50) end--;
  if (end < 0) fail("not a zip: no end of central directory");
  const files = {};
  let at = buf.readUInt32LE(end + 16);
  for (let i = 0; i < buf.readUInt16LE(end + 10); i++) {
    const [method, packed, n, extra, comment, local] = [10, 20, 28, 30, 32, 42].map((o, k) => (k === 1 || k === 5 ? buf.readUInt32LE(at + o) : buf.readUInt16LE(at + o)));
    const name = buf.subarray(at + 46, at + 46 + n).toString("utf8");
    const start = local + 30 + buf.readUInt16LE(local + 26) + buf.readUInt16LE(local + 28);
    const data = buf.subarray(start, start + packed);
    files[name] = method === 0 ? data : zlib.inflateRawSync(data);
    at += 46 + n + extra + comment;
  }
  return files;
}

// A safetensors file's tensor names.
const tensorNames = (st) => Object.keys(JSON.parse(st.subarray(8, 8 + Number(st.readBigUInt64LE(0))).toString("utf8"))).filter((k) => k !== "__metadata__");

// Loads the hub mock's model as REPO: the imported event.
async function hubLoad() {
  await e2e.clearEvents();
  await page.fill("#hub-url", `${url}hubmock`);
  await page.fill("#hub-repo", REPO);
  await byId("load-gpt2").click();
  return waitEvent("imported", {}, 180_000);
}

// The download a click on `id` starts: its name and bytes.
async function downloaded(id) {
  const [d] = await Promise.all([page.waitForEvent("download", { timeout: 120_000 }), byId(id).click()]);
  return { name: d.suggestedFilename(), bytes: fs.readFileSync(await d.path()) };
}

// `wgpt forward`'s most likely next token for `prompt`: {id, p}.
function cliNext(dir, prompt, base) {
  const r = wgpt("forward", "--model", dir, ...(base ? ["--base", base] : []), "--text", prompt, "--top", "1");
  if (r.code !== 0) fail(`wgpt forward --model ${dir} failed: ${r.out}`);
  const row = r.out.split("\n").find((l) => /^\s+1\s+\d+\s+[\d.e-]+/.test(l));
  if (!row) fail(`no rank-1 row in wgpt forward's output: ${r.out}`);
  const [, id, p] = row.trim().split(/\s+/);
  return { id: Number(id), p: Number(p) };
}

// Writes `files` into a new folder `name` of the scratch folder: its path.
function folder(name, files) {
  const dir = path.join(scratch, name);
  fs.mkdirSync(dir, { recursive: true });
  for (const [f, bytes] of Object.entries(files)) fs.writeFileSync(path.join(dir, f), bytes);
  return dir;
}

try {
  await e2e.open();
  await e2e.paste(corpus(300));
  const imported = await hubLoad();
  log(`loaded ${imported.name}: ${imported.n_layer} layers, ${imported.n_embd} dims, vocabulary ${imported.vocab_size}`);
  await e2e.custom(); // the context becomes editable
  for (const [id, v] of [["batch_size", 4], ["block_size", 16], ["max_iters", 20], ["eval_interval", 10], ["eval_iters", 1], ["lr", 0.01]]) await e2e.set(id, v);

  // LoRA rank 4: the plan says what it saves
  await e2e.clearEvents();
  await e2e.set("lora_rank", 4);
  const plan = await waitEvent("plan", {}, 60_000);
  if (!plan.lora || !(plan.memory_bytes < plan.lora.full_memory_bytes)) fail(`the plan has no LoRA savings: ${JSON.stringify(plan)}`);
  await page.waitForFunction(() => document.getElementById("lora-plan").textContent.includes("saves"), null, { timeout: 30_000 });
  const line = await text("lora-plan");
  log(`plan: ${line}`);
  if (!line.includes(plan.lora.params.toLocaleString("en-US"))) fail(`the LoRA line does not say the adapters' ${plan.lora.params} parameters: ${line}`);

  // 20 steps; the loss falls
  await e2e.clearEvents();
  await byId("train-start").click();
  await waitEvent("state", { state: "done" }, 600_000);
  const losses = (await e2e.events("progress")).map((p) => p.loss);
  const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const [first, last] = [mean(losses.slice(0, 3)), mean(losses.slice(-3))];
  log(`LoRA r 4: ${losses.length} steps, loss ${first.toFixed(3)} -> ${last.toFixed(3)}`);
  if (losses.length < 20 || !(last < first - 0.1)) fail(`the loss did not fall: ${losses.map((l) => l.toFixed(3)).join(" ")}`);
  const want = await greedy("the cat", 12);
  log(`greedy after training: ${JSON.stringify(want)}`);
  await byId("prompt").fill("the");
  await e2e.clearEvents();
  await byId("prompt").fill("the cat");
  const look = await waitEvent("inspect", { prompt: "the cat" }, 120_000);
  const top = look.sampling.bars[0];

  // Export adapter
  const adapterZip = await downloaded("export-adapter");
  const adapter = unzip(adapterZip.bytes);
  const config = JSON.parse(adapter["adapter_config.json"]);
  const names = tensorNames(adapter["adapter_model.safetensors"]);
  log(`${adapterZip.name}: ${Object.keys(adapter).join(", ")}; r ${config.r}, alpha ${config.lora_alpha}, base ${config.base_model_name_or_path}, targets ${config.target_modules}; ${names.length} tensors`);
  if (Object.keys(adapter).sort().join() !== "adapter_config.json,adapter_model.safetensors") fail(`the adapter zip holds ${Object.keys(adapter)}`);
  if (config.base_model_name_or_path !== REPO || config.r !== 4 || config.lora_alpha !== 8 || config.peft_type !== "LORA" || config.task_type !== "CAUSAL_LM")
    fail(`adapter_config.json: ${JSON.stringify(config)}`);
  const peftName = /^base_model\.model\.transformer\.h\.\d+\.(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.lora_[AB]\.weight$/;
  if (names.length !== imported.n_layer * 4 * 2 || !names.every((n) => peftName.test(n))) fail(`adapter_model.safetensors holds ${JSON.stringify(names)}`);

  // Export merged model, and the run zip
  const mergedZip = await downloaded("export-merged");
  const merged = unzip(mergedZip.bytes);
  log(`${mergedZip.name}: ${Object.keys(merged).join(", ")}`);
  if (!merged["config.json"] || !merged["model.safetensors"] || !merged["tokenizer.json"]) fail(`the merged zip holds ${Object.keys(merged)}`);
  const runZip = unzip((await downloaded("export-run")).bytes);
  if (JSON.parse(runZip["adapter_config.json"] ?? "{}").base_model_name_or_path !== REPO || !runZip["adapter_model.safetensors"]) fail(`the run zip holds ${Object.keys(runZip)}, no adapter naming ${REPO}`);

  if (haveCli) {
    // the CLI reads both exports, and agrees with the page's look inside
    const fromAdapter = cliNext(folder("adapter", adapter), "the cat", hubDir);
    const fromMerged = cliNext(folder("merged", merged), "the cat");
    log(`next token after "the cat": page ${top.id} (p ${top.before}), wgpt forward on the adapter ${fromAdapter.id} (p ${fromAdapter.p}), on the merged model ${fromMerged.id} (p ${fromMerged.p})`);
    for (const [what, got] of [["adapter", fromAdapter], ["merged model", fromMerged]])
      // wgpt forward prints 6 decimals: the page's probability rounded, give or take f32 noise
      if (got.id !== top.id || Math.abs(got.p - top.before) > 1e-6) fail(`wgpt forward on the exported ${what} gives ${JSON.stringify(got)}, the page ${JSON.stringify(top)}`);
  } else log("no target/debug/wgpt: the CLI checks of the exports are skipped");

  // reload; the base again, the adapter onto it: the same greedy text
  await e2e.open(); // a fresh load of the page
  await hubLoad();
  await e2e.clearEvents();
  await byId("import-adapter-input").setInputFiles([{ name: adapterZip.name, mimeType: "application/zip", buffer: adapterZip.bytes }]);
  const ev = await waitEvent("adapter_imported", {}, 120_000);
  log(`imported: ${await text("status")}`);
  if (ev.rank !== 4 || ev.merged || ev.base !== REPO) fail(`adapter_imported: ${JSON.stringify(ev)}`);
  const got = await greedy("the cat", 12);
  log(`greedy after the import: ${JSON.stringify(got)}`);
  if (got !== want) fail(`the imported adapter generates ${JSON.stringify(got)}, the run generated ${JSON.stringify(want)}`);

  // refused, saying why: tensors of another shape than the base's layers take (made for
  // another base, or another rank), and another peft method than LoRA
  const refusedFor = async (cfg) => {
    await e2e.clearEvents();
    await byId("import-adapter-input").setInputFiles([
      { name: "adapter_config.json", mimeType: "application/json", buffer: Buffer.from(JSON.stringify(cfg)) },
      { name: "adapter_model.safetensors", mimeType: "application/octet-stream", buffer: adapter["adapter_model.safetensors"] },
    ]);
    return (await waitEvent("error", { scope: "import" }, 60_000)).message;
  };
  const shapes = await refusedFor({ ...config, r: 2, lora_alpha: 4 });
  log(`an adapter of other shapes: ${shapes}`);
  if (!/has shape \[4, \d+\], but the base's .* needs \[2, \d+\]/.test(shapes)) fail(`the wrong-shaped adapter: ${shapes}`);
  const ia3 = await refusedFor({ ...config, peft_type: "IA3" });
  log(`an IA3 adapter: ${ia3}`);
  if (!/peft_type/.test(ia3)) fail(`the IA3 adapter: ${ia3}`);
  if ((await greedy("the cat", 12)) !== want) fail("a refused adapter changed the model");
  await page.screenshot({ path: shot, fullPage: true });
  log("e2e-lora passed");
} catch (e) {
  await e2e.failed(e, shot);
} finally {
  await e2e.close();
}
