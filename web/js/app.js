// Simularity's browser player: the library, the stage and the dialogue.
// Plain ES modules; talks to the native story API (docs/story-api.md).

import { api, ApiError, getKey, setKey, onKeyNeeded, locale, StoryEvents } from './api.js';
import { Stage, assetSrc } from './stage.js';
import { readableOn, relTime, el, clamp } from './util.js';

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------- settings
const DEFAULTS = { temperature: 0.8, top_p: 0.95, min_p: 0.05, max_tokens: 96, text_speed: 60, volume: 60, auto_reply: true };
const SETTINGS_KEY = 'simularity.settings';
let settings = { ...DEFAULTS };
try { Object.assign(settings, JSON.parse(localStorage.getItem(SETTINGS_KEY) || '{}')); } catch { /* defaults */ }
const saveSettings = () => { try { localStorage.setItem(SETTINGS_KEY, JSON.stringify(settings)); } catch { /* ignore */ } };
const sampling = () => ({ temperature: +settings.temperature, top_p: +settings.top_p, min_p: +settings.min_p, max_tokens: +settings.max_tokens });

// ---------------------------------------------------------------- texts
let manifestLocales = ['en-US'];
function pickLocale(list) {
  if (list.includes(locale)) return locale;
  const lang = locale.split('-')[0];
  return list.find((l) => l.split('-')[0] === lang) || 'en-US';
}
let loc = 'en-US';
function tx(t) {
  if (t == null) return '';
  if (typeof t === 'string') return t;
  return t[loc] ?? t['en-US'] ?? Object.values(t)[0] ?? '';
}

// ---------------------------------------------------------------- banner / toast
let bannerKind = '';
function banner(msg, kind = 'error', retry = null) {
  bannerKind = kind;
  $('banner-text').textContent = msg;
  $('banner').dataset.kind = kind;
  $('banner').hidden = false;
  const r = $('banner-retry');
  r.hidden = !retry;
  r.onclick = retry ? () => { hideBanner(); retry(); } : null;
}
function hideBanner(kind) {
  if (kind && bannerKind !== kind) return;
  $('banner').hidden = true;
  bannerKind = '';
}
function errorBanner(e, retry) {
  if (e instanceof ApiError && e.kind === 'network') banner(e.message, 'network', retry);
  else banner(e && e.message ? e.message : String(e), 'error', retry);
}
let toastTimer = 0;
function toast(msg) {
  const t = $('toast');
  t.textContent = msg;
  t.hidden = false;
  t.classList.add('show');
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.classList.remove('show'); setTimeout(() => { t.hidden = true; }, 300); }, 3200);
}

// ---------------------------------------------------------------- API key
let keyPrompt = null;   // one prompt for all the requests that got a 401
onKeyNeeded((msg) => keyPrompt || (keyPrompt = new Promise((resolve) => {
  const d = $('panel-key');
  const p = d.querySelector('p');
  p.textContent = msg || 'This server asks for an API key. It is kept in this browser only.';
  $('key-input').value = '';
  const form = $('key-form');
  form.onsubmit = (ev) => {
    ev.preventDefault();
    const k = $('key-input').value.trim();
    if (!k) return;
    setKey(k);
    d.close();
    $('btn-forget-key').hidden = false;
    keyPrompt = null;
    resolve(k);
  };
  d.oncancel = (ev) => ev.preventDefault();
  if (!d.open) d.showModal();
  $('key-input').focus();
})));

// ---------------------------------------------------------------- scenarios
const scenarioCache = new Map();
async function scenarioDetail(id) {
  if (!scenarioCache.has(id)) {
    scenarioCache.set(id, api.scenario(id).catch((e) => { scenarioCache.delete(id); throw e; }));
  }
  return scenarioCache.get(id);
}

// ---------------------------------------------------------------- views
function showView(name) {
  $('library').hidden = name !== 'library';
  $('player').hidden = name !== 'player';
  $('meters').hidden = name !== 'player';
  document.body.dataset.view = name;
}

