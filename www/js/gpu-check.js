// The WebGPU check: whether this browser has WebGPU and an adapter, with what to do when it has
// not. The result is also left in <section id="gpu" data-state="..."> for page tests: "ok",
// "no-webgpu", "no-adapter", "insecure" or "error".

import { h, code, bytes } from "./dom.js";

// GPT-2 124M's largest tensor, the token embedding wte: 50257 x 768 f32.
const WTE_BYTES = 50257 * 768 * 4;

const panel = document.getElementById("gpu");

function show(state, cls, ...children) {
  panel.dataset.state = state;
  panel.className = `panel ${cls}`;
  panel.replaceChildren(...children.filter((c) => c !== null && c !== undefined && c !== false));
}

const howToGet = () =>
  h(
    "ul",
    { class: "howto" },
    h("li", {}, h("strong", {}, "Chrome or Edge 113+"), " on Windows, macOS and ChromeOS; Chrome 121+ on Android 12+. WebGPU is on by default."),
    h(
      "li",
      {},
      h("strong", {}, "Chrome on Linux"),
      ": WebGPU may still be behind a flag. Open ",
      code("chrome://flags/#enable-unsafe-webgpu"),
      " and set it to Enabled (on some drivers also ",
      code("chrome://flags/#enable-vulkan"),
      "), then relaunch.",
    ),
    h("li", {}, h("strong", {}, "Firefox 141+"), " on Windows. Elsewhere use Firefox Nightly, or set ", code("dom.webgpu.enabled"), " in ", code("about:config"), "."),
    h("li", {}, h("strong", {}, "Safari 26+"), " (macOS, iOS, iPadOS). Older Safari: Develop → Feature Flags → WebGPU."),
    h("li", {}, "Check what your browser reports at ", code("chrome://gpu"), " (Chrome/Edge) or ", code("about:support"), " (Firefox)."),
  );

function missing() {
  show(
    "no-webgpu",
    "bad",
    h("h2", {}, "WebGPU is not available in this browser"),
    h("p", {}, code("navigator.gpu"), " is undefined, so this page cannot run GPT-2 on your GPU. What you need:"),
    howToGet(),
  );
}

function insecure() {
  show(
    "insecure",
    "bad",
    h("h2", {}, "WebGPU needs a secure context"),
    h(
      "p",
      {},
      "Browsers expose WebGPU only on ",
      code("https://"),
      " pages or on ",
      code("http://localhost"),
      " / ",
      code("http://127.0.0.1"),
      ". This page was loaded from ",
      code(location.origin),
      ". Serve it over HTTPS or open it through localhost.",
    ),
  );
}

function noAdapter() {
  show(
    "no-adapter",
    "bad",
    h("h2", {}, "WebGPU is present, but no GPU adapter was found"),
    h("p", {}, code("navigator.gpu.requestAdapter()"), " returned ", code("null"), ". Usually this means:"),
    h(
      "ul",
      { class: "howto" },
      h("li", {}, "Hardware acceleration is switched off: in Chrome, Settings → System → ", h("em", {}, "Use graphics acceleration when available"), "."),
      h("li", {}, "Your GPU or driver is on the browser's blocklist: see ", code("chrome://gpu"), "; updating the graphics driver often helps, and ", code("chrome://flags/#enable-unsafe-webgpu"), " overrides the blocklist."),
      h("li", {}, "On Linux, Chrome may need ", code("chrome://flags/#enable-vulkan"), " as well."),
      h("li", {}, "Headless/CI Chromium has no GPU: start it with ", code("--enable-unsafe-webgpu --enable-unsafe-swiftshader"), " to get the SwiftShader CPU adapter."),
    ),
  );
}

export function failed(err) {
  show(
    "error",
    "bad",
    h("h2", {}, "The WebGPU check failed"),
    h("pre", {}, String(err && err.stack ? err.stack : err)),
  );
}

async function adapterInfo(adapter) {
  if (adapter.info) return adapter.info; // Chrome 127+, Firefox, Safari
  if (adapter.requestAdapterInfo) return adapter.requestAdapterInfo(); // older Chrome
  return {};
}

function row(name, value, note) {
  return h("tr", {}, h("th", { scope: "row" }, name), h("td", {}, value), h("td", { class: "note" }, note || ""));
}

// Resolves true when WebGPU and an adapter are there (the playground can start).
export async function checkWebGPU() {
  if (!window.isSecureContext) return insecure();
  if (!("gpu" in navigator) || !navigator.gpu) return missing();

  const adapter =
    (await navigator.gpu.requestAdapter({ powerPreference: "high-performance" })) ||
    (await navigator.gpu.requestAdapter());
  if (!adapter) return noAdapter();

  const info = await adapterInfo(adapter);
  const lim = adapter.limits;
  const feats = adapter.features;
  const name =
    [info.vendor, info.architecture, info.device].filter(Boolean).join(" · ") ||
    info.description ||
    "(the browser hides the adapter's name)";
  const fallback = info.isFallbackAdapter || adapter.isFallbackAdapter;
  const wteFits = lim.maxStorageBufferBindingSize >= WTE_BYTES && lim.maxBufferSize >= WTE_BYTES;
  const featureList = ["shader-f16", "subgroups", "timestamp-query"].map((f) =>
    h("li", { class: feats.has(f) ? "yes" : "no" }, code(f), feats.has(f) ? " yes" : " no"),
  );

  show(
    "ok",
    "good compact",
    h(
      "details",
      {},
      h(
        "summary",
        {},
        h("strong", {}, "WebGPU ready: "),
        h("span", { id: "adapter-name" }, name),
        fallback ? " (a software adapter: expect it to be slow)" : "",
      ),
      h(
        "table",
        { class: "limits" },
        h("caption", {}, "Adapter limits that matter for GPT-2"),
        h(
          "tbody",
          {},
          row(
            "maxStorageBufferBindingSize",
            bytes(lim.maxStorageBufferBindingSize),
            wteFits ? "GPT-2's largest tensor (wte, 147 MiB in f32) fits in one binding" : "below wte's 147 MiB: GPT-2 124M will not fit",
          ),
          row("maxBufferSize", bytes(lim.maxBufferSize)),
          row("maxComputeWorkgroupStorageSize", bytes(lim.maxComputeWorkgroupStorageSize)),
          row("maxStorageBuffersPerShaderStage", String(lim.maxStorageBuffersPerShaderStage)),
        ),
      ),
      h("ul", { class: "features" }, featureList),
    ),
  );
  return true;
}
