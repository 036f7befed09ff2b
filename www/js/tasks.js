// The built-in tasks. In the corpus choice, from the engine's manifest (`ready`): an option per
// task, and under the choice what the chosen task teaches, a few of its training lines, an input
// per parameter (the `name:k=v` of `wgpt train --task`; a change loads the task again with them)
// and the answer-only loss. In the Tasks view (`task-view`), each evaluation's held-out examples
// (`task_eval`) as the model answered them, every answer token marked right or wrong. All text
// goes in through textContent (h()), never as HTML.
import { $, h } from "./dom.js";

let tasks = null; // the manifest's, once `ready` came
let rendered = null; // the task whose parameter inputs are shown

const chosen = () => tasks?.find((t) => `task:${t.name}` === $("builtin").value) ?? null;

// The task options go before the downloaded corpora (filled again at each `ready`).
export function fillTasks(list) {
  const select = $("builtin");
  if (!tasks) select.addEventListener("change", () => showTask());
  tasks = list;
  for (const el of select.querySelectorAll("option[data-task]")) el.remove();
  const first = select.querySelector('option[value="shakespeare"]');
  for (const t of tasks) {
    const option = h("option", { value: `task:${t.name}`, "data-task": t.name }, `Task: ${t.name} (synthetic, offline)`);
    select.insertBefore(option, first);
  }
  rendered = null;
  showTask();
}

// The chosen task as Task::parse reads it: its name, then the parameters whose inputs differ
// from the defaults (`reverse:max=6`); null where no task is chosen.
export function taskSpec() {
  const t = chosen();
  if (!t) return null;
  if (rendered !== t.name) return t.name;
  const set = t.params.filter(([name, , def]) => Number($(`task-param-${name}`).value) !== def).map(([name]) => `${name}=${$(`task-param-${name}`).value}`);
  return set.length ? `${t.name}:${set.join(",")}` : t.name;
}

// Whether the run trains its loss on the answers only (a task's setting: off for other corpora).
export const answerLoss = () => chosen() !== null && $("answer_loss").checked;

// Shows task `name`'s inputs with the values of `params` ("k=v,..."; the others at their
// defaults), as a link asks, before the link's corpus choice loads it.
export function setTaskParams(name, params) {
  const t = tasks?.find((t) => t.name === name);
  if (!t) return;
  const given = Object.fromEntries(params.split(",").filter((p) => p.includes("=")).map((p) => p.split("=").map((s) => s.trim())));
  renderParams(t, given);
}

// An input per parameter of `t`, at `given` values or the defaults. A change loads the task
// again with them (app.js answers the choice's change).
function renderParams(t, given = {}) {
  rendered = t.name;
  const inputs = t.params.map(([name, what, def, min, max]) => {
    const input = h("input", { type: "number", id: `task-param-${name}`, "data-testid": `task-param-${name}`, min: String(min), max: String(max), step: "any", value: String(given[name] ?? def), size: "5" });
    input.addEventListener("change", () => $("builtin").dispatchEvent(new Event("change")));
    return h("label", { title: `${what} (${min}..${max}; default ${def})` }, `${name} `, input);
  });
  $("task-params").replaceChildren(...inputs);
}

// The chosen task's description, parameters and examples under the choice; hidden otherwise.
function showTask() {
  const t = chosen();
  $("task-about").hidden = !t;
  $("task-options").hidden = !t;
  if (!t) return;
  if (rendered !== t.name) renderParams(t);
  const examples = t.examples.flatMap((e, i) => (i ? [" ", h("code", {}, e)] : [h("code", {}, e)]));
  $("task-about").replaceChildren(
    h("span", {}, t.describe),
    h("br"),
    h("span", {}, t.params.length ? `Parameters (wgpt train --task ${t.name}:k=v), below:` : "No parameters."),
    h("br"),
    h("span", {}, "Examples: "),
    ...examples,
    ...recipe(t),
  );
}

// The task's recipe, where it has one: a link that fills the form with the settings measured to
// reach 95% exact match (opened as any #run= link: nothing trains until Start).
function recipe(t) {
  if (!t.recipe) return [h("br"), h("span", { class: "muted" }, "No recipe yet: no settings were measured to reach 95% on this task.")];
  const { link, reached, flags } = t.recipe;
  const a = h("a", { href: link, "data-testid": "task-recipe", title: `wgpt train --task ${t.name} --recipe (${flags})` }, "use its recipe");
  // the same link twice changes no hash: open it again by hand
  a.addEventListener("click", (e) => {
    if (location.hash !== link) return;
    e.preventDefault();
    window.dispatchEvent(new HashChangeEvent("hashchange"));
  });
  return [h("br"), h("span", {}, "Recipe: "), a, h("span", {}, ` (${flags}): 95% exact match at step ${reached.toLocaleString("en-US")} on a software GPU.`)];
}

// A token as it reads in the view: the newline as ⏎, a space as ␣.
const shown = (text) => text.replace(/\n/g, "⏎").replace(/ /g, "␣");

// One held-out example: its prompt, then the model's token at each answer position, marked right
// or wrong (a wrong one says the answer's token in its title), and whether it is an exact match.
function example(x) {
  const marks = x.tokens.map((want, i) => {
    const got = x.predicted[i] ?? "";
    const right = x.right[i];
    const title = right ? `right: ${JSON.stringify(want)}` : `wrong: the model's ${JSON.stringify(got)}, the answer's ${JSON.stringify(want)}`;
    return h("span", { class: `tok ${right ? "right" : "wrong"}`, "data-right": String(right), title }, shown(got || "∅"));
  });
  return h(
    "li",
    { "data-exact": String(x.exact) },
    h("code", { class: "task-prompt" }, shown(x.prompt)),
    h("span", { class: "task-answer" }, ...marks),
    h("span", { class: `verdict ${x.exact ? "right" : "wrong"}` }, x.exact ? "✓ exact" : `✗ (answer ${shown(x.answer)})`),
  );
}

// The Tasks view from the last `task_eval` (null: no task run has evaluated yet).
export function showTaskEval(ev) {
  const view = $("task-view");
  if (!ev) {
    view.replaceChildren(h("p", { class: "muted small" }, "Choose a task as the corpus and train: its held-out examples appear here at each evaluation."));
    return;
  }
  const exact = ev.examples.filter((x) => x.exact).length;
  const caption = `Step ${ev.step.toLocaleString("en-US")}, ${ev.task}: exact match on ${(ev.accuracy * 100).toFixed(1)}% of ${ev.total} held-out examples. The first ${ev.examples.length} (${exact} exact) as the model answers them, teacher-forced: each answer token green where it is the answer's, red where not (hover for the answer's).`;
  view.dataset.step = String(ev.step);
  view.replaceChildren(h("p", { class: "caption" }, caption), h("ol", { class: "task-examples" }, ev.examples.map(example)));
}