async function route() {
  const m = location.hash.match(/^#\/story\/(\d+)/);
  closePanels();
  if (m) await openStory(+m[1]);
  else await openLibrary();
}

// ---------------------------------------------------------------- library
let scenariosList = [];
async function openLibrary() {
  player.leave();
  showView('library');
  $('story-title').textContent = '';
  document.title = 'Simularity';
  const grid = $('scenario-grid');
  try {
    const [sc, st] = await Promise.all([api.scenarios(), api.stories()]);
    hideBanner('network');
    scenariosList = sc.scenarios || [];
    renderScenarios(scenariosList);
    renderStories(st.stories || []);
  } catch (e) {
    grid.replaceChildren(el('p', { class: 'muted' }, 'The scenarios could not be loaded.'));
    errorBanner(e, openLibrary);
  } finally {
    grid.setAttribute('aria-busy', 'false');
  }
}

function renderScenarios(list) {
  const grid = $('scenario-grid');
  if (!list.length) {
    grid.replaceChildren(el('p', { class: 'muted' }, 'No scenarios. Start the server with --scenarios DIR.'));
    return;
  }
  grid.replaceChildren(...list.map((s) => {
    const cover = el('div', { class: 'cover' });
    if (s.cover) {
      const img = el('img', { alt: '', loading: 'lazy' });
      assetSrc(s.cover).then((src) => { img.src = src; }).catch(() => {});
      cover.append(img);
    } else {
      cover.append(el('span', { class: 'cover-letter', 'aria-hidden': 'true' }, (s.name || '?')[0]));
    }
    const episodes = s.episodes || [];
    const select = el('select', { 'aria-label': `Episode of ${s.name}`, class: 'episode-select' },
      ...episodes.map((e) => el('option', { value: e.id }, e.name)));
    const about = el('p', { class: 'episode-about muted small' });
    const syncAbout = () => {
      const e = episodes.find((x) => x.id === select.value);
      about.textContent = e && e.about ? e.about : '';
    };
    select.addEventListener('change', syncAbout);
    syncAbout();
    const start = el('button', { type: 'button', class: 'btn primary start-btn', 'data-scenario': s.id }, 'New story');
    start.addEventListener('click', async () => {
      start.disabled = true;
      start.textContent = 'Starting…';
      try {
        const story = await api.create(s.id, select.value || undefined);
        location.hash = `#/story/${story.id}`;
      } catch (e) {
        errorBanner(e);
        start.disabled = false;
        start.textContent = 'New story';
      }
    });
    const card = el('article', { class: 'scenario-card', 'data-scenario': s.id },
      cover,
      el('div', { class: 'card-body' },
        el('h3', {}, s.name, s.nsfw ? el('span', { class: 'tag' }, '18+') : null),
        el('p', { class: 'teaser' }, s.teaser || ''),
        s.about ? el('details', {}, el('summary', {}, 'About'), el('p', { class: 'small' }, s.about)) : null,
        el('div', { class: 'episode-row' },
          episodes.length > 1 ? el('label', { class: 'sr-only' }, 'Episode') : null,
          episodes.length > 1 ? select : el('span', { class: 'episode-name' }, episodes[0] ? `Episode: ${episodes[0].name}` : ''),
          start),
        episodes.length > 1 || (episodes[0] && episodes[0].about) ? about : null));
    if (episodes.length <= 1) select.remove();
    return card;
  }));
}

function renderStories(stories) {
  $('continue-section').hidden = !stories.length;
  const names = new Map(scenariosList.map((s) => [s.id, s]));
  $('story-list').replaceChildren(...stories.map((st) => {
    const sc = names.get(st.scenario);
    const ep = sc && (sc.episodes || []).find((e) => e.id === st.episode);
    const del = el('button', { type: 'button', class: 'btn danger small-btn', 'aria-label': `Delete “${st.title || 'story'}”` }, 'Delete');
    let armed = 0;
    del.addEventListener('click', async () => {
      if (!armed) {
        del.textContent = 'Really delete?';
        del.classList.add('armed');
        armed = setTimeout(() => { armed = 0; del.textContent = 'Delete'; del.classList.remove('armed'); }, 4000);
        return;
      }
      clearTimeout(armed);
      try {
        await api.remove(st.id);
        li.remove();
        if (!$('story-list').children.length) $('continue-section').hidden = true;
        toast('Story deleted');
      } catch (e) { errorBanner(e); }
    });
    const li = el('li', { class: 'story-item', 'data-story': st.id },
      el('a', { class: 'story-link', href: `#/story/${st.id}` },
        el('span', { class: 'story-name' }, st.title || `Story ${st.id}`),
        el('span', { class: 'muted small' }, [`#${st.id}`, sc ? sc.name : st.scenario, ep ? ep.name : st.episode].filter(Boolean).join(' · ') + ` · ${relTime(st.updated)}`)),
      el('a', { class: 'btn primary small-btn', href: `#/story/${st.id}`, 'aria-label': `Continue “${st.title || 'story'}”` }, 'Continue'),
      del);
    return li;
  }));
}

// ---------------------------------------------------------------- typewriter
class Typer {
  constructor(node) {
    this.node = node;
    this.target = '';
    this.shown = 0;
    this.raf = 0;
    this.last = 0;
  }
  set(text, animate) {
    if (!text.startsWith(this.target.slice(0, this.shown))) this.shown = 0;
    this.target = text;
    if (!animate || +settings.text_speed >= 200) this.shown = text.length;
    this.paint();
    if (this.shown < this.target.length && !this.raf) {
      this.last = performance.now();
      this.raf = requestAnimationFrame((t) => this.tick(t));
    }
  }
  tick(now) {
    this.raf = 0;
    const cps = Math.max(5, +settings.text_speed);
    const n = Math.floor((now - this.last) * cps / 1000);
    if (n > 0) { this.shown = Math.min(this.target.length, this.shown + n); this.last = now; }
    this.paint();
    if (this.shown < this.target.length) this.raf = requestAnimationFrame((t) => this.tick(t));
  }
  finish() {
    if (this.shown >= this.target.length) return false;
    this.shown = this.target.length;
    this.paint();
    return true;
  }
  get typing() { return this.shown < this.target.length; }
  paint() {
    this.node.textContent = this.target.slice(0, this.shown);
    this.node.parentElement.classList.toggle('typing', this.shown < this.target.length);
  }
}

// ---------------------------------------------------------------- player
const stage = new Stage($('stage'), $('bg-layer'), $('sprites'), $('scene-caption'));

const player = {
  id: 0,
  story: null,
  scenario: null,
  events: null,
  busy: false,
  live: null,          // the line being written: {speaker, text}
  liveStage: null,     // the stage with streamed commands applied
  typer: null,
  shownId: 0,
  lastStreamId: 0,
  reconnecting: false,

  leave() {
    if (this.events) this.events.close();
    this.events = null;
    this.id = 0;
    this.story = null;
    stage.audio.stop();
  },
};

async function openStory(id) {
  if (player.id === id && player.story) { showView('player'); return; }
  player.leave();
  showView('player');
  player.id = id;
  player.live = null;
  player.shownId = 0;
  $('line').replaceChildren(el('span', { class: 'text' }, ''), el('span', { class: 'caret', 'aria-hidden': 'true' }));
  player.typer = new Typer($('line').firstChild);
  $('nameplate').hidden = true;
  $('variants').hidden = true;
  try {
    const story = await api.story(id);
    if (player.id !== id) return;
    const detail = await scenarioDetail(story.scenario);
    if (player.id !== id) return;
    manifestLocales = detail.manifest.locales || ['en-US'];
    loc = pickLocale(manifestLocales);
    player.scenario = detail;
    stage.setScenario(detail, tx);
    hideBanner('network');
    renderStory(story);
    player.events = new StoryEvents(id, eventHandlers, streamStatus);
    $('btn-advance').focus({ preventScroll: true });
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) {
      banner(`Story ${id} was not found. It may have been deleted.`, 'error');
      location.hash = '#/';
    } else errorBanner(e, () => { player.id = 0; openStory(id); });
  }
}

