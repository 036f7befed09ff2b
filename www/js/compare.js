// Compare runs (`compare-runs`): the loss curves of any saved runs on one chart (val loss thick,
// train loss thin, a colour per run), each run's settings in the legend (`compare-legend`) with
// the settings that differ between the runs highlighted and listed first. The settings come with
// the list of saved runs (runs.js); the curves are read from each run's metrics.jsonl by the worker
// (run-history.js) when it is ticked, and again when it saves a checkpoint. A run's config leaves
// the architecture switches out at GPT-2's choices (src/model/arch.rs): they are filled in from
// GPT-2's preset of the manifest, so a GPT-2 run and a Llama run differ by name on each switch,
// and the switches that differ lead the legend and are named under the chart.

import { $, h, fmt } from "./dom.js";
import { clear, note, plot } from "./chart.js";
import { ARCH_KEYS } from "./arch.js";

const COLORS = ["#2563eb", "#dc2626", "#2b8a3e", "#9c36b5", "#e67700", "#0b7285", "#5c940d", "#862e9c"];

// A run's settings (its RunConfig, src/run/mod.rs) as [dotted key, value] pairs.
function flatten(value, key = "") {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return [[key, JSON.stringify(value)]];
  return Object.entries(value).flatMap(([k, v]) => flatten(v, key ? `${key}.${k}` : k));
}

// GPT-2's switches as a run's config keys them (`model.positions`, ...): the manifest's GPT-2
// preset, a softcap off as null (the config's "none").
function archDefaults(protocol) {
  const gpt2 = protocol?.arch_presets?.find((p) => p.name === "gpt2");
  if (!gpt2) return [];
  return ARCH_KEYS.map((k) => [`model.${k}`, JSON.stringify(k === "logit_softcap" ? null : gpt2.switches[k])]);
}

// The settings of `runs` as rows {key, values, differs, arch}, the switches that differ first,
// then the other settings that differ.
function settingsRows(runs, protocol) {
  const defaults = archDefaults(protocol);
  const maps = runs.map((r) => new Map([...defaults, ...flatten(r.settings ?? {})]));
  const keys = [...new Set(maps.flatMap((m) => [...m.keys()]))];
  const rows = keys.map((key) => {
    const values = maps.map((m) => m.get(key) ?? "—");
    return { key, values, differs: new Set(values).size > 1, arch: defaults.some(([k]) => k === key) };
  });
  return [...rows.filter((r) => r.differs && r.arch), ...rows.filter((r) => r.differs && !r.arch), ...rows.filter((r) => !r.differs)];
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

function legend(chosen, rows) {
  if (!chosen.length) return [];
  const head = h("tr", {}, h("th", {}, "setting"), chosen.map((r, i) => h("th", {}, h("span", { class: "swatch", style: `background: ${COLORS[i % COLORS.length]}` }), ` ${r.name} (step ${fmt.int(r.step)})`)));
  const body = rows.map((r) => h("tr", { class: r.differs ? "differs" : "", "data-key": r.key, "data-differs": String(r.differs), "data-arch": String(r.arch) }, h("th", {}, r.key), r.values.map((v) => h("td", {}, v))));
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
  const rows = settingsRows(chosen, state.protocol);
  $("compare-legend").replaceChildren(...legend(chosen, rows));
  const switches = rows.filter((r) => r.differs && r.arch).map((r) => r.key.slice("model.".length));
  $("compare-note").textContent = failed.length
    ? `Could not read ${failed.join("; ")}.`
    : chosen.length > 1
      ? `Highlighted: the settings that differ between the chosen runs.${switches.length ? ` Architecture switches that differ: ${switches.join(", ")}.` : " Same architecture."}`
      : chosen.length
        ? "Tick another run to see what its settings change."
        : "";
}
