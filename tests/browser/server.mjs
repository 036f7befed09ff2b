// A static server for the built page (dist/) that also plays the Hugging Face hub: under
// /hubmock/{owner}/{repo}/resolve/main/{file} it redirects, as the hub does, to /hubcdn/{file},
// served from `hubDir` with Range support. With `cutFirst`, the first full download of
// model.safetensors is cut off half way (a dropped connection). Datasets' files
// (/hubmock/datasets/{owner}/{repo}/resolve/main/{file}) come from `datasets`, {file: bytes}. Used
// by the e2e scripts and bench_gpt2.mjs.

import http from "node:http";
import fs from "node:fs";
import path from "node:path";

const TYPES = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm", ".css": "text/css", ".png": "image/png" };

export function serve(root, hubDir, { cutFirst = false, datasets = {} } = {}) {
  // what the hub saw: requests per file, ranges asked for, connections it cut
  const hubLog = { requests: {}, ranges: [], cut: 0 };

  function hub(req, res, pathname) {
    // a dataset's file (TinyStories): redirected, as the hub does, to bytes from `datasets`
    const d = pathname.match(/^\/hubmock\/datasets\/[\w.-]+\/[\w.-]+\/resolve\/main\/([\w.-]+)$/);
    if (d) {
      res.writeHead(302, { location: `/hubcdn-datasets/${d[1]}` }).end();
      return true;
    }
    const ds = pathname.match(/^\/hubcdn-datasets\/([\w.-]+)$/);
    if (ds) {
      const body = datasets[ds[1]];
      hubLog.requests[`datasets/${ds[1]}`] = (hubLog.requests[`datasets/${ds[1]}`] ?? 0) + 1;
      if (!body) res.writeHead(404).end("not found");
      else res.writeHead(200, { "content-length": body.length, "content-type": "text/plain" }).end(body);
      return true;
    }
    const m = pathname.match(/^\/hubmock\/[\w.-]+\/[\w.-]+\/resolve\/main\/([\w.-]+)$/);
    if (m) {
      res.writeHead(302, { location: `/hubcdn/${m[1]}` }).end();
      return true;
    }
    const f = pathname.match(/^\/hubcdn\/([\w.-]+)$/);
    if (!f) return false;
    const file = path.join(hubDir, f[1]);
    if (!fs.existsSync(file)) {
      res.writeHead(404).end("not found");
      return true;
    }
    hubLog.requests[f[1]] = (hubLog.requests[f[1]] ?? 0) + 1;
    const size = fs.statSync(file).size;
    const range = (req.headers.range ?? "").match(/^bytes=(\d+)-$/);
    if (range) {
      const from = Number(range[1]);
      hubLog.ranges.push(`${f[1]} from ${from}`);
      res.writeHead(206, { "content-length": size - from, "content-range": `bytes ${from}-${size - 1}/${size}` });
      fs.createReadStream(file, { start: from }).pipe(res);
      return true;
    }
    res.writeHead(200, { "content-length": size, "accept-ranges": "bytes" });
    if (cutFirst && f[1] === "model.safetensors" && hubLog.cut === 0) {
      hubLog.cut++;
      fs.createReadStream(file, { end: (size >> 1) - 1 }).on("end", () => res.destroy()).pipe(res, { end: false });
      return true;
    }
    fs.createReadStream(file).pipe(res);
    return true;
  }

  const server = http.createServer((req, res) => {
    const url = new URL(req.url, "http://x");
    if (hub(req, res, url.pathname)) return;
    const file = path.join(root, url.pathname === "/" ? "index.html" : decodeURIComponent(url.pathname));
    if (!file.startsWith(root) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) {
      res.writeHead(404).end("not found");
      return;
    }
    res.writeHead(200, { "content-type": TYPES[path.extname(file)] ?? "application/octet-stream" });
    fs.createReadStream(file).pipe(res);
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve({ server, hubLog })));
}
