// The list of saved runs under the training controls, and the offer to resume the newest after a
// reload (while nothing has been trained or loaded yet). Drawn from the state's `runs`.

import { $, h, bytes, fmt } from "./dom.js";
import { running } from "./state.js";

// `act.resume(run)` and `act.remove(run)` do what the buttons say.
export function showRuns(state, act) {
  const { runs, usage, quota, unavailable } = state.runs;
  $("storage-use").textContent = unavailable
    ? `${unavailable} Runs cannot be saved here.`
    : usage !== null && quota
      ? `This page's storage: ${bytes(usage)} of ${bytes(quota)}.`
      : "";
  const offer = $("resume-offer");
  const last = runs[0];
  offer.hidden = !last || state.training !== "idle";
  if (last) {
    const go = h("button", { type: "button", class: "primary", "data-testid": "resume" }, "Resume");
    go.disabled = !state.ready;
    go.onclick = () => act.resume(last);
    offer.replaceChildren(`Your last run was saved: ${last.name}, step ${fmt.int(last.step)} of ${fmt.int(last.max_iters)}. `, go, " it where it was.");
  }
  const list = $("saved-runs");
  if (!runs.length) {
    list.replaceChildren(h("li", { class: "muted small" }, "None yet."));
    return;
  }
  list.replaceChildren(
    ...runs.map((r) => {
      const again = h("button", { type: "button", "data-testid": "resume-run", "data-run": r.id }, "Resume");
      const del = h("button", { type: "button", class: "link", "data-testid": "delete-run", "data-run": r.id }, "delete");
      again.disabled = running(state) || !state.ready;
      again.onclick = () => act.resume(r);
      del.onclick = () => act.remove(r);
      const when = new Date(r.saved_at).toLocaleString();
      return h(
        "li",
        { "data-run": r.id, "data-step": String(r.step) },
        h("strong", {}, r.name),
        ` · step ${fmt.int(r.step)} of ${fmt.int(r.max_iters)} · ${r.shape} · ${bytes(r.bytes)} · ${when} `,
        again,
        " ",
        del,
      );
    }),
  );
}
