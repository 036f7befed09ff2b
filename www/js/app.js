// The wgpt page. First the WebGPU check (gpu-check.js), then the playground: this thread only
// draws the UI; a module worker (worker.js: the wasm engine of src/web/) owns the GPU and does
// all training and sampling. Every event from the worker, and every control of the page that
// changes what the page shows, goes through one reducer (state.js); render() then draws the
// state. The message names, error scopes, presets and the corpus limit come from the engine's
// `ready` event, not from a copy here.

import { $, h, bytes, fmt, download } from "./dom.js";
import { checkWebGPU, failed } from "./gpu-check.js";
import { drawLossChart } from "./chart.js";
import { loadFromHub } from "./hub.js";
import { showInspection, showResampled } from "./inspect.js";
import { headChosen, hover } from "./attention.js";
import { initViews, redrawViews, renderViews } from "./views.js";
import { showParity } from "./parity.js";
import { showRuns } from "./saved-runs.js";
import { answerLoss, fillTasks, showTaskEval, taskSpec } from "./tasks.js";
import { initTabs } from "./tabs.js";
import { askPersistence, backgroundNote, checkpointPlan, debugHooks, evalBatches, modelOnlyLabel, offersModelOnly, paramsOf, roomNeeded, watchLifecycle } from "./reliability.js";
import { initial, reduce, running, mismatch } from "./state.js";
import { initShare, linkExtras, onLink, openHash } from "./share.js";
import { OPTIMIZER_INPUTS, initOptimizer, optimizerSettings } from "./optimizer.js";
import { experimentEvent, fillExperiments, initExperiments } from "./experiments.js";
import { loadTinyStories } from "./corpora.js";
import { ARCH_INPUTS, archSettings, initArch, showExportClass, showModelArch } from "./arch.js";
import { LORA_INPUTS, initLora, loraSettings } from "./lora.js";

const DIMS = ["n_layer", "n_head", "n_embd", "block_size"];
const SETTINGS = [...DIMS, "batch_size", "grad_accum", "max_iters", "lr", "eval_interval", "eval_iters", "train_seed", "train_precision", ...OPTIMIZER_INPUTS, ...LORA_INPUTS];
const SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt";

let state = initial;
let worker = null;
const debug = debugHooks((request) => send(request));

function dispatch(ev) {
  state = reduce(state, ev);
  render();
}

const say = (text) => dispatch({ type: "ui_status", text });
const showError = (message, status) => dispatch({ type: "ui_error", message, status });

// `bytes`: a file's bytes, or several files' (in the order the request names them).
function send(request, bytes) {
  // the engine's requests, and those of the store of saved runs (answered in worker.js)
  const known = state.protocol && [...state.protocol.requests, ...state.protocol.store_requests];
  if (known && !known.includes(request.type)) throw new Error(`the engine has no request "${request.type}"`);
  const files = Array.isArray(bytes) ? bytes : bytes ? [bytes] : null;
  if (files) worker.postMessage({ request, files }, files.map((f) => f.buffer));
  else worker.postMessage({ request });
}

// ---------------------------------------------------------------------------------------------
// Settings and presets

function settings() {
  const num = (id) => Number($(id).value);
  return {
    tokenizer: $("tokenizer").value === "bpe" ? `bpe:${num("bpe_vocab")}` : "char",
    n_layer: num("n_layer"),
    n_head: num("n_head"),
    n_embd: num("n_embd"),
    block_size: num("block_size"),
    batch_size: num("batch_size"),
    grad_accum: Math.max(1, num("grad_accum")),
    max_iters: num("max_iters"),
    lr: num("lr"),
    eval_interval: Math.max(1, num("eval_interval")),
    eval_iters: Math.max(1, num("eval_iters")),
    log_interval: 1, // every step: the chart moves with each one
    seed: num("train_seed"),
    precision: $("train_precision").value,
    answer_loss: answerLoss(),
    ...linkExtras(), // an opened link's settings the form has no field for
    ...optimizerSettings(),
    ...archSettings(),
    ...loraSettings(state.training),
  };
}

