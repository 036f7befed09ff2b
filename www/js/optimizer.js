// The optimizer settings of the page's form (the run settings' keys optimizer, muon_lr,
// momentum, nesterov and lr_schedule; src/train/optim.rs and src/train/schedule.rs): the inputs
// that apply to the chosen optimizer are shown, the others hidden, with one line on what it does.

import { $ } from "./dom.js";

// One line per optimizer, shown under the select.
const ABOUT = {
  adamw: "AdamW keeps two moments per weight and scales each weight's step by its own gradient history; weight decay is decoupled.",
  muon: "Muon orthogonalises each weight matrix's momentum (Newton-Schulz) so every direction moves at the same rate; embeddings, the head and 1-D tensors use AdamW.",
  sgd: "SGD with momentum keeps one buffer per weight and steps along it at the same lr for all; weight decay is added to the gradient.",
};

// The momentum each optimizer starts from (torch.optim.Muon's 0.95, the usual 0.9 for SGD).
const MOMENTUM = { muon: 0.95, sgd: 0.9 };

// The form's optimizer inputs, by id (each named after its settings key).
export const OPTIMIZER_INPUTS = ["optimizer", "muon_lr", "momentum", "nesterov", "lr_schedule"];

// Which inputs (by id) each optimizer takes beyond the shared ones.
const TAKES = { adamw: [], muon: ["muon_lr", "momentum", "nesterov"], sgd: ["momentum", "nesterov"] };

// The optimizer's keys of the run settings, those of inputs it does not take left out (the
// engine fills its defaults).
export function optimizerSettings() {
  const kind = $("optimizer").value;
  const out = { optimizer: kind, lr_schedule: $("lr_schedule").value };
  for (const id of TAKES[kind]) out[id] = id === "nesterov" ? $(id).checked : Number($(id).value);
  return out;
}

// Shows the chosen optimizer's inputs and its line (also after a link filled the form).
export function showOptimizer() {
  const kind = $("optimizer").value;
  for (const id of ["muon_lr", "momentum", "nesterov"]) $(id).closest("label").style.display = TAKES[kind].includes(id) ? "" : "none";
  $("optimizer-about").textContent = ABOUT[kind];
}

// Shows the chosen optimizer's inputs, now and on every change of the select (which also puts
// its default momentum in).
export function initOptimizer() {
  $("optimizer").addEventListener("change", () => {
    const m = MOMENTUM[$("optimizer").value];
    if (m) $("momentum").value = m;
    showOptimizer();
  });
  showOptimizer();
}