function streamStatus(s) {
  if (s === 'reconnecting') {
    if (!player.reconnecting) banner('Lost the connection to the server — reconnecting…', 'stream');
    player.reconnecting = true;
  } else if (s === 'open' && player.reconnecting) {
    player.reconnecting = false;
    hideBanner('stream');
    hideBanner('network');
    toast('Reconnected');
    api.story(player.id).then(renderStory).catch(() => {});
  }
}

function character(id) { return player.scenario && player.scenario.manifest.characters.find((c) => c.id === id); }

function speakerInfo(speaker) {
  if (speaker === 'narrator' || !speaker) return { name: '', color: null, kind: 'narrator' };
  if (speaker === 'player') return { name: tx(player.scenario.manifest.player.name) || 'You', color: '#d8dee9', kind: 'player' };
  const c = character(speaker);
  return { name: c ? tx(c.name) : speaker, color: c ? c.color : '#d8dee9', kind: 'character' };
}

function setNameplate(speaker) {
  const np = $('nameplate');
  const s = speakerInfo(speaker);
  np.hidden = !s.name;
  np.textContent = s.name;
  np.dataset.speaker = speaker || 'narrator';
  if (s.color) {
    np.style.setProperty('--c', s.color);
    np.style.setProperty('--c-text', readableOn(s.color, '#1f2430'));
  }
  $('dialogue').dataset.speaker = s.kind;
  $('dialogue').style.setProperty('--c', s.color || 'transparent');
  stage.setSpeaker(s.kind === 'character' ? speaker : null);
}

function headLine() {
  const p = player.story && player.story.path;
  return p && p.length ? p[p.length - 1] : null;
}

function renderStory(story) {
  if (!story || story.id !== player.id) return;
  player.story = story;
  const title = story.title || (player.scenario ? tx(player.scenario.manifest.name) : `Story ${story.id}`);
  $('story-title').textContent = title;
  document.title = `${title} — Simularity`;
  $('stage').dataset.story = story.id;
  if (!player.live) {
    player.liveStage = null;
    stage.render(story.stage);
  }
  renderHead();
  renderMeters();
  // Only this page's own operation disables the controls: the stream's
  // state may be sent while the server still counts its operation as busy,
  // and another client's operation is answered with a clear 409.
  setBusy(player.busy);
  if ($('panel-history').open) renderHistory();
  if ($('panel-saves').open) renderSaves();
}

