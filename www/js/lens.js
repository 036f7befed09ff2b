// The logit lens (`logit-lens`, src/lens.rs): had the model stopped after each layer (the
// embeddings, each block, through the family's own final norm (LayerNorm or RMSNorm), its head
// (tied to the embeddings or an lm_head of its own) and its logit softcap; the output), what it
// would predict next: a
// layer x position grid of each position's most likely next token, shaded by its probability, and
// at the last position each layer's top 5 with their probabilities. The output layer is on top.

import { $, h } from "./dom.js";
import { pct, visible } from "./tokens.js";

const layerName = (l, n) => (l === 0 ? "embeddings" : l === n ? `h.${l - 1}: output` : `h.${l - 1}`);

function cell(g) {
  const style = `background: rgba(59, 91, 219, ${(0.06 + 0.74 * g.p).toFixed(2)}); color: ${g.p > 0.5 ? "#fff" : "inherit"}`;
  return h("td", { class: "cell", style, title: `${JSON.stringify(g.text)}: ${pct(g.p)}` }, visible(g.text));
}

// Shows an `inspect` event's lens (rows per layer) over its tokens.
export function showLens(ev) {
  const head = h(
    "tr",
    {},
    h("th", {}, "after"),
    ev.tokens.map((t, i) => h("th", { class: "pos", title: `position ${i}, token id ${ev.ids[i]}` }, visible(t))),
    h("th", {}, "top 5 after the last token"),
  );
  const rows = [...ev.lens].reverse().map((row) =>
    h(
      "tr",
      { "data-layer": String(row.layer), "data-top1": row.top[0]?.text ?? "" },
      h("th", {}, layerName(row.layer, ev.n_layer)),
      row.cells.map(cell),
      h("td", { class: "top5" }, row.top.map((g) => h("span", { class: "guess" }, h("code", {}, visible(g.text)), ` ${pct(g.p)}`))),
    ),
  );
  $("logit-lens").replaceChildren(h("table", { class: "lens" }, h("thead", {}, head), h("tbody", {}, rows)));
}
