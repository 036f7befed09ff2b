// What the page's views cost a training step: trains the default model on a small corpus in
// headless Chromium and alternates windows of `--window` steps with the views closed (look inside,
// the parameter table, the dynamics chart and Compare runs hidden, nothing typed) and open and
// busy (all shown, a keystroke in the prompt every 300 ms, so look inside runs a forward pass
// between almost every two steps and redraws, and the temperature moving, so the sampling bars
// follow). The dynamics are tracked every 10 steps in both, as always. Prints each window's wall
// time per step (from one progress event to the next, as the page sees them) and the medians.
// BENCHMARKS.md records the figures. With `--screenshot FILE` it then looks inside for "the cat"
// (top-k 5) and saves the dynamics chart, look inside and the top of the parameter table as one
// PNG (README's picture of the views), stacked, shrunk to 960 px and posterised in the page so
// that it stays small.
//
//   node tests/browser/bench_views.mjs [--dist dist] [--windows 4] [--window 10] [--screenshot FILE]

import fs from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";
import { serve } from "./server.mjs";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
const windows = Number(args.windows ?? 4);
const size = Number(args.window ?? 10);
const steps = 10 + 2 * windows * size + 5;

const lines = [];
const who = ["the cat", "a dog", "my friend", "the old man"];
const what = ["sat on the mat", "ran to the door", "looked at a tree", "sang for the moon"];
for (let i = 0; i < 600; i++) lines.push(`${who[(i * 7) % 4]} ${what[(i * 5) % 4]}.`);

const { server } = await serve(path.resolve(args.dist ?? "dist"), "/nonexistent");
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--headless=new", "--no-sandbox", "--enable-unsafe-webgpu", "--enable-unsafe-swiftshader"],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
try {
  await page.goto(`http://127.0.0.1:${server.address().port}/`);
  await page.waitForFunction(() => document.querySelector('[data-testid="status"]').textContent.startsWith("Ready on"), null, { timeout: 120_000 });
  await page.locator('[data-testid="corpus-input"]').setInputFiles({ name: "lines.txt", mimeType: "text/plain", buffer: Buffer.from(lines.join("\n")) });
  await page.waitForFunction(() => document.getElementById("c-name").textContent === "lines.txt", null, { timeout: 30_000 });
  for (const [id, v] of [["max_iters", steps], ["eval_interval", steps]]) {
    await page.fill(`#${id}`, String(v));
    await page.dispatchEvent(`#${id}`, "change");
  }
  await page.waitForFunction(() => document.getElementById("m-params").textContent !== "—", null, { timeout: 60_000 });
  // each progress event's arrival, as the page sees it
  await page.evaluate(() => {
    window.stepTimes = [];
    const events = window.wgptEvents;
    events.push = function (e) {
      if (e.type === "progress") window.stepTimes.push([e.step, performance.now()]);
      return Array.prototype.push.call(this, e);
    };
  });
  await page.locator('[data-testid="train-start"]').click();
  const at = (n) => page.waitForFunction((n) => Number(document.querySelector('[data-testid="step"]').textContent) >= n, n, { timeout: 600_000 });
  const views = (shown) =>
    page.evaluate((shown) => {
      // the views' tab panels all shown at once, whatever tab is chosen, or none (Generate's stays)
      for (const id of ["view-inspect", "view-params", "view-dynamics", "view-compare"]) document.getElementById(id).style.display = shown ? "block" : "none";
    }, shown);
  await at(10); // past the first steps' pipeline compiles
  const perStep = { closed: [], open: [] };
  for (let w = 0; w < 2 * windows; w++) {
    const open = w % 2 === 1;
    await views(open);
    const from = Number(await page.textContent('[data-testid="step"]'));
    let busy = null;
    if (open) {
      let k = 0;
      busy = setInterval(() => {
        k++;
        page.locator('[data-testid="prompt"]').fill(k % 2 ? "the cat sat" : "the cat").catch(() => {});
        page.locator('[data-testid="temperature"]').fill(String(0.5 + (k % 5) / 4)).catch(() => {});
      }, 300);
    }
    await at(from + size);
    if (busy) clearInterval(busy);
    const times = await page.evaluate(() => window.stepTimes);
    const win = times.filter(([s]) => s >= from && s <= from + size);
    const ms = (win.at(-1)[1] - win[0][1]) / (win.at(-1)[0] - win[0][0]);
    perStep[open ? "open" : "closed"].push(ms);
    console.log(`steps ${win[0][0]}-${win.at(-1)[0]}, views ${open ? "open and busy" : "closed"}: ${ms.toFixed(1)} ms/step`);
  }
  const looks = await page.evaluate(() => window.wgptEvents.filter((e) => e.type === "inspect").length);
  const [c, o] = [median(perStep.closed), median(perStep.open)];
  console.log(`median ms/step: views closed ${c.toFixed(1)}, open and busy ${o.toFixed(1)} (${((100 * (o - c)) / c).toFixed(1)}%); the last 100 events held ${looks} looks`);
  if (args.screenshot) {
    await views(true);
    await page.evaluate(() => (window.wgptEvents.length = 0));
    await page.locator('[data-testid="top-k"]').fill("5");
    await page.locator('[data-testid="temperature"]').fill("0.8");
    await page.locator('[data-testid="prompt"]').fill("the cat sat on");
    await page.waitForFunction(() => window.wgptEvents.some((e) => e.type === "inspect" && e.prompt === "the cat sat on" && e.sampling.settings.top_k === 5), null, { timeout: 120_000 });
    await page.waitForTimeout(500);
    const parts = [];
    for (const loc of [page.locator("#dynamics-chart").locator(".."), page.locator("section:has(#look-h)"), page.locator("section:has(#params-h)")])
      parts.push((await loc.screenshot()).toString("base64"));
    const png = await page.evaluate(async (parts) => {
      const images = await Promise.all(parts.map((b64) => createImageBitmap(new Blob([Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))], { type: "image/png" }))));
      const scale = 960 / Math.max(...images.map((i) => i.width));
      const canvas = new OffscreenCanvas(960, Math.min(1500, Math.round(scale * images.reduce((n, i) => n + i.height, 0))));
      const ctx = canvas.getContext("2d");
      ctx.fillStyle = "#fff";
      ctx.fillRect(0, 0, canvas.width, canvas.height);
      let y = 0;
      for (const i of images) {
        ctx.drawImage(i, 0, y, i.width * scale, i.height * scale);
        y += i.height * scale;
      }
      const img = ctx.getImageData(0, 0, canvas.width, canvas.height);
      for (let k = 0; k < img.data.length; k++) if (k % 4 !== 3) img.data[k] = Math.min(255, Math.round(img.data[k] / 17) * 17);
      ctx.putImageData(img, 0, 0);
      const bytes = new Uint8Array(await (await canvas.convertToBlob({ type: "image/png" })).arrayBuffer());
      let s = "";
      for (const b of bytes) s += String.fromCharCode(b);
      return btoa(s);
    }, parts);
    fs.writeFileSync(args.screenshot, Buffer.from(png, "base64"));
    console.log(`screenshot: ${args.screenshot} (${fs.statSync(args.screenshot).size} bytes)`);
  }
} finally {
  await browser.close();
  server.close();
}
