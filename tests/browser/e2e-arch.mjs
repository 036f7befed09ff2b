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
// - Compare runs names the switches that differ between the speedrun run and a GPT-2 one.
// - A Llama-preset model (rope, RMSNorm, SwiGLU, two KV heads for four query heads, tied) trains
//   on Tiny Shakespeare (the page's download, answered from ../shared/data): its loss falls, the
//   plan says it exports as LlamaForCausalLM, and Export writes transformers' Llama files
//   (config.json's model_type and architectures, the state-dict names and shapes), from which
//   `wgpt forward` gives the page's next-token probabilities (within 1e-4) and `wgpt sample`
//   the page's greedy text (with target/debug/wgpt).
// - The tiny transformers-made Llama (sharded, GQA, untied) and Qwen3 (bf16, MQA, tied) of
//   tests/fixtures/hf_arch load through the hub mock and generate transformers' greedy
//   continuation of the fixture's prompt token for token (expected.safetensors, written by
//   tests/fixtures/make_hf_arch.py), up to the generation config's eos.
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
const shakespeare = path.resolve("../shared/data/tinyshakespeare.txt");
// where the page downloads Tiny Shakespeare from (www/js/app.js); the test answers it
const SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt";
// the hub mock serves this folder whatever the repo: each load fills it first, under a repo name
// of its own (the page caches by URL)
const hubDir = fs.mkdtempSync(path.join(os.tmpdir(), "wgpt-hub-arch-"));
const e2e = await openE2e({ root, hubDir, wgptBin: path.resolve("target/debug/wgpt") });
const { page, byId, text, url, greedy, waitEvent } = e2e;

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

// A safetensors file's header ({name: {dtype, shape, data_offsets}}) and its data.
function safetensors(bytes) {
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString("utf8"));
  delete header.__metadata__;
  return { header, data: bytes.subarray(8 + n) };
}

// An I64 tensor of a safetensors file (the token ids of expected.safetensors) as numbers.
function i64(bytes, name) {
  const { header, data } = safetensors(bytes);
  const t = header[name];
  if (!t || t.dtype !== "I64") fail(`expected.safetensors has no I64 tensor ${name}: ${JSON.stringify(t)}`);
  const [b, e] = t.data_offsets;
  return Array.from({ length: (e - b) / 8 }, (_, i) => Number(data.readBigInt64LE(b + 8 * i)));
}

// Token i of the tiny models' char tokenizers is ALPHABET[i] (no whitespace, so the page's text
// maps back to ids one character a token).
const ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";

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

// The state-dict names and shapes of a tied LlamaForCausalLM without biases, as transformers
// saves it: {name: [out, in]} (no lm_head.weight: the head is embed_tokens).
function llamaTensors({ vocab_size: V, hidden_size: C, intermediate_size: I, num_hidden_layers: L, num_attention_heads: NH, num_key_value_heads: KV, head_dim }) {
  const hd = head_dim ?? C / NH;
  const want = { "model.embed_tokens.weight": [V, C], "model.norm.weight": [C] };
  for (let l = 0; l < L; l++) {
    const at = `model.layers.${l}.`;
    Object.assign(want, {
      [`${at}input_layernorm.weight`]: [C],
      [`${at}self_attn.q_proj.weight`]: [NH * hd, C],
      [`${at}self_attn.k_proj.weight`]: [KV * hd, C],
      [`${at}self_attn.v_proj.weight`]: [KV * hd, C],
      [`${at}self_attn.o_proj.weight`]: [C, NH * hd],
      [`${at}post_attention_layernorm.weight`]: [C],
      [`${at}mlp.gate_proj.weight`]: [I, C],
      [`${at}mlp.up_proj.weight`]: [I, C],
      [`${at}mlp.down_proj.weight`]: [C, I],
    });
  }
  return want;
}