// The engine's presets in the preset menu, the smallest chosen.
function fillPresets(presets) {
  const options = presets.map(([name, p]) => h("option", { value: name }, `${name}: ${p.n_layer} layers, ${p.n_embd} dims`));
  $("preset").replaceChildren(...options, h("option", { value: "custom" }, "custom"));
  applyPreset(presets[0][0]);
}

function applyPreset(name) {
  $("preset").value = name;
  const p = Object.fromEntries(state.protocol.presets)[name];
  if (!p) return;
  for (const id of ["n_layer", "n_head", "n_embd", "block_size", "batch_size", "max_iters", "lr", "eval_interval"]) $(id).value = p[id];
  $("eval_iters").value = evalBatches(paramsOf(p));
}

let planTimer = 0;
function schedulePlan() {
  clearTimeout(planTimer);
  if (!state.corpus || !state.ready) return;
  planTimer = setTimeout(() => {
    dispatch({ type: "ui_planning" });
    send({ type: "plan", settings: settings() });
  }, 250);
}

// Sampling's settings, as the Generate controls have them.
function sampler() {
  const num = (id) => Number($(id).value);
  return { temperature: num("temperature"), top_k: Math.max(0, Math.floor(num("top-k"))), top_p: num("top-p") };
}

let inspectTimer = 0;
// Look inside, re-asked 300 ms after the last keystroke (or a layer change).
function scheduleInspect() {
  clearTimeout(inspectTimer);
  if (state.training === "idle" || !state.ready) return;
  inspectTimer = setTimeout(() => {
    const prompt = $("prompt").value;
    dispatch({ type: "ui_inspecting", prompt });
    send({ type: "inspect", prompt, layer: Number($("attention-layer").value), sampling: sampler() });
  }, 300);
}

// The next-token bars under the sampling controls as they move: the engine recomputes them from
// the look's logits; one request in flight, the latest settings next.
let resampling = false;
let resampleAgain = false;
function resample() {
  if (!state.look.shown) return;
  if (resampling) return void (resampleAgain = true);
  resampling = true;
  send({ type: "sampling", ...sampler() });
}

function resampled() {
  resampling = false;
  if (resampleAgain) {
    resampleAgain = false;
    resample();
  }
}

// Ticks or unticks a saved run in Compare runs, reading its curves when ticked.
function choose(id, on) {
  dispatch({ type: "ui_compare", id, on });
  if (on) send({ type: "run_histories", ids: [id] });
}

// ---------------------------------------------------------------------------------------------
// Drawing the state

let chartDrawn = null;
function drawChart() {
  drawLossChart($("chart"), state.history, $("log-scale").checked);
  chartDrawn = state.history;
}

let chartPending = false;
function scheduleChart() {
  if (chartPending) return;
  chartPending = true;
  requestAnimationFrame(() => {
    chartPending = false;
    drawChart();
  });
}

const text = (id, value) => {
  if ($(id).textContent !== value) $(id).textContent = value;
};

let shown = {}; // the state parts drawn last, to redraw only what changed

function renderError(error) {
  const el = $("error");
  el.hidden = !error;
  if (!error) return void (el.textContent = "");
  const dismiss = h("button", { type: "button", class: "link", "aria-label": "Dismiss" }, "dismiss");
  dismiss.onclick = () => dispatch({ type: "ui_clear_error" });
  el.replaceChildren(h("strong", {}, "Problem: "), error.message, " ", dismiss);
  const d = error.diverged;
  if (!d) return;
  const lr = h("input", { type: "number", "data-testid": "lower-lr", value: String(d.lr / 10), step: "any", min: "0", "aria-label": "new learning rate", size: "8" });
  const go = h("button", { type: "button", "data-testid": "resume-lower-lr" }, `Resume from step ${d.saved}`);
  go.onclick = () => {
    const value = Number(lr.value);
    if (!(value > 0)) return showError("The learning rate must be a positive number.");
    dispatch({ type: "ui_clear_error" });
    say(`Resuming from step ${d.saved} with learning rate ${value}…`);
    send({ type: "restore_run", id: d.id, lr: value });
  };
  el.append(" ", h("label", {}, "learning rate ", lr), " ", go);
}

