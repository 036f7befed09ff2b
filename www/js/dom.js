// Small DOM and formatting helpers shared by the page's modules.

export const MiB = 1024 * 1024;

export const $ = (id) => document.getElementById(id);

// An element: h("a", {href}, "text", child, [more children]).
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export const code = (text) => h("code", {}, text);

export function bytes(n) {
  if (n >= 1024 * MiB) return `${(n / (1024 * MiB)).toFixed(n % (1024 * MiB) ? 2 : 0)} GiB`;
  if (n >= MiB) return `${(n / MiB).toFixed(n % MiB ? 1 : 0)} MiB`;
  if (n >= 1024) return `${(n / 1024).toFixed(0)} KiB`;
  return `${n} B`;
}

export const fmt = {
  int: (n) => Number(n).toLocaleString("en-US"),
  loss: (x) => (Number.isFinite(x) ? x.toFixed(4) : String(x)),
  secs(s) {
    if (!Number.isFinite(s)) return "";
    if (s < 60) return `${Math.round(s)} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
    return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
  },
};

// Saves `data` (a Uint8Array or a string) as a download named `name`.
export function download(name, data) {
  const url = URL.createObjectURL(new Blob([data]));
  const a = h("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
