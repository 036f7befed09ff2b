// Look inside, for the prompt: each `inspect` event (src/web/views.rs) drawn into its views, the
// prompt's tokens (tokens.js), the next-token bars before and after sampling (sampling.js), every
// head's attention in the chosen layer (attention.js) and the logit lens (lens.js), each captioned
// with the step and the prompt it shows. What the section as a whole says (waiting, or why it
// could not look) is the state's `look`, drawn by views.js.

import { $, h } from "./dom.js";
import { showAttention } from "./attention.js";
import { showLens } from "./lens.js";
import { showSampling } from "./sampling.js";
import { showTokens } from "./tokens.js";

function fillSelect(sel, n, value) {
  if (sel.options.length !== n) sel.replaceChildren(...Array.from({ length: n }, (_, i) => h("option", { value: String(i) }, String(i))));
  sel.value = String(Math.min(value, n - 1));
}

// What a view shows: the step and the prompt.
export const what = (ev) => `step ${ev.step.toLocaleString("en-US")}, prompt ${ev.prompt ? JSON.stringify(ev.prompt.length > 60 ? `…${ev.prompt.slice(-60)}` : ev.prompt) : "(empty)"}`;

// Shows an `inspect` event; `files[0]` holds its attention.
export function showInspection(ev, files) {
  fillSelect($("attention-layer"), ev.n_layer, ev.layer);
  fillSelect($("attention-head"), ev.n_head, Number($("attention-head").value));
  showTokens(ev);
  showSampling(ev.sampling);
  showLens(ev);
  showAttention(ev, files[0]);
  const at = what(ev);
  $("sampling-caption").textContent = `Next token at ${at}`;
  $("attention-caption").textContent = `Attention in layer ${ev.layer} at ${at}`;
  $("lens-caption").textContent = `Logit lens at ${at}`;
}

// Shows a `sampling` event: the same look's bars under new settings.
export function showResampled(ev) {
  showSampling(ev.sampling);
  $("sampling-caption").textContent = `Next token at ${what(ev)}`;
}