function renderButtons() {
  const s = state;
  const t = s.training;
  const busy = running(s);
  $("train-start").disabled = !(s.ready && s.corpus) || busy;
  $("train-start").textContent = t === "idle" ? "Start training" : t === "loaded" ? "Fine-tune" : "Start again";
  // a done run offers to train on to the Steps above, where those are more than its own
  const more = t === "done" && s.maxIters !== null && Number($("max_iters").value) > s.maxIters;
  $("train-pause").disabled = !busy && !more;
  $("train-pause").textContent = t === "paused" || t === "pausing" ? "Resume" : t === "done" ? `Train on to ${$("max_iters").value} steps` : "Pause";
  $("train-stop").disabled = !busy;
  $("generate").disabled = t === "idle" || s.generating;
  $("gen-stop").disabled = !s.generating;
  $("export").disabled = t === "idle";
  $("export-run").disabled = ["idle", "loaded"].includes(t);
  $("import-input").disabled = busy;
  $("import-run-input").disabled = busy || !s.ready;
  $("load-gpt2").disabled = busy || !s.ready;
  for (const id of SETTINGS.filter((id) => !DIMS.includes(id)).concat(["preset", "tokenizer", "bpe_vocab", "answer_loss"]))
    $(id).disabled = busy || (id === "bpe_vocab" && $("tokenizer").value !== "bpe");
  for (const id of DIMS) $(id).disabled = busy || $("preset").value !== "custom";
  // an imported model keeps its own architecture
  for (const id of ARCH_INPUTS) $(id).disabled = busy || t === "loaded";
}

