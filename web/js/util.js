// Small helpers: DOM building, colour contrast, times.

export const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));

// el('div', {class: 'x', 'data-id': 3}, child, 'text', null, ...)
export function el(tag, attrs = {}, ...children) {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === 'class') n.className = v;
    else n.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c == null || c === false) continue;
    n.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return n;
}

function rgb(hex) {
  const m = /^#?([0-9a-f]{6})$/i.exec(hex || '');
  const v = m ? parseInt(m[1], 16) : 0xd8dee9;
  return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
}
function lum([r, g, b]) {
  const f = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
  return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
}
export function contrast(a, b) {
  const la = lum(rgb(a)), lb = lum(rgb(b));
  return (Math.max(la, lb) + 0.05) / (Math.min(la, lb) + 0.05);
}
const hex = (c) => '#' + c.map((x) => Math.round(x).toString(16).padStart(2, '0')).join('');

// The colour itself when it reads on bg at 4.5:1 (WCAG AA), else mixed
// towards white (on a dark bg) or black (on a light one) until it does.
export function readableOn(color, bg, ratio = 4.5) {
  if (contrast(color, bg) >= ratio) return color;
  const c = rgb(color);
  const to = lum(rgb(bg)) < 0.5 ? [255, 255, 255] : [0, 0, 0];
  for (let k = 0.05; k <= 1; k += 0.05) {
    const m = hex(c.map((x, i) => x + (to[i] - x) * k));
    if (contrast(m, bg) >= ratio) return m;
  }
  return hex(to);
}

export function relTime(ms) {
  if (!ms) return '';
  const s = (Date.now() - ms) / 1000;
  if (s < 60) return 'just now';
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  if (s < 86400 * 7) return `${Math.floor(s / 86400)} d ago`;
  return new Date(ms).toLocaleDateString();
}