function renderHead() {
  const head = headLine();
  if (player.live) return;
  if (!head) {
    setNameplate('narrator');
    player.typer.set('', false);
    $('line').dataset.update = '0';
    $('variants').hidden = true;
    $('btn-edit').disabled = true;
    return;
  }
  setNameplate(head.speaker);
  const animate = head.id === player.lastStreamId && player.typer.typing;
  player.typer.set(head.text, animate);
  $('line').dataset.update = String(head.id);
  $('line').dataset.speaker = head.speaker;
  player.shownId = head.id;
  const v = $('variants');
  v.hidden = !(head.variants > 1);
  $('variant-text').textContent = `${head.variant}/${head.variants}`;
  $('variant-text').setAttribute('aria-label', `Variant ${head.variant} of ${head.variants}`);
  $('btn-prev').disabled = head.variant <= 1;
  $('btn-next').disabled = head.variant >= head.variants;
}

function renderMeters() {
  const c = (player.story && player.story.context) || { size: 0, used: 0 };
  const pct = c.size ? clamp(Math.round(c.used * 100 / c.size), 0, 100) : 0;
  $('ctx-fill').style.width = `${pct}%`;
  $('ctx-gauge').setAttribute('aria-valuenow', String(pct));
  $('ctx-gauge').dataset.level = pct > 90 ? 'high' : pct > 70 ? 'mid' : 'low';
  $('ctx-text').textContent = `${fmtNum(c.used)} / ${fmtNum(c.size)}`;
  $('settings-context').textContent = c.size ? `Context size: ${fmtNum(c.size)} tokens (last turn used ${fmtNum(c.used)}, ${pct}%)` : 'Context size: —';
}
const fmtNum = (n) => (n >= 10000 ? `${(n / 1000).toFixed(1)}k` : String(n || 0));

function setBusy(b) {
  for (const id of ['btn-advance', 'btn-regen', 'btn-say', 'btn-prev', 'btn-next', 'btn-edit']) {
    const btn = $(id);
    if (b) btn.disabled = true;
  }
  if (!b) {
    $('btn-advance').disabled = false;
    $('btn-say').disabled = false;
    const head = headLine();
    $('btn-regen').disabled = !head;
    $('btn-edit').disabled = !head;
    if (head) {
      $('btn-prev').disabled = head.variant <= 1;
      $('btn-next').disabled = head.variant >= head.variants;
    }
  }
  $('dialogue').classList.toggle('busy', b);
  $('dialogue').setAttribute('aria-busy', b ? 'true' : 'false');
}

// Runs one story operation: one at a time, errors in the banner.
async function op(fn, { quiet } = {}) {
  if (player.busy || !player.id) return null;
  player.busy = true;
  setBusy(true);
  const id = player.id;
  try {
    const story = await fn(id);
    if (player.id !== id) return null;
    hideBanner('network');
    hideBanner('error');
    player.live = null;
    hideProgress();
    if (story && story.id) renderStory(story);
    return story;
  } catch (e) {
    player.live = null;
    hideProgress();
    renderHead();
    if (!quiet) errorBanner(e, e.kind === 'network' ? () => op(fn) : null);
    return null;
  } finally {
    player.busy = false;
    setBusy(false);
  }
}

// ---------------------------------------------------------------- events
const eventHandlers = {
  progress(d) {
    if (!d.total) return;
    const pct = clamp(Math.round(d.done * 100 / d.total), 0, 100);
    const p = $('progress');
    p.hidden = false;
    $('progress-fill').style.width = `${pct}%`;
    $('progress-bar').setAttribute('aria-valuenow', String(pct));
    $('progress-label').textContent = `Reading the story… ${d.done} / ${d.total} tokens`;
    if (d.done >= d.total) setTimeout(hideProgress, 400);
  },
  command(d) {
    const base = player.liveStage || (player.story && player.story.stage);
    if (!base || !d.command) return;
    player.liveStage = applyCommand(structuredClone(base), d.command);
    if (!player.live) player.live = { speaker: null, text: '', pending: true };
    stage.render(player.liveStage);
  },
  speaker(d) {
    hideProgress();
    player.live = { speaker: d.speaker, text: '' };
    setNameplate(d.speaker);
    $('variants').hidden = true;
    player.typer.set('', false);
    $('line').dataset.update = 'live';
  },
  text(d) {
    if (!player.live || player.live.pending) {
      player.live = { speaker: (player.live && player.live.speaker) || 'narrator', text: '' };
    }
    player.live.text += d.text || '';
    player.typer.set(player.live.text, true);
  },
  line(d) {
    hideProgress();
    if (d.update) player.lastStreamId = d.update.id;
    const t = d.turn;
    if (t && typeof t.tokens_per_s === 'number') {
      $('speed-text').textContent = `${t.tokens_per_s.toFixed(1)} tok/s`;
      $('speed-text').title = `${t.generated} tokens generated in ${t.ms_generate} ms; prompt ${t.prompt} tokens (${t.reused} reused, ${t.prompt_decoded} processed in ${t.ms_prompt} ms)`;
    }
    if (d.update) {
      player.typer.set(d.update.text, true);
    }
  },
  checkpoint() { toast('The story so far was summarised (checkpoint)'); },
  achievement(d) { toast(`★ Achievement: ${d.name}${d.description ? ' — ' + d.description : ''}`); },
  state(story) {
    if (player.busy) { // the operation's answer renders it; keep the stream's text flowing
      if (story && story.id === player.id) { player.story = story; renderMeters(); }
      return;
    }
    // A late state from before the story's last change is stale.
    if (!story || (player.story && story.updated < player.story.updated)) return;
    player.live = null;
    renderStory(story);
  },
  error(d) {
    hideProgress();
    banner(`The model failed: ${d.message || 'unknown error'}`, 'model');
  },
};

