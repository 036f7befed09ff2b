// The built-in tasks in the corpus choice, from the engine's manifest (`ready`): an option per
// task, and under the choice what the chosen task teaches, its parameters and a few of its
// training lines, shown before training. All text goes in through textContent (h()).
import { $, h } from "./dom.js";

let tasks = null; // the manifest's, once `ready` came

// The task options go before the downloaded corpora (filled again at each `ready`).
export function fillTasks(list) {
  const select = $("builtin");
  if (!tasks) select.addEventListener("change", showTask);
  tasks = list;
  for (const el of select.querySelectorAll("option[data-task]")) el.remove();
  const first = select.querySelector('option[value="shakespeare"]');
  for (const t of tasks) {
    const option = h("option", { value: `task:${t.name}`, "data-task": t.name }, `Task: ${t.name} (synthetic, offline)`);
    select.insertBefore(option, first);
  }
  showTask();
}

// The chosen task's description, parameters and examples under the choice; hidden otherwise.
function showTask() {
  const t = tasks.find((t) => `task:${t.name}` === $("builtin").value);
  const about = $("task-about");
  about.hidden = !t;
  if (!t) return;
  const params = t.params.map(([name, what, def, min, max]) => `${name}=${def} (${min}..${max}: ${what})`);
  const examples = t.examples.flatMap((e, i) => (i ? [" ", h("code", {}, e)] : [h("code", {}, e)]));
  about.replaceChildren(
    h("span", {}, t.describe),
    h("br"),
    h("span", {}, params.length ? `Parameters (wgpt train --task ${t.name}:k=v): ${params.join(", ")}` : "No parameters"),
    h("br"),
    h("span", {}, "Examples: "),
    ...examples,
  );
}
