// End to end, the architecture switches in the page (www/js/arch.js, src/model/arch.rs): the page
// built by `trunk build --offline --release` (dist/) in headless Chromium on SwiftShader's WebGPU.
// - The presets from the engine's manifest set the switches together (GPT-2, Llama, Qwen3,
//   speedrun), each with its line; a switch changed afterwards keeps the others, and the settings
//   carry the preset and only that switch; the plan names the class Export writes
//   (`export-class`).
// - A link round-trips the switches into a fresh page.
// - A speedrun model (rope, RMSNorm, ReLU², qk-norm, untied, softcap) with one KV head trains a
//   few steps: its parameter table has wgpt's names (rope's row without parameters, an untied
//   lm_head, no wpe), the attention view says which KV head each query head shares, and it
//   exports as model_type "wgpt".
// - Its export, cut into a sharded checkpoint (model.safetensors.index.json and two shards) with a
//   generation_config.json whose eos token comes up in its greedy text, loads through the hub
//   mock and generates the same greedy text up to that token.
// - The tiny transformers-made Llama (sharded, GQA, untied) and Qwen3 (bf16, MQA, tied) of
//   tests/fixtures/hf_arch load through the hub mock and generate, or, while the kernels have no
//   SwiGLU, are refused by name before anything is allocated.
// - Compare runs names the switches that differ between the speedrun run and a GPT-2 one.
//
//   node tests/browser/e2e-arch.mjs [--dist dist] [--screenshot target/browser/arch.png]

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { cliArgs, corpus, fail, log, openE2e, showTab, smallRun } from "./lib.mjs";

const args = cliArgs();
const root = path.resolve(args.dist ?? "dist");
const shot = path.resolve(args.screenshot ?? "target/browser/arch.png");
const fixtures = path.resolve("tests/fixtures/hf_arch");
// the hub mock serves this folder whatever the repo: each load fills it first, under a repo name
// of its own (the page caches by URL)
const hubDir = fs.mkdtempSync(path.join(os.tmpdir(), "wgpt-hub-arch-"));
const e2e = await openE2e({ root, hubDir, wgptBin: path.resolve("target/debug/wgpt") });
const { page, byId, text, url, waitEvent } = e2e;

const SWITCHES = ["positions", "rope_theta", "norm", "norm_eps", "mlp", "intermediate_size", "n_kv_head", "head_dim", "qk_norm", "bias", "tied", "logit_softcap"];
// The Architecture group as a person sees it.
const controls = (p) =>
  p.evaluate((ids) => Object.fromEntries(ids.map((id) => [id, document.getElementById(id).type === "checkbox" ? document.getElementById(id).checked : document.getElementById(id).value])), ["arch-preset", ...SWITCHES]);
const carried = (link) => JSON.parse(Buffer.from(link.slice(link.indexOf("#run=") + 5), "base64url").toString("utf8"));

async function copy(p) {
  await p.evaluate(() => (document.querySelector('[data-testid="share-link"]').textContent = ""));
  await p.locator('[data-testid="share-copy"]').click();
  await p.waitForFunction(() => document.querySelector('[data-testid="share-link"]').textContent.includes("#run="), null, { timeout: 60_000 });
  return p.locator('[data-testid="share-link"]').textContent();
}

// The next plan (or the plan's refusal) after `act`.
async function planAfter(act) {
  await e2e.clearEvents();
  await act();
  const ev = await page.waitForFunction(() => (window.wgptEvents || []).find((e) => e.type === "plan" || (e.type === "error" && e.scope === "plan")), null, { timeout: 60_000 });
  return ev.jsonValue();
}

// A preset chosen: its switches as the form shows them, and what the plan says.
async function preset(name, want) {
  const plan = await planAfter(() => page.selectOption("#arch-preset", name));
  const got = await controls(page);
  for (const [k, v] of Object.entries(want)) if (got[k] !== v) fail(`preset ${name}: ${k} shows ${JSON.stringify(got[k])}, expected ${JSON.stringify(v)} (${JSON.stringify(got)})`);
  const about = await text("arch-about");
  log(`preset ${name}: ${about} | ${plan.type === "plan" ? `exports as ${plan.export_class}` : `plan refused: ${plan.message}`}`);
  if (!about || about.includes("Changed here")) fail(`preset ${name}'s line: ${JSON.stringify(about)}`);
  return plan;
}