function hideProgress() { $('progress').hidden = true; }

function applyCommand(s, cmd) {
  const [name] = Object.keys(cmd);
  const a = cmd[name] || {};
  const chars = s.characters || (s.characters = []);
  const find = () => chars.find((c) => c.character === a.character);
  switch (name) {
    case 'setScene': s.scene = a.scene; break;
    case 'addCharacter': {
      const c = character(a.character);
      if (!c || find()) break;
      chars.push({ character: a.character, body: a.body || c.bodies[0].id, outfit: a.outfit || c.outfits[0].id, expression: a.expression || c.expressions[0].id });
      break;
    }
    case 'removeCharacter': s.characters = chars.filter((c) => c.character !== a.character); break;
    case 'setExpression': { const c = find(); if (c) c.expression = a.expression; break; }
    case 'setOutfit': { const c = find(); if (c) c.outfit = a.outfit; break; }
    case 'advanceClock': s.minutes = (s.minutes || 0) + (a.minutes || 0); break;
    case 'setVariable': (s.variables || (s.variables = {}))[a.variable] = a.value; break;
    default: break;
  }
  return s;
}

// ---------------------------------------------------------------- actions
function advance() {
  if (player.typer && player.typer.finish()) return;   // first press shows the whole line
  if (!$('line-edit').hidden) return;
  op((id) => api.advance(id, sampling()));
}
function regenerate() {
  if (!$('line-edit').hidden) return;
  op((id) => api.regenerate(id, sampling()));
}
async function say(text) {
  text = text.trim();
  if (!text) return;
  const story = await op((id) => api.say(id, text));
  if (story) {
    $('say-input').value = '';
    if (settings.auto_reply) await op((id) => api.advance(id, sampling()));
  }
}
async function variant(delta) {
  const head = headLine();
  if (!head || head.variants <= 1 || player.busy) return;
  const want = head.variant + delta;
  if (want < 1 || want > head.variants) return;
  await op(async (id) => {
    const tree = await api.tree(id);
    const sibs = tree.updates.filter((u) => u.parent === head.parent).sort((a, b) => a.id - b.id);
    const target = sibs[want - 1];
    if (!target) throw new Error('That variant is not in the story tree.');
    return api.choose(id, target.id);
  });
}

function startEdit() {
  const head = headLine();
  if (!head || player.busy) return;
  player.typer.finish();
  $('line').hidden = true;
  $('line-edit').hidden = false;
  const ta = $('edit-text');
  ta.value = head.text;
  ta.dataset.update = String(head.id);
  ta.focus();
  ta.setSelectionRange(ta.value.length, ta.value.length);
}
function endEdit() {
  $('line-edit').hidden = true;
  $('line').hidden = false;
}
async function saveEdit() {
  const ta = $('edit-text');
  const text = ta.value.trim();
  const update = +ta.dataset.update;
  if (!text) { toast('A line cannot be empty'); return; }
  const head = headLine();
  if (head && head.id === update && head.text === text) { endEdit(); return; }
  const story = await op((id) => api.edit(id, update, text));
  if (story) { endEdit(); toast('Line edited (the original is kept as a variant)'); $('btn-advance').focus(); }
}

// ---------------------------------------------------------------- panels
function openPanel(id) {
  const d = $(id);
  if (d.open) return;
  closePanels();
  if (id === 'panel-history') renderHistory();
  if (id === 'panel-tree') renderTree();
  if (id === 'panel-saves') renderSaves();
  if (id === 'panel-settings') fillSettings();
  d.showModal();
}
function closePanels() {
  for (const d of document.querySelectorAll('dialog.panel[open]')) if (d.id !== 'panel-key') d.close();
}
for (const d of document.querySelectorAll('dialog.panel')) {
  d.addEventListener('click', (ev) => {
    if (ev.target === d) d.close();   // a click on the backdrop
    if (ev.target.closest('[data-close]')) d.close();
  });
  d.addEventListener('close', () => {
    const a = document.activeElement;
    const lost = !a || a === document.body || d.contains(a);
    if (lost && d.id !== 'panel-key' && document.body.dataset.view === 'player') $('btn-advance').focus({ preventScroll: true });
  });
}

