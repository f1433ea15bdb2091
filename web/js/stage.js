// The stage: background, layered sprites (body, outfit, expression), the
// ambience, and a canvas rendering of it all for save thumbnails.

import { getKey } from './api.js';

const FADE_MS = 600;

// Asset URLs. With an API key the browser cannot add the header to <img>
// or <audio> loads, so assets are fetched with it and used as blob URLs.
const blobCache = new Map();
export function assetSrc(url) {
  if (!getKey()) return Promise.resolve(url);
  if (!blobCache.has(url)) {
    blobCache.set(url, fetch(url, { headers: { Authorization: `Bearer ${getKey()}` } })
      .then((r) => { if (!r.ok) throw new Error(`${url}: ${r.status}`); return r.blob(); })
      .then((b) => URL.createObjectURL(b))
      .catch((e) => { blobCache.delete(url); throw e; }));
  }
  return blobCache.get(url);
}

// Natural sizes of images (sprite layers are placed relative to them).
const imgCache = new Map();
export function loadImage(url) {
  if (!imgCache.has(url)) {
    imgCache.set(url, assetSrc(url).then((src) => new Promise((resolve, reject) => {
      const img = new Image();
      img.decoding = 'async';
      img.onload = () => resolve({ src, w: img.naturalWidth || 1, h: img.naturalHeight || 1, img });
      img.onerror = () => { imgCache.delete(url); reject(new Error(`could not load ${url}`)); };
      img.src = src;
    })));
  }
  return imgCache.get(url);
}

// Horizontal centres (fractions of the stage width) for 1..n characters.
export function slots(n) {
  const fixed = { 1: [0.5], 2: [0.32, 0.68], 3: [0.2, 0.5, 0.8], 4: [0.14, 0.38, 0.62, 0.86] };
  if (fixed[n]) return fixed[n];
  return Array.from({ length: n }, (_, i) => (i + 1) / (n + 1));
}

// A character's sprite height as a fraction of the stage height.
const SPRITE_H = 0.94;

export class Stage {
  constructor(root, bgLayer, spriteLayer, caption) {
    this.root = root;
    this.bgLayer = bgLayer;
    this.spriteLayer = spriteLayer;
    this.caption = caption;
    this.manifest = null;
    this.base = '';
    this.sceneId = null;
    this.sprites = new Map();  // character id -> {el, body, outfit, expression}
    this.audio = new Ambience((playing) => { this.root.dataset.ambience = playing.join(' '); });
    this.speaker = null;
    this.gen = 0;
  }

  setScenario(detail, text) {
    this.manifest = detail.manifest;
    this.base = detail.assetBase || `/api/scenarios/${detail.id}/assets/`;
    this.text = text;
    this.chars = new Map(this.manifest.characters.map((c) => [c.id, c]));
    this.scenes = new Map(this.manifest.scenes.map((s) => [s.id, s]));
    this.bgLayer.replaceChildren();
    this.spriteLayer.replaceChildren();
    this.sprites.clear();
    this.sceneId = null;
  }

  url(asset) { return asset ? this.base + asset.path.split('/').map(encodeURIComponent).join('/') : null; }

  // Layers of one character in a state: [{url, x, y, scale, kind}]
  layers(ch) {
    const c = this.chars.get(ch.character);
    if (!c) return null;
    const body = c.bodies.find((b) => b.id === ch.body) || c.bodies[0];
    const outfit = c.outfits.find((o) => o.id === ch.outfit) || c.outfits[0];
    const expr = c.expressions.find((e) => e.id === ch.expression) || c.expressions[0];
    const layer = (v, kind) => {
      const l = v && v.layers && v.layers[body.id];
      return l ? { url: this.url(l), x: l.x || 0, y: l.y || 0, scale: l.scale || 1, kind } : null;
    };
    return { body: { url: this.url(body.image), kind: 'body' }, outfit: layer(outfit, 'outfit'), expression: layer(expr, 'expression'), bodyId: body.id };
  }

  // Show a stage state (the API's stage object).
  async render(state) {
    if (!this.manifest || !state) return;
    const gen = ++this.gen;
    await this.renderScene(state.scene);
    if (gen !== this.gen) return;
    const chars = state.characters || [];
    const xs = slots(chars.length);
    const seen = new Set();
    chars.forEach((ch, i) => {
      seen.add(ch.character);
      this.placeCharacter(ch, xs[i], chars.length);
    });
    for (const [id, sp] of this.sprites) {
      if (!seen.has(id)) this.exitCharacter(id, sp);
    }
    this.setSpeaker(this.speaker);
  }

