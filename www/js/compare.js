// Compare runs (`compare-runs`): the loss curves of any saved runs on one chart (val loss thick,
// train loss thin, a colour per run), each run's settings in the legend (`compare-legend`) with
// the settings that differ between the runs highlighted and listed first. The settings come with
// the list of saved runs (runs.js); the curves are read from each run's metrics.jsonl by the worker
// (run-history.js) when it is ticked, and again when it saves a checkpoint.

import { $, h, fmt } from "./dom.js";
import { clear, note, plot } from "./chart.js";

const COLORS = ["#2563eb", "#dc2626", "#2b8a3e", "#9c36b5", "#e67700", "#0b7285", "#5c940d", "#862e9c"];

// A run's settings (its RunConfig, src/run/mod.rs) as [dotted key, value] pairs.
function flatten(value, key = "") {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return [[key, JSON.stringify(value)]];
  return Object.entries(value).flatMap(([k, v]) => flatten(v, key ? `${key}.${k}` : k));
}

// The settings of `runs` as rows {key, values, differs}, those that differ first.
function settingsRows(runs) {
  const maps = runs.map((r) => new Map(flatten(r.settings ?? {})));
  const keys = [...new Set(maps.flatMap((m) => [...m.keys()]))];
  const rows = keys.map((key) => {
    const values = maps.map((m) => m.get(key) ?? "—");
    return { key, values, differs: new Set(values).size > 1 };
  });
  return [...rows.filter((r) => r.differs), ...rows.filter((r) => !r.differs)];
}

function list(state, act) {
  const chosen = new Set(state.compare.ids);
  const runs = state.runs.runs;
  if (!runs.length) return [h("li", { class: "muted small" }, "No saved runs yet: a run is saved at every evaluation, on Pause and on Stop.")];
  return runs.map((r) => {
    const box = h("input", { type: "checkbox", "data-run": r.id });
    box.checked = chosen.has(r.id);
    box.onchange = () => act.choose(r.id, box.checked);
    return h("li", {}, h("label", { class: "inline" }, box, h("strong", {}, r.name), ` · step ${fmt.int(r.step)} of ${fmt.int(r.max_iters)} · ${r.shape}`));
  });
}

function legend(chosen) {
  if (!chosen.length) return [];
  const rows = settingsRows(chosen);
  const head = h("tr", {}, h("th", {}, "setting"), chosen.map((r, i) => h("th", {}, h("span", { class: "swatch", style: `background: ${COLORS[i % COLORS.length]}` }), ` ${r.name} (step ${fmt.int(r.step)})`)));
  const body = rows.map((r) => h("tr", { class: r.differs ? "differs" : "", "data-key": r.key, "data-differs": String(r.differs) }, h("th", {}, r.key), r.values.map((v) => h("td", {}, v))));
  return [h("thead", {}, head), h("tbody", {}, body)];
}

// Shows the saved runs to choose from, the chosen ones' curves and their settings. `act.choose(id,
// on)` ticks or unticks a run.
export function showCompare(state, act) {
  $("compare-list").replaceChildren(...list(state, act));
  const byId = new Map(state.runs.runs.map((r) => [r.id, r]));
  const chosen = state.compare.ids.filter((id) => byId.has(id)).map((id) => ({ ...byId.get(id), curves: state.compare.curves[id] }));
  const canvas = $("compare-runs");
  const ctx = clear(canvas);
  const box = { x: 0, y: 0, w: canvas.width, h: canvas.height };
  const series = chosen.flatMap((r, i) => {
    const color = COLORS[i % COLORS.length];
    const c = r.curves?.history;
    return c ? [{ points: c.train, color: `${color}66`, width: 1 }, { points: c.val, color, width: 2.5 }] : [];
  });
  const failed = chosen.filter((r) => r.curves?.error).map((r) => `${r.name}: ${r.curves.error}`);
  const drawn = plot(ctx, box, series, { yLabel: "loss (val thick, train thin)" });
  if (!drawn) note(ctx, box, chosen.length ? "Reading the chosen runs' metrics…" : "Tick saved runs above to overlay their loss curves.");
  canvas.dataset.runs = String(series.length / 2);
  $("compare-legend").replaceChildren(...legend(chosen));
  $("compare-note").textContent = failed.length
    ? `Could not read ${failed.join("; ")}.`
    : chosen.length > 1
      ? "Highlighted: the settings that differ between the chosen runs."
      : chosen.length
        ? "Tick another run to see what its settings change."
        : "";
}