function renderHistory() {
  const list = $('history-list');
  const path = (player.story && player.story.path) || [];
  const head = headLine();
  const items = path.map((u, i) => {
    const s = speakerInfo(u.speaker);
    const rewind = el('button', { type: 'button', class: 'btn small-btn', 'aria-label': `Rewind to line ${i + 1}` }, 'Rewind here');
    rewind.disabled = head && u.id === head.id;
    rewind.addEventListener('click', async () => {
      const st = await op((id) => api.rewind(id, u.id));
      if (st) { toast(`Rewound to line ${i + 1}`); renderHistory(); }
    });
    const up = el('button', { type: 'button', class: `icon-btn small thumb ${u.thumbs > 0 ? 'on' : ''}`, 'aria-pressed': String(u.thumbs > 0), 'aria-label': 'Good line' }, '▲');
    const down = el('button', { type: 'button', class: `icon-btn small thumb ${u.thumbs < 0 ? 'on' : ''}`, 'aria-pressed': String(u.thumbs < 0), 'aria-label': 'Bad line' }, '▼');
    up.addEventListener('click', () => op((id) => api.thumbs(id, u.id, u.thumbs > 0 ? 0 : 1)));
    down.addEventListener('click', () => op((id) => api.thumbs(id, u.id, u.thumbs < 0 ? 0 : -1)));
    const name = el('span', { class: 'h-speaker' }, s.name || 'Narrator');
    if (s.color) name.style.color = readableOn(s.color, '#161b26');
    return el('li', { class: `h-item ${u.speaker === 'narrator' ? 'narration' : ''} ${head && u.id === head.id ? 'current' : ''}`, 'data-update': u.id },
      el('div', { class: 'h-head' }, name,
        el('span', { class: 'muted small' }, [u.clock, u.variants > 1 ? `variant ${u.variant}/${u.variants}` : '', u.edit_of ? 'edited' : '', u.source === 'script' ? 'scripted' : ''].filter(Boolean).join(' · '))),
      el('p', { class: 'h-text' }, u.text),
      el('div', { class: 'h-actions' }, up, down, rewind));
  });
  const restart = el('button', { type: 'button', class: 'btn small-btn' }, 'Rewind to the very start');
  restart.addEventListener('click', () => op((id) => api.rewind(id, 0)).then((s) => s && renderHistory()));
  list.replaceChildren(...items, el('li', { class: 'h-restart' }, restart));
  const cur = list.querySelector('.current');
  if (cur) requestAnimationFrame(() => cur.scrollIntoView({ block: 'nearest' }));
}

async function renderTree() {
  const view = $('tree-view');
  view.replaceChildren(el('p', { class: 'muted' }, 'Loading…'));
  let tree;
  try { tree = await api.tree(player.id); } catch (e) { view.replaceChildren(el('p', { class: 'muted' }, e.message)); return; }
  const onPath = new Set((player.story.path || []).map((u) => u.id));
  const kids = new Map();
  for (const u of tree.updates) {
    if (!kids.has(u.parent)) kids.set(u.parent, []);
    kids.get(u.parent).push(u);
  }
  for (const k of kids.values()) k.sort((a, b) => a.id - b.id);
  const node = (u) => {
    const s = speakerInfo(u.speaker);
    const b = el('button', { type: 'button', class: `t-node ${onPath.has(u.id) ? 'on-path' : ''} ${u.id === tree.head ? 'head' : ''}`, 'data-update': u.id,
      'aria-current': u.id === tree.head ? 'true' : null },
      el('span', { class: 't-speaker' }, s.name || 'Narrator'), ' ',
      el('span', { class: 't-text' }, u.text.length > 90 ? u.text.slice(0, 88) + '…' : u.text),
      u.edit_of ? el('span', { class: 'tag' }, 'edit') : null);
    if (s.color) b.querySelector('.t-speaker').style.color = readableOn(s.color, '#161b26');
    b.addEventListener('click', async () => {
      const st = await op((id) => api.choose(id, u.id));
      if (st) { toast('Following that branch'); renderTree(); }
    });
    return b;
  };
  // A chain of single children stays flat; a fork nests its branches.
  const chain = (u) => {
    const ol = el('ol', { class: 't-chain' });
    let cur = u;
    for (;;) {
      ol.append(el('li', {}, node(cur)));
      const ch = kids.get(cur.id) || [];
      if (ch.length === 1) { cur = ch[0]; continue; }
      if (ch.length > 1) ol.append(el('li', { class: 't-fork' }, el('ul', {}, ...ch.map((c) => el('li', { class: onPath.has(c.id) ? 'branch on-path' : 'branch' }, chain(c))))));
      break;
    }
    return ol;
  };
  const roots = kids.get(0) || [];
  view.replaceChildren(roots.length ? el('ul', { class: 't-root' }, ...roots.map((r) => el('li', {}, chain(r)))) : el('p', { class: 'muted' }, 'No lines yet.'));
  const h = view.querySelector('.head');
  if (h) requestAnimationFrame(() => h.scrollIntoView({ block: 'center' }));
}

