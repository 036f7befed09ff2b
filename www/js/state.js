// The page's state and its one writer: reduce(state, event) returns the next state for every
// event of the engine (src/web/protocol/events.rs's Event), of the worker's store of saved runs
// (src/web/protocol/store.rs's StoreEvent) and of the page's own controls (types starting "ui_"). The views only read
// it (app.js renders it after each event).

import { bytes, fmt } from "./dom.js";

export const initial = {
  ready: false,
  protocol: null, // the engine's manifest: message names, scopes, presets, limits
  status: "Starting the engine…",
  error: null, // {message, diverged: {id, saved, lr} | null}
  corpus: null, // {name, bytes, chars, distinct}
  plan: null, // the last plan event
  kernels: null, // the last tuned event: the kernels a run uses and how they were chosen
  params: null, // the model's parameter count (the plan's, or an imported model's)
  planNote: "",
  training: "idle", // idle | loaded | training | pausing | paused | stopped | done
  step: 0,
  maxIters: null,
  progress: null, // the last progress event
  valLoss: null,
  sample: "",
  history: { train: [], val: [] }, // [step, loss] pairs: the loss chart
  generating: false,
  output: "",
  genSpeed: "",
  runs: { runs: [], usage: null, quota: null, unavailable: null },
  checkpointNote: "",
  hubLoad: null, // the hub load in flight, until its model is imported
  model: null, // the params event: the parameter table, its total, FLOPs per token, the adapter's peak
  dynamics: [], // the dynamics chart's points ({step, lr, grad_norm, grad_clip, layers}), oldest first
  tensors: null, // the last tracked step's {step, tensors, layers}: the parameter table's live columns
  look: { asked: null, shown: null, error: null }, // look inside: the prompt asked, the {step, prompt} shown, {prompt, message} of a failure
  compare: { ids: [], curves: {} }, // Compare runs: the ticked runs, each one's {history} or {error}
  background: null, // hidden | resumed | discarded: what the tab's lifecycle did (reliability.js)
  room: null, // {bytes, fits, model_bytes, model_fits}: the last storage probe for saving full and model-only checkpoints
  modelOnly: false, // checkpoints are saved without the optimizer state (the plan's offer, or a restored run's kind)
  shelved: null, // the run before's step and history while a Start builds the next (ui_start)
  held: false, // a restored or imported run is back and waits (paused, or done) until asked
  taskEval: null, // the last task_eval: a task run's held-out examples as the model answered them (tasks.js)
};

export const running = (s) => ["training", "pausing", "paused"].includes(s.training);

const failedTo = (s, scope) => (s.protocol ? Object.fromEntries(s.protocol.scopes)[scope] : null) ?? "continue";

function trainingStatus(ev) {
  switch (ev.state) {
    case "training":
      return "Training…";
    case "paused":
      return `Paused at step ${ev.step}. You can generate now.`;
    case "stopped":
      return `Stopped at step ${ev.step}. The model is kept: generate from it.`;
    default:
      return `Done: ${ev.step} steps. Generate from the model.`;
  }
}

// The line under the plan: that the run fits, and the precision it will train in (f16 asked
// without shader-f16 trains in f32, and the note says so).
const planNote = (ev) =>
  `Fits this GPU's limits. Trains in ${ev.precision === "f16" ? "f16 (mixed precision)" : "f32"}.${ev.precision_note ? ` Note: ${ev.precision_note}.` : ""} Exports as ${ev.export_class}.`;

const shelf = ({ step, progress, valLoss, sample, history }) => ({ step, progress, valLoss, sample, history });

const scoped = (pts, step) => pts.filter(([at]) => at <= step);

