// The wgpt page. First a WebGPU check (the result is also left in <section id="gpu"
// data-state="..."> for page tests: "ok", "no-webgpu", "no-adapter", "insecure" or "error"),
// then the playground: this thread only draws the UI; a module worker (worker.js, the wasm
// Engine of src/web.rs) owns the GPU and does all training and sampling. Messages both ways are
// small JSON objects: requests {type: ...} and events {type: ...} (src/web.rs: Request, Event).

const MiB = 1024 * 1024;
// GPT-2 124M's largest tensor, the token embedding wte: 50257 x 768 f32.
const WTE_BYTES = 50257 * 768 * 4;

const panel = document.getElementById("gpu");

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function code(text) {
  return h("code", {}, text);
}

function bytes(n) {
  if (n >= 1024 * MiB) return `${(n / (1024 * MiB)).toFixed(n % (1024 * MiB) ? 2 : 0)} GiB`;
  if (n >= MiB) return `${(n / MiB).toFixed(n % MiB ? 1 : 0)} MiB`;
  if (n >= 1024) return `${(n / 1024).toFixed(0)} KiB`;
  return `${n} B`;
}

function show(state, cls, ...children) {
  panel.dataset.state = state;
  panel.className = `panel ${cls}`;
  panel.replaceChildren(...children.filter((c) => c !== null && c !== undefined && c !== false));
}

const howToGet = () =>
  h(
    "ul",
    { class: "howto" },
    h("li", {}, h("strong", {}, "Chrome or Edge 113+"), " on Windows, macOS and ChromeOS; Chrome 121+ on Android 12+. WebGPU is on by default."),
    h(
      "li",
      {},
      h("strong", {}, "Chrome on Linux"),
      ": WebGPU may still be behind a flag. Open ",
      code("chrome://flags/#enable-unsafe-webgpu"),
      " and set it to Enabled (on some drivers also ",
      code("chrome://flags/#enable-vulkan"),
      "), then relaunch.",
    ),
    h("li", {}, h("strong", {}, "Firefox 141+"), " on Windows. Elsewhere use Firefox Nightly, or set ", code("dom.webgpu.enabled"), " in ", code("about:config"), "."),
    h("li", {}, h("strong", {}, "Safari 26+"), " (macOS, iOS, iPadOS). Older Safari: Develop → Feature Flags → WebGPU."),
    h("li", {}, "Check what your browser reports at ", code("chrome://gpu"), " (Chrome/Edge) or ", code("about:support"), " (Firefox)."),
  );

function missing() {
  show(
    "no-webgpu",
    "bad",
    h("h2", {}, "WebGPU is not available in this browser"),
    h("p", {}, code("navigator.gpu"), " is undefined, so this page cannot run GPT-2 on your GPU. What you need:"),
    howToGet(),
  );
}

function insecure() {
  show(
    "insecure",
    "bad",
    h("h2", {}, "WebGPU needs a secure context"),
    h(
      "p",
      {},
      "Browsers expose WebGPU only on ",
      code("https://"),
      " pages or on ",
      code("http://localhost"),
      " / ",
      code("http://127.0.0.1"),
      ". This page was loaded from ",
      code(location.origin),
      ". Serve it over HTTPS or open it through localhost.",
    ),
  );
}

function noAdapter() {
  show(
    "no-adapter",
    "bad",
    h("h2", {}, "WebGPU is present, but no GPU adapter was found"),
    h("p", {}, code("navigator.gpu.requestAdapter()"), " returned ", code("null"), ". Usually this means:"),
    h(
      "ul",
      { class: "howto" },
      h("li", {}, "Hardware acceleration is switched off: in Chrome, Settings → System → ", h("em", {}, "Use graphics acceleration when available"), "."),
      h("li", {}, "Your GPU or driver is on the browser's blocklist: see ", code("chrome://gpu"), "; updating the graphics driver often helps, and ", code("chrome://flags/#enable-unsafe-webgpu"), " overrides the blocklist."),
      h("li", {}, "On Linux, Chrome may need ", code("chrome://flags/#enable-vulkan"), " as well."),
      h("li", {}, "Headless/CI Chromium has no GPU: start it with ", code("--enable-unsafe-webgpu --enable-unsafe-swiftshader"), " to get the SwiftShader CPU adapter."),
    ),
  );
}

function failed(err) {
  show(
    "error",
    "bad",
    h("h2", {}, "The WebGPU check failed"),
    h("pre", {}, String(err && err.stack ? err.stack : err)),
  );
}

async function adapterInfo(adapter) {
  if (adapter.info) return adapter.info; // Chrome 127+, Firefox, Safari
  if (adapter.requestAdapterInfo) return adapter.requestAdapterInfo(); // older Chrome
  return {};
}

function row(name, value, note) {
  return h("tr", {}, h("th", { scope: "row" }, name), h("td", {}, value), h("td", { class: "note" }, note || ""));
}

