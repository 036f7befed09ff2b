// Saved runs' loss curves for the page's Compare runs, read in the worker from the store's folders
// (runs.js): each run's metrics.jsonl (src/run/format.rs: a progress record {iter, loss, ...} or an
// evaluation {iter, train_loss, val_loss, ...} a line) as the chart's {train, val} [step, loss]
// pairs.

import { runsDir } from "./runs.js";

// The loss curves of metrics.jsonl's `text`.
function lossCurves(text) {
  const history = { train: [], val: [] };
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    const r = JSON.parse(line);
    if ("val_loss" in r) history.val.push([r.iter, r.val_loss]);
    else if ("loss" in r) history.train.push([r.iter, r.loss]);
  }
  return history;
}

// Each of the runs `ids`: {id, history} or {id, error}.
export async function histories(ids) {
  const root = await runsDir();
  return Promise.all(
    ids.map(async (id) => {
      try {
        const dir = await root.getDirectoryHandle(id);
        const text = await (await (await dir.getFileHandle("metrics.jsonl")).getFile()).text();
        return { id, history: lossCurves(text) };
      } catch (e) {
        return { id, error: `${e.name ?? "Error"}: ${e.message ?? e}` };
      }
    }),
  );
}