  async renderScene(sceneId) {
    if (sceneId === this.sceneId) return;
    this.sceneId = sceneId;
    const scene = this.scenes.get(sceneId);
    if (!scene) return;
    this.root.dataset.scene = sceneId;
    const url = this.url(scene.background);
    const img = document.createElement('img');
    img.className = 'bg entering';
    img.alt = '';
    img.dataset.scene = sceneId;
    img.dataset.src = url;
    try { img.src = (await loadImage(url)).src; } catch { img.src = url; }
    if (sceneId !== this.sceneId) return;
    const old = [...this.bgLayer.children];
    old.forEach((o) => { o.classList.add('leaving'); o.dataset.leaving = '1'; });
    this.bgLayer.append(img);
    requestAnimationFrame(() => requestAnimationFrame(() => img.classList.remove('entering')));
    setTimeout(() => old.forEach((o) => o.remove()), FADE_MS + 100);
    this.caption.textContent = this.text(scene.name);
    this.caption.classList.remove('show');
    void this.caption.offsetWidth;
    this.caption.classList.add('show');
    this.audio.play((scene.ambience || []).map((a) => this.url(a)));
  }

  placeCharacter(ch, x, n) {
    const L = this.layers(ch);
    if (!L) return;
    let sp = this.sprites.get(ch.character);
    const c = this.chars.get(ch.character);
    if (!sp) {
      const el = document.createElement('div');
      el.className = 'sprite entering';
      el.dataset.character = ch.character;
      el.setAttribute('role', 'img');
      el.style.setProperty('--x', x);
      el.style.setProperty('--c', c.color);
      this.spriteLayer.append(el);
      sp = { el, layers: {} };
      this.sprites.set(ch.character, sp);
      requestAnimationFrame(() => requestAnimationFrame(() => el.classList.remove('entering')));
    }
    const el = sp.el;
    el.style.setProperty('--x', x);
    el.style.setProperty('--n', n);
    el.style.zIndex = String(10 + Math.round((1 - Math.abs(x - 0.5)) * 10));
    el.dataset.body = L.bodyId;
    el.dataset.outfit = ch.outfit;
    el.dataset.expression = ch.expression;
    const exprName = c.expressions.find((e) => e.id === ch.expression);
    el.setAttribute('aria-label', `${this.text(c.name)}${exprName ? ', ' + this.text(exprName.name).toLowerCase() : ''}`);
    this.setLayer(sp, 'body', L.body, null);
    this.setLayer(sp, 'outfit', L.outfit, L.body);
    this.setLayer(sp, 'expression', L.expression, L.body);
  }

  // Put one layer image in place, cross-fading from the previous one.
  async setLayer(sp, kind, layer, body) {
    const cur = sp.layers[kind];
    const url = layer ? layer.url : null;
    if (cur && cur.url === url) return;
    sp.layers[kind] = { url };
    if (!url) { if (cur && cur.img) fadeOut(cur.img); return; }
    let info, binfo;
    try {
      info = await loadImage(url);
      binfo = body ? await loadImage(body.url) : info;
    } catch { return; }
    if (sp.layers[kind].url !== url) return;
    const img = document.createElement('img');
    img.className = `layer ${kind} entering`;
    img.alt = '';
    img.src = info.src;
    img.dataset.src = url;
    img.dataset.layer = kind;
    if (kind === 'body') {
      sp.el.style.setProperty('--aspect', `${info.w} / ${info.h}`);
      sp.el.style.setProperty('--ar', String(info.w / info.h));
    } else {
      // x, y: fractions of the body image; size: own pixels × scale, relative to the body's pixels.
      img.style.left = `${layer.x * 100}%`;
      img.style.top = `${layer.y * 100}%`;
      img.style.width = `${(info.w * layer.scale / binfo.w) * 100}%`;
      img.style.height = `${(info.h * layer.scale / binfo.h) * 100}%`;
    }
    const order = { body: 1, outfit: 2, expression: 3 };
    img.style.zIndex = String(order[kind]);
    sp.el.append(img);
    const prev = cur && cur.img;
    sp.layers[kind].img = img;
    requestAnimationFrame(() => requestAnimationFrame(() => img.classList.remove('entering')));
    if (prev) setTimeout(() => fadeOut(prev), 40);
  }

  exitCharacter(id, sp) {
    this.sprites.delete(id);
    sp.el.classList.add('leaving');
    sp.el.dataset.leaving = '1';
    sp.el.removeAttribute('data-character');
    sp.el.dataset.left = id;
    setTimeout(() => sp.el.remove(), FADE_MS + 100);
  }

