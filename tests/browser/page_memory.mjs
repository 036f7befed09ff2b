// The page's weight before any work: time from navigation to the engine's "Ready", the page
// thread's JS heap (CDP Runtime.getHeapUsage; the wasm memory of a page-thread instance lives
// outside it, see wasm below), whether the page thread instantiated the engine's wasm, and the
// resident memory of Chromium's renderer processes (the page's, with its worker, is the largest)
// and of its GPU process (SwiftShader), from /proc. BENCHMARKS.md records it for each layout of the page.
//
//   node tests/browser/page_memory.mjs [--dist dist] [--runs 3] [--dist-b OTHER]   (alternates A and B)

import fs from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";
import { serve } from "./server.mjs";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
const runs = Number(args.runs ?? 3);
const dists = [args.dist ?? "dist", args["dist-b"]].filter(Boolean).map((d) => path.resolve(d));

// Resident set sizes (MiB) of Chromium's renderer and GPU processes (one browser runs at a time):
// the renderers' in all and the largest one (the page's, with its worker).
function rss() {
  const out = { renderer: 0, page: 0, gpu: 0 };
  for (const pid of fs.readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
    try {
      const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8");
      if (!cmd.includes("chromium") && !cmd.includes("chrome")) continue;
      const kb = Number((fs.readFileSync(`/proc/${pid}/status`, "utf8").match(/VmRSS:\s+(\d+)/) ?? [0, 0])[1]);
      if (cmd.includes("--type=renderer")) {
        out.renderer += kb / 1024;
        out.page = Math.max(out.page, kb / 1024);
      }
      else if (cmd.includes("--type=gpu-process")) out.gpu += kb / 1024;
    } catch {
      // the process ended meanwhile
    }
  }
  return out;
}

async function measure(root) {
  const { server } = await serve(root, "/nonexistent");
  const url = `http://127.0.0.1:${server.address().port}/`;
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--headless=new", "--no-sandbox", "--enable-unsafe-webgpu", "--enable-unsafe-swiftshader"],
  });
  try {
    const page = await browser.newPage();
    const t0 = Date.now();
    await page.goto(url);
    await page.waitForFunction(() => document.querySelector('[data-testid="status"]').textContent.startsWith("Ready on"), null, { timeout: 120_000 });
    const ready = (Date.now() - t0) / 1e3;
    await page.waitForTimeout(2000); // let the page settle
    const cdp = await page.context().newCDPSession(page);
    await cdp.send("HeapProfiler.collectGarbage");
    const heap = await cdp.send("Runtime.getHeapUsage");
    const wasm = await page.evaluate(() => Boolean(window.wasmBindings)); // Trunk's page-thread loader sets it
    const mem = rss();
    return { ready, heap: heap.usedSize / 2 ** 20, wasm, ...mem };
  } finally {
    await browser.close();
    server.close();
  }
}

const results = Object.fromEntries(dists.map((d) => [d, []]));
for (let i = 0; i < runs; i++) for (const d of dists) results[d].push(await measure(d));
for (const [d, rs] of Object.entries(results)) {
  const med = (k) => rs.map((r) => r[k]).sort((a, b) => a - b)[rs.length >> 1];
  console.log(
    `${d}: ready ${med("ready").toFixed(2)} s, page-thread JS heap ${med("heap").toFixed(1)} MiB, page-thread wasm ${rs[0].wasm ? "yes" : "no"}, ` +
      `renderers' RSS ${med("renderer").toFixed(0)} MiB (the page's ${med("page").toFixed(0)} MiB), GPU process RSS ${med("gpu").toFixed(0)} MiB (median of ${rs.length}; all: ${rs.map((r) => `${r.ready.toFixed(2)} s/${r.renderer.toFixed(0)} MiB`).join(", ")})`,
  );
}