const thumbUrls = new Map();
function thumbImg(url) {
  const img = el('img', { alt: '', loading: 'lazy', width: 160, height: 90 });
  if (!getKey()) { img.src = url; return img; }
  (thumbUrls.get(url) || fetch(url, { headers: { Authorization: `Bearer ${getKey()}` } }).then((r) => r.blob()).then((b) => {
    const u = URL.createObjectURL(b); thumbUrls.set(url, Promise.resolve(u)); return u;
  })).then((u) => { img.src = u; }).catch(() => {});
  return img;
}

function renderSaves() {
  const story = player.story;
  const saves = (story && story.saves) || [];
  const path = story ? story.path : [];
  $('saves-list').replaceChildren(...saves.slice().reverse().map((s) => {
    const idx = path.findIndex((u) => u.id === s.update);
    const load = el('button', { type: 'button', class: 'btn primary small-btn', 'aria-label': `Load save “${s.name}”` }, 'Load');
    load.addEventListener('click', async () => {
      const st = await op((id) => api.load(id, s.id));
      if (st) { closePanels(); toast(`Loaded “${s.name}”`); }
    });
    return el('li', { class: 'save-item', 'data-save': s.id },
      s.thumbnail ? thumbImg(s.thumbnail) : el('div', { class: 'thumb-empty' }),
      el('div', { class: 'save-info' },
        el('strong', {}, s.name),
        el('span', { class: 'muted small' }, `${relTime(s.created)}${idx >= 0 ? ` · line ${idx + 1}` : ''}`)),
      load);
  }));
  if (!saves.length) $('saves-list').append(el('li', { class: 'muted' }, 'No saves yet.'));
  const vars = player.scenario ? (player.scenario.manifest.variables || []).filter((v) => !v.hidden) : [];
  const values = (story && story.stage && story.stage.variables) || {};
  $('status').replaceChildren(...(vars.length ? [
    el('h3', {}, 'Status'),
    el('ul', { class: 'status-list' }, ...vars.map((v) => {
      const val = values[v.id] ?? v.default;
      let shown;
      if (v.type === 'integer' && typeof val === 'number') {
        const pct = v.max > v.min ? clamp((val - v.min) * 100 / (v.max - v.min), 0, 100) : 100;
        shown = el('span', { class: 'status-val' },
          el('span', { class: 'gauge', role: 'meter', 'aria-label': tx(v.name), 'aria-valuemin': v.min, 'aria-valuemax': v.max, 'aria-valuenow': val },
            el('span', { class: 'gauge-fill', style: `width:${pct}%` })), ` ${val}/${v.max}`);
      } else if (v.type === 'boolean') shown = el('span', { class: 'status-val' }, val ? 'yes' : 'no');
      else shown = el('span', { class: 'status-val' }, String(val ?? '—'));
      return el('li', { 'data-variable': v.id }, el('span', {}, tx(v.name)), shown);
    })),
  ] : []));
  const ach = (story && story.achievements) || [];
  const defs = player.scenario ? player.scenario.manifest.achievements || [] : [];
  $('achievements').replaceChildren(...(defs.length ? [
    el('h3', {}, `Achievements ${ach.length}/${defs.length}`),
    el('ul', { class: 'achievements' }, ...defs.map((a) => {
      const got = ach.find((x) => x.id === a.id);
      return el('li', { class: got ? 'got' : '' }, el('strong', {}, got ? `★ ${tx(a.name)}` : `☆ ${tx(a.name)}`), el('span', { class: 'muted small' }, got ? tx(a.description) : 'Not yet'));
    })),
  ] : []));
}

$('btn-fork').addEventListener('click', async () => {
  const cur = player.story;
  if (!cur) return;
  const copy = await op((id) => api.fork(id, `${cur.title || 'Story'} (copy)`));
  if (copy && copy.id) {
    location.hash = `#/story/${copy.id}`;
    toast('Continuing in a copy of this story');
  }
});

$('save-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const name = $('save-name').value.trim();
  if (!name || !player.story) return;
  let thumb = null;
  try { thumb = await stage.thumbnail(player.story.stage); } catch { thumb = null; }
  const res = await op(async (id) => {
    await api.save(id, name, thumb);
    return api.story(id);
  });
  if (res) { $('save-name').value = ''; toast(`Saved “${name}”`); renderSaves(); }
});