  setSpeaker(id) {
    this.speaker = id;
    for (const [cid, sp] of this.sprites) {
      sp.el.classList.toggle('speaking', cid === id);
      sp.el.classList.toggle('quiet', !!id && this.chars.has(id) && cid !== id);
    }
  }

  // The stage drawn into a canvas as a PNG data URL (save thumbnails).
  async thumbnail(state, width = 480) {
    const rect = this.root.getBoundingClientRect();
    const aspect = rect.width > 0 && rect.height > 0 ? rect.height / rect.width : 9 / 16;
    const W = width, H = Math.round(width * aspect);
    const cv = document.createElement('canvas');
    cv.width = W; cv.height = H;
    const g = cv.getContext('2d');
    g.fillStyle = '#0e1117';
    g.fillRect(0, 0, W, H);
    const scene = this.scenes.get(state.scene);
    if (scene) {
      try {
        const bg = await loadImage(this.url(scene.background));
        const s = Math.max(W / bg.w, H / bg.h);
        g.drawImage(bg.img, (W - bg.w * s) / 2, (H - bg.h * s) / 2, bg.w * s, bg.h * s);
      } catch { /* leave the plain background */ }
    }
    const chars = state.characters || [];
    const xs = slots(chars.length);
    for (let i = 0; i < chars.length; i++) {
      const L = this.layers(chars[i]);
      if (!L) continue;
      try {
        const body = await loadImage(L.body.url);
        const bh = Math.min(H * SPRITE_H, 1.18 * W / chars.length / (body.w / body.h)), bw = bh * body.w / body.h;
        const x0 = xs[i] * W - bw / 2, y0 = H - bh;
        g.drawImage(body.img, x0, y0, bw, bh);
        for (const l of [L.outfit, L.expression]) {
          if (!l) continue;
          const li = await loadImage(l.url);
          g.drawImage(li.img, x0 + l.x * bw, y0 + l.y * bh, li.w * l.scale / body.w * bw, li.h * l.scale / body.h * bh);
        }
      } catch { /* skip a sprite that cannot load */ }
    }
    return cv.toDataURL('image/png');
  }
}

function fadeOut(img) {
  img.classList.add('leaving');
  img.dataset.leaving = '1';
  setTimeout(() => img.remove(), FADE_MS + 100);
}

// Looping ambience; starts on the first user gesture (autoplay rules) and
// cross-fades between scenes.
export class Ambience {
  constructor(onchange) {
    this.onchange = onchange || (() => {});
    this.volume = 0.6;
    this.unlocked = false;
    this.tracks = [];   // {url, el}
    this.wanted = [];
    const unlock = () => {
      this.unlocked = true;
      window.removeEventListener('pointerdown', unlock, true);
      window.removeEventListener('keydown', unlock, true);
      this.sync();
    };
    window.addEventListener('pointerdown', unlock, true);
    window.addEventListener('keydown', unlock, true);
  }

  setVolume(v) {
    this.volume = v;
    for (const t of this.tracks) if (!t.fading) t.el.volume = v;
    this.sync();
  }

  play(urls) { this.wanted = urls; this.sync(); }
  stop() { this.wanted = []; this.sync(); }

  async sync() {
    const keep = [];
    for (const t of this.tracks) {
      if (this.wanted.includes(t.url)) keep.push(t);
      else this.fade(t.el, 0, () => { t.el.pause(); t.el.removeAttribute('src'); t.el.load(); });
    }
    this.tracks = keep;
    if (!this.unlocked || this.volume <= 0) {
      for (const t of this.tracks) t.el.pause();
      this.report();
      return;
    }
    for (const url of this.wanted) {
      let t = this.tracks.find((x) => x.url === url);
      if (!t) {
        const el = new Audio();
        el.loop = true;
        el.volume = 0;
        el.preload = 'auto';
        t = { url, el };
        this.tracks.push(t);
        try { el.src = await assetSrc(url); } catch { continue; }
      }
      if (t.el.paused) {
        t.el.play().then(() => this.report()).catch(() => { /* not allowed yet or unsupported */ });
        this.fade(t.el, this.volume);
      }
    }
    this.report();
  }

  // Tells the stage which loops are playing (data-ambience, for tests and tools).
  report() {
    this.onchange(this.tracks.filter((t) => !t.el.paused && this.wanted.includes(t.url)).map((t) => t.url));
  }

  fade(el, to, done) {
    const from = el.volume, t0 = performance.now();
    const step = (now) => {
      const k = Math.min(1, (now - t0) / 800);
      el.volume = Math.max(0, Math.min(1, from + (to - from) * k));
      if (k < 1) requestAnimationFrame(step); else if (done) done();
    };
    requestAnimationFrame(step);
  }
}
