// The loss chart on a 2D canvas: train loss (blue, each progress report) and val loss (red,
// each evaluation) over steps, on a linear or log y axis, with round-number ticks.

const TRAIN = "#2563eb";
const VAL = "#dc2626";

// Round-number ticks covering [lo, hi]: about `n` of them, at 1, 2 or 5 times a power of ten.
function ticks(lo, hi, n) {
  const raw = (hi - lo) / Math.max(1, n);
  const mag = 10 ** Math.floor(Math.log10(raw || 1));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const out = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) out.push(Number(t.toPrecision(12)));
  return out;
}

const label = (x) => (Math.abs(x) >= 1000 ? x.toLocaleString("en-US") : String(Number(x.toPrecision(4))));

// Draws `history` ({train: [[step, loss]...], val: [...]}) into `canvas`; `log` for a log y axis.
export function drawLossChart(canvas, history, log) {
  const ctx = canvas.getContext("2d");
  const { width: w, height: ht } = canvas;
  const m = { left: 56, right: 16, top: 12, bottom: 36 };
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, w, ht);
  const good = (pts) => pts.filter(([, y]) => Number.isFinite(y) && y > 0);
  const train = good(history.train);
  const val = good(history.val);
  const all = train.concat(val);
  const maxStep = Math.max(1, ...all.map(([s]) => s));
  let lo = Math.min(...all.map(([, y]) => y));
  let hi = Math.max(...all.map(([, y]) => y));
  if (!all.length) [lo, hi] = [0.1, 10];
  [lo, hi] = [lo * 0.95, hi * 1.05];
  const fy = log ? Math.log10 : (y) => y;
  const [ylo, yhi] = [fy(lo), fy(hi)];
  const px = (s) => m.left + (s / maxStep) * (w - m.left - m.right);
  const py = (y) => ht - m.bottom - ((fy(y) - ylo) / (yhi - ylo || 1)) * (ht - m.top - m.bottom);

  ctx.strokeStyle = "#e5e7eb";
  ctx.fillStyle = "#4b5563";
  ctx.font = "12px sans-serif";
  ctx.lineWidth = 1;
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  for (const s of ticks(0, maxStep, 8)) {
    ctx.beginPath();
    ctx.moveTo(px(s), m.top);
    ctx.lineTo(px(s), ht - m.bottom);
    ctx.stroke();
    ctx.fillText(label(s), px(s), ht - m.bottom + 4);
  }
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (const y of ticks(lo, hi, 5)) {
    ctx.beginPath();
    ctx.moveTo(m.left, py(y));
    ctx.lineTo(w - m.right, py(y));
    ctx.stroke();
    ctx.fillText(label(y), m.left - 6, py(y));
  }
  ctx.textAlign = "center";
  ctx.textBaseline = "bottom";
  ctx.fillText("step", (m.left + w - m.right) / 2, ht);
  ctx.save();
  ctx.translate(12, (m.top + ht - m.bottom) / 2);
  ctx.rotate(-Math.PI / 2);
  ctx.textBaseline = "middle";
  ctx.fillText(log ? "loss (log)" : "loss", 0, 0);
  ctx.restore();

  for (const [pts, color] of [
    [train, TRAIN],
    [val, VAL],
  ]) {
    ctx.strokeStyle = color;
    ctx.lineWidth = color === VAL ? 2 : 1.5;
    ctx.beginPath();
    pts.forEach(([s, y], i) => (i ? ctx.lineTo(px(s), py(y)) : ctx.moveTo(px(s), py(y))));
    ctx.stroke();
    if (pts.length === 1) {
      ctx.fillStyle = color;
      ctx.fillRect(px(pts[0][0]) - 2, py(pts[0][1]) - 2, 4, 4);
    }
  }
}