// A safetensors file cut into two shards and their index: {name: bytes}.
function shard(bytes) {
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString("utf8"));
  const data = bytes.subarray(8 + n);
  const names = Object.keys(header).filter((k) => k !== "__metadata__").sort();
  const parts = [names.slice(0, names.length >> 1), names.slice(names.length >> 1)];
  const files = {};
  const weightMap = {};
  parts.forEach((part, i) => {
    const file = `model-0000${i + 1}-of-00002.safetensors`;
    const head = { __metadata__: { format: "pt" } };
    const chunks = [];
    let at = 0;
    for (const name of part) {
      const [b, e] = header[name].data_offsets;
      head[name] = { ...header[name], data_offsets: [at, at + e - b] };
      chunks.push(data.subarray(b, e));
      at += e - b;
      weightMap[name] = file;
    }
    let json = JSON.stringify(head);
    json += " ".repeat((8 - (json.length % 8)) % 8);
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    files[file] = Buffer.concat([len, Buffer.from(json), ...chunks]);
  });
  files["model.safetensors.index.json"] = Buffer.from(JSON.stringify({ metadata: { total_size: data.length }, weight_map: weightMap }));
  return files;
}

// The hub mock's folder holding exactly `files`.
function hubHolds(files) {
  for (const f of fs.readdirSync(hubDir)) fs.rmSync(path.join(hubDir, f));
  for (const [name, bytes] of Object.entries(files)) fs.writeFileSync(path.join(hubDir, name), bytes);
}

// Loads `repo` from the hub mock: the imported event, or the import's error.
async function hubLoad(repo) {
  await e2e.clearEvents();
  await page.fill("#hub-url", `${url}hubmock`);
  await page.fill("#hub-repo", repo);
  await byId("load-gpt2").click();
  const ev = await page.waitForFunction(() => (window.wgptEvents || []).find((e) => e.type === "imported" || (e.type === "error" && e.scope === "import")), null, { timeout: 120_000 });
  return ev.jsonValue();
}

// Greedy text for `prompt`, `n` tokens.
async function greedy(prompt, n) {
  await byId("prompt").fill(prompt);
  await byId("temperature").fill("0");
  await byId("max-tokens").fill(String(n));
  await page.evaluate(() => (document.getElementById("gen-speed").textContent = ""));
  await byId("generate").click();
  await page.waitForFunction(() => document.getElementById("gen-speed").textContent !== "" && !document.querySelector('[data-testid="generate"]').disabled, null, { timeout: 120_000 });
  return text("output");
}

// A char-level tokenizer.json (as Tokenizer::char_level writes it) of `chars`.
const charTokenizer = (chars) =>
  JSON.stringify({
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: [],
    normalizer: null,
    pre_tokenizer: null,
    post_processor: null,
    decoder: { type: "Fuse" },
    model: { type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab: Object.fromEntries([...chars].map((c, i) => [c, i])), merges: [] },
  });

