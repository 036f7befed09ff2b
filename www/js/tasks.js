// The built-in tasks in the corpus choice, from the engine's manifest (`ready`): an option per
// task, and under the choice what the chosen task teaches, its parameters and a few of its
// training lines, shown before training. All text goes in through textContent (h()).
import { $, h } from "./dom.js";

// The task options go before the downloaded corpora; the task's note under the select.
export function fillTasks(tasks) {
  const select = $("builtin");
  for (const el of select.querySelectorAll("option[data-task]")) el.remove();
  const first = select.querySelector('option[value="shakespeare"]');
  for (const t of tasks) {
    const option = h("option", { value: `task:${t.name}`, "data-task": t.name }, `${t.name}: ${t.describe} (synthetic, offline)`);
    select.insertBefore(option, first);
  }
  const about = $("task-about");
  const show = () => {
    const t = tasks.find((t) => `task:${t.name}` === select.value);
    about.hidden = !t;
    if (!t) return;
    const params = t.params.map(([name, what, def, min, max]) => `${name}=${def} (${min}..${max}: ${what})`);
    about.replaceChildren(
      h("span", {}, t.describe),
      h("br"),
      h("span", {}, params.length ? `Parameters (wgpt train --task ${t.name}:k=v): ${params.join(", ")}` : "No parameters"),
      h("br"),
      h("span", {}, "Examples: "),
      ...t.examples.map((e) => h("code", {}, e)).flatMap((c, i) => (i ? [" ", c] : [c])),
    );
  };
  select.addEventListener("change", show);
  show();
}
