// The Architecture group of the model settings (the run settings' keys positions, rope_theta,
// norm, norm_eps, mlp, intermediate_size, n_kv_head, head_dim, qk_norm, bias, tied and
// logit_softcap, and `arch`, the preset; src/model/arch.rs): the presets come from the engine's
// manifest (`arch_presets`), each with its line on what changed and why. A preset sets every
// switch; a switch changed afterwards keeps the others, and the settings carry the preset and
// only the switches that differ from it (GPT-2 untouched carries none, as before the switches).
// The plan says which transformers class the model exports as (`export-class`).

import { $, h } from "./dom.js";

// The switches, each the id (and data-testid) of its control.
export const ARCH_KEYS = ["positions", "rope_theta", "norm", "norm_eps", "mlp", "intermediate_size", "n_kv_head", "head_dim", "qk_norm", "bias", "tied", "logit_softcap"];
// Every control of the group, by id (for disabling while a run trains).
export const ARCH_INPUTS = ["arch-preset", ...ARCH_KEYS];
// Switches whose empty input means "the size's default" (null in the settings).
const SIZED = ["intermediate_size", "n_kv_head", "head_dim"];

let presets = []; // the manifest's arch_presets: {name, label, about, switches, kv_half}
let wired = false;

const chosen = () => presets.find((p) => p.name === $("arch-preset").value) ?? presets[0];

// A preset's value of `key` as the form shows it: null for an empty input (the size's default,
// or a softcap that is off).
function presetValue(p, key) {
  if (!p || SIZED.includes(key)) return null;
  const v = p.switches[key];
  return key === "logit_softcap" && !v ? null : v;
}

// The control's value: a select's text, a checkbox's state, a number (null when empty).
function read(key) {
  const el = $(key);
  if (el.type === "checkbox") return el.checked;
  if (el.tagName === "SELECT") return el.value;
  return el.value.trim() === "" ? null : Number(el.value);
}

function put(key, value) {
  const el = $(key);
  if (el.type === "checkbox") el.checked = value === true;
  else el.value = value === null || value === undefined || (key === "logit_softcap" && value === 0) ? "" : String(value);
}

// The switches that differ from the chosen preset's.
function changed(p = chosen()) {
  return ARCH_KEYS.filter((k) => read(k) !== presetValue(p, k));
}

// The architecture keys of the run settings: the preset (unless GPT-2's) and the switches that
// differ from it (a softcap turned off as 0).
export function archSettings() {
  const p = chosen();
  const out = {};
  if (!p) return out; // before the engine's presets: GPT-2's, as before the switches
  if (p.name !== "gpt2") out.arch = p.name;
  for (const key of changed(p)) out[key] = key === "logit_softcap" && read(key) === null ? 0 : read(key);
  return out;
}

// Says what the chosen preset changed and why, which switches differ from it, and what the empty
// inputs stand for.
export function showArch() {
  const p = chosen();
  if (!p) return;
  const diff = changed(p);
  $("arch-about").textContent = `${p.about}${diff.length ? ` Changed here: ${diff.join(", ")}.` : ""}`;
  $("n_kv_head").placeholder = p.kv_half ? "n_head / 2" : "n_head";
  $("intermediate_size").placeholder = read("mlp") === "swiglu" ? "≈ 8/3 n_embd" : "4 n_embd";
}

// Sets every switch to preset `name`'s.
export function applyArchPreset(name) {
  $("arch-preset").value = name;
  const p = chosen();
  for (const key of ARCH_KEYS) put(key, presetValue(p, key));
  showArch();
}

// Shows a model's switches (an imported model's, a restored run's: the params event's `arch`,
// every switch explicit) under the preset closest to them.
export function showModelArch(arch) {
  if (!arch || !presets.length) return;
  const off = (p) => ARCH_KEYS.filter((k) => !SIZED.includes(k) && (arch[k] ?? null) !== (presetValue(p, k) ?? (k === "logit_softcap" ? 0 : null))).length;
  const best = presets.reduce((a, b) => (off(b) < off(a) ? b : a));
  $("arch-preset").value = best.name;
  for (const key of ARCH_KEYS) put(key, arch[key] ?? null);
  showArch();
}

// Fills a link's switches in: its preset (GPT-2's where it names none, as a link from before the
// switches means), then the keys it set over it.
export function fillArchLink(settings, set) {
  const name = set.has("arch") && settings.arch ? settings.arch : "gpt2";
  applyArchPreset(presets.some((p) => p.name === name) ? name : "gpt2");
  // a null switch is the preset's
  for (const key of ARCH_KEYS) if (set.has(key) && settings[key] !== null && settings[key] !== undefined) put(key, settings[key]);
  showArch();
}

// The plan's export class, with what a custom one means.
export function showExportClass(plan) {
  const cls = plan?.export_class ?? "—";
  if ($("export-class").textContent !== cls) $("export-class").textContent = cls;
  const note = plan?.model_type === "wgpt" ? " (wgpt custom: model_type wgpt, with modeling_wgpt.py; transformers loads it with trust_remote_code)" : "";
  if ($("export-note").textContent !== note) $("export-note").textContent = note;
}

// The presets in their menu (GPT-2's chosen), and the group following its controls: `changed()`
// is called after every change (to plan again).
export function initArch(list, changedFn) {
  presets = list ?? [];
  $("arch-preset").replaceChildren(...presets.map((p) => h("option", { value: p.name }, p.label)));
  applyArchPreset("gpt2");
  if (wired) return;
  wired = true;
  $("arch-preset").addEventListener("change", (e) => {
    applyArchPreset(e.target.value);
    changedFn();
  });
  for (const key of ARCH_KEYS)
    $(key).addEventListener("change", () => {
      showArch();
      changedFn();
    });
}
