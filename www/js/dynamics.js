// The training dynamics chart (`dynamics-chart`): four panels over steps, from what the engine
// reads back at each tracked step (src/dynamics.rs, every 10 steps at the page's log interval of
// one): each layer's gradient norm (the embeddings, each block, ln_f; log scale), each layer's
// update-to-weight ratio (log scale; 1e-3, the usual healthy order, dashed), the global gradient
// norm before clipping (the clipping threshold dashed) and the learning rate. The groups are named
// as the model's class names them (Llama's and Qwen3's layers.N and norm for h.N and ln_f).

import { clear, note, plot } from "./chart.js";

// A group's name under `cls`, the class the model exports as.
const LLAMA = ["LlamaForCausalLM", "Qwen3ForCausalLM"];
const groupName = (name, cls) => (LLAMA.includes(cls) ? name.replace(/^h\./, "layers.").replace(/^ln_f$/, "norm") : name);

// A colour per layer, from the input side (blue) to the output side (red).
const layerColor = (i, n) => `hsl(${220 - (220 * i) / Math.max(1, n - 1)}, 70%, 42%)`;

const LEGEND = 22;

// A flat line at `y` across the steps of `points`.
const level = (points, y, color) => ({ color, dash: [5, 4], width: 1, points: [[points[0].step, y], [points.at(-1).step, y]] });

// Draws `points` (the state's dynamics: {step, lr, grad_norm, grad_clip, layers: [{name,
// grad_norm, update_ratio}]}, oldest first) into `canvas`, the groups named as class `cls` does.
export function drawDynamics(canvas, points, cls) {
  const ctx = clear(canvas);
  const [w, h] = [canvas.width, canvas.height];
  canvas.dataset.points = String(points.length);
  if (!points.length) {
    note(ctx, { x: 0, y: 0, w, h }, "Training dynamics appear at the first tracked step (every 10 steps): per layer, then every 10 steps.");
    return;
  }
  const names = points.at(-1).layers.map((l) => l.name);
  ctx.font = "12px sans-serif";
  ctx.textBaseline = "middle";
  ctx.textAlign = "left";
  let x = 56;
  names.forEach((name, i) => {
    ctx.fillStyle = layerColor(i, names.length);
    ctx.fillRect(x, LEGEND / 2 - 2, 14, 4);
    const shown = groupName(name, cls);
    ctx.fillText(shown, x + 18, LEGEND / 2);
    x += 26 + ctx.measureText(shown).width;
  });
  const ph = (h - LEGEND) / 2;
  const [b0, b1, b2, b3] = [
    [0, LEGEND],
    [w / 2, LEGEND],
    [0, LEGEND + ph],
    [w / 2, LEGEND + ph],
  ].map(([x, y]) => ({ x, y, w: w / 2, h: ph }));
  const perLayer = (key) =>
    names.map((name, i) => ({
      color: layerColor(i, names.length),
      points: points.flatMap((p) => p.layers.filter((l) => l.name === name).map((l) => [p.step, l[key]])),
    }));
  plot(ctx, b0, perLayer("grad_norm"), { log: true, title: "gradient norm per layer (log)", yLabel: "‖g‖" });
  plot(ctx, b1, [...perLayer("update_ratio"), level(points, 1e-3, "#9ca3af")], { log: true, title: "update / weight per layer (log; 1e-3 dashed)", yLabel: "‖Δw‖ / ‖w‖" });
  const clip = points.at(-1).grad_clip;
  const global = [{ color: "#111827", points: points.map((p) => [p.step, p.grad_norm]) }];
  if (clip > 0) global.push(level(points, clip, "#dc2626"));
  plot(ctx, b2, global, { title: clip > 0 ? `global gradient norm before clipping (clip at ${clip} dashed)` : "global gradient norm (no clipping)", yLabel: "‖g‖" });
  plot(ctx, b3, [{ color: "#2b8a3e", points: points.map((p) => [p.step, p.lr]) }], { title: "learning rate", yLabel: "lr" });
}
