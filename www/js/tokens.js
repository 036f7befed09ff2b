// The prompt as its tokens (`prompt-tokens`, under the prompt): each token's visible text in a box
// of its own, its id beneath, from each `inspect` event, so it follows the prompt as it is typed.

import { $, h } from "./dom.js";

// A token's text with its whitespace made visible: spaces as ␣, newlines and other control
// characters as JSON escapes them.
export const visible = (t) => JSON.stringify(t).slice(1, -1).replaceAll(" ", "␣");

// A probability as a percentage, with two decimals below 1%.
export const pct = (p) => `${(100 * p).toFixed(p < 0.01 ? 2 : 1)}%`;

// Shows an `inspect` event's tokens (ids, tokens) and what became of the prompt (notes).
export function showTokens(ev) {
  const n = ev.ids.length;
  const box = $("prompt-tokens");
  box.dataset.count = String(n);
  const about = `${n} token${n === 1 ? "" : "s"}${ev.notes.length ? ` (${ev.notes.join("; ")})` : ""}:`;
  box.replaceChildren(
    h("span", { class: "muted small" }, about),
    ...ev.ids.map((id, i) => h("span", { class: "tok", "data-id": String(id), title: `token id ${id}` }, visible(ev.tokens[i]), h("sub", {}, String(id)))),
  );
}
