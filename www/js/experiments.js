// The experiments gallery (src/run/experiments.rs, from the engine's manifest: `experiments`): a
// button per entry (`experiment-<name>`) shows what it compares, what to look for, its runs
// (each a #run= link that opens it in the form) and an estimate of its time from this GPU's
// measured speed; "Run the experiment" chooses its corpus and trains its runs one after the
// other through the page's own start (the same requests as Start training), each saved as any
// run is, then overlays them in Compare runs. An entry is also a link, #experiment=<name>: it
// shows the entry and starts nothing. Every string is shown as text.

import { $, h, fmt } from "./dom.js";

// The measured model FLOP/s of the last training step on this GPU, kept across visits.
const RATE_KEY = "wgpt-flops-per-sec";

let page = null; // {send, dispatch, say, state, choose, loadBuiltin, running}
let entries = [];
let shown = null; // the entry on show
let going = null; // the experiment training: {e, runs, at, ids, started}
const waiters = [];

// `p`: send(request), dispatch(event), say(text), state(), choose(id, on) (Compare runs' tick),
// loadBuiltin(value) (resolves true once a built-in corpus was sent), running().
export function initExperiments(p) {
  page = p;
  $("experiment-run").addEventListener("click", () => run().catch((e) => stopped(e.message)));
  $("experiment-steps").addEventListener("input", () => shown && estimate(shown));
  window.addEventListener("hashchange", openExperimentHash);
}

// The manifest's entries as the gallery's buttons (again at each `ready`).
export function fillExperiments(list) {
  entries = list ?? [];
  const buttons = entries.map((e) => {
    const b = h("button", { type: "button", "data-testid": `experiment-${e.name}`, title: e.title }, e.title);
    b.onclick = () => show(e);
    return b;
  });
  $("experiment-gallery").replaceChildren(...buttons);
  openExperimentHash();
}

// A #experiment=<name> address shows that entry (nothing trains).
export function openExperimentHash() {
  if (!page || !location.hash.startsWith("#experiment=") || !entries.length) return;
  const name = decodeURIComponent(location.hash.slice("#experiment=".length));
  const e = entries.find((x) => x.name === name);
  if (!e) return void page.say(`This page has no experiment ${JSON.stringify(name.slice(0, 40))}; the gallery lists those it has.`);
  show(e);
  document.getElementById("tab-experiments")?.click(); // where the views are tabs, its tab
  $("experiments-panel").scrollIntoView({ block: "start" });
  page.say(`Opened the experiment ${e.title}. Nothing trains until you press Run the experiment.`);
}

// Each run's settings, cut to the steps asked (as ExperimentRun::shortened does).
function settingsOf(e) {
  const n = Math.floor(Number($("experiment-steps").value));
  if (!(n >= 1)) return e.runs.map((r) => r.settings);
  return e.runs.map(({ settings: s }) => ({
    ...s,
    max_iters: n,
    eval_interval: Math.min(s.eval_interval, n),
    eval_iters: Math.min(s.eval_iters, n),
    warmup_iters: s.warmup_iters === null ? null : Math.min(s.warmup_iters, Math.floor(n / 2)),
  }));
}

function corpusName(c) {
  if (c.builtin) return c.builtin === "shakespeare" ? "Tiny Shakespeare (downloaded)" : c.builtin;
  return `the ${c.task.name} task${c.task.params ? ` (${c.task.params})` : ""}`;
}

function show(e) {
  shown = e;
  $("experiment-about").hidden = false;
  $("experiment-title").textContent = e.title;
  $("experiment-explain").textContent = e.explain;
  $("experiment-corpus").textContent = `On ${corpusName(e.corpus)}, the same seed for every run.`;
  $("experiment-runs").replaceChildren(
    ...e.runs.map((r) => h("li", {}, h("strong", {}, r.label), ` · ${r.settings.max_iters} steps · `, h("a", { href: r.link, "data-run-link": r.label }, "open in the form"))),
  );
  const link = `${location.origin}${location.pathname}#experiment=${e.name}`;
  $("experiment-link").textContent = link;
  estimate(e);
  render();
}

// The time the runs will take at the measured speed: each step's model FLOPs over the FLOP/s of
// the last step trained here, and the evaluations (two splits of forward passes, a third of a
// step each).
function seconds(e, rate) {
  return settingsOf(e).reduce((sum, s, i) => {
    const step = (e.runs[i].tokens_per_step * e.runs[i].flops_per_token) / rate;
    const evals = (Math.floor(s.max_iters / s.eval_interval) + 1) * s.eval_iters * 2;
    return sum + step * (s.max_iters + evals / 3);
  }, 0);
}

function estimate(e) {
  const rate = Number(localStorage.getItem(RATE_KEY));
  const steps = settingsOf(e).reduce((n, s) => n + s.max_iters, 0);
  $("experiment-estimate").textContent =
    rate > 0
      ? `${e.runs.length} runs, ${fmt.int(steps)} steps in all: about ${fmt.secs(seconds(e, rate))} on this GPU (from its last measured speed, ${(rate / 1e9).toFixed(2)} GFLOP/s; roughly: small models run below that).`
      : `${e.runs.length} runs, ${fmt.int(steps)} steps in all. No step has been timed on this GPU yet: the estimate follows the first run's first steps, in the line below.`;
}

function render() {
  const busy = page.running() && !going;
  $("experiment-run").disabled = !shown || Boolean(going) || busy || !page.state().ready;
  $("experiment-run").title = busy ? "A run is training: stop it first" : "";
}