function render() {
  const s = state;
  text("status", s.status);
  if (shown.error !== s.error) renderError(s.error);
  const c = s.corpus;
  text("c-name", c ? c.name : "none yet");
  text("c-bytes", c ? bytes(c.bytes) : "—");
  text("c-chars", c ? fmt.int(c.chars) : "—");
  text("c-distinct", c ? fmt.int(c.distinct) : "—");
  const p = s.plan;
  text("c-tokens", p ? `${fmt.int(p.tokens)} (vocab ${fmt.int(p.vocab)})` : c ? "…" : "—");
  text("c-split", p ? `${fmt.int(p.train)} / ${fmt.int(p.val)}` : c ? "…" : "—");
  if (s.params !== null) text("m-params", fmt.int(s.params));
  if (p) text("m-memory", bytes(p.memory_bytes));
  const k = s.kernels;
  if (k) text("m-kernels", k.timed ? `tuned in ${Math.round(k.ms)} ms` : k.source.replace(/ \(.*/, ""));
  text("plan-note", s.planNote);
  // an imported model exports as its own class, whatever the form would build
  const held = s.training === "loaded" && s.model?.export_class;
  showExportClass(held ? { export_class: held, model_type: held === "WgptForCausalLM" ? "wgpt" : null } : p);
  text("step", String(s.step));
  text("max-step", s.maxIters === null ? "—" : String(s.maxIters));
  const g = s.progress;
  text("train-loss", g ? fmt.loss(g.loss) : "");
  text("tokens-per-sec", g ? fmt.int(Math.round(g.tokens_per_sec)) : "");
  text("ms-step", g ? g.ms_per_step.toFixed(1) : "");
  text("lr-now", g ? g.lr.toExponential(2) : "");
  text("eta", g ? fmt.secs(g.eta_s) : "");
  text("val-loss", s.valLoss === null ? "" : fmt.loss(s.valLoss));
  text("sample", s.sample);
  text("output", s.output);
  text("gen-speed", s.genSpeed);
  text("checkpoint-note", s.checkpointNote);
  text("checkpoint-plan", checkpointPlan(s));
  $("model-only-offer").hidden = !offersModelOnly(s);
  $("model-only").checked = s.modelOnly;
  text("model-only-label", modelOnlyLabel(s));
  const note = backgroundNote(s);
  text("background-note", note);
  $("background-note").hidden = !note;
  if (shown.runs !== s.runs || shown.training !== s.training || shown.ready !== s.ready)
    showRuns(s, {
      resume: (r) => {
        say(`Reading the saved run ${r.name}…`);
        send({ type: "restore_run", id: r.id });
      },
      remove: (r) => send({ type: "delete_run", id: r.id }),
    });
  renderButtons();
  if (chartDrawn !== s.history) scheduleChart();
  renderViews(s, { choose, taskEval: showTaskEval }, () => state);
  shown = { error: s.error, runs: s.runs, training: s.training, ready: s.ready };
}

// What an event sets going besides the state: follow-up requests, downloads, drawings.
function effects(ev, files) {
  switch (ev.type) {
    case "ready": {
      const off = mismatch(ev.protocol);
      if (off.length) showError(`This page and its engine disagree about the messages ${off.join(", ")}: reload the page (a cached old copy?).`);
      fillPresets(ev.protocol.presets);
      fillTasks(ev.protocol.tasks);
      fillExperiments(ev.protocol.experiments);
      initArch(ev.protocol.arch_presets, () => {
        renderButtons();
        schedulePlan();
      });
      openHash(); // a link in the address fills the form over the presets
      schedulePlan();
      send({ type: "runs" });
      break;
    }
    case "corpus":
      schedulePlan();
      break;
    case "plan":
      probeRoom();
      break;
    case "memory":
      debug.onMemory(ev);
      break;
    case "saved":
      send({ type: "runs" });
      if (state.compare.ids.includes(ev.id)) send({ type: "run_histories", ids: [ev.id] });
      break;
    case "eval":
      scheduleInspect();
      break;
    case "restored":
      showModelArch(state.model?.arch); // the run's own switches
      scheduleInspect();
      break;
    case "state":
      if (ev.state !== "training") scheduleInspect();
      break;
    case "imported":
      showModelArch(state.model?.arch); // the model's own switches
      $("eval_iters").value = evalBatches(ev.params);
      scheduleInspect();
      schedulePlan();
      break;
    case "inspect":
      showInspection(ev, files);
      resampled();
      break;
    case "sampling":
      showResampled(ev);
      resampled();
      break;
    case "error":
      if (ev.scope === "inspect") resampled();
      break;
    case "parity":
      showParity(ev);
      break;
    case "export":
      ev.files.forEach((name, i) => download(name, files[i]));
      break;
    case "export_run":
      download(ev.name, files[0]);
      break;
    case "link":
    case "link_opened":
      onLink(ev);
      break;
  }
}

// ---------------------------------------------------------------------------------------------
// Files the page reads: corpora, models, parity files and run zips

async function loadFile(file) {
  if (!file) return;
  const max = state.protocol ? state.protocol.max_corpus_bytes : Infinity;
  if (file.size > max) {
    // refused before reading the file at all
    showError(`${file.name} is ${bytes(file.size)}; the page holds a corpus in memory and takes at most ${bytes(max)}: use a part of it. The current corpus is unchanged.`);
    return;
  }
  say(`Reading ${file.name}…`);
  send({ type: "corpus", name: file.name }, new Uint8Array(await file.arrayBuffer()));
}

// A model directory's files: config.json, tokenizer.json, model.safetensors or a sharded
// checkpoint's model-0000N-of-0000M.safetensors, and generation_config.json where there is one.
async function importModel(files) {
  const byName = Object.fromEntries([...files].map((f) => [f.name, f]));
  const shards = Object.keys(byName).filter((n) => /^model-\d+-of-\d+\.safetensors$/.test(n)).sort();
  const weights = byName["model.safetensors"] ? ["model.safetensors"] : shards;
  const missing = ["config.json", "tokenizer.json"].filter((n) => !byName[n]).concat(weights.length ? [] : ["model.safetensors (or a sharded checkpoint's model-*-of-*.safetensors)"]);
  if (missing.length) {
    showError(`To import a model choose its config.json, model.safetensors and tokenizer.json together; missing: ${missing.join(", ")}.`);
    return;
  }
  say("Reading the model files…");
  const gen = byName["generation_config.json"];
  const [config, tokenizer, generation_config] = await Promise.all([byName["config.json"].text(), byName["tokenizer.json"].text(), gen ? gen.text() : null]);
  const bytes = await Promise.all(weights.map(async (n) => new Uint8Array(await byName[n].arrayBuffer())));
  say("Loading the model onto the GPU…");
  send({ type: "import", name: "the imported model", config, tokenizer, names: weights, generation_config }, bytes);
}

// A run zip (Export run's, or `wgpt export-run`'s): it comes back paused at its step (done where
// it finished); Resume (or Train on) goes on.
async function importRun(file) {
  if (!file) return;
  say(`Reading the run ${file.name}…`);
  send({ type: "import_run", name: file.name }, new Uint8Array(await file.arrayBuffer()));
}

async function runParity(file) {
  if (!file) return;
  $("parity-result").textContent = `Running ${file.name} on this GPU…`;
  send({ type: "parity", name: file.name }, new Uint8Array(await file.arrayBuffer()));
}

// Dropped files: a model directory's files are imported, a .zip is a run, a lone .safetensors a
// parity file, anything else a corpus.
function dropped(files) {
  const names = [...files].map((f) => f.name);
  if (names.includes("model.safetensors") || names.includes("config.json")) importModel(files);
  else if (files.length === 1 && names[0].endsWith(".zip")) importRun(files[0]);
  else if (files.length === 1 && names[0].endsWith(".safetensors")) runParity(files[0]);
  else loadFile(files[0]);
}

async function loadHub() {
  const hub = $("hub-url").value.trim().replace(/\/+$/, "");
  const repo = $("hub-repo").value.trim().replace(/^\/+|\/+$/g, "");
  $("load-gpt2").disabled = true;
  dispatch({ type: "ui_clear_error" });
  try {
    const { files, weights, generation, load } = await loadFromHub(hub, repo, say);
    dispatch({ type: "ui_hub_loaded", load });
    const text = (b) => new TextDecoder().decode(b);
    const request = { type: "import", name: repo, config: text(files["config.json"]), tokenizer: text(files["tokenizer.json"]), names: weights, generation_config: generation && text(generation) };
    send(request, weights.map((name) => files[name]));
  } catch (e) {
    showError(e.message, "The model did not load; the current one is unchanged.");
  }
}

// Resolves true once the corpus went to the engine, false where it did not (and says why).
async function loadBuiltin(value) {
  if (!value) return false;
  if (value.startsWith("task:")) {
    const task = taskSpec(); // the task with its parameters' inputs
    send({ type: "corpus", name: `${task} task`, task });
    return true;
  }
  if (value === "tinystories") return loadTinyStories({ send, say, showError });
  say("Downloading Tiny Shakespeare…");
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), 30000);
  try {
    const res = await fetch(SHAKESPEARE_URL, { signal: ctl.signal });
    if (!res.ok) throw new Error(`the server answered ${res.status} ${res.statusText}`);
    send({ type: "corpus", name: "Tiny Shakespeare", text: await res.text() });
    return true;
  } catch (e) {
    const why = e.name === "AbortError" ? "no answer within 30 s" : e.message;
    showError(`Downloading Tiny Shakespeare from ${SHAKESPEARE_URL} failed (${why}). Check your connection, or save that file and drop it here.`, "Download failed; the current corpus is unchanged.");
    return false;
  } finally {
    clearTimeout(timer);
  }
}

