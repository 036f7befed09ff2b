// The list of saved runs under the training controls, and the offer to resume the newest after a
// reload (while nothing has been trained or loaded yet). Drawn from the state's `runs`. A run
// another tab is training is marked so, and cannot be resumed or deleted here meanwhile.

import { $, h, bytes, fmt } from "./dom.js";
import { running } from "./state.js";

// `act.resume(run)` and `act.remove(run)` do what the buttons say.
export function showRuns(state, act) {
  const { runs, usage, persisted, unavailable } = state.runs;
  // (the browser's quota figure is not shown: Chromium reports usage + 10 GiB whatever the real one)
  const kept =
    persisted === true
      ? " It is persistent: the browser keeps it when disk space runs low."
      : persisted === false
        ? " The browser may clear it when disk space runs low (it decides which sites keep theirs)."
        : "";
  $("storage-use").textContent = unavailable ? `${unavailable} Runs cannot be saved here.` : usage !== null ? `This page's storage holds ${bytes(usage)}.${kept}` : "";
  const offer = $("resume-offer");
  const last = runs.find((r) => !r.open_elsewhere);
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
      again.disabled = running(state) || !state.ready || Boolean(r.open_elsewhere);
      del.disabled = Boolean(r.open_elsewhere);
      again.onclick = () => act.resume(r);
      del.onclick = () => act.remove(r);
      const when = new Date(r.saved_at).toLocaleString();
      const elsewhere = r.open_elsewhere ? h("em", { "data-testid": "open-elsewhere" }, "this run is open in another tab ") : null;
      const kind = r.model_only ? "model only, no optimizer state (AdamW's moments start fresh on resume)" : "with optimizer state";
      return h(
        "li",
        { "data-run": r.id, "data-step": String(r.step), "data-open-elsewhere": String(Boolean(r.open_elsewhere)), "data-model-only": String(r.model_only) },
        h("strong", {}, r.name),
        ` · step ${fmt.int(r.step)} of ${fmt.int(r.max_iters)} · ${r.shape} · ${bytes(r.bytes)}, ${kind} · ${when} `,
        elsewhere,
        again,
        " ",
        del,
      );
    }),
  );
}
