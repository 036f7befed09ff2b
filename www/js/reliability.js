// What the page says and does to survive real use: what happens while the tab is in the
// background (hidden, frozen, discarded), how big a checkpoint is and whether the page's storage
// has room for saving one, persistent storage, and the debug hooks the reliability and soak tests
// drive (wgptDebug).

import { bytes } from "./dom.js";
import { running } from "./state.js";

// Models from this many parameters on (GPT-2 124M) evaluate on fewer batches by default: each
// batch is a forward pass of the whole model, minutes of them on a software adapter.
const BIG_MODEL = 50e6;
export const evalBatches = (params) => (params >= BIG_MODEL ? 2 : 20);

// Parameters of a GPT-2 shape (12·L·C² in the blocks, the embeddings), before a plan says.
export const paramsOf = ({ n_layer, n_embd, block_size }, vocab = 256) => 12 * n_layer * n_embd * n_embd + (vocab + block_size) * n_embd;

// Checkpoints from this size on are checked against the page's storage before training.
const PROBE_FROM = 64 * 2 ** 20;

// A checkpoint's size: the weights (4 bytes a parameter) and AdamW's two moments (8), and the
// tokenizer, metrics and corpus (at most `extra`); a model-only one (saved without the optimizer
// state) lacks the moments.
export function checkpointSize(s) {
  if (s.params === null) return null;
  const extra = (s.corpus ? s.corpus.bytes : 0) + 2 * 2 ** 20;
  return { model: 4 * s.params, moments: 8 * s.params, total: 12 * s.params + extra, modelOnly: 4 * s.params + extra };
}

// The room saving needs, full and model-only: the new checkpoint beside the one before, which
// stays whole until the new one is complete (so a browser killed mid-save keeps it).
export function roomNeeded(s) {
  const c = checkpointSize(s);
  return c && c.total >= PROBE_FROM ? { full: 2 * c.total, model: 2 * c.modelOnly } : null;
}

// Whether the plan offers to save without the optimizer state: the probe found no room for full
// checkpoints but room for model-only ones (or the user chose that already).
export function offersModelOnly(s) {
  const need = roomNeeded(s);
  const probed = need && s.room && s.room.bytes === need.full;
  return s.modelOnly || Boolean(probed && !s.room.fits && s.room.model_fits);
}

// The line under the plan: the checkpoint's size and whether the storage has room for saving.
export function checkpointPlan(s) {
  const c = checkpointSize(s);
  if (!c) return "";
  let line = `Each checkpoint: about ${bytes(c.total)} (the model ${bytes(c.model)}, AdamW's moments ${bytes(c.moments)}).`;
  const need = roomNeeded(s);
  if (!need) return line;
  line += ` While one is saved the one before stays whole (a browser killed mid-save keeps it), so saving needs room for about ${bytes(need.full)}.`;
  if (!s.room || s.room.bytes !== need.full) return `${line} Checking this page's storage…`;
  if (s.room.fits) return `${line} This page's storage has room for that.`;
  line += " This page's storage has no room for that (checked)";
  if (s.room.model_fits)
    return `${line}, but has for checkpoints saved without the optimizer state: about ${bytes(c.modelOnly)} each, ${bytes(need.model)} while saving. Resumed, such a run goes on at its step with AdamW's moments starting from zero.${s.modelOnly ? "" : " Without that, checkpoints will fail."}`;
  return `${line}, not even without the optimizer state (${bytes(need.model)}): checkpoints will fail. Delete saved runs, free disk space, or use a normal window (a private one keeps a page's storage in memory, 5 to 7% of the machine's RAM).`;
}

// The offer's checkbox text: the sizes it chooses between.
export function modelOnlyLabel(s) {
  const c = checkpointSize(s);
  return c ? `Save checkpoints without the optimizer state (${bytes(c.modelOnly)} each instead of ${bytes(c.total)})` : "Save checkpoints without the optimizer state";
}

// What the tab being in the background means for the run, for the note under the status.
export function backgroundNote(s) {
  switch (s.background) {
    case "hidden":
      return running(s)
        ? `This tab is in the background: training goes on in its worker at full speed (the page only draws less often). If the browser freezes the tab, training waits until you come back; if it discards the tab, opening it again offers to resume from the last checkpoint.`
        : "";
    case "resumed":
      return "The browser froze this tab for a while: training waited meanwhile, and went on from where it was when the tab came back.";
    case "discarded":
      return "The browser discarded this tab while it was in the background (to save memory). Your run was saved at its last checkpoint: resume it below.";
    default:
      return "";
  }
}

// The page's lifecycle into the state: hidden and visible, frozen and resumed, discarded.
export function watchLifecycle(dispatch) {
  document.addEventListener("visibilitychange", () => dispatch({ type: "ui_background", what: document.visibilityState }));
  document.addEventListener("resume", () => dispatch({ type: "ui_background", what: "resumed" }));
  if (document.wasDiscarded) dispatch({ type: "ui_background", what: "discarded" });
}

// Asks the browser to keep this page's storage under pressure (it decides; Chromium grants it
// to sites people use a lot, or have bookmarked or installed). The runs list says what it is.
export async function askPersistence() {
  try {
    return navigator.storage && navigator.storage.persist ? await navigator.storage.persist() : null;
  } catch {
    return null;
  }
}

// The test hooks on window.wgptDebug beside loseDevice: the engine's memory with the page's JS
// heap, an injected GPU memory budget, and a pause between a commit's steps.
export function debugHooks(send) {
  const waiting = [];
  const hooks = {
    memory: () =>
      new Promise((resolve) => {
        waiting.push(resolve);
        send({ type: "memory" });
      }),
    capMemory: (bytes) => send({ type: "cap_memory", bytes: bytes ?? null }),
    commitPause: (ms) => send({ type: "commit_pause", ms }),
  };
  // the engine's memory event, with the page's own heap (Chromium's performance.memory)
  const onMemory = (ev) => {
    const heap = performance.memory ? performance.memory.usedJSHeapSize : null;
    waiting.splice(0).forEach((resolve) => resolve({ ...ev, js_heap: heap }));
  };
  return { hooks, onMemory };
}
