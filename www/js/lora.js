// LoRA in the fine-tune panel (the run settings' keys lora_rank, lora_alpha, lora_targets and
// lora_dropout; src/model/lora.rs): rank-r adapters on a loaded model's products, the base
// frozen. The plan's line says what LoRA saves against a full fine-tune; Export adapter (peft's
// adapter_config.json and adapter_model.safetensors, naming the base) and Export merged model
// (a Hugging Face model directory) download zips; Import adapter puts a peft LoRA adapter onto
// the loaded model (src/web/adapters.rs).

import { $, bytes, download, fmt } from "./dom.js";

// The LoRA inputs, by id (each named after its settings key).
export const LORA_INPUTS = ["lora_rank", "lora_alpha", "lora_targets", "lora_dropout"];

// The LoRA keys of the run settings: none unless a loaded model is to be fine-tuned with a rank
// (empty: a full fine-tune); alpha and dropout left out where empty (the engine's 2r and 0).
export function loraSettings(training) {
  const rank = $("lora_rank").value.trim();
  if (training !== "loaded" || !rank) return {};
  const out = { lora_rank: Number(rank), lora_targets: $("lora_targets").value.split(",").map((t) => t.trim()).filter(Boolean) };
  for (const id of ["lora_alpha", "lora_dropout"]) if ($(id).value.trim()) out[id] = Number($(id).value);
  return out;
}

// The plan's LoRA line: what trains and the memory against a full fine-tune's.
function planLine(s) {
  const lora = s.plan?.lora;
  if (!$("lora_rank").value.trim()) return "Rank empty: a fine-tune trains every weight.";
  if (s.training !== "loaded") return "LoRA fine-tunes a loaded model: Load GPT-2 (or import a model) first.";
  if (!lora) return "";
  const { params, full_memory_bytes: full } = lora;
  const mem = s.plan.memory_bytes;
  const share = s.plan.params ? ` (${((100 * params) / s.plan.params).toFixed(2)}% of ${fmt.int(s.plan.params)})` : "";
  return `LoRA trains ${fmt.int(params)} parameters${share}, the base frozen: about ${bytes(mem)} of GPU memory against ${bytes(full)} for a full fine-tune (saves ${bytes(Math.max(0, full - mem))}, ${((100 * (full - mem)) / full).toFixed(0)}%).`;
}

// Reads the chosen files as an adapter: one zip, or adapter_config.json and
// adapter_model.safetensors chosen together.
async function importAdapter(files, { send, say, showError }) {
  const list = [...files];
  if (!list.length) return;
  if (list.length === 1 && list[0].name.endsWith(".zip")) {
    say(`Reading the adapter ${list[0].name}…`);
    send({ type: "import_adapter", name: list[0].name, names: [] }, new Uint8Array(await list[0].arrayBuffer()));
    return;
  }
  const wanted = ["adapter_config.json", "adapter_model.safetensors"];
  const chosen = wanted.map((n) => list.find((f) => f.name === n));
  const missing = wanted.filter((_, i) => !chosen[i]);
  if (missing.length) return showError(`An adapter is adapter_config.json and adapter_model.safetensors chosen together, or a zip of them; missing: ${missing.join(", ")}.`);
  say("Reading the adapter…");
  send({ type: "import_adapter", name: "the adapter", names: wanted }, await Promise.all(chosen.map(async (f) => new Uint8Array(await f.arrayBuffer()))));
}

// Wires the panel: the buttons, the file input and the worker's LoRA events (downloads); the
// buttons and the plan line follow the state after every event.
export function initLora({ send, say, showError, state, worker }) {
  const render = () => {
    const s = state();
    const t = s.training;
    const busy = ["training", "pausing", "paused"].includes(t);
    for (const id of ["export-adapter", "export-merged"]) $(id).disabled = ["idle", "loaded"].includes(t);
    $("import-adapter-input").disabled = t !== "loaded" || !s.ready;
    const line = busy ? $("lora-plan").textContent : planLine(s);
    if ($("lora-plan").textContent !== line) $("lora-plan").textContent = line;
  };
  $("export-adapter").addEventListener("click", () => {
    say("Exporting the adapter…");
    send({ type: "export_adapter" });
  });
  $("export-merged").addEventListener("click", () => {
    say("Merging the adapter into the model and exporting it…");
    send({ type: "export_merged" });
  });
  $("import-adapter-input").addEventListener("change", (e) => importAdapter(e.target.files, { send, say, showError }));
  $("lora_rank").addEventListener("input", render);
  worker.addEventListener("message", ({ data: { event, files } }) => {
    if (event.type === "export_adapter" || event.type === "export_merged") download(event.name, files[0]);
    setTimeout(render, 0); // after app.js's handler has reduced the event into the state
  });
  render();
}
