// A parity file's result: this browser's GPU against PyTorch's numbers for the same model.

import { $, h } from "./dom.js";

// Shows a `parity` event: each checked quantity with its largest errors and the tolerance.
export function showParity(ev) {
  const e = (x) => (x === null || x === undefined ? "—" : x.toExponential(2));
  const box = $("parity-result");
  box.dataset.state = ev.passed ? "pass" : "fail";
  box.replaceChildren(
    h("p", {}, h("strong", { class: ev.passed ? "yes" : "no" }, ev.passed ? "PASS" : "FAIL"), ` ${ev.name} on ${ev.adapter}`),
    h(
      "table",
      { class: "limits" },
      h("thead", {}, h("tr", {}, h("th", {}, ""), h("th", {}, "quantity"), h("th", {}, "max abs err"), h("th", {}, "max rel err"), h("th", {}, "tolerance"))),
      h(
        "tbody",
        {},
        ev.checks.map((c) =>
          h("tr", {}, h("td", { class: c.passed ? "yes" : "no" }, c.passed ? "ok" : "FAIL"), h("td", {}, c.name), h("td", {}, e(c.max_abs)), h("td", {}, e(c.max_rel)), h("td", {}, `${e(c.atol)} + ${e(c.rtol)}·|want|`)),
        ),
      ),
    ),
  );
}
