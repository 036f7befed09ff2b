// The views as tabs (a WAI-ARIA tablist, www/index.html's #view-tabs): one panel shown at a
// time. A click chooses a tab; from the keyboard, the arrow keys move the focus along the tabs
// (wrapping), Home and End to the first and the last, and Enter or Space chooses the focused one
// (the tabs are buttons). Only the chosen tab is in the Tab order, and Tab from it goes into its
// panel. An element with data-tabs="a b" shows with either of those tabs (the prompt, shared by
// Generate and Look inside). Choosing a tab tells the page (`onChosen`), which redraws what it
// drew while hidden: charts take their panel's width.

import { $ } from "./dom.js";

const tabs = () => [...$("view-tabs").querySelectorAll('[role="tab"]')];
const nameOf = (tab) => tab.id.replace(/^tab-/, "");

let chosenHook = () => {};

// Shows the view `name` (its tab's id without "tab-"), hiding the others; `focus` moves the
// keyboard focus onto its tab.
export function showTab(name, { focus = false } = {}) {
  const all = tabs();
  const tab = all.find((t) => nameOf(t) === name);
  if (!tab) return;
  for (const t of all) {
    const on = t === tab;
    t.setAttribute("aria-selected", String(on));
    t.tabIndex = on ? 0 : -1;
    $(t.getAttribute("aria-controls")).hidden = !on;
  }
  for (const el of document.querySelectorAll("[data-tabs]")) el.hidden = !el.dataset.tabs.split(" ").includes(name);
  if (focus) tab.focus();
  chosenHook(name);
}

// The view shown now.
export const shownTab = () => nameOf(tabs().find((t) => t.getAttribute("aria-selected") === "true"));

// Wires the tab strip; `onChosen(name)` is called after each choice.
export function initTabs(onChosen) {
  const list = $("view-tabs");
  list.addEventListener("click", (e) => {
    const tab = e.target.closest('[role="tab"]');
    if (tab) showTab(nameOf(tab));
  });
  list.addEventListener("keydown", (e) => {
    const all = tabs();
    const at = all.indexOf(document.activeElement);
    if (at < 0) return;
    const to = { ArrowRight: at + 1, ArrowDown: at + 1, ArrowLeft: at - 1, ArrowUp: at - 1, Home: 0, End: all.length - 1 }[e.key];
    if (to === undefined) return;
    e.preventDefault();
    all[(to + all.length) % all.length].focus();
  });
  showTab(shownTab());
  chosenHook = onChosen;
}