// A Llama-preset model of four heads over two KV heads trained ~24 steps on Tiny Shakespeare
// (the page's download, answered from ../shared/data): the loss falls, the plan line says
// LlamaForCausalLM, Export writes transformers' Llama files, and `wgpt forward` gives the page's
// next-token probabilities from them and `wgpt sample` the page's greedy text.
async function llamaOnShakespeare(downloads) {
  if (!fs.existsSync(shakespeare)) fail(`${shakespeare} is missing (the shared data folder: see /work/shared/TOOLCHAIN.md)`);
  await page.route(SHAKESPEARE_URL, (r) => r.fulfill({ status: 200, contentType: "text/plain", headers: { "access-control-allow-origin": "*" }, body: fs.readFileSync(shakespeare) }));
  await showTab(page, "builtin");
  await page.selectOption("#builtin", "shakespeare");
  await page.waitForFunction(() => document.getElementById("c-name").textContent === "Tiny Shakespeare", null, { timeout: 120_000 });
  const plan = await planAfter(() => page.selectOption("#arch-preset", "llama"));
  await smallRun(e2e, { steps: 24, every: 12 });
  await planAfter(() => e2e.set("n_head", 4));
  const shown = await text("export-class");
  log(`llama on Tiny Shakespeare: preset plan ${plan.export_class}; the plan line says ${shown}`);
  if (plan.type !== "plan" || plan.export_class !== "LlamaForCausalLM" || shown !== "LlamaForCausalLM") fail(`the Llama preset's plan: ${JSON.stringify(plan)}, export-class ${shown}`);
  await e2e.clearEvents();
  await byId("train-start").click();
  await waitEvent("state", { state: "done" }, 300_000);
  const losses = (await e2e.events("progress")).map((p) => p.loss);
  const [first, last] = [losses.slice(0, 3), losses.slice(-3)].map((xs) => xs.reduce((a, b) => a + b, 0) / xs.length);
  log(`llama: ${losses.length} steps, loss ${losses.map((x) => x.toFixed(3)).join(" ")}`);
  if (losses.length < 20 || !(last < first - 0.3)) fail(`the Llama model's loss did not fall: ${JSON.stringify(losses)}`);

  // the next-token probabilities and greedy text within the context (16 positions), for
  // `wgpt forward` and `wgpt sample` on the export below
  await e2e.clearEvents();
  await byId("prompt").fill("ROMEO:");
  const bars = (await waitEvent("inspect", { prompt: "ROMEO:" }, 120_000)).sampling.bars.slice(0, 5);
  const said = await greedy("ROMEO:", 10);
  downloads.length = 0;
  await e2e.clearEvents();
  await byId("export").click();
  const exported = await waitEvent("export", {}, 60_000);
  const deadline = Date.now() + 60_000;
  while (downloads.length < exported.files.length && Date.now() < deadline) await page.waitForTimeout(200);
  const files = {};
  for (const d of downloads) files[d.suggestedFilename()] = fs.readFileSync(await d.path());
  if (Object.keys(files).sort().join() !== [...exported.files].sort().join()) fail(`Export named ${exported.files}, the downloads were ${Object.keys(files)}`);
  const config = JSON.parse(files["config.json"]);
  log(`llama export: ${Object.keys(files).join(", ")}; ${JSON.stringify(config)}`);
  if (config.model_type !== "llama" || JSON.stringify(config.architectures) !== '["LlamaForCausalLM"]') fail(`the Llama export's config.json: ${JSON.stringify(config)}`);
  if (config.num_attention_heads !== 4 || config.num_key_value_heads !== 2 || config.tie_word_embeddings !== true || config.attention_bias || config.mlp_bias) fail(`the Llama export's switches: ${JSON.stringify(config)}`);
  if (files["modeling_wgpt.py"] || config.auto_map) fail("a Llama export carries wgpt's own modeling code");
  const want = llamaTensors(config);
  const { header } = safetensors(files["model.safetensors"]);
  const got = Object.fromEntries(Object.entries(header).map(([k, v]) => [k, v.shape]));
  const differ = [...new Set([...Object.keys(want), ...Object.keys(got)])].filter((k) => JSON.stringify(want[k]) !== JSON.stringify(got[k]));
  if (differ.length) fail(`the Llama export's tensors differ from transformers' names and shapes: ${differ.map((k) => `${k}: ${JSON.stringify(got[k])}, expected ${JSON.stringify(want[k])}`).join("; ")}`);
  log(`llama export: ${Object.keys(got).length} tensors with transformers' names and shapes (${Object.keys(got).filter((k) => k.startsWith("model.layers.0.")).join(", ")})`);
  if (!e2e.haveCli) return log("target/debug/wgpt is missing: the export is not loaded natively");
  const dir = path.join(e2e.scratch, "llama-export");
  fs.mkdirSync(dir, { recursive: true });
  for (const [name, bytes] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), bytes);
  const r = e2e.wgpt("forward", "--model", dir, "--text", "ROMEO:", "--top", "10");
  log(`wgpt forward --model <the Llama export>: exit ${r.code}\n${r.out.trim()}`);
  if (r.code !== 0) fail(`wgpt forward did not load the Llama export: ${r.out}`);
  // its table's rows: rank, id, probability (6 decimals), token
  const cli = new Map(r.out.split("\n").map((l) => l.trim().split(/\s+/)).filter((w) => w.length >= 3 && /^\d+$/.test(w[0]) && /^\d+$/.test(w[1])).map((w) => [Number(w[1]), Number(w[2])]));
  const worst = Math.max(...bars.map((b) => (cli.has(b.id) ? Math.abs(cli.get(b.id) - b.before) : Infinity)));
  log(`next-token probabilities: the page ${JSON.stringify(bars.map((b) => [b.id, b.before]))}; wgpt forward's worst difference ${worst.toExponential(2)}`);
  if (!(worst <= 1e-4)) fail(`wgpt forward's probabilities ${JSON.stringify([...cli])} are not the page's ${JSON.stringify(bars.map((b) => [b.id, b.before]))}`);
  const g = e2e.wgpt("sample", "--model", dir, "--prompt", "ROMEO:", "--max-new-tokens", "10", "--temperature", "0");
  log(`greedy: the page ${JSON.stringify(said)}; wgpt sample on the export ${JSON.stringify(g.out)}`);
  if (g.code !== 0 || !g.out.startsWith(`ROMEO:${said}`)) fail(`wgpt sample on the Llama export (exit ${g.code}) gave ${JSON.stringify(g.out)}, the page ${JSON.stringify(said)}`);
}

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
  if (llama.type !== "plan" || llama.export_class !== "LlamaForCausalLM") fail(`the Llama preset's plan: ${JSON.stringify(llama)}`);
  if ((await page.getAttribute("#n_kv_head", "placeholder")) !== "n_head / 2") fail("Llama's KV heads placeholder");
  const qwen3 = await preset("qwen3", { positions: "rope", norm: "rmsnorm", norm_eps: "0.000001", mlp: "swiglu", qk_norm: true, bias: false, tied: true });
  if (qwen3.type !== "plan" || qwen3.export_class !== "Qwen3ForCausalLM") fail(`the Qwen3 preset's plan: ${JSON.stringify(qwen3)}`);
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

  const sharded = shard(files["model.safetensors"]);
  const speedrunFiles = { config: files["config.json"], tokenizer: files["tokenizer.json"] };

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

  await llamaOnShakespeare(downloads);

  const vocab = JSON.parse(speedrunFiles.tokenizer).model.vocab;
  // an eos token that comes up in the greedy text for the first time at its 4th character or later
  const cut = [...want].findIndex((c, i) => i >= 3 && !want.slice(0, i).includes(c) && vocab[c] !== undefined);
  const eos = cut >= 0 ? [vocab[want[cut]]] : [];
  hubHolds({ "config.json": speedrunFiles.config, "tokenizer.json": speedrunFiles.tokenizer, "generation_config.json": Buffer.from(JSON.stringify({ eos_token_id: eos })), ...sharded });
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

  // the tiny transformers-made Llama and Qwen3: transformers' greedy continuation, token for token
  for (const [dir, cls] of [["qwen3_mqa_tied", "Qwen3ForCausalLM"], ["llama_gqa_untied", "LlamaForCausalLM"]]) {
    const from = path.join(fixtures, dir);
    const have = Object.fromEntries(fs.readdirSync(from).filter((f) => f !== "expected.safetensors").map((f) => [f, fs.readFileSync(path.join(from, f))]));
    const config = JSON.parse(have["config.json"]);
    const chars = ALPHABET.slice(0, config.vocab_size);
    if (chars.length !== config.vocab_size) fail(`${dir}: a vocabulary of ${config.vocab_size} is past the test's alphabet`);
    hubHolds({ ...have, "tokenizer.json": Buffer.from(charTokenizer(chars)) });
    const ev = await hubLoad(`tiny/${dir}`);
    if (ev.type === "error") fail(`${dir} failed to load: ${ev.message}`);
    // the imported model's own class (the plan describes the form's model, not the held one)
    const params = await waitEvent("params", {}, 60_000);
    const expected = fs.readFileSync(path.join(from, "expected.safetensors"));
    const [prompt, generated] = [i64(expected, "prompt_ids"), i64(expected, "generated")];
    // the page shows no eos token (transformers keeps the one it stopped at)
    const eos = [JSON.parse(have["generation_config.json"]).eos_token_id].flat();
    const want = eos.includes(generated.at(-1)) ? generated.slice(0, -1) : generated;
    const out = await greedy(prompt.map((id) => chars[id]).join(""), generated.length);
    const got = [...out].map((c) => chars.indexOf(c));
    const shownClass = await text("export-class");
    log(`${dir}: imported as ${params.export_class} (shown: ${shownClass}); prompt ${JSON.stringify(prompt)}; greedy ${JSON.stringify(got)} (${JSON.stringify(out)}), transformers ${JSON.stringify(generated)}`);
    if (JSON.stringify(got) !== JSON.stringify(want))
      fail(`${dir}: the page's greedy ids ${JSON.stringify(got)} (text ${JSON.stringify(out)}) are not transformers' ${JSON.stringify(want)} (text ${JSON.stringify(want.map((id) => chars[id]).join(""))}; generated ${JSON.stringify(generated)}, eos ${JSON.stringify(eos)})`);
    if (params.export_class !== cls) fail(`${dir} exports as ${params.export_class}`);
    if (shownClass !== cls) fail(`${dir}: the page says it exports as ${shownClass}`);
    if (!(await page.$(`[data-testid="param-table"] tr[data-name="model.layers.0.self_attn.k_proj.weight"]`))) fail(`${dir}'s table lacks Llama names`);
  }

  log("e2e-arch passed");
} catch (e) {
  await e2e.failed(e, shot);
} finally {
  await e2e.close();
  fs.rmSync(hubDir, { recursive: true, force: true });
}
