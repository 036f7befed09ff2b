// Line charts on a 2D canvas: plot() draws series of [x, y] points into one rectangle of a canvas
// with round-number ticks, a linear or log y axis, a title and axis labels; the loss chart (train
// loss blue, each progress report; val loss red, each evaluation), the training dynamics' panels
// (dynamics.js) and the compared runs (compare.js) are made of it.

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

// Powers of ten covering [lo, hi] (a log axis' ticks), thinned to about `n`.
function decades(lo, hi, n) {
  const [a, b] = [Math.floor(Math.log10(lo)), Math.ceil(Math.log10(hi))];
  const every = Math.max(1, Math.ceil((b - a) / n));
  const out = [];
  for (let e = a; e <= b; e += every) if (10 ** e >= lo * 0.999 && 10 ** e <= hi * 1.001) out.push(10 ** e);
  return out.length ? out : ticks(lo, hi, n);
}

const label = (x) => (Math.abs(x) >= 1000 ? x.toLocaleString("en-US") : Math.abs(x) < 1e-3 && x !== 0 ? x.toExponential(0) : String(Number(x.toPrecision(4))));

// A canvas as wide as its box (at least 320 px), cleared to white; its 2D context.
export function clear(canvas) {
  const w = Math.max(320, Math.floor(canvas.parentElement.getBoundingClientRect().width));
  if (canvas.width !== w) canvas.width = w;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  return ctx;
}

// A note in the middle of `box` (what a chart will show, while it has nothing yet).
export function note(ctx, box, text) {
  ctx.fillStyle = "#6b7280";
  ctx.font = "13px sans-serif";
  ctx.textAlign = "center";
  ctx.textBaseline = "middle";
  ctx.fillText(text, box.x + box.w / 2, box.y + box.h / 2);
}

// Draws `series` ([{points: [[x, y], ...], color, width?, dash?}]) into `box` ({x, y, w, h}) of
// `ctx`: axes with ticks, `title` above, `yLabel` beside, "step" below; `log` for a log y axis
// (points with y <= 0 are left out there). Returns false where no series has a point to draw.
export function plot(ctx, box, series, { log = false, title = "", yLabel = "" } = {}) {
  const m = { left: 56, right: 12, top: title ? 22 : 12, bottom: 34 };
  const good = (pts) => pts.filter(([, y]) => Number.isFinite(y) && (!log || y > 0));
  const lines = series.map((s) => ({ ...s, points: good(s.points) }));
  const all = lines.flatMap((s) => s.points);
  ctx.fillStyle = "#4b5563";
  ctx.font = "12px sans-serif";
  if (title) {
    ctx.textAlign = "left";
    ctx.textBaseline = "top";
    ctx.fillText(title, box.x + m.left, box.y + 4);
  }
  const minStep = 0;
  const maxStep = Math.max(1, ...all.map(([s]) => s));
  let lo = Math.min(...all.map(([, y]) => y));
  let hi = Math.max(...all.map(([, y]) => y));
  if (!all.length) [lo, hi] = log ? [0.1, 10] : [0, 1];
  if (lo === hi) [lo, hi] = log ? [lo / 2, hi * 2] : [lo - 0.5 - Math.abs(lo) * 0.05, hi + 0.5 + Math.abs(hi) * 0.05];
  else [lo, hi] = log ? [lo / 1.15, hi * 1.15] : [lo - (hi - lo) * 0.05, hi + (hi - lo) * 0.05];
  const fy = log ? Math.log10 : (y) => y;
  const [ylo, yhi] = [fy(lo), fy(hi)];
  const px = (s) => box.x + m.left + ((s - minStep) / (maxStep - minStep || 1)) * (box.w - m.left - m.right);
  const py = (y) => box.y + box.h - m.bottom - ((fy(y) - ylo) / (yhi - ylo || 1)) * (box.h - m.top - m.bottom);

  ctx.strokeStyle = "#e5e7eb";
  ctx.lineWidth = 1;
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  for (const s of ticks(minStep, maxStep, Math.max(2, Math.floor(box.w / 100)))) {
    ctx.beginPath();
    ctx.moveTo(px(s), box.y + m.top);
    ctx.lineTo(px(s), box.y + box.h - m.bottom);
    ctx.stroke();
    ctx.fillText(label(s), px(s), box.y + box.h - m.bottom + 4);
  }
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (const y of log ? decades(lo, hi, 5) : ticks(lo, hi, 5)) {
    ctx.beginPath();
    ctx.moveTo(box.x + m.left, py(y));
    ctx.lineTo(box.x + box.w - m.right, py(y));
    ctx.stroke();
    ctx.fillText(label(y), box.x + m.left - 6, py(y));
  }
  ctx.textAlign = "center";
  ctx.textBaseline = "bottom";
  ctx.fillText("step", box.x + (m.left + box.w - m.right) / 2, box.y + box.h);
  ctx.save();
  ctx.translate(box.x + 12, box.y + (m.top + box.h - m.bottom) / 2);
  ctx.rotate(-Math.PI / 2);
  ctx.textBaseline = "middle";
  ctx.fillText(yLabel, 0, 0);
  ctx.restore();

  for (const s of lines) {
    ctx.strokeStyle = s.color;
    ctx.lineWidth = s.width ?? 1.5;
    ctx.setLineDash(s.dash ?? []);
    ctx.beginPath();
    s.points.forEach(([x, y], i) => (i ? ctx.lineTo(px(x), py(y)) : ctx.moveTo(px(x), py(y))));
    ctx.stroke();
    if (s.points.length === 1) {
      ctx.fillStyle = s.color;
      ctx.fillRect(px(s.points[0][0]) - 2, py(s.points[0][1]) - 2, 4, 4);
    }
  }
  ctx.setLineDash([]);
  return all.length > 0;
}

// Draws `history` ({train: [[step, loss]...], val: [...]}) into `canvas`; `log` for a log y axis.
export function drawLossChart(canvas, history, log) {
  const ctx = clear(canvas);
  const box = { x: 0, y: 0, w: canvas.width, h: canvas.height };
  const series = [
    { points: history.train, color: TRAIN },
    { points: history.val, color: VAL, width: 2 },
  ];
  if (!plot(ctx, box, series, { log, yLabel: log ? "loss (log)" : "loss" })) note(ctx, box, "The loss appears here from the first training step.");
}
