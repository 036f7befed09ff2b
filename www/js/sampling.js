// The next-token distribution before and after sampling (`next-token-probs`): the most likely
// next tokens as bars, the model's own probability (grey) and the one sampling draws it with under
// the temperature, top-k and top-p (blue); tokens sampling cannot pick are struck out. From each
// `inspect` event and, as the controls move, each `sampling` event: the engine keeps the look's
// logits, so no forward pass runs again (src/web/views.rs).

import { $, h } from "./dom.js";
import { pct, visible } from "./tokens.js";

// Shows `view` (an event's `sampling`: settings, bars, candidates, mass).
export function showSampling(view) {
  const top = Math.max(1e-9, ...view.bars.flatMap((b) => [b.before, b.after]));
  const width = (p) => `width: ${Math.max(0.5, (100 * p) / top).toFixed(1)}%`;
  $("next-token-probs").replaceChildren(
    ...view.bars.map((b) =>
      h(
        "li",
        { class: b.candidate ? "" : "cut", "data-id": b.id, "data-text": b.text, "data-before": b.before, "data-after": b.after },
        h("code", {}, visible(b.text)),
        h("span", { class: "bars" }, h("span", { class: "bar before", style: width(b.before) }), h("span", { class: "bar after", style: width(b.after) })),
        h("span", { class: "p" }, `${pct(b.before)} → ${b.candidate ? pct(b.after) : "cut"}`),
      ),
    ),
  );
  const s = view.settings;
  const how = s.temperature <= 0 || s.top_k === 1 ? "greedy" : `temperature ${s.temperature}, top-k ${s.top_k || "off"}, top-p ${s.top_p < 1 ? s.top_p : "off"}`;
  $("sampling-note").textContent = `${how}: ${view.candidates.toLocaleString("en-US")} token${view.candidates === 1 ? "" : "s"} remain candidates, holding ${pct(view.mass)} of the model's probability. Grey: the model's distribution; blue: what sampling draws from.`;
}