try {
  await e2e.open();
  await page.context().grantPermissions(["clipboard-read", "clipboard-write"], { origin: new URL(url).origin });
  const text0 = corpus(300);
  await e2e.paste(text0);
  const labels = await page.$$eval("#arch-preset option", (os) => os.map((o) => o.textContent));
  log(`presets: ${labels.join(" | ")}`);
  if (labels.length !== 4 || !labels[0].startsWith("GPT-2 (2019)") || !labels[1].startsWith("Llama (2023)") || !labels[2].startsWith("Qwen3 (2025)") || !labels[3].startsWith("speedrun"))
    fail(`the presets are ${JSON.stringify(labels)}`);
  await page.waitForFunction(() => document.querySelector('[data-testid="export-class"]').textContent === "GPT2LMHeadModel", null, { timeout: 60_000 });

  // the presets set the switches together
  const llama = await preset("llama", { positions: "rope", norm: "rmsnorm", mlp: "swiglu", qk_norm: false, bias: false, tied: true, logit_softcap: "", n_kv_head: "" });
  const swigluRefused = llama.type === "error";
  if (swigluRefused && !/swiglu/.test(llama.message)) fail(`the Llama preset's plan failed: ${llama.message}`);
  if (!swigluRefused && llama.export_class !== "LlamaForCausalLM") fail(`the Llama preset exports as ${llama.export_class}`);
  if ((await page.getAttribute("#n_kv_head", "placeholder")) !== "n_head / 2") fail("Llama's KV heads placeholder");
  const qwen3 = await preset("qwen3", { positions: "rope", norm: "rmsnorm", norm_eps: "0.000001", mlp: "swiglu", qk_norm: true, bias: false, tied: true });
  if (qwen3.type === "plan" && qwen3.export_class !== "Qwen3ForCausalLM") fail(`the Qwen3 preset exports as ${qwen3.export_class}`);
  const speedrun = await preset("speedrun", { positions: "rope", norm: "rmsnorm", norm_eps: "0.00001", mlp: "relu2", qk_norm: true, bias: false, tied: false, logit_softcap: "15", n_kv_head: "" });
  if (speedrun.type !== "plan" || speedrun.export_class !== "WgptForCausalLM" || speedrun.model_type !== "wgpt") fail(`the speedrun plan: ${JSON.stringify(speedrun)}`);
  if (!(await text("export-class")).startsWith("WgptForCausalLM") || !(await page.textContent("#export-note")).includes("wgpt custom")) fail(`export-class shows ${await text("export-class")}${await page.textContent("#export-note")}`);

  // a switch changed after the preset keeps the others; the link carries the preset and that switch
  const before = await controls(page);
  await planAfter(() => page.selectOption("#norm", "layernorm"));
  const after = await controls(page);
  const moved = SWITCHES.filter((k) => after[k] !== before[k]);
  if (moved.join() !== "norm") fail(`changing norm moved ${moved}`);
  if (!(await text("arch-about")).includes("Changed here: norm")) fail(`the preset line after a change: ${await text("arch-about")}`);
  let sent = carried(await copy(page));
  // the switches a link sets (null: the preset's)
  const archKeys = (s) => Object.fromEntries(Object.entries(s).filter(([k, v]) => (k === "arch" || SWITCHES.includes(k)) && v !== null).sort());
  if (JSON.stringify(archKeys(sent)) !== '{"arch":"speedrun","norm":"layernorm"}') fail(`the link carries ${JSON.stringify(archKeys(sent))}`);
  await planAfter(() => page.selectOption("#norm", "rmsnorm"));

  // one KV head for both query heads (MQA), a softcap of 30: a link round-trips the switches
  await planAfter(() => e2e.set("n_kv_head", 1));
  await planAfter(() => e2e.set("logit_softcap", 30));
  const link = await copy(page);
  sent = carried(link);
  if (JSON.stringify(archKeys(sent)) !== '{"arch":"speedrun","logit_softcap":30,"n_kv_head":1}') fail(`the link carries ${JSON.stringify(archKeys(sent))}`);
  const mine = await controls(page);
  const fresh = await page.context().browser().newPage();
  await fresh.goto(link);
  await fresh.waitForFunction(() => (window.wgptEvents || []).some((e) => e.type === "link_opened"), null, { timeout: 180_000 });
  const theirs = await controls(fresh);
  for (const k of Object.keys(mine)) if (theirs[k] !== mine[k]) fail(`the link's page shows ${k} = ${JSON.stringify(theirs[k])}, the page that made it ${JSON.stringify(mine[k])}`);
  await fresh.context().grantPermissions(["clipboard-read", "clipboard-write"], { origin: new URL(url).origin });
  const again = archKeys(carried(await copy(fresh)));
  if (JSON.stringify(again) !== JSON.stringify(archKeys(sent))) fail(`the fresh page's link carries ${JSON.stringify(again)}, the first ${JSON.stringify(archKeys(sent))}`);
  await fresh.close();
  log(`a link round-trips the switches: ${JSON.stringify(again)}`);

  // the speedrun model trains
  await smallRun(e2e, { steps: 12, every: 6 });
  await byId("train-start").click();
  await waitEvent("state", { state: "done" }, 300_000);
  const params = await waitEvent("params");
  const rows = await page.$$eval('[data-testid="param-table"] tr[data-name]', (trs) => trs.map((tr) => [tr.dataset.name, tr.children[1].textContent, tr.children[3].textContent]));
  const row = (name) => rows.find((r) => r[0] === name);
  log(`speedrun: ${params.export_class}, ${rows.length} rows; ${row("transformer.rotary_emb")}; ${row("lm_head.weight")}; ${await text("params-caption")}`);
  if (params.export_class !== "WgptForCausalLM" || !row("transformer.rotary_emb")?.[2].startsWith("no parameters: q and k are rotated by position")) fail("the speedrun's table has no rope row");
  if (rows.some((r) => r[0].includes("wpe")) || !row("lm_head.weight") || row("lm_head.weight")[2].includes("same tensor") || !row("transformer.h.0.attn.q_norm.weight")) fail(`the speedrun's table: ${JSON.stringify(rows)}`);
  if ((await text("export-class")) !== "WgptForCausalLM") fail(`export-class after training: ${await text("export-class")}`);
  // look inside: both query heads share KV head 0
  await e2e.clearEvents();
  await byId("prompt").fill("the cat");
  const look = await waitEvent("inspect", {}, 120_000);
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="attention-heads"] button').length === 2, null, { timeout: 30_000 });
  const heads = await page.$$eval('[data-testid="attention-heads"] button', (bs) => bs.map((b) => b.textContent));
  log(`look inside: n_kv_head ${look.n_kv_head}; heads ${heads.join(", ")}; ${await text("attention-hover")}`);
  if (look.n_kv_head !== 1 || heads.join() !== "head 0 (KV head 0),head 1 (KV head 0)" || !(await text("attention-hover")).includes("grouped-query attention")) fail("the attention view does not say which KV head each query head shares");

  // greedy text, then the export (loaded back below as a sharded checkpoint through the hub)
  const want = await greedy("the ", 30);
  const downloads = [];
  page.on("download", (d) => downloads.push(d));
  await byId("export").click();
  const deadline = Date.now() + 60_000;
  while (downloads.length < 3 && Date.now() < deadline) await page.waitForTimeout(200);
  const files = {};
  for (const d of downloads) files[d.suggestedFilename()] = fs.readFileSync(await d.path());
  const config = JSON.parse(files["config.json"]);
  log(`export: ${Object.keys(files).join(", ")}; model_type ${config.model_type}, architectures ${config.architectures}`);
  if (config.model_type !== "wgpt") fail(`exported config.json: ${JSON.stringify(config)}`);

  // a GPT-2 run beside the speedrun one: Compare runs names the switches that differ
  await planAfter(() => page.selectOption("#arch-preset", "gpt2"));
  await e2e.clearEvents();
  await byId("train-start").click();
  await waitEvent("state", { state: "done" }, 300_000);
  await page.waitForFunction(() => document.querySelectorAll("#compare-list input[type=checkbox]").length >= 2, null, { timeout: 60_000 });
  // the list is drawn anew as runs save: ticked by id, each looked up when clicked
  const ids = await page.$$eval("#compare-list input[type=checkbox]", (bs) => bs.map((b) => b.dataset.run));
  await showTab(page, "compare-list"); // Compare runs is a tab: a closed one is chosen first
  for (const id of ids.slice(0, 2)) await page.locator(`#compare-list input[data-run="${id}"]`).check();
  await page.waitForFunction(() => document.getElementById("compare-note").textContent.includes("Architecture switches that differ"), null, { timeout: 60_000 });
  const note = await page.textContent("#compare-note");
  log(`compare: ${note}`);
  for (const k of ["positions", "norm", "mlp", "qk_norm", "bias", "tied", "logit_softcap", "n_kv_head"]) if (!note.includes(k)) fail(`Compare runs does not name ${k} as differing: ${note}`);
  await page.screenshot({ path: shot, fullPage: true });
  const vocab = JSON.parse(files["tokenizer.json"]).model.vocab;
  // an eos token that comes up in the greedy text for the first time at its 4th character or later
  const cut = [...want].findIndex((c, i) => i >= 3 && !want.slice(0, i).includes(c) && vocab[c] !== undefined);
  const eos = cut >= 0 ? [vocab[want[cut]]] : [];
  hubHolds({ "config.json": files["config.json"], "tokenizer.json": files["tokenizer.json"], "generation_config.json": Buffer.from(JSON.stringify({ eos_token_id: eos })), ...shard(files["model.safetensors"]) });
  const loaded = await hubLoad("tiny/speedrun-sharded");
  if (loaded.type !== "imported") fail(`the sharded speedrun did not load: ${loaded.message}`);
  log(`hub: ${JSON.stringify(e2e.hubLog.requests)}`);
  if (!e2e.hubLog.requests["model-00002-of-00002.safetensors"] || !e2e.hubLog.requests["model.safetensors.index.json"]) fail("the shards were not fetched");
  const got = await greedy("the ", 30);
  const expect = cut >= 0 ? want.slice(0, cut) : want;
  log(`greedy: trained ${JSON.stringify(want)}; loaded from shards, eos ${JSON.stringify(want[cut])}: ${JSON.stringify(got)}`);
  if (got !== expect) fail(`the sharded model generated ${JSON.stringify(got)}, expected ${JSON.stringify(expect)}`);
  const shown = await controls(page);
  if (shown["arch-preset"] !== "speedrun" || shown.n_kv_head !== "1" || shown.logit_softcap !== "30") fail(`the imported model's switches show ${JSON.stringify(shown)}`);

  // the tiny transformers-made Llama and Qwen3
  const tok = Buffer.from(charTokenizer("abcdefghijklmnopqrstuvwxyz .\n"));
  for (const [dir, cls] of [["qwen3_mqa_tied", "Qwen3ForCausalLM"], ["llama_gqa_untied", "LlamaForCausalLM"]]) {
    const from = path.join(fixtures, dir);
    const have = Object.fromEntries(fs.readdirSync(from).filter((f) => f !== "expected.safetensors").map((f) => [f, fs.readFileSync(path.join(from, f))]));
    hubHolds({ ...have, "tokenizer.json": tok });
    const ev = await hubLoad(`tiny/${dir}`);
    if (ev.type === "error") {
      log(`${dir}: refused: ${ev.message}`);
      if (!/not yet supported/.test(ev.message) || !/swiglu/.test(ev.message)) fail(`${dir} failed to load: ${ev.message}`);
      continue;
    }
    // the imported model's own class (the plan describes the form's model, not the held one)
    const params = await waitEvent("params", {}, 60_000);
    const out = await greedy("the ", 8);
    const shownClass = await text("export-class");
    log(`${dir}: imported as ${params.export_class} (shown: ${shownClass}); greedy ${JSON.stringify(out)}`);
    if (params.export_class !== cls) fail(`${dir} exports as ${params.export_class}`);
    if (shownClass !== cls) fail(`${dir}: the page says it exports as ${shownClass}`);
    if (!(await page.$(`[data-testid="param-table"] tr[data-name="model.layers.0.self_attn.k_proj.weight"]`))) fail(`${dir}'s table lacks Llama names`);
  }

  log(`e2e-arch passed${swigluRefused ? " (SwiGLU is not in the kernels yet: Llama and Qwen3 are refused by name)" : ""}`);
} catch (e) {
  await e2e.failed(e, shot);
} finally {
  await e2e.close();
  fs.rmSync(hubDir, { recursive: true, force: true });
}
