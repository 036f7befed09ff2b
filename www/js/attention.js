// Attention in look inside: every head of the chosen layer as small multiples (`attention-heads`;
// click one to choose it) and the chosen head large (`attention-canvas`), tokens on both axes:
// rows are the attending token (the query), columns the tokens it looks at (the keys), darker is
// more. Hovering the large one says the query token, the key token and the weight. All heads come
// with each `inspect` event as bytes, f32 (n_head, T, T), so choosing a head needs no request.
// Under grouped-query attention (n_kv_head < n_head) each query head says which key/value head it
// shares: head h reads KV head h / (n_head / n_kv_head), as the kernels (shaders/attention.wgsl)
// and transformers' repeat_kv do.

import { $, h } from "./dom.js";
import { visible } from "./tokens.js";

let seen = null; // {tokens, layer, n_head, n_kv_head, t, att: Float32Array}
let geometry = null; // the large canvas' {margin, cell}

// "head h" with its KV head where heads share them.
function headName(h) {
  const { n_head, n_kv_head } = seen;
  if (!n_kv_head || n_kv_head >= n_head) return `head ${h}`;
  return `head ${h} (KV head ${Math.floor(h / (n_head / n_kv_head))})`;
}

const shade = (a) => `rgba(37, 99, 235, ${Math.min(1, Math.max(0.03, a)).toFixed(3)})`;

// Draws head `head`'s T x T matrix into `canvas`, with token labels where `labels`; returns where
// the cells are.
function drawHead(canvas, head, labels) {
  const { t, att, tokens } = seen;
  const ctx = canvas.getContext("2d");
  const margin = labels ? 90 : 2;
  const cell = Math.max(1, Math.floor((canvas.width - margin - 4) / t));
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  const base = head * t * t;
  for (let i = 0; i < t; i++)
    for (let j = 0; j <= i; j++) {
      ctx.fillStyle = shade(att[base + i * t + j]);
      ctx.fillRect(margin + j * cell, margin + i * cell, cell, cell);
    }
  if (labels) {
    ctx.fillStyle = "#333";
    ctx.font = `${Math.min(12, cell)}px monospace`;
    ctx.textBaseline = "middle";
    for (let i = 0; i < t; i++) {
      const label = visible(tokens[i]).slice(0, 10);
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
  return { margin, cell };
}

// The chosen head, large, and the small multiples marking it.
function drawChosen() {
  const head = Number($("attention-head").value);
  geometry = drawHead($("attention-canvas"), head, seen.t <= 40);
  for (const fig of $("attention-heads").children) fig.classList.toggle("chosen", Number(fig.dataset.head) === head);
  const { n_head, n_kv_head } = seen;
  const others = n_head / n_kv_head - 1;
  const heads = (n, what) => `${n} ${what}${n === 1 ? "" : "s"}`;
  const shares =
    n_kv_head && n_kv_head < n_head
      ? ` It shares its keys and values with ${others === 1 ? "the other query head" : `the other ${others} query heads`} of its group (grouped-query attention: ${heads(n_head, "query head")} over ${heads(n_kv_head, "KV head")}); each still attends its own way, by its own queries.`
      : "";
  $("attention-hover").textContent = `Layer ${seen.layer}, ${headName(head)}: hover a cell for its query token, key token and weight.${shares}`;
}

// Shows an `inspect` event's attention (`bytes`: every head of ev.layer).
export function showAttention(ev, bytes) {
  const t = ev.tokens.length;
  const att = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  seen = { tokens: ev.tokens, layer: ev.layer, n_head: ev.n_head, n_kv_head: ev.n_kv_head ?? ev.n_head, t, att };
  const figures = Array.from({ length: ev.n_head }, (_, head) => {
    const canvas = h("canvas", { width: "96", height: "96", role: "img", "aria-label": `layer ${ev.layer}, ${headName(head)}` });
    drawHead(canvas, head, false);
    const fig = h("button", { type: "button", class: "head", "data-head": String(head), title: `${headName(head)}: show it large`, "data-kv": String(Math.floor(head / (seen.n_head / seen.n_kv_head))) }, canvas, h("span", { class: "small" }, headName(head)));
    fig.onclick = () => {
      $("attention-head").value = String(head);
      drawChosen();
    };
    return fig;
  });
  $("attention-heads").replaceChildren(...figures);
  drawChosen();
}

// The chosen head changed (its menu): redraw, no request.
export function headChosen() {
  if (seen) drawChosen();
}

// Says which query, key and weight the pointer is over on the large canvas.
export function hover(e) {
  if (!seen || !geometry) return;
  const canvas = e.currentTarget;
  const r = canvas.getBoundingClientRect();
  const [x, y] = [((e.clientX - r.left) * canvas.width) / r.width, ((e.clientY - r.top) * canvas.height) / r.height];
  const [i, j] = [Math.floor((y - geometry.margin) / geometry.cell), Math.floor((x - geometry.margin) / geometry.cell)];
  if (!(i >= 0 && i < seen.t && j >= 0 && j <= i)) return;
  const head = Number($("attention-head").value);
  const w = seen.att[head * seen.t * seen.t + i * seen.t + j];
  const tok = (k) => `“${visible(seen.tokens[k])}” (position ${k})`;
  $("attention-hover").textContent = `Layer ${seen.layer}, ${headName(head)}: query ${tok(i)} attends to key ${tok(j)} with weight ${w.toFixed(3)}.`;
}