// One handler per event the page knows (its keys): each returns the next state.
export const on = {
  ready: (s, ev) => ({ ...s, ready: true, protocol: ev.protocol, status: `Ready on ${ev.adapter}. Choose a corpus.` }),
  tuned: (s, ev) => ({ ...s, kernels: ev }),
  tune_cache: (s) => s, // stored by the worker
  corpus: (s, ev) => ({ ...s, corpus: ev, plan: null, error: null, status: `Corpus: ${ev.name}.` }),
  plan: (s, ev) => ({ ...s, plan: ev, params: ev.params, planNote: planNote(ev), status: s.training === "idle" ? "Ready to train." : s.status }),
  // a resumed run's "Resumed ..." (what became of its optimizer state) stays while it trains;
  // back from a save or a zip, it waits and says how to go on (nothing trains unasked)
  state: (s, ev) => ({
    ...s,
    shelved: null,
    held: false,
    training: ev.state,
    step: ev.step,
    error: ev.state === "training" ? null : s.error,
    status:
      s.held && ev.state !== "training"
        ? `${s.status} ${ev.state === "done" ? "It finished: set Steps above its own and press Train on to go on." : "Paused: press Resume to train on."}`
        : ev.state === "training" && s.status.startsWith("Resumed ")
          ? s.status
          : trainingStatus(ev),
  }),
  progress: (s, ev) => ({ ...s, step: ev.step, maxIters: ev.max_iters, progress: ev, history: { ...s.history, train: [...s.history.train, [ev.step, ev.loss]] } }),
  dynamics: (s, ev) => ({ ...s, dynamics: [...s.dynamics, ev.point], tensors: { step: ev.point.step, tensors: ev.tensors, layers: ev.point.layers } }),
  // a new model (imported, or a run started or resumed): its table; its dynamics start afresh
  params: (s, ev) => ({ ...s, model: ev, tensors: null, dynamics: [], taskEval: null }),
  eval(s, ev) {
    const acc = ev.accuracy ?? null;
    const status = acc === null ? s.status : `Step ${ev.step}: val loss ${fmt.loss(ev.val_loss)}, exact-match accuracy ${(acc * 100).toFixed(0)}%.`;
    return { ...s, valLoss: ev.val_loss, sample: ev.sample, status, history: { ...s.history, val: [...s.history.val, [ev.step, ev.val_loss]] } };
  },
  // the task view's examples, marked token by token (tasks.js draws them)
  task_eval: (s, ev) => ({ ...s, taskEval: ev }),
  recovered: (s, ev) => ({
    ...s,
    step: ev.step,
    status: `The GPU device was lost at step ${ev.lost_at} (${ev.reason}). Training goes on on a new device from the checkpoint of step ${ev.step}.`,
    history: { train: scoped(s.history.train, ev.step), val: scoped(s.history.val, ev.step) },
    dynamics: s.dynamics.filter((p) => p.step <= ev.step),
  }),
  diverged: (s, ev) => ({ ...s, training: "stopped", status: `Training diverged at step ${ev.step}.`, error: { message: ev.message, diverged: ev.saved === null ? null : ev } }),
  restored: (s, ev) => ({
    ...s,
    step: ev.step,
    maxIters: ev.max_iters,
    history: ev.history,
    dynamics: ev.dynamics,
    progress: null,
    valLoss: null,
    sample: "",
    modelOnly: Boolean(ev.fresh_moments),
    held: true,
    status: `Resumed ${ev.name} at step ${ev.step}.${ev.fresh_moments ? " It was saved without the optimizer state: AdamW's moments start fresh, from zero, here (and its checkpoints are saved so)." : ""}`,
  }),
  token: (s, ev) => ({ ...s, output: s.output + ev.text }),
  generated: (s, ev) => ({ ...s, generating: false, genSpeed: `${ev.tokens} tokens, ${ev.tokens_per_sec.toFixed(1)} tokens/s, ${ev.precision}${ev.precision_note ? ` (${ev.precision_note})` : ""}`, status: s.training === "training" ? s.status : "Generated." }),
  // drawn as they come (inspect.js); the state keeps what look inside shows
  inspect: (s, ev) => ({ ...s, look: { asked: null, shown: { step: ev.step, prompt: ev.prompt }, error: null } }),
  sampling: (s) => ({ ...s, look: { ...s.look, error: null } }),
  parity: (s, ev) => ({ ...s, status: `Parity ${ev.passed ? "passed" : "FAILED"}: ${ev.name}.` }),
  imported(s, ev) {
    const hub = s.hubLoad;
    const how = hub ? ` (${bytes(hub.bytes)} ${hub.cached ? "from this browser's cache" : "downloaded"} in ${hub.seconds.toFixed(1)} s)` : "";
    return {
      ...s,
      training: "loaded",
      params: ev.params,
      hubLoad: null,
      planNote: `Imported ${ev.name}: ${ev.n_layer} layers, ${ev.n_head} heads, ${ev.n_embd} dims, context ${ev.block_size}, vocabulary ${fmt.int(ev.vocab_size)}.`,
      error: hub && hub.cacheError ? { message: `The model loaded, but ${hub.cacheError}.` } : null,
      status: `Imported ${ev.name}${how}. Generate from it, or press Start to fine-tune it on the corpus.`,
    };
  },
  export: (s, ev) => ({ ...s, status: `Exported the model at step ${ev.step}: ${ev.files.join(", ")} (a Hugging Face ${s.plan?.export_class ?? "model"} directory).` }),
  export_run: (s, ev) => ({ ...s, status: `Exported the run at step ${ev.step} as ${ev.name}: go on with it by Import run, or \`wgpt train --resume ${ev.name}\`.` }),
  // LoRA (lora.js downloads the zips)
  export_adapter: (s, ev) => ({ ...s, status: `Exported the adapter at step ${ev.step} as ${ev.name} (adapter_config.json naming the base ${ev.base}, adapter_model.safetensors): PeftModel.from_pretrained, or \`wgpt sample --model DIR --base BASE\`.` }),
  export_merged: (s, ev) => ({ ...s, status: `Exported the model at step ${ev.step} with its adapter merged in as ${ev.name}: a Hugging Face model directory.` }),
  adapter_imported: (s, ev) => ({ ...s, error: null, status: `Imported ${ev.name}: LoRA rank ${ev.rank}, alpha ${ev.alpha} on ${ev.targets.join(", ")}${ev.base ? ` (made for ${ev.base})` : ""}, ${ev.merged ? "merged into the weights" : "running beside the weights"}. Generate from it, or press Fine-tune to train on from the two merged.` }),
  checkpoint: (s, ev) => ({ ...s, checkpointNote: `saving step ${ev.step}…` }),
  error(s, ev) {
    // look inside says it in its own box: a prompt being typed is not a problem of the page
    if (ev.scope === "inspect") return { ...s, look: { ...s.look, asked: null, error: { prompt: s.look.asked ?? s.look.shown?.prompt ?? "", message: ev.message } } };
    const next = { ...s, error: { message: ev.message }, status: `Could not ${failedTo(s, ev.scope)}; see above.` };
    if (ev.scope === "generate") next.generating = false;
    if (ev.scope === "train" && s.shelved) Object.assign(next, s.shelved, { shelved: null });
    else if (ev.scope === "train" && s.training !== "idle") next.training = "stopped";
    if (ev.scope === "plan") next.planNote = "";
    if (ev.scope === "checkpoint") next.checkpointNote = "not saved";
    return next;
  },
  // the worker's store of saved runs (runs.js)
  saved: (s, ev) => ({ ...s, checkpointNote: `step ${ev.step} saved (${bytes(ev.bytes)}${ev.model_only ? ", without the optimizer state" : ""})` }),
  runs: (s, ev) => ({ ...s, runs: ev }),
  run_histories: (s, ev) => ({ ...s, compare: { ...s.compare, curves: { ...s.compare.curves, ...Object.fromEntries(ev.runs.map((r) => [r.id, r])) } } }),
  room: (s, ev) => ({ ...s, room: ev }),
  memory: (s) => s, // answered to wgptDebug.memory() (reliability.js)
  // links: share.js shows them and fills the form (nothing trains)
  link: (s) => s,
  link_opened: (s) => ({ ...s, error: null }),
  // the page's own controls
  ui_status: (s, ev) => ({ ...s, status: ev.text }),
  ui_model_only: (s, ev) => ({ ...s, modelOnly: ev.on }),
  ui_error: (s, ev) => ({ ...s, error: { message: ev.message }, status: ev.status ?? s.status }),
  ui_clear_error: (s) => ({ ...s, error: null }),
  ui_planning: (s) => ({ ...s, planNote: "Tokenizing and checking the model against this GPU…" }),
  // what the run before showed stays aside until the new run starts: a start that fails (out
  // of memory) leaves the engine's run as it was, and the page shows it again
  ui_start: (s) => ({ ...s, shelved: shelf(s), step: 0, progress: null, valLoss: null, sample: "", history: { train: [], val: [] }, status: "Building the model…" }),
  ui_pause: (s) => ({ ...s, training: "pausing", status: "Pausing after this step…" }),
  // resumed before the engine paused: it goes on without a word
  ui_resume: (s) => (s.training === "pausing" ? { ...s, training: "training", status: "Training…" } : s),
  ui_generate: (s) => ({ ...s, generating: true, output: "", genSpeed: "" }),
  ui_inspecting: (s, ev) => ({ ...s, look: { ...s.look, asked: ev.prompt } }),
  ui_compare: (s, ev) => ({ ...s, compare: { ...s.compare, ids: ev.on ? [...s.compare.ids.filter((id) => id !== ev.id), ev.id] : s.compare.ids.filter((id) => id !== ev.id) } }),
  ui_hub_loaded: (s, ev) => ({ ...s, hubLoad: ev.load, status: `Loading ${ev.load.repo} onto the GPU…` }),
  // visible again: a note about a freeze or a discard stays until the tab goes to the background again
  ui_background: (s, ev) => ({ ...s, background: ev.what === "visible" ? (s.background === "hidden" ? null : s.background) : ev.what }),
};

export const reduce = (s, ev) => (on[ev.type] ? on[ev.type](s, ev) : s);

// What the page and the engine disagree on: events of the engine or the store the page has no
// handler for, and handlers for events neither sends. Empty when they match.
export function mismatch(protocol) {
  const known = Object.keys(on).filter((t) => !t.startsWith("ui_"));
  const sent = [...protocol.events, ...protocol.store_events];
  return [...sent.filter((t) => !known.includes(t)), ...known.filter((t) => !sent.includes(t))];
}
