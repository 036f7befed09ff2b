// The views that draw from the state (app.js calls renderViews after each event): the parameter
// table (params.js), the training dynamics chart (dynamics.js), throughput in model FLOP/s and MFU,
// what look inside is doing (waiting for a step, or why it could not look) and Compare runs
// (compare.js), and the task view (tasks.js, through `act.taskEval`). Each redraws only when its
// part of the state changed, or when its tab is chosen (redrawViews).

import { $, h } from "./dom.js";
import { note } from "./chart.js";
import { showCompare } from "./compare.js";
import { drawDynamics } from "./dynamics.js";
import { showParams } from "./params.js";
import { running } from "./state.js";

let shown = {};

// FLOP/s with a unit, as the CLI's progress line prints them (src/flops.rs).
function flops(x) {
  const [scale, unit] = x >= 1e12 ? [1e12, "TFLOP/s"] : x >= 1e9 ? [1e9, "GFLOP/s"] : [1e6, "MFLOP/s"];
  return `${(x / scale).toFixed(2)} ${unit}`;
}

let dynamicsPending = false;
function scheduleDynamics(state) {
  if (dynamicsPending) return;
  dynamicsPending = true;
  requestAnimationFrame(() => {
    dynamicsPending = false;
    drawDynamics($("dynamics-chart"), state().dynamics, state().model?.export_class);
  });
}

function throughput(s) {
  const g = s.progress;
  const per = s.model?.flops_per_token;
  const achieved = g && per ? g.tokens_per_sec * per : null;
  $("flops").textContent = achieved === null ? "" : flops(achieved);
  const peak = s.model?.peak_flops;
  $("mfu").textContent = achieved === null ? "" : peak ? `${((100 * achieved) / peak).toFixed(1)}%` : "—";
  $("mfu").title = peak ? `of this adapter's fp32 peak, ${flops(peak)}` : "this adapter's peak FLOP/s is not known, so MFU is not either";
}

// Says what look inside shows, or is waiting for, or why it could not look.
function lookCaption(s) {
  const el = $("look-caption");
  const { asked, shown: at, error } = s.look;
  const quote = (p) => (p ? JSON.stringify(p.length > 60 ? `…${p.slice(-60)}` : p) : "(empty)");
  el.classList.toggle("bad", Boolean(error));
  if (s.training === "idle") el.textContent = "Train or import a model, then type a prompt above (an empty one starts from the corpus).";
  else if (error) el.textContent = `Could not look inside for the prompt ${quote(error.prompt)}: ${error.message}`;
  else if (asked !== null) el.textContent = `Looking inside for the prompt ${quote(asked)}…${running(s) ? " (after the training step in progress)" : ""}`;
  else if (at) {
    const behind = running(s) && s.step > at.step ? ` Training is at step ${s.step.toLocaleString("en-US")}: this refreshes at each evaluation and as you type.` : "";
    el.textContent = `Showing step ${at.step.toLocaleString("en-US")}, prompt ${quote(at.prompt)}.${behind}`;
  } else el.textContent = "Type a prompt above to look inside (an empty one starts from the corpus).";
  if (error) {
    const box = $("prompt-tokens");
    box.dataset.count = "0";
    box.replaceChildren(h("span", { class: "bad small" }, `No tokens: ${error.message}`));
  }
}

// Draws the placeholders of the views that are canvases.
export function initViews(state) {
  const canvas = $("attention-canvas");
  note(canvas.getContext("2d"), { x: 0, y: 0, w: canvas.width, h: canvas.height }, "Each token's attention appears here.");
  scheduleDynamics(state);
  window.addEventListener("resize", () => scheduleDynamics(state));
}

// Forgets what was drawn, so the next renderViews draws every view again (a tab just chosen:
// what was drawn while hidden had no width).
export function redrawViews() {
  shown = {};
}

// Redraws what changed of `s`; `act.choose(id, on)` ticks a run to compare, `act.taskEval(ev)`
// draws the task view; `state()` is the current state (for drawing on the next frame).
export function renderViews(s, act, state) {
  if (shown.model !== s.model || shown.tensors !== s.tensors || shown.training !== s.training) showParams(s.model, s.tensors, running(s));
  if (shown.dynamics !== s.dynamics) scheduleDynamics(state);
  if (shown.progress !== s.progress || shown.model !== s.model) throughput(s);
  if (shown.look !== s.look || shown.training !== s.training || shown.step !== s.step) lookCaption(s);
  if (shown.runs !== s.runs || shown.compare !== s.compare) showCompare(s, act);
  if (!("taskEval" in shown) || shown.taskEval !== s.taskEval) act.taskEval(s.taskEval);
  shown = { model: s.model, tensors: s.tensors, training: s.training, dynamics: s.dynamics, progress: s.progress, look: s.look, step: s.step, runs: s.runs, compare: s.compare, taskEval: s.taskEval };
}
