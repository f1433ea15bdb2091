// The LLooM's prefix tree as an SVG graph: one <g class="node"> per token
// (its text and probability), an edge from each parent to its child, the
// leaves outlined, a highlighted path from the prompt to a chosen leaf.
// Laid out left to right: a column per depth, a row per branch tip. The SVG
// carries its own <style> with literal colours, so a download of it is a
// standalone file that looks the same.

const NS = 'http://www.w3.org/2000/svg';
const CHAR_W = 7.8;     // 13px monospace
const NODE_H = 34;
const ROW_H = 42;
const GAP_X = 30;
const PAD = 16;

const STYLE = `
.bg { fill: #0e1117; }
.edge { fill: none; stroke: #46557a; stroke-width: 1.5; }
.edge.on-path { stroke: #f0b860; stroke-width: 3; }
.node rect { fill: #1c2a44; stroke: #2e3750; stroke-width: 1; }
.node .bar { fill: #3d6fb8; stroke: none; }
.node.leaf rect.box { stroke: #ffd699; stroke-width: 1.5; }
.node.on-path rect.box { stroke: #f0b860; stroke-width: 3; }
.node text, .root text { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; fill: #e8ebf2; white-space: pre; }
.node .tok { font-size: 13px; }
.node .p { font-size: 9.5px; fill: #c5cde0; }
.root rect { fill: #202737; stroke: #a9b1c3; stroke-dasharray: 3 3; }
.root text { font-size: 12px; fill: #a9b1c3; }
.node { cursor: pointer; }
`;

const svgEl = (tag, attrs = {}, text) => {
  const n = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, String(v));
  if (text != null) n.textContent = text;
  return n;
};

// What a token shows: its bytes with line breaks and tabs made visible.
export function tokenLabel(text) {
  if (!text) return '∅';
  if (/^ +$/.test(text)) return text.replace(/ /g, '␣');
  return text.replace(/\n/g, '⏎').replace(/\t/g, '⇥');
}
const pct = (p) => (p >= 0.995 ? '100%' : p < 0.001 ? '<0.1%' : p < 0.1 ? `${(p * 100).toFixed(1)}%` : `${Math.round(p * 100)}%`);

export class LoomTree {
  constructor(container, { onLeafClick, onHover } = {}) {
    this.container = container;
    this.onLeafClick = onLeafClick;
    this.onHover = onHover;
    this.svg = null;
    this.reset('');
  }

  reset(prompt) {
    this.prompt = prompt;
    this.nodes = new Map();   // id -> node (+ children)
    this.roots = [];
    this.pending = false;
    this.highlighted = -1;
    this.els = new Map();     // id -> {g, edge}
    this.render();
  }

  get size() { return this.nodes.size; }

  add(n) {
    const node = { ...n, children: [] };
    this.nodes.set(n.id, node);
    if (n.parent < 0) this.roots.push(node);
    else {
      const p = this.nodes.get(n.parent);
      if (p) p.children.push(node); else this.roots.push(node);
    }
    if (!this.pending) {
      this.pending = true;
      requestAnimationFrame(() => { this.pending = false; this.render(); });
    }
  }

  // Renders now (the caller wants the DOM up to date, e.g. after `done`).
  flush() { this.pending = false; this.render(); }

  layout() {
    const colW = [];
    // The prompt's last words (from a word boundary when there is one).
    let tail = this.prompt.slice(-18);
    if (this.prompt.length > 18 && /\s/.test(tail.slice(0, -1))) tail = tail.replace(/^\S*\s+/, '');
    const rootLabel = '… ' + tokenLabel(tail.trim()).replace(/ +/g, ' ');
    colW[0] = Math.max(40, rootLabel.length * 7 + 16);
    for (const n of this.nodes.values()) {
      const w = Math.max(40, tokenLabel(n.text).length * CHAR_W + 16);
      colW[n.depth] = Math.max(colW[n.depth] || 0, w);
    }
    const colX = [PAD];
    for (let d = 1; d < colW.length; d++) colX[d] = colX[d - 1] + (colW[d - 1] || 40) + GAP_X;
    let row = 0;
    const place = (n) => {
      if (!n.children.length) { n.y = PAD + row * ROW_H; row += 1; }
      else {
        for (const c of n.children) place(c);
        n.y = (n.children[0].y + n.children[n.children.length - 1].y) / 2;
      }
      n.x = colX[n.depth];
      n.w = colW[n.depth];
    };
    for (const r of this.roots) place(r);
    const rows = Math.max(1, row);
    const rootY = this.roots.length ? (this.roots[0].y + this.roots[this.roots.length - 1].y) / 2 : PAD;
    const last = colW.length - 1;
    const width = colX[last] + colW[last] + PAD;
    const height = PAD * 2 + (rows - 1) * ROW_H + NODE_H;
    return { root: { x: colX[0], y: rootY, w: colW[0], label: rootLabel }, width, height };
  }