// ---------------------------------------------------------------- settings
const labels = {
  temperature: (v) => (+v).toFixed(2), top_p: (v) => (+v).toFixed(2), min_p: (v) => (+v).toFixed(2),
  max_tokens: (v) => String(v), text_speed: (v) => (+v >= 200 ? 'instant' : `${v} chars/s`), volume: (v) => `${v}%`,
};
function fillSettings() {
  const f = $('settings-form');
  for (const [k, fmt] of Object.entries(labels)) {
    f.elements[k].value = settings[k];
    $(`o-${k}`).textContent = fmt(settings[k]);
  }
  f.elements.auto_reply.checked = !!settings.auto_reply;
  $('btn-forget-key').hidden = !getKey();
}
$('settings-form').addEventListener('input', (ev) => {
  const t = ev.target;
  if (!t.name) return;
  settings[t.name] = t.type === 'checkbox' ? t.checked : +t.value;
  if (labels[t.name]) $(`o-${t.name}`).textContent = labels[t.name](t.value);
  if (t.name === 'volume') applyVolume();
  saveSettings();
});
$('settings-form').addEventListener('submit', (ev) => ev.preventDefault());
$('btn-reset-settings').addEventListener('click', () => { settings = { ...DEFAULTS }; saveSettings(); fillSettings(); applyVolume(); });
$('btn-forget-key').addEventListener('click', () => { setKey(''); $('btn-forget-key').hidden = true; toast('API key forgotten'); });

function applyVolume() {
  $('volume').value = settings.volume;
  $('volume').setAttribute('aria-valuetext', `${settings.volume}%`);
  stage.audio.setVolume(settings.volume / 100);
}
$('volume').addEventListener('input', (ev) => { settings.volume = +ev.target.value; saveSettings(); applyVolume(); });

// ---------------------------------------------------------------- wiring
$('btn-advance').addEventListener('click', advance);
$('btn-regen').addEventListener('click', regenerate);
$('btn-prev').addEventListener('click', () => variant(-1));
$('btn-next').addEventListener('click', () => variant(1));
$('btn-edit').addEventListener('click', startEdit);
$('btn-edit-save').addEventListener('click', saveEdit);
$('btn-edit-cancel').addEventListener('click', () => { endEdit(); $('btn-edit').focus(); });
$('edit-text').addEventListener('keydown', (ev) => {
  if (ev.key === 'Enter' && !ev.shiftKey) { ev.preventDefault(); saveEdit(); }
  if (ev.key === 'Escape') { ev.preventDefault(); ev.stopPropagation(); endEdit(); $('btn-edit').focus(); }
});
$('btn-history').addEventListener('click', () => openPanel('panel-history'));
$('btn-tree').addEventListener('click', () => openPanel('panel-tree'));
$('btn-saves').addEventListener('click', () => openPanel('panel-saves'));
$('btn-settings').addEventListener('click', () => openPanel('panel-settings'));
$('btn-help').addEventListener('click', () => openPanel('panel-help'));
$('banner-close').addEventListener('click', () => hideBanner());
$('say-form').addEventListener('submit', (ev) => { ev.preventDefault(); say($('say-input').value); });
$('stage').addEventListener('click', () => advance());

document.addEventListener('keydown', (ev) => {
  if (ev.defaultPrevented || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const t = ev.target;
  const typing = t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.tagName === 'SELECT' || t.isContentEditable);
  if (document.querySelector('dialog[open]')) return;   // a dialog handles its own keys (Esc closes it)
  if (typing) {
    if (ev.key === 'Escape') t.blur();
    return;
  }
  if (ev.key === 'Escape') { hideBanner(); return; }
  if (ev.key === '?') { ev.preventDefault(); openPanel('panel-help'); return; }
  if (document.body.dataset.view !== 'player') return;
  const onControl = t && (t.tagName === 'BUTTON' || t.tagName === 'A' || t.tagName === 'SUMMARY');
  switch (ev.key) {
    case 'Enter': case ' ':
      if (onControl && t.id !== 'btn-advance') return;   // the focused control's own action
      ev.preventDefault(); advance(); break;
    case 'r': case 'R': ev.preventDefault(); regenerate(); break;
    case 'ArrowLeft': ev.preventDefault(); variant(-1); break;
    case 'ArrowRight': ev.preventDefault(); variant(1); break;
    case 'h': case 'H': ev.preventDefault(); openPanel('panel-history'); break;
    case 'b': case 'B': ev.preventDefault(); openPanel('panel-tree'); break;
    case 's': case 'S': ev.preventDefault(); openPanel('panel-saves'); break;
    case 'e': case 'E': ev.preventDefault(); startEdit(); break;
    case '/': ev.preventDefault(); $('say-input').focus(); break;
    default: break;
  }
});

window.addEventListener('hashchange', route);
window.addEventListener('online', () => { if (bannerKind === 'network') route(); });
applyVolume();
$('btn-forget-key').hidden = !getKey();
route();