async function check() {
  if (!window.isSecureContext) return insecure();
  if (!("gpu" in navigator) || !navigator.gpu) return missing();

  const adapter =
    (await navigator.gpu.requestAdapter({ powerPreference: "high-performance" })) ||
    (await navigator.gpu.requestAdapter());
  if (!adapter) return noAdapter();

  const info = await adapterInfo(adapter);
  const lim = adapter.limits;
  const feats = adapter.features;
  const name =
    [info.vendor, info.architecture, info.device].filter(Boolean).join(" · ") ||
    info.description ||
    "(the browser hides the adapter's name)";
  const fallback = info.isFallbackAdapter || adapter.isFallbackAdapter;
  const wteFits = lim.maxStorageBufferBindingSize >= WTE_BYTES && lim.maxBufferSize >= WTE_BYTES;
  const featureList = ["shader-f16", "subgroups", "timestamp-query"].map((f) =>
    h("li", { class: feats.has(f) ? "yes" : "no" }, code(f), feats.has(f) ? " yes" : " no"),
  );

  show(
    "ok",
    "good compact",
    h(
      "details",
      {},
      h(
        "summary",
        {},
        h("strong", {}, "WebGPU ready: "),
        h("span", { id: "adapter-name" }, name),
        fallback ? " (a software adapter: expect it to be slow)" : "",
      ),
      h(
        "table",
        { class: "limits" },
        h("caption", {}, "Adapter limits that matter for GPT-2"),
        h(
          "tbody",
          {},
          row(
            "maxStorageBufferBindingSize",
            bytes(lim.maxStorageBufferBindingSize),
            wteFits ? "GPT-2's largest tensor (wte, 147 MiB in f32) fits in one binding" : "below wte's 147 MiB: GPT-2 124M will not fit",
          ),
          row("maxBufferSize", bytes(lim.maxBufferSize)),
          row("maxComputeWorkgroupStorageSize", bytes(lim.maxComputeWorkgroupStorageSize)),
          row("maxStorageBuffersPerShaderStage", String(lim.maxStorageBuffersPerShaderStage)),
        ),
      ),
      h("ul", { class: "features" }, featureList),
    ),
  );
  return true;
}

// ---------------------------------------------------------------------------------------------
// The playground

const $ = (id) => document.getElementById(id);
const PRESETS = {
  tiny: { n_layer: 2, n_head: 2, n_embd: 64, block_size: 32, batch_size: 8, max_iters: 500, lr: 0.002, eval_interval: 50 },
  baby: { n_layer: 4, n_head: 4, n_embd: 128, block_size: 64, batch_size: 12, max_iters: 2000, lr: 0.001, eval_interval: 250 },
  "shakespeare-char": { n_layer: 6, n_head: 6, n_embd: 384, block_size: 256, batch_size: 8, max_iters: 5000, lr: 0.001, eval_interval: 250 },
};
const DIMS = ["n_layer", "n_head", "n_embd", "block_size"];
const SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt";

const ui = {
  hubLoad: null, // {repo, seconds, cached, bytes, cacheError} of the last hub load, until its import lands
  worker: null,
  ready: false,
  corpus: null, // {name, bytes, chars, distinct}
  training: "idle", // idle | loaded (imported) | training | paused | stopped | done
  generating: false,
  train: { steps: [], losses: [] },
  val: { steps: [], losses: [] },
  planTimer: 0,
};

function send(request, bytes) {
  if (bytes) ui.worker.postMessage({ request, bytes }, [bytes.buffer]);
  else ui.worker.postMessage({ request });
}

function status(text) {
  $("status").textContent = text;
}