function generate() {
  if ($("generate").disabled) return;
  const num = (id) => Number($(id).value);
  dispatch({ type: "ui_generate" });
  send({
    type: "generate",
    prompt: $("prompt").value,
    sampling: sampler(),
    max_tokens: Math.max(1, Math.floor(num("max-tokens"))),
    seed: Math.max(0, Math.floor(num("seed"))),
    precision: $("precision").value,
  });
}

function wire() {
  const on = (id, event, fn) => $(id).addEventListener(event, fn);
  on("corpus-input", "change", (e) => loadFile(e.target.files[0]));
  const drop = $("corpus-drop");
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    e.stopPropagation();
    drop.classList.remove("over");
    dropped(e.dataTransfer.files);
  });
  drop.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      $("corpus-input").click();
    }
  });
  // a model's three files, a run zip or a parity file dropped anywhere on the page
  document.addEventListener("dragover", (e) => e.preventDefault());
  document.addEventListener("drop", (e) => {
    e.preventDefault();
    dropped(e.dataTransfer.files);
  });
  on("builtin", "change", (e) => loadBuiltin(e.target.value));
  on("import-input", "change", (e) => importModel(e.target.files));
  on("import-run-input", "change", (e) => importRun(e.target.files[0]));
  on("load-gpt2", "click", loadHub);
  on("parity-input", "change", (e) => runParity(e.target.files[0]));
  on("paste-use", "click", () => send({ type: "corpus", name: "pasted text", text: $("paste").value }));
  on("preset", "change", (e) => {
    applyPreset(e.target.value);
    renderButtons();
    schedulePlan();
  });
  on("tokenizer", "change", () => {
    renderButtons();
    schedulePlan();
  });
  for (const id of [...SETTINGS, "bpe_vocab", "answer_loss"]) on(id, "change", schedulePlan);
  initOptimizer();
  on("train-start", "click", () => {
    dispatch({ type: "ui_start" });
    send({ type: "start", settings: settings() });
    askPersistence().then(() => send({ type: "runs" }));
  });
  on("train-pause", "click", () => {
    if (state.training === "done") send({ type: "train_on", max_iters: Number($("max_iters").value) });
    else if (state.training === "training") {
      send({ type: "pause" });
      dispatch({ type: "ui_pause" });
    } else {
      send({ type: "resume" });
      dispatch({ type: "ui_resume" });
    }
  });
  on("train-stop", "click", () => send({ type: "stop" }));
  // the plan's offer: checkpoints without AdamW's moments, for this run and the next
  on("model-only", "change", (e) => {
    dispatch({ type: "ui_model_only", on: e.target.checked });
    send({ type: "checkpoints", optimizer_state: !e.target.checked });
  });
  on("export", "click", () => {
    say("Exporting the model…");
    send({ type: "export" });
  });
  on("export-run", "click", () => {
    say("Exporting the run…");
    send({ type: "export_run" });
  });
  on("generate", "click", generate);
  on("gen-stop", "click", () => send({ type: "cancel" }));
  on("prompt", "keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      generate();
    }
  });
  on("log-scale", "change", drawChart);
  on("prompt", "input", scheduleInspect);
  on("attention-layer", "change", scheduleInspect);
  on("attention-head", "change", headChosen);
  on("attention-canvas", "mousemove", hover);
  for (const id of ["temperature", "top-k", "top-p"]) on(id, "input", resample);
  window.addEventListener("resize", scheduleChart);
  // another tab may have let a run go meanwhile
  document.addEventListener("visibilitychange", () => document.visibilityState === "visible" && state.ready && send({ type: "runs" }));
  watchLifecycle(dispatch);
}