function status(text) {
  $("experiment-status").textContent = text;
}

// Resolves with the first event `pred` takes.
const until = (pred) => new Promise((resolve) => waiters.push({ pred, resolve }));

// Every event of the engine and the store, after the page's own handling (app.js).
export function experimentEvent(ev) {
  for (const w of [...waiters]) if (w.pred(ev)) waiters.splice(waiters.indexOf(w), 1) && w.resolve(ev);
  const s = page.state();
  if (ev.type === "progress" && s.model?.flops_per_token) localStorage.setItem(RATE_KEY, String(ev.tokens_per_sec * s.model.flops_per_token));
  if (going && ev.type === "progress") progressLine(ev);
  if (going && ev.type === "inspect") captured(ev);
  if (["ready", "state", "restored", "imported"].includes(ev.type)) render();
}

// The remaining time at the speed of the step just taken.
function progressLine(ev) {
  const { e, at, runs } = going;
  const rate = Number(localStorage.getItem(RATE_KEY));
  const rest = { ...e, runs: e.runs.slice(at + 1) };
  const later = rate > 0 && at + 1 < e.runs.length ? seconds(rest, rate) : 0;
  status(`Run ${at + 1} of ${runs.length} (${e.runs[at].label}): step ${ev.step} of ${ev.max_iters}; about ${fmt.secs(ev.eta_s + later)} left in all.`);
}

// Look inside's attention for the entry's prompt, kept at a run's first look (after its first
// evaluation, a step or two in) and at its last step.
function captured(ev) {
  const { e, at, runs } = going;
  if (!e.prompt || ev.prompt !== e.prompt) return;
  const key = !going.seen.has(`${at}-start`) ? "start" : ev.step === runs[at].max_iters ? "end" : null;
  if (!key || going.seen.has(`${at}-${key}`)) return;
  going.seen.add(`${at}-${key}`);
  const img = h("img", { src: $("attention-canvas").toDataURL(), alt: `attention of ${e.runs[at].label} at step ${ev.step}`, width: "160", height: "160" });
  const fig = h("figure", { "data-run": e.runs[at].label, "data-at": key, style: "margin: 0" }, img, h("figcaption", { class: "small" }, `${e.runs[at].label}, step ${ev.step}`));
  $("experiment-attention").append(fig);
}

function stopped(why) {
  going = null;
  status(`The experiment stopped: ${why}`);
  render();
}

// Chooses the entry's corpus; resolves once the engine has it.
async function useCorpus(e) {
  const c = e.corpus;
  const value = c.builtin ?? `task:${c.task.name}`;
  $("builtin").value = value;
  const ok = until((ev) => ev.type === "corpus" || (ev.type === "error" && ev.scope === "corpus"));
  if (c.builtin) {
    if (!(await page.loadBuiltin(c.builtin))) throw new Error(`the corpus ${c.builtin} did not load (see above)`);
  } else page.send({ type: "corpus", name: `${c.task.name} task`, task: c.task.params ? `${c.task.name}:${c.task.params}` : c.task.name });
  const ev = await ok;
  if (ev.type === "error") throw new Error(ev.message);
}

// Trains one run to its end; resolves with its saved id.
async function trainOne(settings) {
  let id = null;
  const saved = until((ev) => ev.type === "checkpoint").then((ev) => (id = ev.id));
  const end = until((ev) => (ev.type === "state" && ["done", "stopped"].includes(ev.state)) || ev.type === "diverged" || (ev.type === "error" && ["train", "gpu"].includes(ev.scope)));
  page.dispatch({ type: "ui_start" });
  page.send({ type: "start", settings });
  const ev = await end;
  if (ev.type === "error" || ev.type === "diverged") throw new Error(ev.message);
  if (ev.state === "stopped") throw new Error(`run ${going.at + 1} was stopped at step ${ev.step}`);
  await saved;
  return id;
}

async function run() {
  const e = shown;
  if (!e || going) return;
  if (page.running()) return void status("A run is training: stop it first (the experiment trains its own runs).");
  const runs = settingsOf(e);
  going = { e, runs, at: 0, ids: [], seen: new Set() };
  $("experiment-attention").replaceChildren();
  render();
  status(`Choosing the corpus: ${corpusName(e.corpus)}…`);
  await useCorpus(e);
  if (e.prompt) $("prompt").value = e.prompt; // look inside follows it at each evaluation
  for (let i = 0; i < runs.length; i++) {
    going.at = i;
    status(`Run ${i + 1} of ${runs.length} (${e.runs[i].label}): building the model…`);
    going.ids.push(await trainOne(runs[i]));
    // a run with a prompt gets a last look at its end (as typing in the prompt asks for one)
    if (e.prompt) {
      const look = until((ev) => ev.type === "inspect" && ev.prompt === e.prompt && ev.step === runs[i].max_iters);
      $("prompt").dispatchEvent(new Event("input"));
      await Promise.race([look, new Promise((r) => setTimeout(r, 30000))]);
    }
  }
  // Compare runs shows this experiment's runs, and only them
  const s = page.state();
  for (const id of s.compare.ids) if (!going.ids.includes(id)) page.choose(id, false);
  for (const id of going.ids) page.choose(id, true);
  const labels = e.runs.map((r) => r.label).join(", ");
  going = null;
  status(`Done: ${labels} are overlaid in Compare runs (val loss thick, train thin; the settings that differ highlighted).`);
  page.say(`Experiment ${e.title}: done; see Compare runs.`);
  render();
  estimate(e); // the runs timed this GPU: the estimate says so now
}