function showError(message) {
  const el = $("error");
  el.replaceChildren(h("strong", {}, "Problem: "), message, " ", h("button", { type: "button", class: "link", "aria-label": "Dismiss" }, "dismiss"));
  el.hidden = false;
  el.querySelector("button").onclick = clearError;
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

const fmt = {
  int: (n) => Number(n).toLocaleString("en-US"),
  loss: (x) => (Number.isFinite(x) ? x.toFixed(4) : String(x)),
  secs(s) {
    if (!Number.isFinite(s)) return "";
    if (s < 60) return `${Math.round(s)} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
    return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
  },
};

function settings() {
  const num = (id) => Number($(id).value);
  const tok = $("tokenizer").value === "bpe" ? `bpe:${num("bpe_vocab")}` : "char";
  return {
    tokenizer: tok,
    n_layer: num("n_layer"),
    n_head: num("n_head"),
    n_embd: num("n_embd"),
    block_size: num("block_size"),
    batch_size: num("batch_size"),
    grad_accum: Math.max(1, num("grad_accum")),
    max_iters: num("max_iters"),
    lr: num("lr"),
    eval_interval: Math.max(1, num("eval_interval")),
    log_interval: 1,
    seed: num("train_seed"),
  };
}

function applyPreset(name) {
  const p = PRESETS[name];
  for (const id of DIMS) $(id).disabled = name !== "custom";
  if (!p) return;
  for (const [k, v] of Object.entries(p)) $(k).value = v;
}

function schedulePlan() {
  clearTimeout(ui.planTimer);
  if (!ui.corpus || !ui.ready) return;
  ui.planTimer = setTimeout(() => {
    $("plan-note").textContent = "Tokenizing and checking the model against this GPU…";
    send({ type: "plan", settings: settings() });
  }, 250);
}

function updateButtons() {
  const t = ui.training;
  const running = t === "training" || t === "paused";
  // not gated on the plan: a settings change re-plans, and a click must not be lost meanwhile
  $("train-start").disabled = !(ui.ready && ui.corpus) || running;
  $("train-start").textContent = t === "idle" ? "Start training" : t === "loaded" ? "Fine-tune" : "Start again";
  $("train-pause").disabled = !running;
  $("train-pause").textContent = t === "paused" ? "Resume" : "Pause";
  $("train-stop").disabled = !running;
  $("generate").disabled = t === "idle" || ui.generating;
  $("gen-stop").disabled = !ui.generating;
  $("export").disabled = t === "idle";
  $("import-input").disabled = running;
  $("load-gpt2").disabled = running || !ui.ready;
  for (const id of ["preset", "tokenizer", "bpe_vocab", "batch_size", "grad_accum", "max_iters", "lr", "eval_interval", "train_seed"])
    $(id).disabled = running || (id === "bpe_vocab" && $("tokenizer").value !== "bpe");
  for (const id of DIMS) $(id).disabled = running || $("preset").value !== "custom";
  for (const b of document.querySelectorAll('[data-testid="resume-run"]')) b.disabled = running || !ui.ready;
  if (ui.training !== "idle") $("resume-offer").hidden = true;
}

function drawChart() {
  const b = window.wasmBindings;
  if (!b || !b.draw_loss_chart) return;
  const canvas = $("chart");
  const box = canvas.parentElement.getBoundingClientRect();
  const w = Math.max(320, Math.floor(box.width));
  if (canvas.width !== w) canvas.width = w;
  try {
    b.draw_loss_chart(
      canvas,
      Float32Array.from(ui.train.steps),
      Float32Array.from(ui.train.losses),
      Float32Array.from(ui.val.steps),
      Float32Array.from(ui.val.losses),
      $("log-scale").checked,
    );
  } catch (e) {
    console.warn("chart:", e);
  }
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

function onEvent(ev) {
  switch (ev.type) {
    case "ready":
      ui.ready = true;
      status(`Ready on ${ev.adapter}. Choose a corpus.`);
      schedulePlan();
      send({ type: "runs" });
      break;
    case "tuned":
      $("m-kernels").textContent = ev.timed ? `tuned in ${Math.round(ev.ms)} ms` : ev.source.replace(/ \(.*/, "");
      $("m-kernels").title = ev.source;
      break;
    case "checkpoint":
      $("checkpoint-note").textContent = `saving step ${ev.step}…`;
      break;
    case "saved":
      $("checkpoint-note").textContent = `step ${ev.step} saved (${bytes(ev.bytes)})`;
      send({ type: "runs" });
      break;
    case "runs":
      showRuns(ev);
      break;
    case "recovered":
      ui.train.steps = ui.train.steps.filter((s) => s <= ev.step);
      ui.train.losses.length = ui.train.steps.length;
      status(`The GPU device was lost at step ${ev.lost_at} (${ev.reason}). Training goes on on a new device from the checkpoint of step ${ev.step}.`);
      break;
    case "diverged":
      ui.training = "stopped";
      showError(ev.message);
      if (ev.saved !== null) {
        const lr = h("input", { type: "number", "data-testid": "lower-lr", value: String(ev.lr / 10), step: "any", min: "0", "aria-label": "new learning rate", size: "8" });
        const go = h("button", { type: "button", "data-testid": "resume-lower-lr" }, `Resume from step ${ev.saved}`);
        go.onclick = () => {
          const value = Number(lr.value);
          if (!(value > 0)) return showError("The learning rate must be a positive number.");
          clearError();
          status(`Resuming from step ${ev.saved} with learning rate ${value}…`);
          send({ type: "restore_run", id: ev.id, lr: value });
        };
        $("error").append(" ", h("label", {}, "learning rate ", lr), " ", go);
      }
      status(`Training diverged at step ${ev.step}.`);
      break;
    case "restored":
      ui.train = { steps: [], losses: [] };
      ui.val = { steps: [], losses: [] };
      $("step").textContent = String(ev.step);
      $("max-step").textContent = String(ev.max_iters);
      status(`Resumed ${ev.name} at step ${ev.step}.`);
      break;
    case "corpus":
      ui.corpus = ev;
      clearError();
      $("c-name").textContent = ev.name;
      $("c-bytes").textContent = bytes(ev.bytes);
      $("c-chars").textContent = fmt.int(ev.chars);
      $("c-distinct").textContent = fmt.int(ev.distinct);
      $("c-tokens").textContent = "…";
      $("c-split").textContent = "…";
      status(`Corpus: ${ev.name}.`);
      schedulePlan();
      break;
    case "plan":
      $("c-tokens").textContent = `${fmt.int(ev.tokens)} (vocab ${fmt.int(ev.vocab)})`;
      $("c-split").textContent = `${fmt.int(ev.train)} / ${fmt.int(ev.val)}`;
      $("m-params").textContent = fmt.int(ev.params);
      $("m-memory").textContent = bytes(ev.memory_bytes);
      $("plan-note").textContent = "Fits this GPU's limits.";
      if (ui.training === "idle") status("Ready to train.");
      break;
    case "state":
      ui.training = ev.state;
      if (ev.state === "training") {
        status("Training…");
        clearError();
      } else if (ev.state === "paused") status(`Paused at step ${ev.step}. You can generate now.`);
      else if (ev.state === "stopped") status(`Stopped at step ${ev.step}. The model is kept: generate from it.`);
      else if (ev.state === "done") status(`Done: ${ev.step} steps. Generate from the model.`);
      break;
    case "progress":
      $("step").textContent = String(ev.step);
      $("max-step").textContent = String(ev.max_iters);
      $("train-loss").textContent = fmt.loss(ev.loss);
      $("tokens-per-sec").textContent = fmt.int(Math.round(ev.tokens_per_sec));
      $("ms-step").textContent = ev.ms_per_step.toFixed(1);
      $("lr-now").textContent = ev.lr.toExponential(2);
      $("eta").textContent = fmt.secs(ev.eta_s);
      ui.train.steps.push(ev.step);
      ui.train.losses.push(ev.loss);
      scheduleChart();
      break;
    case "eval":
      $("val-loss").textContent = fmt.loss(ev.val_loss);
      $("sample").textContent = ev.sample;
      ui.val.steps.push(ev.step);
      ui.val.losses.push(ev.val_loss);
      scheduleInspect();
      if (ev.accuracy !== null && ev.accuracy !== undefined)
        status(`Step ${ev.step}: val loss ${fmt.loss(ev.val_loss)}, exact-match accuracy ${(ev.accuracy * 100).toFixed(0)}%.`);
      scheduleChart();
      break;
    case "token":
      $("output").textContent += ev.text;
      break;
    case "generated":
      ui.generating = false;
      $("gen-speed").textContent = `${ev.tokens} tokens, ${ev.tokens_per_sec.toFixed(1)} tokens/s`;
      if (ui.training !== "training") status("Generated.");
      break;
    case "inspect":
      showInspection(ev);
      break;
    case "parity":
      showParity(ev);
      break;
    case "imported":
      ui.training = "loaded";
      scheduleInspect();
      schedulePlan();
      clearError();
      $("m-params").textContent = fmt.int(ev.params);
      $("plan-note").textContent = `Imported ${ev.name}: ${ev.n_layer} layers, ${ev.n_head} heads, ${ev.n_embd} dims, context ${ev.block_size}, vocabulary ${fmt.int(ev.vocab_size)}.`;
      {
        const hub = ui.hubLoad;
        ui.hubLoad = null;
        const how = hub ? ` (${bytes(hub.bytes)} ${hub.cached ? "from this browser's cache" : "downloaded"} in ${hub.seconds.toFixed(1)} s)` : "";
        status(`Imported ${ev.name}${how}. Generate from it, or press Start to fine-tune it on the corpus.`);
        if (hub && hub.cacheError) showError(`The model loaded, but ${hub.cacheError}.`);
      }
      break;
    case "export":
      ev.files.forEach((name, i) => {
        const url = URL.createObjectURL(new Blob([ev.bytes[i]]));
        const a = h("a", { href: url, download: name });
        document.body.append(a);
        a.click();
        a.remove();
        setTimeout(() => URL.revokeObjectURL(url), 60_000);
      });
      status(`Exported the model at step ${ev.step}: ${ev.files.join(", ")} (a Hugging Face GPT-2 directory).`);
      break;
    case "error":
      if (ev.scope === "generate") ui.generating = false;
      if (ev.scope === "train") ui.training = ui.training === "idle" ? "idle" : "stopped";
      if (ev.scope === "plan") $("plan-note").textContent = "";
      showError(ev.message);
      status(`Could not ${{ corpus: "use that corpus", plan: "plan this model", train: "train", generate: "generate", export: "export", import: "import that model", gpu: "open the GPU", checkpoint: "save the checkpoint", storage: "use the browser's storage", restore: "resume that run", inspect: "look inside", parity: "run the parity file" }[ev.scope] || "continue"}; see above.`);
      if (ev.scope === "checkpoint") $("checkpoint-note").textContent = "not saved";
      break;
  }
  updateButtons();
}

function showRuns({ runs, usage, quota, unavailable }) {
  const list = $("saved-runs");
  $("storage-use").textContent = unavailable
    ? `${unavailable} Runs cannot be saved here.`
    : usage !== null && quota
      ? `This page's storage: ${bytes(usage)} of ${bytes(quota)}.`
      : "";
  const offer = $("resume-offer");
  const running = ui.training === "training" || ui.training === "paused";
  const resume = (r) => {
    status(`Reading the saved run ${r.name}…`);
    send({ type: "restore_run", id: r.id });
  };
  // the offer after a reload: the newest run, while nothing has been trained or loaded yet
  const last = runs[0];
  offer.hidden = !last || ui.training !== "idle";
  if (last) {
    const go = h("button", { type: "button", class: "primary", "data-testid": "resume" }, "Resume");
    go.disabled = !ui.ready;
    go.onclick = () => resume(last);
    offer.replaceChildren(`Your last run was saved: ${last.name}, step ${fmt.int(last.step)} of ${fmt.int(last.max_iters)}. `, go, " it where it was.");
  }
  if (!runs.length) {
    list.replaceChildren(h("li", { class: "muted small" }, "None yet."));
    return;
  }
  list.replaceChildren(
    ...runs.map((r) => {
      const again = h("button", { type: "button", "data-testid": "resume-run", "data-run": r.id }, "Resume");
      const del = h("button", { type: "button", class: "link", "data-testid": "delete-run", "data-run": r.id }, "delete");
      again.disabled = running || !ui.ready;
      again.onclick = () => resume(r);
      del.onclick = () => send({ type: "delete_run", id: r.id });
      const when = new Date(r.saved_at).toLocaleString();
      return h(
        "li",
        { "data-run": r.id, "data-step": String(r.step) },
        h("strong", {}, r.name),
        ` · step ${fmt.int(r.step)} of ${fmt.int(r.max_iters)} · ${fmt.int(r.params)} parameters · ${bytes(r.bytes)} · ${when} `,
        again,
        " ",
        del,
      );
    }),
  );
}

// ---------------------------------------------------------------------------------------------
// Look inside: next-token bars and the attention heatmap for the prompt, re-asked 300 ms after
// the last keystroke (or a layer/head change) whenever there is a model.

let inspectTimer = 0;
function scheduleInspect() {
  clearTimeout(inspectTimer);
  if (ui.training === "idle" || !ui.ready) return;
  inspectTimer = setTimeout(() => {
    send({ type: "inspect", prompt: $("prompt").value, layer: Number($("attention-layer").value), head: Number($("attention-head").value) });
  }, 300);
}

function fillSelect(sel, n, value) {
  if (sel.options.length !== n) sel.replaceChildren(...Array.from({ length: n }, (_, i) => h("option", { value: String(i) }, String(i))));
  sel.value = String(Math.min(value, n - 1));
}

const shown = (t) => JSON.stringify(t).slice(1, -1); // whitespace and newlines made visible

function showInspection(ev) {
  fillSelect($("attention-layer"), ev.n_layer, ev.layer);
  fillSelect($("attention-head"), ev.n_head, ev.head);
  const top = ev.top[0] ? ev.top[0][1] : 1;
  $("next-token-probs").replaceChildren(
    ...ev.top.map(([token, p]) =>
      h(
        "li",
        {},
        h("code", {}, shown(token)),
        h("span", { class: "bar", style: `width: ${Math.max(1, (100 * p) / top).toFixed(1)}%` }),
        h("span", { class: "p" }, `${(100 * p).toFixed(p < 0.01 ? 2 : 1)}%`),
      ),
    ),
  );
  drawAttention(ev.tokens, ev.attention);
}

function drawAttention(tokens, att) {
  const canvas = $("attention-canvas");
  const ctx = canvas.getContext("2d");
  const t = tokens.length;
  const labels = t <= 40;
  const margin = labels ? 90 : 8;
  const cell = Math.max(1, Math.floor((canvas.width - margin - 8) / t));
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  for (let i = 0; i < t; i++)
    for (let j = 0; j <= i; j++) {
      const a = att[i * t + j];
      ctx.fillStyle = `rgba(37, 99, 235, ${Math.min(1, Math.max(0.03, a))})`;
      ctx.fillRect(margin + j * cell, margin + i * cell, cell, cell);
    }
  if (!labels) return;
  ctx.fillStyle = "#333";
  ctx.font = `${Math.min(12, cell)}px monospace`;
  ctx.textBaseline = "middle";
  for (let i = 0; i < t; i++) {
    const label = shown(tokens[i]).slice(0, 10);
    ctx.textAlign = "right";
    ctx.fillText(label, margin - 4, margin + i * cell + cell / 2);
    ctx.save();
    ctx.translate(margin + i * cell + cell / 2, margin - 4);
    ctx.rotate(-Math.PI / 2);
    ctx.textAlign = "left";
    ctx.fillText(label, 0, 0);
    ctx.restore();
  }
}

function showParity(ev) {
  const e = (x) => (x === null || x === undefined ? "—" : x.toExponential(2));
  const box = $("parity-result");
  box.dataset.state = ev.passed ? "pass" : "fail";
  box.replaceChildren(
    h("p", {}, h("strong", { class: ev.passed ? "yes" : "no" }, ev.passed ? "PASS" : "FAIL"), ` ${ev.name} on ${ev.adapter}`),
    h(
      "table",
      { class: "limits" },
      h("thead", {}, h("tr", {}, h("th", {}, ""), h("th", {}, "quantity"), h("th", {}, "max abs err"), h("th", {}, "max rel err"), h("th", {}, "tolerance"))),
      h(
        "tbody",
        {},
        ev.checks.map((c) =>
          h("tr", {}, h("td", { class: c.passed ? "yes" : "no" }, c.passed ? "ok" : "FAIL"), h("td", {}, c.name), h("td", {}, e(c.max_abs)), h("td", {}, e(c.max_rel)), h("td", {}, `${e(c.atol)} + ${e(c.rtol)}·|want|`)),
        ),
      ),
    ),
  );
  status(`Parity ${ev.passed ? "passed" : "FAILED"}: ${ev.name}.`);
}

async function runParity(file) {
  if (!file) return;
  $("parity-result").textContent = `Running ${file.name} on this GPU…`;
  send({ type: "parity", name: file.name }, new Uint8Array(await file.arrayBuffer()));
}

// data::MAX_CORPUS_BYTES: the engine refuses more; say so before reading the file at all
const MAX_CORPUS_BYTES = 128 * MiB;

async function loadFile(file) {
  if (!file) return;
  if (file.size > MAX_CORPUS_BYTES) {
    showError(`${file.name} is ${bytes(file.size)}; the page holds a corpus in memory and takes at most ${bytes(MAX_CORPUS_BYTES)}: use a part of it. The current corpus is unchanged.`);
    return;
  }
  status(`Reading ${file.name}…`);
  const buf = new Uint8Array(await file.arrayBuffer());
  send({ type: "corpus", name: file.name }, buf);
}

// Dropped files: a model directory's files are imported, a lone .safetensors is a parity file,
// anything else is a corpus.
function dropped(files) {
  const names = [...files].map((f) => f.name);
  if (names.includes("model.safetensors") || names.includes("config.json")) importModel(files);
  else if (files.length === 1 && names[0].endsWith(".safetensors")) runParity(files[0]);
  else loadFile(files[0]);
}

async function importModel(files) {
  const byName = Object.fromEntries([...files].map((f) => [f.name, f]));
  const missing = ["config.json", "model.safetensors", "tokenizer.json"].filter((n) => !byName[n]);
  if (missing.length) {
    showError(`To import a model choose its config.json, model.safetensors and tokenizer.json together; missing: ${missing.join(", ")}.`);
    return;
  }
  status("Reading the model files…");
  const [config, tokenizer, model] = await Promise.all([
    byName["config.json"].text(),
    byName["tokenizer.json"].text(),
    byName["model.safetensors"].arrayBuffer(),
  ]);
  status("Loading the model onto the GPU…");
  send({ type: "import", name: "the imported model", config, tokenizer }, new Uint8Array(model));
}

// ---------------------------------------------------------------------------------------------
// Models from the Hugging Face hub: {hub}/{repo}/resolve/main/{file}, cached in the
// origin-private file system (wgpt-hub/, one file per URL, and a "<name>.size" marker written
// after it is whole) so the second load needs no network. Not Cache Storage: Chromium's refuses
// bodies of a few hundred MB, and GPT-2's model.safetensors is 548 MB. A download that breaks
// off is retried from where it stopped (an HTTP Range request), three times, with a message each
// time.

const HUB_CACHE = "wgpt-hub";
const HUB_FILES = ["config.json", "tokenizer.json", "model.safetensors"];
const RETRIES = 3;

function progress(done, total, started, what) {
  const bar = $("dl-bar");
  const secs = (performance.now() - started) / 1e3;
  const speed = secs > 0 ? done / secs : 0;
  bar.max = total || 1;
  bar.value = total ? done : 0;
  const pct = total ? ` (${((100 * done) / total).toFixed(0)}%)` : "";
  $("dl-text").textContent = `${what}: ${bytes(done)}${total ? ` of ${bytes(total)}` : ""}${pct}, ${bytes(Math.round(speed))}/s`;
}

const hubCache = {
  async dir() {
    return (await navigator.storage.getDirectory()).getDirectoryHandle(HUB_CACHE, { create: true });
  },
  async get(url) {
    try {
      const dir = await this.dir();
      const name = encodeURIComponent(url);
      const size = Number(await (await (await dir.getFileHandle(`${name}.size`)).getFile()).text());
      const file = await (await dir.getFileHandle(name)).getFile();
      return file.size === size ? new Uint8Array(await file.arrayBuffer()) : null;
    } catch {
      return null; // not cached (or no OPFS)
    }
  },
  async put(url, bytes) {
    const dir = await this.dir();
    const name = encodeURIComponent(url);
    await dir.removeEntry(`${name}.size`).catch(() => {});
    for (const [file, data] of [[name, bytes], [`${name}.size`, String(bytes.length)]]) {
      const w = await (await dir.getFileHandle(file, { create: true })).createWritable();
      await w.write(data);
      await w.close();
    }
  },
};

// One file's bytes: from the cache, or downloaded (resuming after a broken connection) and cached.
async function hubFile(url, file, counted) {
  const hit = await hubCache.get(url);
  if (hit) {
    counted.done += hit.length;
    return { bytes: hit, cached: true };
  }
  const parts = [];
  let got = 0;
  let total = 0;
  for (let attempt = 1; ; attempt++) {
    try {
      const res = await fetch(url, got ? { headers: { Range: `bytes=${got}-` } } : {});
      if (!res.ok) throw new Error(`the server answered ${res.status} ${res.statusText}`);
      if (got && res.status !== 206) {
        // the server ignored the range: start over
        counted.done -= got;
        parts.length = 0;
        got = 0;
      }
      total = total || Number(res.headers.get("content-length")) || 0;
      const reader = res.body.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        parts.push(value);
        got += value.length;
        counted.done += value.length;
        counted.report(file, total);
      }
      if (total && got < total) throw new Error(`the connection closed after ${bytes(got)} of ${bytes(total)}`);
      break;
    } catch (e) {
      if (attempt > RETRIES) throw new Error(`downloading ${url} failed after ${RETRIES} retries (${e.message}). Check the connection and the hub URL, then press Load again; what was cached so far is kept`);
      const wait = 2 ** (attempt - 1);
      status(`Downloading ${file} failed (${e.message}); retrying in ${wait} s from ${bytes(got)} (retry ${attempt} of ${RETRIES})…`);
      await new Promise((r) => setTimeout(r, wait * 1000));
    }
  }
  const out = new Uint8Array(got);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  try {
    await hubCache.put(url, out);
  } catch (e) {
    return { bytes: out, cached: false, cacheError: `caching ${file} failed (${e.name}: ${e.message}), so the next load downloads it again; free some of this site's storage (saved runs) to cache it` };
  }
  return { bytes: out, cached: false };
}

async function loadFromHub() {
  const hub = $("hub-url").value.trim().replace(/\/+$/, "");
  const repo = $("hub-repo").value.trim().replace(/^\/+|\/+$/g, "");
  if (!/^https?:\/\//.test(hub) || !/^[\w.-]+(\/[\w.-]+)?$/.test(repo)) {
    showError(`The hub must be an http(s) URL and the repo a name like openai-community/gpt2; got ${JSON.stringify(hub)} and ${JSON.stringify(repo)}.`);
    return;
  }
  const started = performance.now();
  $("load-gpt2").disabled = true;
  $("download-progress").hidden = false;
  clearError();
  const counted = { done: 0, report: (file, total) => progress(counted.done, Math.max(total, counted.done), started, file) };
  try {
    const got = {};
    let cached = 0;
    let cacheError = null;
    for (const file of HUB_FILES) {
      status(`Loading ${repo}: ${file}…`);
      const r = await hubFile(`${hub}/${repo}/resolve/main/${file}`, file, counted);
      got[file] = r.bytes;
      cached += r.cached ? 1 : 0;
      cacheError = cacheError || r.cacheError;
    }
    const secs = (performance.now() - started) / 1e3;
    const all = HUB_FILES.reduce((n, f) => n + got[f].length, 0);
    progress(all, all, started, cached === HUB_FILES.length ? "from the cache" : "downloaded");
    ui.hubLoad = { repo, seconds: secs, cached: cached === HUB_FILES.length, bytes: all, cacheError };
    status(`Loading ${repo} onto the GPU…`);
    const text = (b) => new TextDecoder().decode(b);
    send({ type: "import", name: repo, config: text(got["config.json"]), tokenizer: text(got["tokenizer.json"]) }, got["model.safetensors"]);
  } catch (e) {
    showError(e.message);
    status("The model did not load; the current one is unchanged.");
  } finally {
    updateButtons();
  }
}

async function loadBuiltin(value) {
  if (!value) return;
  if (value.startsWith("task:")) {
    const task = value.slice(5);
    send({ type: "corpus", name: `${task} task`, task });
    return;
  }
  status("Downloading Tiny Shakespeare…");
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), 30000);
  try {
    const res = await fetch(SHAKESPEARE_URL, { signal: ctl.signal });
    if (!res.ok) throw new Error(`the server answered ${res.status} ${res.statusText}`);
    send({ type: "corpus", name: "Tiny Shakespeare", text: await res.text() });
  } catch (e) {
    const why = e.name === "AbortError" ? "no answer within 30 s" : e.message;
    showError(`Downloading Tiny Shakespeare from ${SHAKESPEARE_URL} failed (${why}). Check your connection, or save that file and drop it here.`);
    status("Download failed; the current corpus is unchanged.");
  } finally {
    clearTimeout(timer);
  }
}

