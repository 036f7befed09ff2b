// The parameter table (`param-table`): every tensor of the model under the names of the
// transformers class it exports as (GPT2LMHeadModel's, LlamaForCausalLM's, Qwen3ForCausalLM's or
// wgpt's own), from the engine's `params` event (src/params.rs), with its shape as that class
// stores it, element count and what it is for; a rope model's row without parameters says where
// its positions went; each block folds (folded from three blocks up); a tied lm_head.weight shows
// as tied to the token embeddings and counted once, so the total is transformers'
// num_parameters(). While training, the live columns (weight RMS, gradient RMS and the
// update-to-weight ratio of the last tracked step) come from each `dynamics` event, whose tensors
// are the model's own: a row split from a fused one (q_proj, k_proj and v_proj of one q|k|v
// matrix; gate_proj and up_proj) shows the fused tensor's (its `live` name).

import { $, h, fmt } from "./dom.js";

const BLOCK = /^(?:transformer\.h|model\.layers)\.(\d+)\./;
const sci = (x) => (Number.isFinite(x) ? x.toExponential(2) : "—");

let built = null; // the model the table was built for
let live = new Map(); // the dynamics' tensor name -> the live cells of each row showing it
let blockRatio = new Map(); // "h.N" -> its block row's ratio cell

function foldable(name, count, open) {
  const toggle = h("button", { type: "button", class: "link fold", "aria-expanded": String(open) }, `${open ? "▾" : "▸"} ${name}`);
  const ratio = h("td", { class: "num" });
  const row = h("tr", { class: "block", "data-block": name }, h("td", {}, toggle), h("td", {}), h("td", { class: "num" }, fmt.int(count)), h("td", { class: "muted" }, `transformer block ${name.slice(2)}: attention and MLP`), h("td"), h("td"), ratio);
  blockRatio.set(name, ratio);
  return { row, toggle };
}

function tensorRow(r, hidden) {
  const cells = [h("td", { class: "num" }), h("td", { class: "num" }), h("td", { class: "num" })];
  const none = !r.shape.length; // rope's row: no parameters
  const count = r.tied_to ? `0 (tied to ${r.tied_to})` : fmt.int(r.count);
  const shape = none ? "—" : `[${r.shape.join(", ")}]`;
  const tr = h("tr", { "data-name": r.name }, h("td", {}, h("code", {}, r.name)), h("td", { class: "num" }, shape), h("td", { class: "num" }, count), h("td", {}, r.about), ...cells);
  tr.hidden = hidden;
  if (r.tied_to) cells.forEach((c) => (c.textContent = "tied"));
  else if (none) cells.forEach((c) => (c.textContent = ""));
  else {
    if (r.live) cells.forEach((c) => (c.title = `the statistics of ${r.live}, the fused tensor this is a part of`));
    const key = r.live ?? r.name;
    live.set(key, [...(live.get(key) ?? []), cells]);
  }
  return tr;
}

function build(model) {
  live = new Map();
  blockRatio = new Map();
  const blocks = new Map();
  for (const r of model.rows) {
    const m = r.name.match(BLOCK);
    const key = m ? `h.${m[1]}` : "";
    if (!blocks.has(key)) blocks.set(key, []);
    blocks.get(key).push(r);
  }
  const open = blocks.size <= 3; // the outer rows and at most two blocks
  const bodies = [];
  let outer = h("tbody");
  for (const r of model.rows) {
    const m = r.name.match(BLOCK);
    if (!m) {
      outer.append(tensorRow(r, false));
      continue;
    }
    const key = `h.${m[1]}`;
    const rows = blocks.get(key);
    if (rows[0] !== r) continue;
    bodies.push(outer);
    outer = h("tbody");
    const { row, toggle } = foldable(key, rows.reduce((n, x) => n + x.count, 0), open);
    const inner = rows.map((x) => tensorRow(x, !open));
    toggle.onclick = () => {
      const now = toggle.getAttribute("aria-expanded") !== "true";
      toggle.setAttribute("aria-expanded", String(now));
      toggle.textContent = `${now ? "▾" : "▸"} ${key}`;
      inner.forEach((tr) => (tr.hidden = !now));
    };
    bodies.push(h("tbody", { class: "block" }, row, inner));
  }
  bodies.push(outer);
  const head = h("thead", {}, h("tr", {}, ["name", "shape", "elements", "what it is", "weight RMS", "gradient RMS", "update / weight"].map((t) => h("th", {}, t))));
  const foot = h("tfoot", {}, h("tr", {}, h("th", {}, "total"), h("td"), h("td", { class: "num", "data-testid": "param-total" }, fmt.int(model.total)), h("td", { class: "muted" }, "as transformers' num_parameters(): lm_head counted once"), h("td"), h("td"), h("td")));
  $("param-table").replaceChildren(head, ...bodies.filter((b) => b.children.length), foot);
  built = model;
}

// Shows the state's `model` (the params event) and `tensors` ({step, tensors}, the last tracked
// step's dynamics, or null); `training` says whether live columns are to come.
export function showParams(model, tensors, training) {
  if (!model) {
    $("param-table").replaceChildren(h("caption", {}, "Choose a corpus and a model shape, or import a model: its parameters are listed here."));
    $("params-caption").textContent = "";
    built = null;
    return;
  }
  if (built !== model) build(model);
  const byName = new Map((tensors?.tensors ?? []).map((t) => [t.name, t]));
  for (const [name, rows] of live) {
    const t = byName.get(name);
    for (const [w, g, u] of rows) {
      w.textContent = t ? sci(t.weight_rms) : "—";
      g.textContent = t ? sci(t.grad_rms) : "—";
      u.textContent = t ? sci(t.update_ratio) : "—";
    }
  }
  for (const [name, cell] of blockRatio) {
    const group = tensors?.layers?.find((l) => l.name === name);
    cell.textContent = group ? sci(group.update_ratio) : "";
  }
  const n = model.rows.filter((r) => r.shape.length).length;
  const names = model.export_class ? ` under ${model.export_class}'s names` : "";
  const when = tensors ? `live columns at step ${fmt.int(tensors.step)}` : training ? "live columns from the first tracked step (every 10 steps)" : "live columns while training";
  $("params-caption").textContent = `${n} tensors${names}, ${fmt.int(model.total)} parameters; ${when}.`;
}