// Whether the storage has room to save a big run's checkpoints (asked once per size).
function probeRoom() {
  const need = roomNeeded(state);
  if (need && (!state.room || state.room.bytes !== need.full)) send({ type: "room", bytes: need.full, model_bytes: need.model });
}

function startEngine() {
  $("playground").hidden = false;
  $("status-bar").hidden = false;
  wire();
  initViews(() => state);
  // a view chosen: redraw what was drawn while it was hidden, at its width
  initTabs(() => {
    redrawViews();
    render();
    window.dispatchEvent(new Event("resize"));
  });
  const changed = () => {
    renderButtons();
    schedulePlan();
  };
  initShare({ send, settings, corpus: () => state.corpus, running: () => running(state), changed, say });
  initExperiments({ send, dispatch, say, state: () => state, choose, loadBuiltin, running: () => running(state) });
  render();
  worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module" });
  initLora({ send, say, showError, state: () => state, worker });
  // the last events, for tests and for anyone curious in the console
  window.wgptEvents = [];
  // for tests and for trying the recovery by hand: a lost GPU device, as after a driver reset
  window.wgptDebug = { loseDevice: () => send({ type: "lose_device" }), ...debug.hooks };
  worker.onmessage = ({ data: { event, files } }) => {
    window.wgptEvents.push(event);
    if (window.wgptEvents.length > 100) window.wgptEvents.shift();
    dispatch(event);
    effects(event, files);
    experimentEvent(event);
  };
  worker.onerror = (e) =>
    showError(`The engine failed to start: ${e.message || "the worker could not load"}. Reload the page; if it persists, your browser may not support module workers.`, "Engine failed.");
  // the worker opens the GPU itself (init) once the engine has loaded
}

checkWebGPU()
  .then((ok) => ok && startEngine())
  .catch(failed);