function startTraining() {
  ui.train = { steps: [], losses: [] };
  ui.val = { steps: [], losses: [] };
  for (const id of ["train-loss", "val-loss", "tokens-per-sec", "ms-step", "lr-now", "eta"]) $(id).textContent = "";
  $("step").textContent = "0";
  $("sample").textContent = "";
  scheduleChart();
  status("Building the model…");
  send({ type: "start", settings: settings() });
}

function generate() {
  if ($("generate").disabled) return;
  const num = (id) => Number($(id).value);
  ui.generating = true;
  $("output").textContent = "";
  $("gen-speed").textContent = "";
  updateButtons();
  send({
    type: "generate",
    prompt: $("prompt").value,
    temperature: num("temperature"),
    top_k: Math.max(0, Math.floor(num("top-k"))),
    top_p: num("top-p"),
    max_tokens: Math.max(1, Math.floor(num("max-tokens"))),
    seed: Math.max(0, Math.floor(num("seed"))),
  });
}

function wire() {
  $("corpus-input").addEventListener("change", (e) => loadFile(e.target.files[0]));
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
  // a model's three files (or a parity file) dropped anywhere on the page
  document.addEventListener("dragover", (e) => e.preventDefault());
  document.addEventListener("drop", (e) => {
    e.preventDefault();
    dropped(e.dataTransfer.files);
  });
  drop.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      $("corpus-input").click();
    }
  });
  $("builtin").addEventListener("change", (e) => loadBuiltin(e.target.value));
  $("import-input").addEventListener("change", (e) => importModel(e.target.files));
  $("load-gpt2").addEventListener("click", loadFromHub);
  $("parity-input").addEventListener("change", (e) => runParity(e.target.files[0]));
  $("paste-use").addEventListener("click", () => {
    const text = $("paste").value;
    send({ type: "corpus", name: "pasted text", text });
  });
  $("preset").addEventListener("change", (e) => {
    applyPreset(e.target.value);
    schedulePlan();
  });
  $("tokenizer").addEventListener("change", schedulePlan);
  for (const id of [...DIMS, "bpe_vocab", "batch_size", "grad_accum", "max_iters", "lr", "eval_interval", "train_seed"])
    $(id).addEventListener("change", schedulePlan);
  $("train-start").addEventListener("click", startTraining);
  $("train-pause").addEventListener("click", () => {
    if (ui.training === "training") {
      send({ type: "pause" });
      onEvent({ type: "state", state: "paused", step: Number($("step").textContent) });
    } else if (ui.training === "paused") {
      send({ type: "resume" });
      onEvent({ type: "state", state: "training", step: Number($("step").textContent) });
    }
  });
  $("train-stop").addEventListener("click", () => send({ type: "stop" }));
  $("export").addEventListener("click", () => {
    status("Exporting the model…");
    send({ type: "export" });
  });
  $("generate").addEventListener("click", generate);
  $("gen-stop").addEventListener("click", () => send({ type: "cancel" }));
  $("prompt").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      generate();
    }
  });
  $("log-scale").addEventListener("change", drawChart);
  $("prompt").addEventListener("input", scheduleInspect);
  $("attention-layer").addEventListener("change", scheduleInspect);
  $("attention-head").addEventListener("change", scheduleInspect);
  window.addEventListener("resize", scheduleChart);
  window.addEventListener("TrunkApplicationStarted", drawChart);
}

function startEngine() {
  $("playground").hidden = false;
  $("status-bar").hidden = false;
  applyPreset("tiny");
  wire();
  updateButtons();
  ui.worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module" });
  // the last events, for tests and for anyone curious in the console
  window.wgptEvents = [];
  // for tests and for trying the recovery by hand: a lost GPU device, as after a driver reset
  window.wgptDebug = { loseDevice: () => send({ type: "lose_device" }) };
  ui.worker.onmessage = (e) => {
    const ev = typeof e.data === "string" ? JSON.parse(e.data) : { ...JSON.parse(e.data.json), bytes: e.data.files };
    window.wgptEvents.push(ev.bytes ? { ...ev, bytes: undefined } : ev);
    if (window.wgptEvents.length > 100) window.wgptEvents.shift();
    onEvent(ev);
  };
  ui.worker.onerror = (e) => {
    showError(`The engine failed to start: ${e.message || "the worker could not load"}. Reload the page; if it persists, your browser may not support module workers.`);
    status("Engine failed.");
  };
  send({ type: "init" });
}

check()
  .then((ok) => ok && startEngine())
  .catch(failed);