  render() {
    if (!this.prompt && !this.nodes.size) {
      this.svg = null;
      this.els = new Map();
      this.container.replaceChildren(Object.assign(document.createElement('p'), { className: 'loom-tree-empty muted small', textContent: 'The tree grows here: a box per token with its probability, a branch where the model hesitates.' }));
      return;
    }
    const L = this.layout();
    const svg = svgEl('svg', {
      xmlns: NS, class: 'loom-svg', width: Math.ceil(L.width), height: Math.ceil(L.height),
      viewBox: `0 0 ${Math.ceil(L.width)} ${Math.ceil(L.height)}`, 'font-size': 13,
    });
    svg.append(svgEl('title', {}, 'LLooM tree' + (this.prompt ? ` after “${this.prompt.slice(-60)}”` : '')));
    svg.append(svgEl('style', {}, STYLE));
    svg.append(svgEl('rect', { class: 'bg', x: 0, y: 0, width: '100%', height: '100%' }));
    const edges = svgEl('g', { class: 'edges' });
    const nodes = svgEl('g', { class: 'nodes' });
    svg.append(edges, nodes);

    const root = svgEl('g', { class: 'root' });
    root.append(svgEl('rect', { x: L.root.x, y: L.root.y, width: L.root.w, height: NODE_H, rx: 8 }));
    root.append(svgEl('text', { x: L.root.x + 8, y: L.root.y + 21 }, L.root.label));
    nodes.append(root);

    this.els = new Map();
    for (const n of this.nodes.values()) {
      const p = n.parent >= 0 ? this.nodes.get(n.parent) : null;
      const px = p ? p.x + p.w : L.root.x + L.root.w;
      const py = (p ? p.y : L.root.y) + NODE_H / 2;
      const cy = n.y + NODE_H / 2;
      const mx = (px + n.x) / 2;
      const edge = svgEl('path', { class: 'edge', 'data-child': n.id, d: `M${px},${py} C${mx},${py} ${mx},${cy} ${n.x},${cy}` });
      edges.append(edge);

      const g = svgEl('g', { class: n.leaf ? 'node leaf' : 'node', 'data-id': n.id, 'data-depth': n.depth });
      g.append(svgEl('title', {}, `“${n.text}”  p=${n.prob.toFixed(3)}  score=${n.score.toFixed(3)}${n.leaf ? '  (leaf)' : ''}`));
      g.append(svgEl('rect', { class: 'box', x: n.x, y: n.y, width: n.w, height: NODE_H, rx: 7 }));
      g.append(svgEl('rect', { class: 'bar', x: n.x + 1, y: n.y + NODE_H - 5, width: Math.max(1, (n.w - 2) * Math.min(1, n.prob)), height: 4, rx: 2 }));
      g.append(svgEl('text', { class: 'tok', x: n.x + 8, y: n.y + 15 }, tokenLabel(n.text)));
      g.append(svgEl('text', { class: 'p', x: n.x + 8, y: n.y + 26 }, pct(n.prob)));
      if (n.leaf) {
        g.addEventListener('click', () => this.onLeafClick && this.onLeafClick(n.id));
      }
      g.addEventListener('mouseenter', () => this.onHover && this.onHover(n.id));
      g.addEventListener('mouseleave', () => this.onHover && this.onHover(-1));
      nodes.append(g);
      this.els.set(n.id, { g, edge });
    }
    this.container.replaceChildren(svg);
    this.svg = svg;
    this.highlight(this.highlighted);
  }

  // Highlights the path from the prompt to node id (-1: none).
  highlight(id) {
    for (const { g, edge } of this.els.values()) { g.classList.remove('on-path'); edge.classList.remove('on-path'); }
    this.highlighted = id;
    let n = this.nodes.get(id);
    while (n) {
      const e = this.els.get(n.id);
      if (e) { e.g.classList.add('on-path'); e.edge.classList.add('on-path'); }
      n = n.parent >= 0 ? this.nodes.get(n.parent) : null;
    }
  }

  // Scrolls the container so that node id is in view (centred when it was not).
  reveal(id) {
    const n = this.nodes.get(id);
    if (!n || n.x == null) return;
    const c = this.container;
    const inX = n.x >= c.scrollLeft && n.x + n.w <= c.scrollLeft + c.clientWidth;
    const inY = n.y >= c.scrollTop && n.y + NODE_H <= c.scrollTop + c.clientHeight;
    if (inX && inY) return;
    c.scrollTo({ left: Math.max(0, n.x + n.w - c.clientWidth + PAD), top: Math.max(0, n.y - c.clientHeight / 2), behavior: matchMedia('(prefers-reduced-motion: reduce)').matches ? 'auto' : 'smooth' });
  }

  // The graph as a standalone SVG document.
  serialize() {
    const clone = this.svg.cloneNode(true);
    clone.setAttribute('xmlns', NS);
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + new XMLSerializer().serializeToString(clone) + '\n';
  }
}
