// Look inside: for the prompt, the model's next-token probabilities as bars and one layer and
// head's attention as a heatmap (rows: the attending token; columns: the tokens it looks at).

import { $, h } from "./dom.js";

function fillSelect(sel, n, value) {
  if (sel.options.length !== n) sel.replaceChildren(...Array.from({ length: n }, (_, i) => h("option", { value: String(i) }, String(i))));
  sel.value = String(Math.min(value, n - 1));
}

const shown = (t) => JSON.stringify(t).slice(1, -1); // whitespace and newlines made visible

// Shows an `inspect` event: the next-token bars and the attention heatmap.
export function showInspection(ev) {
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
