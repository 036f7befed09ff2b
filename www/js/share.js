// Links (src/run/link.rs): "Copy link" asks the engine for a link of the page's settings and its
// corpus choice, shows it and puts it on the clipboard; a #run= link, on load and on hashchange,
// is opened by the engine over the page's settings, fills the form and says what it set, ignored
// and refused. Opening a link never starts training, and while a run is training the page asks
// before replacing anything. Every string from a link is shown as text, never as HTML.

import { $, h } from "./dom.js";
import { showOptimizer } from "./optimizer.js";
import { ARCH_KEYS, fillArchLink } from "./arch.js";
import { setTaskParams } from "./tasks.js";

// The settings the form shows, by the element that holds each; the tokenizer has two.
const FORM = {
  n_layer: "n_layer",
  n_head: "n_head",
  n_embd: "n_embd",
  block_size: "block_size",
  batch_size: "batch_size",
  grad_accum: "grad_accum",
  max_iters: "max_iters",
  lr: "lr",
  eval_interval: "eval_interval",
  eval_iters: "eval_iters",
  seed: "train_seed",
  precision: "train_precision",
  optimizer: "optimizer",
  muon_lr: "muon_lr",
  momentum: "momentum",
  nesterov: "nesterov",
  lr_schedule: "lr_schedule",
  answer_loss: "answer_loss",
};

// The corpus names the page gives its built-in corpora (app.js's loadBuiltin), and back.
const SHAKESPEARE = "Tiny Shakespeare";
const TINYSTORIES = "TinyStories"; // corpora.js's

let page = null; // {send, settings, running, changed, say}
let extras = {}; // the last link's settings the form has no field for (its optimizer's betas, ...)

// What the last opened link set beyond the form: app.js's settings() sends them along.
export const linkExtras = () => extras;

// The corpus choice a link carries for the page's current corpus (null: none chosen yet).
function corpusChoice(corpus) {
  if (!corpus) return null;
  if (corpus.name === SHAKESPEARE) return { builtin: "shakespeare" };
  if (corpus.name === TINYSTORIES) return { builtin: "tinystories" };
  if (corpus.name.endsWith(" task")) {
    // app.js names a task's corpus by its spec: "reverse:max=6 task"
    const [name, params = ""] = corpus.name.slice(0, -5).split(":");
    return { task: { name, params } };
  }
  return "own";
}

// `page`: send(request), settings() (the form's), corpus() (the state's), running() (whether a
// run trains), changed() (the form changed: plan again), say(text) (the status line).
export function initShare(p) {
  page = p;
  $("share-copy").addEventListener("click", () => page.send({ type: "share_link", settings: page.settings(), corpus: corpusChoice(page.corpus()) }));
  window.addEventListener("hashchange", openHash);
}

// Opens the address's link, if it has one (once the engine is there to open it).
export function openHash() {
  if (!page || !location.hash.startsWith("#run=")) return;
  page.send({ type: "open_link", fragment: location.hash, settings: page.settings() });
}

// The engine's `link` and `link_opened` events.
export function onLink(ev) {
  if (ev.type === "link") return shown(ev.fragment);
  if (ev.type !== "link_opened") return;
  if (page.running() && !confirm("A run is training. Replace the page's settings with the link's? The run goes on; nothing new starts.")) {
    return note(["The link was not opened: the page keeps its settings."]);
  }
  fill(ev);
}

// The link after the page's address: in share-link, the address bar and the clipboard.
function shown(fragment) {
  const link = `${location.origin}${location.pathname}${fragment}`;
  $("share-link").textContent = link;
  history.replaceState(null, "", fragment);
  const copied = navigator.clipboard ? navigator.clipboard.writeText(link).then(() => true, () => false) : Promise.resolve(false);
  copied.then((ok) => note([ok ? "Copied the link to these settings." : "The link to these settings (the clipboard is not available here: copy it from the box)."]));
}

// Fills the form from an opened link and says what it did.
function fill(ev) {
  const s = ev.settings;
  const keys = new Set(ev.set);
  if ([...keys].some((k) => ["n_layer", "n_head", "n_embd", "block_size"].includes(k))) $("preset").value = "custom";
  for (const [key, id] of Object.entries(FORM)) if (keys.has(key) && s[key] !== null) put($(id), s[key]);
  showOptimizer();
  fillArchLink(s, keys);
  if (keys.has("tokenizer")) {
    const bpe = s.tokenizer.startsWith("bpe:");
    $("tokenizer").value = bpe ? "bpe" : "char";
    if (bpe) $("bpe_vocab").value = s.tokenizer.slice(4);
  }
  // what the form cannot show: settings it has no field for, and optional ones left to the
  // defaults (null), which the link's run leaves so too
  const shown = (k) => k === "tokenizer" || k === "arch" || ARCH_KEYS.includes(k) || (k in FORM && s[k] !== null);
  extras = Object.fromEntries(ev.set.filter((k) => !shown(k)).map((k) => [k, s[k]]));
  const lines = [`Opened a link: set ${ev.set.length ? ev.set.join(", ") : "nothing"}. Nothing trains until you press Start.`];
  const beyond = Object.entries(extras).map(([k, v]) => `${k} ${v === null ? "default" : v}`);
  if (beyond.length) lines.push(`Beyond the form, for the next run: ${beyond.join(", ")}.`);
  lines.push(...corpusNote(ev.corpus));
  if (ev.ignored.length) lines.push(`Ignored (unknown to this page): ${ev.ignored.join(", ")}.`);
  for (const r of ev.refused) lines.push(`Refused ${r.field}: it ${r.why}; kept the page's.`);
  note(lines, ev.refused.length > 0);
  page.changed();
  page.say(`Opened a link: ${ev.set.length} settings set${ev.refused.length ? `, ${ev.refused.length} refused` : ""}; see under the model's settings. Nothing trains until you press Start.`);
}

// Puts a link's value in its input: a checkbox's state, or the text of any other.
function put(input, value) {
  if (input.type === "checkbox") input.checked = value === true;
  else input.value = String(value);
}

// Chooses the link's corpus where it names one the page has; what to do where it does not.
function corpusNote(corpus) {
  if (!corpus) return [];
  if (corpus === "own") return ["The run trained on its own text, which a link does not carry: load that corpus yourself."];
  const value = corpus.builtin ?? `task:${corpus.task.name}`;
  const select = $("builtin");
  if (![...select.options].some((o) => o.value === value)) return [`This page has no corpus ${value}: choose one yourself.`];
  select.value = value;
  if (corpus.task) setTaskParams(corpus.task.name, corpus.task.params);
  select.dispatchEvent(new Event("change"));
  return [`Corpus: ${select.selectedOptions[0].textContent}${corpus.task?.params ? ` (parameters ${corpus.task.params})` : ""}.`];
}

// The share note: one line each, as text.
function note(lines, refused = false) {
  const el = $("share-note");
  el.replaceChildren(...lines.map((l) => h("span", { style: "display: block" }, l)));
  el.dataset.refused = String(refused);
  el.hidden = false;
}
